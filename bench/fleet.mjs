// `hb-runtimes serve` beyond one machine, on a throwaway PostgreSQL (scripts/postgres.js) with the
// nodes in child processes:
// - end-to-end messages/s of one node against two nodes on one database (two compute threads in
//   all either way), hyper-aos Evals spread over 8 processes, each message POSTed to the next node
//   in turn (so with two nodes half are forwarded), until every result is computed; the directory
//   store (one node) in the same run as the reference;
// - the time for a node to take over the processes of a node killed with SIGKILL (lease 2 s);
// - memory (RSS) held by 1,000 idle processes, without and with eviction (`--memory-budget`).
// Needs ../shared/fixtures and PostgreSQL. BENCH_FLEET_IDLE (default 1000) sets the idle count.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { fmt, table } from './util.mjs';

const require = createRequire(import.meta.url);
const { ArweaveSigner, createData } = require('@dha-team/arbundles');
const { generateJwk } = require('../lib/serve/signing.js');
const pgHelper = require('../scripts/postgres.js');

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const FIX = path.resolve(ROOT, '..', 'shared', 'fixtures');
if (!fs.existsSync(path.join(FIX, 'hyper-aos.lua'))) {
  console.log(`skipped: ${FIX} not found`);
  process.exit(0);
}
const why = pgHelper.unavailable();
if (why) {
  console.log(`skipped: ${why}`);
  process.exit(0);
}
const LUA = fs.readFileSync(path.join(FIX, 'hyper-aos.lua'));
const PROCS = 8;
const MSGS = Number(process.env.BENCH_FLEET_N ?? 240);
const IDLE = Number(process.env.BENCH_FLEET_IDLE ?? 1000);
const ROUNDS = 3;
// BENCH_FLEET_ONLY=idle runs the memory part alone.
const ONLY = process.env.BENCH_FLEET_ONLY;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hb-bench-fleet-'));
const signer = new ArweaveSigner(generateJwk());
const pg = await pgHelper.startTempPostgres();
const children = new Set();

function node(args) {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'hb-runtimes.js'), 'serve', '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (\S+)/.exec(out);
      if (m) resolve({ child, url: m[1] });
    });
    child.once('exit', (c) => reject(new Error(`node exited (${c})`)));
  });
}
const stop = (n) => new Promise((r) => (n.child.exitCode !== null ? r() : (n.child.once('exit', r), n.child.kill('SIGTERM'))));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function item(data, tags, target) {
  const d = createData(data, signer, { tags, ...(target ? { target } : {}) });
  await d.sign(signer);
  return { id: d.id, raw: d.getRaw() };
}
async function post(url, body, type = 'application/octet-stream') {
  const r = await fetch(url, { method: 'POST', headers: { 'content-type': type }, body });
  if (!r.ok) throw new Error(`${url}: ${r.status} ${await r.text()}`);
  return r.json();
}
const evalTags = [{ name: 'Data-Protocol', value: 'ao' }, { name: 'Type', value: 'Message' }, { name: 'Action', value: 'Eval' }];
async function spawnItem(module) {
  return item(' ', [{ name: 'Data-Protocol', value: 'ao' }, { name: 'Type', value: 'Process' }, { name: 'Module', value: module }]);
}
const moduleId = require('../lib/ao/cache.js').sha256Id(LUA);

/** Runs `f` over `xs` with `c` at a time. */
async function pool(xs, c, f) {
  let next = 0;
  await Promise.all(Array.from({ length: c }, async () => {
    while (next < xs.length) {
      const i = next++;
      await f(xs[i], i);
    }
  }));
}

// Items signed once, before any clock runs (RSA-4096 signing is the client's cost, not the fleet's).
const spawns = [];
for (let i = 0; i < PROCS; i++) spawns.push(await spawnItem(moduleId));
const msgs = [];
for (let r = 0; r < ROUNDS; r++) {
  const round = [];
  for (let i = 0; i < MSGS; i++) round.push({ pid: spawns[i % PROCS].id, ...(await item(`N = (N or 0) + 1; return N`, evalTags, spawns[i % PROCS].id)) });
  msgs.push(round);
}

async function throughput(label, starts, toOwner = false) {
  const rates = [];
  for (let r = 0; r < ROUNDS; r++) {
    const nodes = await Promise.all(starts(r).map((a) => node(a)));
    await post(`${nodes[0].url}/modules`, LUA, 'application/lua');
    for (const [i, s] of spawns.entries()) await post(nodes[i % nodes.length].url, s.raw);
    const t0 = performance.now();
    // Round robin (a load balancer that knows nothing), or to the node that spawned the process (a router).
    await pool(msgs[r], 16, (m, i) => post(nodes[(toOwner ? i % PROCS : i) % nodes.length].url, m.raw));
    for (const s of spawns) {
      const res = await fetch(`${nodes[0].url}/results/${s.id}?sort=DESC&limit=1`).then((x) => x.json());
      if (res.edges[0].cursor !== String(MSGS / PROCS)) throw new Error(`bench failed: ${label} process ${s.id} at slot ${res.edges[0].cursor}`);
    }
    rates.push(MSGS / ((performance.now() - t0) / 1000));
    await Promise.all(nodes.map(stop));
  }
  return median(rates);
}

