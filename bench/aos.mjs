// node-flags: --experimental-wasm-memory64
// AOS (aos-2-pure-xs, Lua compiled to wasm64 by emscripten) Eval throughput next to
// @permaweb/ao-loader (the JS loader AO compute units use, on V8) in the same run; module load
// times; snapshot and restore of the 12 MiB AOS memory. Needs ../shared/fixtures.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { fmt, interleaved, medianMs, table } from './util.mjs';

const require = createRequire(import.meta.url);
const hb = require('../lib/index.js');
const { loadImage } = require('../lib/wasm-image.js');
const FIXTURE = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'shared', 'fixtures', 'aos-2-pure-xs.wasm');
if (!fs.existsSync(FIXTURE)) {
  console.log(`skipped: ${FIXTURE} not found`);
  process.exit(0);
}
const image = fs.readFileSync(FIXTURE);
// Every row hands AOS the same JSON that json-iface@1.0 writes for the resolve() row's process and
// messages (fields and order as HyperBEAM's dev_json_iface), so the rows differ only in the path
// taken, not in what the guest does (AOS does a third more work with these fields than with a
// bare message).
const IMAGE_ID = '5LmxzQ5tZpnsdzCpzWjxXGB17f0aCHaMfw9TiKzZAF0';
const ENV = {
  Process: {
    Id: 'AOS', Anchor: '', Owner: 'FOOBAR', From: 'FOOBAR',
    Tags: [{ name: 'Authority', value: 'FOOBAR' }, { name: 'Image', value: IMAGE_ID }, { name: 'Name', value: 'Thomas' }, { name: 'Type', value: 'Process' }],
    Target: '', Data: '', Signature: '', PublicKey: '',
  },
};
const msgOf = (i, data = 'return 1 + 1') => ({
  Id: String(i), Anchor: '', Owner: 'FOOBAR', From: 'FOOBAR', Tags: [{ name: 'Action', value: 'Eval' }], Target: 'AOS', Data: data,
  Signature: '', PublicKey: '', Module: IMAGE_ID, 'Block-Height': '1',
});
const HEAVY = 'local t = {} for i = 1, 20000 do t[#t + 1] = tostring(i) end return #table.concat(t, ",")';
const ROUNDS = 5;
const PER_ROUND = 400;

/** msgs/s: the median of ROUNDS rounds of PER_ROUND Evals. */
async function rate(evalOne) {
  for (let i = 0; i < 50; i++) await evalOne(i); // warm-up
  const rates = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = performance.now();
    for (let i = 0; i < PER_ROUND; i++) await evalOne(i);
    rates.push(PER_ROUND / ((performance.now() - t0) / 1000));
  }
  return rates.sort((a, b) => a - b)[Math.floor(ROUNDS / 2)];
}

// ---- hb-runtimes through the native handles (what json-iface does per message) ----
function zeroImports(m) {
  const imports = {};
  for (const imp of m.imports) {
    const r = imp.type?.results[0];
    (imports[imp.module] ??= {})[imp.name] = () => (r === 'i64' ? 0n : r ? 0 : undefined);
  }
  return imports;
}
async function hbHandle(opts) {
  const m = await loadImage(image, opts);
  const inst = new hb.WasmInstance(m, zeroImports(m));
  const envPtr = inst.writeString(JSON.stringify(ENV));
  const scratch = inst.malloc(1 << 16);
  return {
    inst,
    m,
    evalOne: (i, data) => {
      inst.memory.write(scratch, Buffer.from(`${JSON.stringify(msgOf(i, data))}\0`));
      const [out] = inst.call('handle', [scratch, envPtr]);
      return JSON.parse(inst.readString(out));
    },
  };
}
const safe = await hbHandle({});
if (safe.evalOne(0).response.Output.data !== '2') throw new Error('hb-runtimes: wrong AOS answer');
const hbSafe = await rate(safe.evalOne);
const fast = await hbHandle({ spectreMitigation: false });
const hbFast = await rate(fast.evalOne);

