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

// ---- incremental and file snapshots of a 1 GiB AOS memory (needs ../shared/fixtures) ----
// aos-2-pure-xs (12 MiB of live heap) with its memory grown to 1 GiB and the grown part filled,
// so a full snapshot copies a whole GiB: a checkpoint after each Eval as a full snapshot, and as
// an incremental one (the pages the Eval wrote), in the same run.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { loadImage } = require('../lib/wasm-image.js');
const AOS = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'shared', 'fixtures', 'aos-2-pure-xs.wasm');
if (!fs.existsSync(AOS)) {
  console.log(`\n(AOS snapshot rows skipped: ${AOS} not found)`);
} else {
  const GiB = 1 << 30;
  const m = await loadImage(fs.readFileSync(AOS));
  const imports = {};
  for (const imp of m.imports) {
    const r = imp.type?.results[0];
    (imports[imp.module] ??= {})[imp.name] = () => (r === 'i64' ? 0n : r ? 0 : undefined);
  }
  const aos = new WasmInstance(m, imports);
  const env = aos.writeString(JSON.stringify({ Process: { Id: 'AOS', Owner: 'FOOBAR', Tags: [{ name: 'Name', value: 'Thomas' }, { name: 'Authority', value: 'FOOBAR' }] } }));
  const scratch = aos.malloc(1 << 16);
  const evalOne = (i) => {
    const msg = { From: 'FOOBAR', 'Block-Height': '1', Target: 'AOS', Owner: 'FOOBAR', Id: String(i), Module: 'W', Tags: [{ name: 'Action', value: 'Eval' }], Data: 'return 1 + 1' };
    aos.memory.write(scratch, Buffer.from(`${JSON.stringify(msg)}\0`));
    const [out] = aos.call('handle', [scratch, env]);
    return JSON.parse(aos.readString(out));
  };
  if (evalOne(0).response.Output.data !== '2') throw new Error('AOS: wrong answer');
  const heap = Number(aos.memory.size);
  aos.memory.grow(BigInt((GiB - heap) / 65536));
  for (let off = heap; off < GiB; off += MiB) aos.memory.write(BigInt(off), pattern); // the grown part holds data too
  for (let i = 1; i < 20; i++) evalOne(i);

  // Checkpoint after each Eval: full, then incremental (interleaved rounds).
  const fullMs = [];
  const deltaMs = [];
  const deltaBytes = [];
  let last = aos.snapshot();
  const fullBytes = last.length;
  last = aos.snapshot({ since: last }); // the first delta holds every page; tracking is on from here (trackWrites default)
  for (let r = 0; r < 7; r++) {
    evalOne(100 + r);
    let t0 = process.hrtime.bigint();
    last = aos.snapshot();
    fullMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
    for (let k = 0; k < 5; k++) {
      evalOne(1000 + r * 10 + k);
      t0 = process.hrtime.bigint();
      last = aos.snapshot({ since: last });
      deltaMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
      deltaBytes.push(last.length);
    }
  }
  const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const evalMs = medianMs(() => evalOne(5000), 21);
  const fileBase = aos.snapshot();
  const chain = [];
  for (let k = 0; k < 10; k++) {
    evalOne(6000 + k);
    chain.push(aos.snapshot({ since: chain.at(-1) ?? fileBase }));
  }
  const restoreChainMs = medianMs(() => {
    const f = new WasmInstance(m, imports);
    f.restore(fileBase, ...chain);
    f.dispose();
  }, 3);
  const restoreBaseMs = medianMs(() => {
    const f = new WasmInstance(m, imports);
    f.restore(fileBase);
    f.dispose();
  }, 3);
  table(`AOS (aos-2-pure-xs) grown to a 1 GiB memory: checkpoint after each Eval (same run; write tracking: ${WasmInstance.writeTracking ? 'userfaultfd' : 'unavailable, deltas hold every page'})`, ['operation', 'median ms', 'bytes', 'vs full snapshot'], [
    ['one Eval (`return 1 + 1`), for scale', evalMs.toFixed(2), '', ''],
    ['full snapshot `snapshot()`', med(fullMs).toFixed(1), fmt(fullBytes), '1.00'],
    ['incremental `snapshot({ since })` after one Eval', med(deltaMs).toFixed(2), fmt(med(deltaBytes)), `${(med(fullMs) / med(deltaMs)).toFixed(0)}× faster`],
    ['restore full into a fresh instance', restoreBaseMs.toFixed(1), '', ''],
    ['restore full + 10 deltas into a fresh instance', restoreChainMs.toFixed(1), '', ''],
  ]);

  // File snapshots of the same 1 GiB instance next to fs.writeFileSync / readFileSync of a 1 GiB
  // Buffer (same run, interleaved). snapshotToFile writes a new temporary file and renames it.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hb-bench-snap-'));
  const file = path.join(dir, 'aos.snap');
  const peerFile = path.join(dir, 'peer.bin');
  const buf = fileBase;
  const [writePeer, writeOurs] = paired(3, () => {
    fs.rmSync(peerFile, { force: true });
    fs.writeFileSync(peerFile, buf);
  }, () => aos.snapshotToFile(file));
  // The same replacement ours does: a temporary file renamed over the previous one (ext4 starts
  // writing the new file's data back at such a rename, auto_da_alloc).
  const [renamePeer] = paired(3, () => {
    fs.writeFileSync(`${peerFile}.tmp`, buf);
    fs.renameSync(`${peerFile}.tmp`, peerFile);
  }, () => {});
  const [readPeer, readOurs] = paired(3, () => fs.readFileSync(peerFile), () => {
    const f = new WasmInstance(m, imports);
    f.restoreFromFile(file);
    f.dispose();
  });
  fs.rmSync(dir, { recursive: true, force: true });
  const gbs = (ms) => `${(buf.length / GiB / (ms / 1000)).toFixed(2)} GiB/s`;
  table('File snapshots of the 1 GiB AOS instance vs fs on a 1 GiB Buffer (same run, interleaved)', ['operation', 'median ms', 'throughput', 'vs peer'], [
    ['`instance.snapshotToFile(path)` (chunked from memory, temporary file + rename)', writeOurs.toFixed(0), gbs(writeOurs), (writePeer / writeOurs).toFixed(2)],
    ['peer: `fs.writeFileSync` of the blob (new file)', writePeer.toFixed(0), gbs(writePeer), '1.00'],
    ['peer: `fs.writeFileSync` to a temporary file + `renameSync` over the previous one', renamePeer.toFixed(0), gbs(renamePeer), (writePeer / renamePeer).toFixed(2)],
    ['`restoreFromFile(path)` into a fresh instance (verify pass + read pass)', readOurs.toFixed(0), gbs(readOurs), (readPeer / readOurs).toFixed(2)],
    ['peer: `fs.readFileSync` of the blob', readPeer.toFixed(0), gbs(readPeer), '1.00'],
  ]);
  aos.dispose();
}
