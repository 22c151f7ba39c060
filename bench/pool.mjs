// The worker pool (src/pool) against the same processes computed in this thread (AosProcess), in
// the same run: the pool's overhead per message (one process, sequential Evals), throughput with
// many processes (messages to all of them at once), the calling thread's event-loop delay while
// every worker computes, and the cost of fuel metering (the deterministic compute limit) on AOS
// Eval, with and without it, in interleaved rounds. Needs ../shared/fixtures.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { fmt, table } from './util.mjs';

const require = createRequire(import.meta.url);
const hb = require('../lib/index.js');
const { aosWasmStack } = require('../lib/devices/json-iface.js');
const FIX = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'shared', 'fixtures');
if (!fs.existsSync(path.join(FIX, 'aos-2-pure-xs.wasm'))) {
  console.log(`skipped: ${FIX} not found`);
  process.exit(0);
}
const BYTES = { wasm: fs.readFileSync(path.join(FIX, 'aos-2-pure-xs.wasm')), lua: fs.readFileSync(path.join(FIX, 'hyper-aos.lua')) };
const O = 'O'.repeat(43);
const NAMES = { wasm: 'aos-2-pure-xs', lua: 'hyper-aos' };
let serial = 0;
const defOf = (kind) => ({ id: `${kind}-${++serial}`.padEnd(43, 'P'), kind, module: 'M'.repeat(43), moduleBytes: BYTES[kind], owner: O, tags: [{ name: 'Type', value: 'Process' }] });
const spawnOf = (d) => ({ slot: 0, timestamp: 1, 'block-height': 0, message: { Id: d.id, Owner: O, From: O, Target: d.id, Data: '', Tags: d.tags } });
const evalOf = (d, slot, data) => ({ slot, timestamp: 1 + slot, 'block-height': slot, message: { Id: `m${slot}`.padEnd(43, 'x'), Owner: O, From: O, Target: d.id, Data: data, Tags: [{ name: 'Action', value: 'Eval' }] } });
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const WORKERS = Math.min(os.availableParallelism(), 4);

// ---- overhead per message: one process, sequential Evals, in this thread vs on a 1-worker pool
async function overhead(kind) {
  const pool = hb.createPool({ workers: 1 });
  const d1 = defOf(kind);
  const d2 = defOf(kind);
  const local = await hb.AosProcess.open(d1);
  const pooled = await pool.process(d2);
  await local.compute(spawnOf(d1));
  await pooled.compute(spawnOf(d2));
  let slot = 1;
  const R = 200;
  const variants = {
    local: async () => (await local.compute(evalOf(d1, slot, 'return 1'))).outcome.result,
    pool: () => pooled.compute(evalOf(d2, slot, 'return 1')),
  };
  const times = { local: [], pool: [] };
  for (let round = 0; round < 9; round++) {
    for (const [k, f] of Object.entries(variants)) {
      const t = performance.now();
      for (let i = 0; i < R; i++) await f();
      times[k].push(((performance.now() - t) * 1000) / R);
    }
    slot++;
  }
  local.dispose();
  await pool.close();
  const l = median(times.local.slice(1));
  const p = median(times.pool.slice(1));
  return [NAMES[kind], `${l.toFixed(0)} µs`, `${p.toFixed(0)} µs`, `${(p - l).toFixed(0)} µs`];
}

// ---- throughput: P processes, M messages each, sent at once
async function throughput(kind, P, M) {
  const work = kind === 'wasm' ? 'local s = 0; for i = 1, 20000 do s = s + i end; return s' : 'local s = 0; for i = 1, 20000 do s = s + i end; return s';
  async function run(open) {
    const defs = Array.from({ length: P }, () => defOf(kind));
    const procs = await Promise.all(defs.map(open));
    await Promise.all(procs.map((p, i) => p.compute(spawnOf(defs[i]))));
    const t = performance.now();
    await Promise.all(procs.map(async (p, i) => {
      for (let s = 1; s <= M; s++) await p.compute(evalOf(defs[i], s, work));
    }));
    const rate = (P * M) / ((performance.now() - t) / 1000);
    await Promise.all(procs.map((p) => p.close()));
    return rate;
  }
  // In this thread: AosProcess behind the same interface (computes one after the other).
  const inThread = (d) =>
    hb.AosProcess.open(d).then((p) => ({ compute: async (a) => (await p.compute(a)).outcome.result, close: async () => p.dispose() }));
  const pool = hb.createPool({ workers: WORKERS });
  const rates = { thread: [], pool: [] };
  for (let r = 0; r < 3; r++) {
    rates.thread.push(await run(inThread));
    rates.pool.push(await run((d) => pool.process(d)));
  }
  await pool.close();
  const t = median(rates.thread);
  const p = median(rates.pool);
  return [NAMES[kind], P, P * M, fmt(t), fmt(p), `${(p / t).toFixed(2)}×`];
}

// ---- event-loop delay of the calling thread while every worker computes: a 1 ms ticker records
// how late each tick runs (a thread that computes in place delays the tick after it by that long).
function ticker() {
  const lates = [];
  let expected = performance.now() + 1;
  const timer = setInterval(() => {
    const now = performance.now();
    lates.push(Math.max(0, now - expected));
    expected = now + 1;
  }, 1);
  return {
    async stop() {
      await new Promise((r) => setTimeout(r, 2)); // the tick after the work
      clearInterval(timer);
      const xs = [...lates].sort((a, b) => a - b);
      return { p50: xs[Math.floor(xs.length / 2)] ?? 0, p99: xs[Math.floor(xs.length * 0.99)] ?? 0, max: xs[xs.length - 1] ?? 0 };
    },
  };
}

