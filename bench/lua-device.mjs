// lua@5.3a benchmarks: hyper-aos.lua (AOS written in Lua) as a process@1.0, Eval messages per
// second, and the snapshot/restore cost of an AOS state holding 10,000 table entries. Needs
// ../shared/fixtures/hyper-aos.lua (skipped with a message when absent) and lib/.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { medianMs, table, fmt } from './util.mjs';

const require = createRequire(import.meta.url);
const { resolve, lua, LuaVM, aosLuaProcess, rsaCommitment } = require('../lib/index.js');
const here = path.dirname(fileURLToPath(import.meta.url));
const fixture = path.resolve(here, '..', '..', 'shared', 'fixtures', 'hyper-aos.lua');
if (!fs.existsSync(fixture)) {
  console.log(`\n(skipped: ${fixture} not found)`);
  process.exit(0);
}

const OWNER = 'owner-address-0123456789abcdefghijklmnopqrs';
const commitments = (id) => rsaCommitment(OWNER, id);
const process0 = aosLuaProcess(fs.readFileSync(fixture), { owner: OWNER, id: 'process-commitment-0123456789abcdefghijklm', 'snapshot-interval': 0 });
const evalBody = (code, n) => ({ action: 'Eval', body: { 'content-type': 'application/lua', body: code }, commitments: commitments(`message-commitment-${n}`) });

// Eval throughput: one message scheduled and computed at a time (as a CU serving a client).
const N = 400;
let p = await resolve(process0, 'init');
let scheduledAt = 0;
async function evals(n) {
  for (let i = 0; i < n; i++) {
    p = await resolve(p, { path: 'schedule', body: evalBody('Count = (Count or 0) + 1 return Count', scheduledAt++) });
    p = await resolve(p, 'now');
  }
}
await evals(50);
const rates = [];
for (let r = 0; r < 5; r++) {
  // a fresh process each round, so the schedule (kept in the process message) does not grow without bound
  p = await resolve(process0, 'init');
  scheduledAt = 0;
  const t0 = process.hrtime.bigint();
  await evals(N);
  rates.push(N / (Number(process.hrtime.bigint() - t0) / 1e9));
}
rates.sort((a, b) => a - b);
if (p.results.output.data !== String(N)) throw new Error(`unexpected output ${JSON.stringify(p.results.output)}`);

// The VM alone: Eval through the Lua `compute` on a device message (no process bookkeeping).
let m = await lua.init({ device: 'lua@5.3a', module: process0.module }, {}, {});
m = { ...m, process: process0 }; // as process@1.0 gives it: the definition under `process`
async function direct(n) {
  for (let i = 0; i < n; i++) m = await resolve(m, { path: 'compute', body: evalBody('return 1 + 1', i), 'block-timestamp': 1 });
}
await direct(50);
const t1 = process.hrtime.bigint();
await direct(N);
const directRate = N / (Number(process.hrtime.bigint() - t1) / 1e9);

// Snapshot / restore of an AOS state holding 10,000 table entries.
m = await resolve(m, { path: 'compute', body: evalBody('Big = {} for i = 1, 10000 do Big["key" .. i] = { i, "v" .. i } end return #Big', 9), 'block-timestamp': 1 });
const vm = lua.vm(m);
let snap;
const snapMs = medianMs(() => {
  snap = vm.snapshot();
}, 9);
const restoreMs = medianMs(() => LuaVM.restore(snap).dispose(), 9);

table(
  `lua@5.3a: hyper-aos.lua (medians; node ${process.version})`,
  ['what', 'hb-runtimes'],
  [
    ['Eval through process@1.0 (schedule + now, one at a time)', `${fmt(rates[2])} msgs/s`],
    ['Eval through lua@5.3a `compute` directly', `${fmt(directRate)} msgs/s`],
    ['snapshot of the AOS state with 10,000 table entries', `${snapMs.toFixed(2)} ms (${(snap.length / 1024).toFixed(0)} KiB)`],
    ['restore of that snapshot into a new VM', `${restoreMs.toFixed(2)} ms`],
  ],
);
