// WASM handle benchmarks: call overhead next to V8's WebAssembly in the same run, and snapshot /
// restore of a 64 MiB memory next to Buffer copy bandwidth.
import { createRequire } from 'node:module';
import { fmt, interleaved, measure, medianMs, table } from './util.mjs';

const require = createRequire(import.meta.url);
const { WasmModule, WasmInstance } = require('../lib/index.js');
const wabt = await require('wabt')();

function wat(text) {
  const m = wabt.parseWat('bench.wat', text, { memory64: true });
  return new Uint8Array(m.toBinary({}).buffer);
}

const facBytes = wat(`(module (func $fac (export "fac") (param f64) (result f64)
  local.get 0 f64.const 1 f64.lt
  if (result f64) f64.const 1 else local.get 0 local.get 0 f64.const 1 f64.sub call $fac f64.mul end))`);

// ---- calls ----
const inst = new WasmInstance(WasmModule.compile(facBytes));
const v8fac = new WebAssembly.Instance(new WebAssembly.Module(facBytes)).exports.fac;
const args = [5];
const ours = measure((n) => {
  for (let i = 0; i < n; i++) inst.call('fac', args);
}, { iterations: 100000 });
const theirs = measure((n) => {
  for (let i = 0; i < n; i++) v8fac(5);
}, { iterations: 100000 });
// The same call without a deadline, and compiled without epoch checks, in interleaved rounds:
// what the default time limit costs per call.
const facVariants = {
  deadline: inst,
  infinity: new WasmInstance(WasmModule.compile(facBytes), {}, { timeLimit: Infinity }),
  noEpoch: new WasmInstance(WasmModule.compile(facBytes, { interruptible: false })),
};
const CALLS = 200_000;
const facRates = interleaved(facVariants, (i) => {
  for (let k = 0; k < CALLS; k++) i.call('fac', args);
  return CALLS;
}, 21);
table('WasmInstance#call(\'fac\', [5]) vs V8 WebAssembly (same export, same run)', ['runtime', 'calls/s (median)', 'ns/call', 'ratio to V8'], [
  ['hb-runtimes (Wasmtime, through the public API)', fmt(ours.median), (1e9 / ours.median).toFixed(0), (ours.median / theirs.median).toFixed(3)],
  ['V8 WebAssembly (JS→wasm inlined)', fmt(theirs.median), (1e9 / theirs.median).toFixed(1), '1.000'],
]);
table('Cost of the default time limit per call (`call(\'fac\', [5])`, interleaved rounds, same run)', ['set-up', 'ns/call (median)', 'speed vs no epoch checks'], [
  ['default: 10 s deadline', (1e9 / facRates.deadline).toFixed(0), (facRates.deadline / facRates.noEpoch).toFixed(3)],
  ['timeLimit: Infinity', (1e9 / facRates.infinity).toFixed(0), (facRates.infinity / facRates.noEpoch).toFixed(3)],
  ['interruptible: false (no epoch checks)', (1e9 / facRates.noEpoch).toFixed(0), '1.000'],
]);

// ---- snapshots of a 64 MiB memory ----
const MiB = 1 << 20;
const memBytes = wat(`(module (memory (export "memory") 1024 1024))`);
const memModule = WasmModule.compile(memBytes);
const big = new WasmInstance(memModule);
const pattern = Buffer.alloc(MiB);
for (let i = 0; i < pattern.length; i++) pattern[i] = (i * 2654435761) >>> 24;
for (let off = 0; off < 64 * MiB; off += MiB) big.memory.write(off, pattern);

const src = Buffer.alloc(64 * MiB, 7);
const dst = Buffer.alloc(64 * MiB);
// Operations that allocate fresh memory are interleaved round by round with their Buffer peer:
// on this VM the cost of first-touching new pages drifts with the process's footprint, and both
// sides must see the same conditions.
function paired(rounds, a, b) {
  const ta = [];
  const tb = [];
  for (let r = 0; r < rounds; r++) {
    ta.push(medianMs(a, 1));
    tb.push(medianMs(b, 1));
  }
  const med = (xs) => xs.sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  return [med(ta), med(tb)];
}
let snap = big.snapshot();
const [copyWarm, restoreSame] = paired(9, () => src.copy(dst), () => big.restore(snap));
const [copyFresh, snapMs] = paired(9, () => Buffer.from(src), () => {
  snap = big.snapshot();
});
// Each fresh instance is disposed after its restore, as a server would.
const [copyFresh2, restoreFresh] = paired(9, () => Buffer.from(src), () => {
  const f = new WasmInstance(memModule);
  f.restore(snap);
  f.dispose();
});
const bw = (ms) => `${((64 / 1024) / (ms / 1000)).toFixed(1)} GiB/s`;
table('Snapshot / restore of a 64 MiB memory vs Buffer copy (same run)', ['operation', 'median ms', 'bandwidth', 'fraction of copy'], [
  ['Buffer.copy into an existing buffer', copyWarm.toFixed(2), bw(copyWarm), '1.00 (warm)'],
  ['Buffer.from (copy into new memory)', copyFresh.toFixed(2), bw(copyFresh), '1.00 (fresh)'],
  ['instance.snapshot() (new buffer + checksum)', snapMs.toFixed(2), bw(snapMs), (copyFresh / snapMs).toFixed(2) + ' of fresh'],
  ['instance.restore() into the same instance', restoreSame.toFixed(2), bw(restoreSame), (copyWarm / restoreSame).toFixed(2) + ' of warm'],
  ['instance.restore() into a fresh instance', restoreFresh.toFixed(2), bw(restoreFresh), (copyFresh2 / restoreFresh).toFixed(2) + ' of fresh'],
]);