async function loopDelay() {
  const rows = [];
  const loop = 'local s = 0; for i = 1, 3000000 do s = s + i end; return s'; // ~0.1 s of AOS
  for (const mode of ['thread', 'pool']) {
    const pool = mode === 'pool' ? hb.createPool({ workers: WORKERS }) : undefined;
    const defs = Array.from({ length: WORKERS }, () => defOf('wasm'));
    const procs = await Promise.all(
      defs.map((d) => (pool ? pool.process(d) : hb.AosProcess.open(d).then((p) => ({ compute: async (a) => (await p.compute(a)).outcome.result, close: async () => p.dispose() })))),
    );
    await Promise.all(procs.map((p, i) => p.compute(spawnOf(defs[i]))));
    const tick = ticker();
    const t = performance.now();
    await Promise.all(procs.map(async (p, i) => {
      for (let s = 1; s <= 4; s++) {
        await p.compute(evalOf(defs[i], s, loop));
        await new Promise((r) => setImmediate(r)); // let the ticker run between messages
      }
    }));
    const busy = performance.now() - t;
    const d = await tick.stop();
    rows.push([mode === 'pool' ? `pool (${WORKERS} workers)` : 'this thread', `${(busy / 1000).toFixed(2)} s`, `${d.p50.toFixed(1)} ms`, `${d.p99.toFixed(1)} ms`, `${d.max.toFixed(0)} ms`]);
    await Promise.all(procs.map((p) => p.close()));
    await pool?.close();
  }
  return rows;
}

// ---- fuel metering on AOS Eval (through resolve: json-iface + wasm-64 + multipass)
async function fuelCost() {
  const image = await hb.cacheWrite(BYTES.wasm);
  const make = async (extra) => {
    let st = await hb.resolve({ ...aosWasmStack({ image, owner: O, id: 'P', tags: [] }), ...extra }, 'init');
    let i = 0;
    const body = (data) => ({ path: 'compute', 'block-height': ++i, body: { id: `m${i}`, owner: O, from: O, target: 'P', data, tags: [{ name: 'Action', value: 'Eval' }] } });
    st = await hb.resolve(st, body('x = 1'));
    return async (data) => (st = await hb.resolve(st, body(data)));
  };
  const variants = { none: await make({}), fuel: await make({ fuel: hb.DEFAULT_WASM_COMPUTE_LIMIT }) };
  const rows = [];
  for (const [label, code, R] of [['`return 1 + 1`', 'return 1 + 1', 300], ['a 20,000-step Lua loop', 'local s = 0; for i = 1, 20000 do s = s + i end; return s', 100]]) {
    const rates = { none: [], fuel: [] };
    for (let round = 0; round < 9; round++) {
      for (const [k, f] of Object.entries(variants)) {
        const t = performance.now();
        for (let n = 0; n < R; n++) await f(code);
        rates[k].push(R / ((performance.now() - t) / 1000));
      }
    }
    const a = median(rates.none);
    const b = median(rates.fuel);
    rows.push([label, fmt(a), fmt(b), `${((1 - b / a) * 100).toFixed(1)}%`]);
  }
  return rows;
}

// ---- the machine's spare parallelism in this run: W busy JS threads against one (a shared VM may
// give far less than its core count; every speedup below is bounded by this one).
async function parallelism() {
  const { Worker } = await import('node:worker_threads');
  const code = `const {parentPort}=require('worker_threads'); parentPort.on('message', () => { let s=0; for (let i=0;i<2e8;i++) s+=i; parentPort.postMessage(s); });`;
  const wall = {};
  for (const n of [1, WORKERS, 1, WORKERS]) {
    const ws = Array.from({ length: n }, () => new Worker(code, { eval: true }));
    await Promise.all(ws.map((w) => new Promise((r) => w.once('online', r))));
    const t = performance.now();
    await Promise.all(ws.map((w) => new Promise((r) => { w.once('message', r); w.postMessage(0); })));
    (wall[n] ??= []).push(performance.now() - t);
    await Promise.all(ws.map((w) => w.terminate()));
  }
  const one = Math.min(...wall[1]);
  const many = Math.min(...wall[WORKERS]);
  return [[WORKERS, `${one.toFixed(0)} ms`, `${many.toFixed(0)} ms`, `${((WORKERS * one) / many).toFixed(2)}× of ${WORKERS}×`, os.loadavg()[0].toFixed(1)]];
}

table('Spare parallelism of the machine in this run (the same JS loop on 1 and on N threads at once)', ['threads', '1 thread', 'N threads', 'speedup', 'load average'], await parallelism());
table('Pool overhead per message (one process, sequential `Eval` of `return 1`; medians of 8 rounds of 200)', ['process', 'in this thread', 'on the pool (1 worker)', 'overhead'], [await overhead('wasm'), await overhead('lua')]);
table(`Throughput with many processes (an \`Eval\` of a 20,000-step loop each; pool of ${WORKERS} workers vs this thread, same run)`, ['process', 'processes', 'messages', 'this thread msgs/s', 'pool msgs/s', 'ratio'], [await throughput('wasm', 8, 25), await throughput('lua', 8, 25)]);
table(`Event-loop delay of the calling thread while ${WORKERS} aos-2-pure-xs processes compute 4 heavy Evals each (lateness of a 1 ms ticker)`, ['computed in', 'busy for', 'delay p50', 'delay p99', 'max'], await loopDelay());
table('Fuel metering (the deterministic compute limit) on AOS `Eval` through resolve, interleaved rounds', ['Eval', 'no fuel msgs/s', 'fuel msgs/s', 'cost'], await fuelCost());