// ---- hb-runtimes through resolve (stack json-iface + wasm-64 + multipass) ----
const imageId = await hb.cacheWrite(image);
if (imageId !== IMAGE_ID) throw new Error(`the image's cache id is ${imageId}, not ${IMAGE_ID}: update IMAGE_ID`);
let proc = await hb.resolve(
  {
    device: 'stack@1.0',
    'device-stack': ['json-iface@1.0', 'wasm-64@1.0', 'multipass@1.0'],
    'input-prefix': 'process',
    'output-prefix': 'wasm',
    passes: 2,
    'stack-keys': ['init', 'compute'],
    process: { type: 'Process', image: imageId, owner: 'FOOBAR', name: 'Thomas', authority: 'FOOBAR', id: 'AOS' },
  },
  'init',
);
const req = (i, data = 'return 1 + 1') => ({ path: 'compute', 'block-height': 1, body: { action: 'Eval', data, target: 'AOS', owner: 'FOOBAR', from: 'FOOBAR', id: String(i) } });
const resolveOne = async (i, data) => {
  proc = await hb.resolve(proc, req(i, data));
};
if ((await hb.resolve(await hb.resolve(proc, req(0)), 'results/data')) !== '2') throw new Error('resolve(): wrong AOS answer');
const hbResolve = await rate(resolveOne);

// ---- @permaweb/ao-loader (V8) ----
// For this module ao-loader needs two WASI imports it lacks (proc_exit, clock_time_get) and the
// emscripten stack exports its glue expects; both are supplied by wrapping WebAssembly.instantiate.
const AoLoader = require('@permaweb/ao-loader');
const orig = WebAssembly.instantiate;
WebAssembly.instantiate = function (src, imports) {
  const mod = src instanceof WebAssembly.Module ? src : new WebAssembly.Module(src);
  for (const imp of WebAssembly.Module.imports(mod)) {
    imports[imp.module] ??= {};
    if (typeof imports[imp.module][imp.name] !== 'function') imports[imp.module][imp.name] = () => 0;
  }
  return orig.call(WebAssembly, mod, imports).then((instance) => ({
    module: mod,
    instance: {
      exports: {
        emscripten_stack_init: () => {},
        emscripten_stack_get_free: () => 0n,
        emscripten_stack_get_base: () => 0n,
        emscripten_stack_get_end: () => 0n,
        __wasm_call_ctors: () => {},
        ...instance.exports,
      },
    },
  }));
};
async function aoLoaderEval(unsafe) {
  const handle = await (AoLoader.default ?? AoLoader)(image, {
    format: 'wasm64-unknown-emscripten-draft_2024_02_15',
    inputEncoding: 'JSON-1',
    outputEncoding: 'JSON-1',
    memoryLimit: '1073741824',
    computeLimit: (9e12).toString(),
    extensions: [],
    UNSAFE_MEMORY: unsafe,
  });
  let r = await handle(null, msgOf(0), ENV);
  if (r.Output?.data !== '2') throw new Error('ao-loader: wrong AOS answer');
  let memory = r.Memory;
  return async (i, data) => {
    r = await handle(memory, msgOf(i, data), ENV);
    memory = r.Memory;
    return r;
  };
}
const aoLoader = async (unsafe) => rate(await aoLoaderEval(unsafe));
const aolDefault = await aoLoader(false);
const aolUnsafe = await aoLoader(true);

