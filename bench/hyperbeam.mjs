// `hb-runtimes serve` as a HyperBEAM node's CU (docs/serve.md, "HyperBEAM's compute-unit routes"):
// - messages/s of AOS Evals delivered as HyperBEAM's delegated-compute@1.0 delivers them (one
//   AOS-2 page per slot on POST /result/:slot, each answered with its result) against the same
//   Evals as signed items on the MU route followed by GET /result (what aoconnect does), in the
//   same run, one client, on aos-2-pure-xs.wasm and hyper-aos.lua;
// - a checkpoint: POST /snapshot/:process (state, gzip, signature) and POST /state on a fresh
//   node (verify, inflate, restore), with the checkpoint's size.
// Needs ../shared/fixtures. BENCH_HB_N (default 200) Evals per round, 3 rounds, medians.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { fmt, table } from './util.mjs';

const require = createRequire(import.meta.url);
const { ArweaveSigner, createData, DataItem } = require('@dha-team/arbundles');
const zlib = require('node:zlib');
const { startServer } = require('../lib/serve/app.js');
const { aos2Page, nextHashChain } = require('../lib/serve/aos2.js');
const { generateJwk } = require('../lib/serve/signing.js');

const FIX = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'shared', 'fixtures');
if (!fs.existsSync(path.join(FIX, 'hyper-aos.lua'))) {
  console.log(`skipped: ${FIX} not found`);
  process.exit(0);
}
const N = Number(process.env.BENCH_HB_N ?? 200);
const ROUNDS = 3;
const jwk = generateJwk();
const signer = new ArweaveSigner(jwk);
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'hb-bench-hyperbeam-'));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const id = (s) => createHash('sha256').update(s).digest('base64url');
const OWNER = 'bench'.padEnd(43, 'O');

async function signed(data, tags, target) {
  const d = createData(data, signer, { tags, ...(target ? { target } : {}) });
  await d.sign(signer);
  return { id: d.id, raw: d.getRaw() };
}
async function upload(url, bytes, kind) {
  const r = await fetch(`${url}/modules`, { method: 'POST', headers: { 'content-type': kind }, body: bytes });
  return (await r.json()).id;
}
const postRaw = (url, raw) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: raw }).then((r) => r.json());
const postJson = (url, body) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }).then((r) => r.json());

/** A HyperBEAM-scheduled process: pages built by serve's own AOS-2 writer (aos2.ts), HyperBEAM's hash chain. */
function hbSchedule(moduleId, seed) {
  const pid = id(`bench ${seed}`);
  let chain = '';
  let slot = 0;
  const next = (message) => {
    chain = nextHashChain(chain, message.Id);
    const a = { slot, timestamp: 1_760_000_000_000 + slot, 'block-height': 1_700_000 + slot, message, 'hash-chain': chain };
    slot++;
    return aos2Page(pid, [a], false, OWNER, () => a['hash-chain'], { timestamp: a.timestamp, blockHeight: a['block-height'] });
  };
  const proc = { Id: pid, Owner: OWNER, From: OWNER, Target: '', Anchor: '', Data: '', Tags: [{ name: 'Type', value: 'Process' }, { name: 'Module', value: moduleId }, { name: 'Authority', value: OWNER }] };
  return { pid, spawn: next(proc), eval: (i, code) => next({ Id: id(`${seed} ${i}`), Owner: OWNER, From: OWNER, Target: pid, Anchor: '', Data: code, Tags: [{ name: 'Action', value: 'Eval' }] }), slot: () => slot };
}

