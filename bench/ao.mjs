// AO-Core resolution benchmark: plain key, 3-step path and a 5-device stack fold, each with
// hashpaths ignored and updated. Reports the median of 7 timed rounds as resolutions/s.
// Run `npx tsc -p tsconfig.json` first (it reads the compiled lib/), then `node bench/ao.mjs`.
import { performance } from 'node:perf_hooks';
import { get, resolve } from '../lib/ao/index.js';
import { appendDevice } from '../lib/devices/index.js';

const ROUNDS = 7;
const ROUND_MS = 200;

const plainBase = { a: 'RESULT', b: 2, c: 'three', d: [1, 2, 3], e: { f: 'g' } };
const pathBase = { a: { b: { c: 'DEEP', x: 1 }, y: 2 }, z: 3 };
const stackBase = {
  device: 'stack@1.0',
  'device-stack': [1, 2, 3, 4, 5].map((i) => appendDevice(`+D${i}`)),
  result: 'INIT',
};
const stackReq = { path: 'append', bin: '2' };

const CASES = [
  { name: 'plain key (resolve)', run: (o) => resolve(plainBase, 'a', o), check: (v) => v === 'RESULT' },
  { name: 'plain key (get, sync)', sync: true, run: (o) => get('a', plainBase, o), check: (v) => v === 'RESULT' },
  { name: '3-step path a/b/c', run: (o) => resolve(pathBase, 'a/b/c', o), check: (v) => v === 'DEEP' },
  {
    name: '5-device stack fold',
    run: (o) => resolve(stackBase, stackReq, o),
    check: (v) => v.result === 'INIT+D12+D22+D32+D42+D52',
  },
];

const MODES = [
  { label: 'ignore', opts: { hashpath: 'ignore' } },
  { label: 'update', opts: { hashpath: 'update' } },
];

async function runBatch(c, opts, n) {
  if (c.sync) {
    for (let i = 0; i < n; i++) c.run(opts);
  } else {
    for (let i = 0; i < n; i++) await c.run(opts);
  }
}

/** Calibrate a batch size lasting about ROUND_MS, then time ROUNDS batches. */
async function measure(c, opts) {
  const first = c.sync ? c.run(opts) : await c.run(opts);
  if (!c.check(first)) throw new Error(`${c.name}: unexpected result ${JSON.stringify(first)}`);
  let n = 1000;
  for (;;) {
    const t0 = performance.now();
    await runBatch(c, opts, n);
    const dt = performance.now() - t0;
    if (dt >= ROUND_MS / 4) {
      n = Math.max(1, Math.round((n * ROUND_MS) / dt));
      break;
    }
    n *= 4;
  }
  const rates = [];
  for (let r = 0; r < ROUNDS; r++) {
    globalThis.gc?.();
    const t0 = performance.now();
    await runBatch(c, opts, n);
    const dt = performance.now() - t0;
    rates.push((n / dt) * 1000);
  }
  rates.sort((a, b) => a - b);
  return { median: rates[Math.floor(rates.length / 2)], min: rates[0], max: rates[rates.length - 1] };
}

const fmt = (x) => Math.round(x).toLocaleString('en-US');

const rows = [];
const started = performance.now();
for (const c of CASES) {
  for (const m of MODES) {
    const r = await measure(c, m.opts);
    rows.push(`| ${c.name} | ${m.label} | ${fmt(r.median)} | ${fmt(r.min)} | ${fmt(r.max)} |`);
  }
}
console.log(`AO-Core resolution (node ${process.version}, median of ${ROUNDS} rounds of ~${ROUND_MS} ms)\n`);
console.log('| case | hashpath | resolutions/s (median) | min | max |');
console.log('| --- | --- | ---: | ---: | ---: |');
for (const row of rows) console.log(row);
console.log(`\ntotal ${((performance.now() - started) / 1000).toFixed(1)} s`);