// ---- memory64 lowering (src/wasm-lower.ts): on (the default) vs off vs ao-loader UNSAFE_MEMORY ----
// Interleaved rounds (each round runs every variant), light and heavy Evals.
async function interleavedAsync(variants, data, perRound, rounds) {
  const rates = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
  for (const fn of Object.values(variants)) for (let i = 0; i < 5; i++) await fn(i, data); // warm-up
  for (let r = 0; r < rounds; r++) {
    for (const [name, fn] of Object.entries(variants)) {
      const t0 = performance.now();
      for (let i = 0; i < perRound; i++) await fn(i, data);
      rates[name].push(perRound / ((performance.now() - t0) / 1000));
    }
  }
  return Object.fromEntries(Object.entries(rates).map(([k, xs]) => [k, xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]]));
}
const unlowered = await hbHandle({ lowerMemory64: false });
if (!safe.m.memory64Lowered || unlowered.m.memory64Lowered) throw new Error('lowering: unexpected module state');
const heavyCheck = [safe.evalOne(1, HEAVY), unlowered.evalOne(1, HEAVY)].map((r) => r.response.Output.data);
if (heavyCheck[0] !== heavyCheck[1] || String(heavyCheck[0]) !== '108893') throw new Error(`lowering: heavy Eval answers differ: ${heavyCheck}`);
const lowerVariants = { on: safe.evalOne, off: unlowered.evalOne, resolve: resolveOne, aol: await aoLoaderEval(true) };
const light = await interleavedAsync(lowerVariants, 'return 1 + 1', PER_ROUND / 2, 2 * ROUNDS + 1);
const heavy = await interleavedAsync(lowerVariants, HEAVY, 10, 2 * ROUNDS + 1);
WebAssembly.instantiate = orig;
table('memory64 lowering and the resolve() path on AOS Eval (interleaved rounds, same run)', ['variant', '`return 1 + 1` msgs/s', 'vs ao-loader UNSAFE', 'heavy Eval msgs/s', 'vs ao-loader UNSAFE'], [
  ['hb-runtimes, native handles, lowered to a 32-bit memory (default)', fmt(light.on), (light.on / light.aol).toFixed(2), fmt(heavy.on, 1), (heavy.on / heavy.aol).toFixed(2)],
  ['hb-runtimes, native handles, lowerMemory64: false (memory64, explicit bounds checks)', fmt(light.off), (light.off / light.aol).toFixed(2), fmt(heavy.off, 1), (heavy.off / heavy.aol).toFixed(2)],
  ['hb-runtimes, resolve() through json-iface + wasm-64 + multipass (lowered)', fmt(light.resolve), (light.resolve / light.aol).toFixed(2), fmt(heavy.resolve, 1), (heavy.resolve / heavy.aol).toFixed(2)],
  ['resolve() / native handles', (light.resolve / light.on).toFixed(2), '', (heavy.resolve / heavy.on).toFixed(2), ''],
  ['@permaweb/ao-loader (V8), UNSAFE_MEMORY', fmt(light.aol), '1.00', fmt(heavy.aol, 1), '1.00'],
  ['lowering on / off', (light.on / light.off).toFixed(2), '', (heavy.on / heavy.off).toFixed(2), ''],
]);
const best = Math.max(aolDefault, aolUnsafe);
table('AOS Eval `return 1 + 1` throughput (same module, same messages, same run)', ['host', 'msgs/s (median)', 'vs best ao-loader'], [
  ['hb-runtimes, native handles (Wasmtime, Spectre mitigations on, memory64 lowered: default)', fmt(hbSafe), (hbSafe / best).toFixed(2)],
  ['hb-runtimes, native handles, spectreMitigation: false', fmt(hbFast), (hbFast / best).toFixed(2)],
  ['hb-runtimes, resolve() through json-iface + wasm-64 + multipass', fmt(hbResolve), (hbResolve / best).toFixed(2)],
  ['@permaweb/ao-loader (V8), default (copies memory per message)', fmt(aolDefault), (aolDefault / best).toFixed(2)],
  ['@permaweb/ao-loader (V8), UNSAFE_MEMORY', fmt(aolUnsafe), (aolUnsafe / best).toFixed(2)],
]);

// ---- cost of the wall-clock deadline (epoch interruption) ----
// Three engine/instance set-ups driven the same way through the native handles, in interleaved
// rounds: the default (epoch checks compiled in, a 10 s deadline per call), the same code with
// timeLimit: Infinity, and code compiled with interruptible: false (no epoch checks, engine
// profile bit 4: hb-runtimes as it was before deadlines).
const { native } = require('../lib/native.js');
const { exposeInternals } = require('../lib/wasm-binary.js');
const { translateLegacyExceptions } = require('../lib/wasm-image.js');
const translatedImage = exposeInternals(await translateLegacyExceptions(image)).bytes;
function nativeHandle(engineFlags, timeLimit) {
  const m = native.WasmModule.compile(translatedImage, engineFlags);
  const fns = m.imports().map((imp) => {
    const r = imp.type?.results[0];
    return () => (r === 'i64' ? 0n : r ? 0 : undefined);
  });
  const inst = new native.WasmInstance(m, fns, { timeLimit });
  const fn = (name) => inst.exportIndex(name);
  const [malloc, handle] = [fn('malloc'), fn('handle')];
  const put = (text) => {
    const bytes = Buffer.from(`${text}\0`);
    const ptr = inst.call(malloc, BigInt(bytes.length));
    inst.memoryWrite(ptr, bytes);
    return ptr;
  };
  const envPtr = put(JSON.stringify(ENV));
  const scratch = inst.call(malloc, 1n << 16n);
  return (i) => {
    inst.memoryWrite(scratch, Buffer.from(`${JSON.stringify(msgOf(i))}\0`));
    return JSON.parse(inst.readCString(inst.call(handle, scratch, envPtr)));
  };
}
const deadlineVariants = {
  deadline: nativeHandle(0, 10_000),
  infinity: nativeHandle(0, Infinity),
  noEpoch: nativeHandle(4, Infinity),
};
for (const [name, evalOne] of Object.entries(deadlineVariants)) {
  if (evalOne(0).response.Output.data !== '2') throw new Error(`${name}: wrong AOS answer`);
  for (let i = 0; i < 50; i++) evalOne(i);
}
const deadlineRates = interleaved(deadlineVariants, (evalOne) => {
  for (let i = 0; i < PER_ROUND; i++) evalOne(i);
  return PER_ROUND;
}, 3 * ROUNDS);
const { deadline: dl, infinity: inf, noEpoch: none } = deadlineRates;
table('Cost of the default deadline on AOS Eval (native handles, interleaved rounds, same run)', ['set-up', 'msgs/s (median)', 'speed vs no epoch checks'], [
  ['default: epoch checks, 10 s deadline per call', fmt(dl), (dl / none).toFixed(3)],
  ['epoch checks, timeLimit: Infinity', fmt(inf), (inf / none).toFixed(3)],
  ['interruptible: false (no epoch checks, no deadline possible)', fmt(none), '1.000'],
]);