const results = [];
const checkpoints = [];
for (const [name, file, kind] of [
  ['aos-2-pure-xs.wasm', 'aos-2-pure-xs.wasm', 'application/wasm'],
  ['hyper-aos.lua', 'hyper-aos.lua', 'application/lua'],
]) {
  const bytes = fs.readFileSync(path.join(FIX, file));
  const a = await startServer({ store: tmp(), jwk });
  try {
    const moduleId = await upload(a.url, bytes, kind);
    // The MU route: a signed spawn, then signed Evals, each followed by its result.
    const spawn = await signed(' ', [{ name: 'Type', value: 'Process' }, { name: 'Module', value: moduleId }]);
    await postRaw(a.url, spawn.raw);
    const hb = hbSchedule(moduleId, name);
    await postJson(`${a.url}/result/0?process-id=${hb.pid}`, hb.spawn);
    const mu = [];
    const aos2 = [];
    let n = 0;
    for (let r = 0; r < ROUNDS; r++) {
      // Signed before the clock starts: the client's RSA signing is not the server's cost.
      const items = [];
      for (let i = 0; i < N; i++) items.push(await signed('return 1 + 1', [{ name: 'Type', value: 'Message' }, { name: 'Action', value: 'Eval' }], spawn.id));
      let t0 = performance.now();
      for (const m of items) {
        await postRaw(a.url, m.raw);
        await fetch(`${a.url}/result/${m.id}?process-id=${spawn.id}`).then((x) => x.json());
      }
      mu.push(N / ((performance.now() - t0) / 1000));
      t0 = performance.now();
      for (let i = 0; i < N; i++) {
        const slot = hb.slot();
        const out = await postJson(`${a.url}/result/${slot}?process-id=${hb.pid}`, hb.eval(n++, 'return 1 + 1'));
        if (out.Error !== undefined || out.Output === undefined) throw new Error(`slot ${slot}: ${JSON.stringify(out)}`);
      }
      aos2.push(N / ((performance.now() - t0) / 1000));
    }
    results.push([name, fmt(median(aos2)), fmt(median(mu)), (median(aos2) / median(mu)).toFixed(2)]);
    // A checkpoint of the HyperBEAM-scheduled process, loaded on a fresh node.
    const b = await startServer({ store: tmp(), jwk: generateJwk(), checkpointAuthorities: [a.signer.address] });
    try {
      await upload(b.url, bytes, kind);
      const snapMs = [];
      const loadMs = [];
      let size = 0;
      let state = 0;
      for (let r = 0; r < ROUNDS; r++) {
        let t0 = performance.now();
        const res = await fetch(`${a.url}/snapshot/${hb.pid}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
        const raw = Buffer.from(await res.arrayBuffer());
        snapMs.push(performance.now() - t0);
        size = raw.length;
        state = zlib.gunzipSync(new DataItem(raw).rawData).length;
        // Round 1 restores on a node that never saw the process; later rounds on b left one slot
        // behind (it drops what it had and starts at the checkpoint).
        t0 = performance.now();
        const loaded = await fetch(`${b.url}/state`, { method: 'POST', headers: { 'content-type': 'application/ans104' }, body: raw }).then((x) => x.json());
        loadMs.push(performance.now() - t0);
        if (loaded.outcome !== 'restored') throw new Error(JSON.stringify(loaded));
        // The source moves on one slot: its next checkpoint is ahead of b.
        await postJson(`${a.url}/result/${hb.slot()}?process-id=${hb.pid}`, hb.eval(n++, 'return 1 + 1'));
      }
      checkpoints.push([name, `${(state / 1048576).toFixed(1)} MiB`, `${(size / 1048576).toFixed(2)} MiB`, median(snapMs).toFixed(1), median(loadMs).toFixed(1)]);
    } finally {
      await b.close();
    }
  } finally {
    await a.close();
  }
}

table(`AOS Eval \`return 1 + 1\` through serve, one client, sequential (${N} per round, median of ${ROUNDS}, same run)`, ['module', 'HyperBEAM delegated compute (AOS-2 page → result) msgs/s', 'MU route (signed item, then GET /result) msgs/s', 'ratio'], results);
table('Checkpoint of a HyperBEAM-scheduled process (median of 3)', ['module', 'checkpoint data (process record + state)', 'checkpoint item (gzipped, signed)', 'POST /snapshot ms', 'POST /state on another node ms'], checkpoints);