if (ONLY !== 'idle') {
const dirRate = await throughput('dir', (r) => [['--store', path.join(tmp, `dir-${r}`), '--workers', '2']]);
async function pgRate(n, toOwner = false) {
  const dbs = [];
  for (let r = 0; r < ROUNDS; r++) dbs.push(await pg.database());
  return throughput(`pg-${n}`, (r) => Array.from({ length: n }, (_, i) => ['--store', dbs[r], '--node-id', `n${i}`, '--workers', n === 1 ? '2' : '1']), toOwner);
}
const pg1 = await pgRate(1);
const pg2 = await pgRate(2);
const pg2owner = await pgRate(2, true);
table(`serve: end-to-end hyper-aos Eval messages/s, ${MSGS} messages over ${PROCS} processes, 16 in flight, 2 compute threads in all (median of ${ROUNDS})`, ['store', 'nodes', 'msgs/s', 'vs one node on PostgreSQL'], [
  ['directory', 1, fmt(dirRate), `${(dirRate / pg1).toFixed(2)}×`],
  ['PostgreSQL', 1, fmt(pg1), '1.00×'],
  ['PostgreSQL', '2, round robin (half forwarded)', fmt(pg2), `${(pg2 / pg1).toFixed(2)}×`],
  ['PostgreSQL', '2, each message to its owner', fmt(pg2owner), `${(pg2owner / pg1).toFixed(2)}×`],
]);

// Takeover: node a holds 4 processes and is killed; b serves a message to each.
const takeovers = [];
for (let r = 0; r < ROUNDS; r++) {
  const db = await pg.database();
  const a = await node(['--store', db, '--node-id', 'a', '--lease-ms', '2000', '--workers', '1']);
  const b = await node(['--store', db, '--node-id', 'b', '--lease-ms', '2000', '--workers', '1']);
  await post(`${a.url}/modules`, LUA, 'application/lua');
  for (const s of spawns.slice(0, 4)) await post(a.url, s.raw);
  for (const m of msgs[r].filter((x) => spawns.slice(0, 4).some((s) => s.id === x.pid)).slice(0, 8)) await post(a.url, m.raw);
  const after = [];
  for (const s of spawns.slice(0, 4)) after.push(await item('return N', evalTags, s.id));
  a.child.kill('SIGKILL');
  const t0 = performance.now();
  await Promise.all(after.map(async (m, i) => {
    for (;;) {
      const res = await fetch(b.url, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: m.raw });
      if (res.ok) break;
      await new Promise((x) => setTimeout(x, 20));
    }
    const out = await fetch(`${b.url}/result/${m.id}?process-id=${spawns[i].id}`).then((x) => x.json());
    if (out.Output?.data !== '2') throw new Error(`bench failed: takeover result ${JSON.stringify(out)}`);
  }));
  takeovers.push(performance.now() - t0);
  await stop(b);
}
table(`serve: takeover of a killed node's 4 processes by the other node (lease 2 s; median of ${ROUNDS})`, ['kill -9 → a result from each process on the survivor'], [[`${fmt(median(takeovers))} ms`]]);

}

// Memory of idle processes.
const idleSpawns = [];
const idleMsgs = [];
for (let i = 0; i < IDLE; i++) {
  const s = await spawnItem(moduleId);
  idleSpawns.push(s);
  idleMsgs.push(await item('X = 1; return X', evalTags, s.id));
}
async function idleRss(extra) {
  const n = await node(['--store', path.join(tmp, `idle-${extra.length}`), ...extra]);
  await post(`${n.url}/modules`, LUA, 'application/lua');
  await pool(idleSpawns, 8, (s) => post(n.url, s.raw));
  await pool(idleMsgs, 8, (m) => post(n.url, m.raw));
  await pool(idleMsgs, 8, (m, i) => fetch(`${n.url}/result/${m.id}?process-id=${idleSpawns[i].id}`).then((x) => x.json()));
  // Let eviction (every second) and the collector settle.
  await new Promise((r) => setTimeout(r, 5000));
  const info = await fetch(`${n.url}/`).then((x) => x.json());
  const rss = Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${n.child.pid}/status`, 'utf8'))[1]) * 1024;
  await stop(n);
  return { rss, evictions: info.evictions };
}
const noEvict = await idleRss([]);
const evict = await idleRss(['--memory-budget', '16-mb']);
table(`serve: memory of ${IDLE} idle hyper-aos processes (one Eval each), directory store, default workers`, ['eviction', 'RSS', 'per process', 'evicted'], [
  ['none', `${fmt(noEvict.rss / 2 ** 20)} MiB`, `${fmt(noEvict.rss / IDLE / 1024)} KiB`, noEvict.evictions],
  ['--memory-budget 16-mb', `${fmt(evict.rss / 2 ** 20)} MiB`, `${fmt(evict.rss / IDLE / 1024)} KiB`, evict.evictions],
]);

for (const c of children) c.kill('SIGKILL');
await pg.stop();
fs.rmSync(tmp, { recursive: true, force: true });