// ---- module load ----
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hb-aos-bench-'));
const t0 = performance.now();
const translated = await loadImage(Buffer.from(image), { cacheDir: dir, fuel: true }); // new profile: cold
const coldMs = performance.now() - t0;
const exnrefFile = path.join(dir, fs.readdirSync(dir).find((f) => /\.exnref\.wasm$/.test(f)));
const exnref = fs.readFileSync(exnrefFile);
const fromDisk = medianMs(() => hb.WasmModule.compile(fs.readFileSync(exnrefFile), { cacheDir: dir, cache: false, fuel: true }).dispose(), 15);
const fromDiskBytes = medianMs(() => hb.WasmModule.compile(exnref, { cacheDir: dir, cache: false, fuel: true }).dispose(), 15);
// loadImage with defaults from the disk cache, in a child process: this one holds the default
// module in loadImage's in-memory cache (safe.m, above), which each round here must dispose.
const { execFileSync } = require('node:child_process');
const fromDiskLoad = Number(execFileSync(process.execPath, ['-e', `
  const { loadImage } = require(${JSON.stringify(require.resolve('../lib/wasm-image.js'))});
  const image = require('node:fs').readFileSync(${JSON.stringify(FIXTURE)});
  (async () => {
    (await loadImage(image, { cacheDir: ${JSON.stringify(dir)} })).dispose(); // lowered: cold
    const times = [];
    for (let i = 0; i < 15; i++) {
      const t = performance.now();
      const m = await loadImage(image, { cacheDir: ${JSON.stringify(dir)} });
      times.push(performance.now() - t);
      if (!m.memory64Lowered) throw new Error('loadImage: expected the lowered module');
      m.dispose(); // so that the next load comes from the disk again
    }
    console.log(times.sort((a, b) => a - b)[7]);
  })();`]).toString());
const fromMemory = medianMs(() => new hb.WasmInstance(safe.m, zeroImports(safe.m)).dispose(), 9);
void translated;
table('AOS module load', ['step', 'median ms'], [
  ['cold: Binaryen translation + memory64 lowering + Cranelift compile', coldMs.toFixed(0)],
  ['compiled-module cache on disk → WasmModule: read the image file, compile() hits the cache', fromDisk.toFixed(2)],
  ['the same from the image bytes in memory (hash + map the code in place)', fromDiskBytes.toFixed(2)],
  ['loadImage(image, { cacheDir }) with defaults (lowered module) from the disk cache', fromDiskLoad.toFixed(2)],
  ['cached WasmModule → new WasmInstance (12 MiB memory)', fromMemory.toFixed(2)],
]);
fs.rmSync(dir, { recursive: true, force: true });

// ---- snapshot / restore of the 12 MiB AOS memory ----
let snap;
const snapMs = medianMs(() => {
  snap = safe.inst.snapshot();
}, 9);
const restoreEval = medianMs(() => {
  const i = new hb.WasmInstance(safe.m, zeroImports(safe.m));
  i.restore(snap);
  const envPtr = i.writeString(JSON.stringify(ENV));
  const p = i.writeString(JSON.stringify(msgOf(1)));
  i.call('handle', [p, envPtr]);
  i.dispose();
}, 9);
table('AOS state (12 MiB memory)', ['operation', 'median ms'], [
  [`snapshot() (${(snap.length / 1048576).toFixed(1)} MiB blob)`, snapMs.toFixed(2)],
  ['new instance + restore() + first Eval', restoreEval.toFixed(2)],
]);
