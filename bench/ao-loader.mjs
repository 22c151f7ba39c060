// node-flags: --experimental-wasm-memory64
// hb-runtimes/ao-loader next to @permaweb/ao-loader 0.0.49 (its oracle, on V8) in the same run, on
// the three AOS images of ../shared/fixtures/ao-loader: Eval messages/s the way a CU drives the
// loader (each message gets the Memory of the one before), in default mode (Memory copied out
// after every message) and with UNSAFE_MEMORY (the memory itself). Medians of interleaved rounds.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fmt, table } from './util.mjs';

// ao-loader replaces Date.now, performance.now and process.hrtime for the whole process: keep the real clock.
const hrtime = process.hrtime.bigint.bind(process.hrtime);
const nowMs = () => Number(hrtime()) / 1e6;
const require = createRequire(import.meta.url);
const Ours = require('../lib/ao-loader.js');
const Ref = require('@permaweb/ao-loader');
const DIR = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'shared', 'fixtures', 'ao-loader');
if (!fs.existsSync(DIR)) {
  console.log(`skipped: ${DIR} not found`);
  process.exit(0);
}
const IMAGES = [
  ['aos1-wasm32-emscripten2.wasm', 'wasm32-unknown-emscripten2'],
  ['aos2-wasm32-emscripten4.wasm', 'wasm32-unknown-emscripten4'],
  ['aos2-wasm64-emscripten.wasm', 'wasm64-unknown-emscripten-draft_2024_02_15'],
  ['aos2-wasm32-emscripten4.wasm', 'wasm32-unknown-emscripten-metering'],
];
const ENV = { Process: { Id: 'PROCESS', Owner: 'OWNER', Tags: [{ name: 'Name', value: 'bench' }] } };
const msgOf = (i) => ({ Id: `M${i}`, Owner: 'OWNER', Target: 'PROCESS', From: 'OWNER', Tags: [{ name: 'Action', value: 'Eval' }], Data: 'return 1 + 1', Module: 'MODULE', 'Block-Height': '1', Timestamp: String(1_700_000_000_000 + i) });
const ROUNDS = Number(process.env.AOL_ROUNDS ?? 5);
const PER_ROUND = Number(process.env.AOL_PER_ROUND ?? 20);

/** A CU's loop: handle(previous Memory, message). Returns a function doing `n` messages. */
async function driver(Loader, binary, opts) {
  const handle = await Loader(binary, opts);
  let memory = null;
  let i = 0;
  const first = await handle(memory, msgOf(i++), ENV);
  if (!JSON.stringify(first.Output).includes('2')) throw new Error('wrong answer');
  memory = first.Memory;
  return async (n) => {
    for (let k = 0; k < n; k++) memory = (await handle(memory, msgOf(i++), ENV)).Memory;
  };
}

async function rates(variants, failures = {}) {
  const out = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
  for (const run of Object.values(variants)) await run(20); // warm-up (AOS initialises lazily on its first messages)
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, run] of Object.entries(variants)) {
      globalThis.gc?.();
      const t0 = nowMs();
      await run(PER_ROUND);
      out[name].push(failures[name] === undefined ? PER_ROUND / ((nowMs() - t0) / 1000) : NaN);
    }
  }
  const median = (xs) => (xs.some(Number.isNaN) ? NaN : xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]);
  return Object.fromEntries(Object.entries(out).map(([k, xs]) => [k, median(xs)]));
}

/** The oracle may fail on some Node versions (ao-loader 0.0.49 cannot grow a wasm64 heap on Node 24): record it, keep measuring ours. */
async function guarded(name, failures, make) {
  const fail = (e) => (failures[name] = String(e?.message ?? e).split('\n')[0]);
  let run;
  try {
    run = await make();
  } catch (e) {
    fail(e);
    return async () => {};
  }
  return async (n) => {
    if (failures[name] !== undefined) return;
    await run(n).catch(fail);
  };
}

// Each image runs in a child process of its own (both loaders in it, interleaved): the instances
// and ~110 MB Memories of one image would otherwise weigh on the garbage collector during the next.
async function measureImage(file, format) {
  const binary = fs.readFileSync(path.join(DIR, file));
  // the two modes in separate interleaved series: default mode's 110 MB copies would weigh on the other
  const failures = {};
  const ref = await guarded('ref', failures, () => driver(Ref, binary, { format }));
  const a = await rates({ ours: await driver(Ours, binary, { format }), ref }, failures);
  const refUnsafe = await guarded('refUnsafe', failures, () => driver(Ref, binary, { format, UNSAFE_MEMORY: true }));
  const b = await rates({ oursUnsafe: await driver(Ours, binary, { format, UNSAFE_MEMORY: true }), refUnsafe }, failures);
  return { ...a, ...b, failures };
}

if (process.env.AOL_CHILD) {
  const [file, format] = JSON.parse(process.env.AOL_CHILD);
  process.stdout.write(JSON.stringify(await measureImage(file, format)));
  process.exit(0);
}
const rows = [];
const failed = [];
const only = process.env.AOL_FORMATS?.split(',');
for (const [file, format] of IMAGES.filter(([, f]) => !only || only.includes(f))) {
  const child = spawnSync(process.execPath, [...process.execArgv, new URL(import.meta.url).pathname], {
    env: { ...process.env, AOL_CHILD: JSON.stringify([file, format]) },
    encoding: 'utf8',
    maxBuffer: 1 << 20,
  });
  if (child.status !== 0) throw new Error(`bench child for ${file} failed: ${child.stderr}`);
  const r = JSON.parse(child.stdout);
  const gone = (v) => typeof v !== 'number' || Number.isNaN(v); // NaN comes back from JSON as null
  const peer = (v) => (gone(v) ? 'fails here (see below)' : fmt(v));
  const ratio = (x, y) => (gone(y) ? '—' : `${(x / y).toFixed(2)}×`);
  rows.push([`${file} (${format})`, fmt(r.ours), peer(r.ref), ratio(r.ours, r.ref), fmt(r.oursUnsafe), peer(r.refUnsafe), ratio(r.oursUnsafe, r.refUnsafe)]);
  for (const [mode, why] of Object.entries(r.failures)) failed.push(`${file}, @permaweb/ao-loader ${mode === 'ref' ? 'default mode' : 'UNSAFE_MEMORY'}: ${why}`);
}
table(
  `Eval msgs/s, handle(previous Memory, msg) (median of ${ROUNDS} interleaved rounds of ${PER_ROUND}; one child process per image)`,
  ['image (format)', 'hb-runtimes', '@permaweb/ao-loader', 'ratio', 'hb UNSAFE_MEMORY', 'ao-loader UNSAFE_MEMORY', 'ratio'],
  rows,
);
for (const line of failed) console.log(`- the oracle failed on Node ${process.versions.node}: ${line}`);
console.log(`hb-runtimes default mode: copy-on-write Memory ${process.env.HB_RUNTIMES_NO_COW ? 'off (HB_RUNTIMES_NO_COW)' : 'where supported'}`);
