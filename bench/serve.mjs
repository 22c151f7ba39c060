// `hb-runtimes serve` over HTTP on loopback (autocannon as the client, bounded in count and
// time): AOS Eval messages (signed ANS-104 items, acknowledged after an fsync) with 1, 10 and 100
// concurrent clients: acknowledgement latency p50/p99, acks/s, and end-to-end messages/s (until
// the last one is computed); Eval dry runs (computed per request) with 1, 10 and 100 clients;
// memory per idle process. Then the worker pool against one thread (`--workers 0`), both servers
// in the same run: end-to-end messages/s spread over many processes, and the latency of `GET /`
// while every worker computes. The servers run in child processes. Needs ../shared/fixtures.
// BENCH_SERVE_N (default 150) sets the messages per level.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { fmt, table } from './util.mjs';

const require = createRequire(import.meta.url);
const autocannon = require('autocannon');
const { ArweaveSigner, createData } = require('@dha-team/arbundles');
const { generateJwk } = require('../lib/serve/signing.js');

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const FIX = path.resolve(ROOT, '..', 'shared', 'fixtures');
if (!fs.existsSync(path.join(FIX, 'aos-2-pure-xs.wasm'))) {
  console.log(`skipped: ${FIX} not found`);
  process.exit(0);
}
const N = Number(process.env.BENCH_SERVE_N ?? 150);
const LEVELS = [1, 10, 100];
const DRY_RUNS = 300;

const store = fs.mkdtempSync(path.join(os.tmpdir(), 'hb-bench-serve-'));
const walletFile = path.join(store, 'client.json');
fs.writeFileSync(walletFile, JSON.stringify(generateJwk()));
const jwk = JSON.parse(fs.readFileSync(walletFile, 'utf8'));
const signer = new ArweaveSigner(jwk);
const owner = require('../lib/serve/signing.js').addressOf(jwk.n);

let serverCount = 0;
async function startServer(args = []) {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'hb-runtimes.js'), 'serve', '--port', '0', '--store', path.join(store, `server-${++serverCount}`), ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    child.once('exit', (c) => reject(new Error(`server exited (${c})`)));
  });
  return { child, url };
}
// The dry-run rows send 1,800 requests from one address within a minute or two: without
// `--dry-run-rate-limit 0` the default limit (600 a minute per client IP) answers most with 429.
let { child, url } = await startServer(['--dry-run-rate-limit', '0']);
const rssKb = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'))[1]);

async function item(data, tags, target) {
  const d = createData(data, signer, { tags, ...(target ? { target } : {}) });
  await d.sign(signer);
  return { id: d.id, raw: d.getRaw() };
}
const post = (p, body, type = 'application/octet-stream') =>
  fetch(`${url}${p}`, { method: 'POST', headers: { 'content-type': type }, body }).then(async (r) => {
    if (!r.ok) throw new Error(`${p}: ${r.status} ${await r.text()}`);
    return r.json();
  });

const modules = {
  wasm: (await post('/modules', fs.readFileSync(path.join(FIX, 'aos-2-pure-xs.wasm')), 'application/wasm')).id,
  lua: (await post('/modules', fs.readFileSync(path.join(FIX, 'hyper-aos.lua')), 'application/lua')).id,
};
async function spawnProcess(kind) {
  const s = await item(' ', [{ name: 'Data-Protocol', value: 'ao' }, { name: 'Type', value: 'Process' }, { name: 'Module', value: modules[kind] }]);
  await post('/', s.raw);
  return s.id;
}

const evalTags = [{ name: 'Data-Protocol', value: 'ao' }, { name: 'Type', value: 'Message' }, { name: 'Action', value: 'Eval' }];
const ms = (x) => `${x.toFixed(1)} ms`;

/** First request sent to last response received (autocannon's own duration is at least 1 s). */
function timer() {
  let first;
  let last;
  return {
    start: () => (first ??= performance.now()),
    end: () => (last = performance.now()),
    seconds: () => (last - first) / 1000,
    first: () => first,
  };
}

/**
 * POSTs the signed `items` with `c` autocannon clients; after the last ack, `settle()` waits until
 * they are computed. Returns autocannon's result, the acknowledged span and the end-to-end seconds.
 */
async function load(items, c, settle) {
  const n = items.length;
  let next = 0;
  let acks = 0;
  let done;
  const span = timer();
  const r = await autocannon({
    url: `${url}/`,
    method: 'POST',
    connections: c,
    amount: n,
    duration: 120,
    headers: { 'content-type': 'application/octet-stream' },
    requests: [
      {
        setupRequest: (req) => (span.start(), { ...req, body: items[next++ % n].raw }),
        onResponse: () => {
          span.end();
          if (++acks === n) done = settle().then(() => performance.now());
        },
      },
    ],
  });
  if (r.non2xx > 0 || r.errors > 0) throw new Error(`bench failed: ${r.non2xx} non-2xx, ${r.errors} errors`);
  return { r, acked: span.seconds(), total: ((await done) - span.first()) / 1000 };
}

async function messages(kind) {
  const rows = [];
  for (const c of LEVELS) {
    const pid = await spawnProcess(kind);
    const n = Math.max(N, c);
    const items = [];
    for (let i = 0; i < n; i++) items.push(await item(`N = (N or 0) + 1; return N`, evalTags, pid));
    let last;
    // End to end: the last ack, then until every slot is computed (GET /results waits for it).
    const { r, acked, total } = await load(items, c, () => fetch(`${url}/results/${pid}?sort=DESC&limit=1`).then((x) => x.json()).then((j) => (last = j)));
    if (last.edges[0].cursor !== String(n)) throw new Error(`bench failed: last slot ${last.edges[0].cursor}, not ${n}`);
    rows.push([c, n, fmt(r.requests.total / acked), ms(r.latency.p50), ms(r.latency.p99), fmt(n / total)]);
  }
  table(`Eval messages (${kind === 'wasm' ? 'aos-2-pure-xs.wasm' : 'hyper-aos.lua'}): signed items POSTed, acknowledged after fsync`, ['clients', 'messages', 'acks/s', 'ack p50', 'ack p99', 'end-to-end msgs/s'], rows);
}

async function dryRuns(kind) {
  const pid = await spawnProcess(kind);
  const rows = [];
  const body = JSON.stringify({ Id: '1234', Owner: owner, Target: pid, Data: 'return 1 + 1', Tags: evalTags });
  for (const c of LEVELS) {
    const span = timer();
    const r = await autocannon({
      url: `${url}/dry-run?process-id=${pid}`,
      method: 'POST',
      connections: c,
      amount: DRY_RUNS,
      duration: 120,
      timeout: 60,
      headers: { 'content-type': 'application/json' },
      requests: [{ setupRequest: (req) => (span.start(), { ...req, body }), onResponse: span.end }],
    });
    rows.push([c, DRY_RUNS, fmt(r['2xx'] / span.seconds()), ms(r.latency.p50), ms(r.latency.p99), r.non2xx + r.errors + r.timeouts]);
  }
  table(`Eval dry runs (${kind === 'wasm' ? 'aos-2-pure-xs.wasm' : 'hyper-aos.lua'}): computed on a copy of the state per request`, ['clients', 'requests', 'req/s', 'p50', 'p99', 'failed (timeouts of 60 s, errors)'], rows);
}

async function idleMemory() {
  const rows = [];
  for (const kind of ['wasm', 'lua']) {
    const K = 25;
    await spawnProcess(kind); // warm: the module compiled once
    await new Promise((r) => setTimeout(r, 200));
    const before = rssKb();
    const pids = [];
    for (let i = 0; i < K; i++) pids.push(await spawnProcess(kind));
    // Wait until each has computed its spawn (slot 0).
    for (const pid of pids) await fetch(`${url}/result/0?process-id=${pid}`).then((x) => x.json());
    await new Promise((r) => setTimeout(r, 200));
    rows.push([kind === 'wasm' ? 'aos-2-pure-xs.wasm' : 'hyper-aos.lua', K, `${((rssKb() - before) / K / 1024).toFixed(1)} MiB`]);
  }
  table('Memory per idle process (server RSS growth / processes spawned)', ['module', 'processes', 'RSS per process'], rows);
}

// ---- the worker pool against one thread, both servers in the same run

/** Runs `fn` with `url` pointing at `server` (modules uploaded there first). */
async function on(server, fn) {
  const prev = url;
  url = server.url;
  try {
    await post('/modules', fs.readFileSync(path.join(FIX, 'aos-2-pure-xs.wasm')), 'application/wasm');
    await post('/modules', fs.readFileSync(path.join(FIX, 'hyper-aos.lua')), 'application/lua');
    return await fn();
  } finally {
    url = prev;
  }
}

/**
 * Each message computes for milliseconds (a 300,000-step Lua loop: ≈ 10 ms in aos-2-pure-xs),
 * so the comparison measures computation rather than the disk's fdatasync latency, which bounds
 * the light messages above (one log per process, each append synced).
 */
const HEAVY = 'local s = 0; for i = 1, 300000 do s = s + i end; return s';

/** End-to-end messages/s with `c` clients, the messages spread over `P` processes. */
async function spread(kind, c, P) {
  const pids = [];
  for (let i = 0; i < P; i++) pids.push(await spawnProcess(kind));
  for (const pid of pids) await fetch(`${url}/result/0?process-id=${pid}`).then((x) => x.json());
  const n = Math.max(N, c);
  const items = [];
  for (let i = 0; i < n; i++) items.push(await item(HEAVY, evalTags, pids[i % P]));
  // After the last ack: until every process has computed its last slot.
  const { total } = await load(items, c, () => Promise.all(pids.map((pid) => fetch(`${url}/results/${pid}?sort=DESC&limit=1`).then((x) => x.json()))));
  return n / total;
}

/** GET / latency while `W` processes each compute `K` heavy Evals (every worker busy). */
async function infoWhileBusy(W, K) {
  const pids = [];
  for (let i = 0; i < W; i++) pids.push(await spawnProcess('wasm'));
  for (const pid of pids) await fetch(`${url}/result/0?process-id=${pid}`).then((x) => x.json());
  const heavy = 'local s = 0; for i = 1, 5000000 do s = s + i end; return s';
  const items = [];
  for (let k = 0; k < K; k++) for (const pid of pids) items.push(await item(heavy, evalTags, pid));
  // GET / one after the other from before the messages are posted until the last is computed.
  let finished = false;
  const lat = [];
  const getter = (async () => {
    while (!finished) {
      const t0 = performance.now();
      await fetch(`${url}/`).then((x) => x.json());
      lat.push(performance.now() - t0);
    }
  })();
  const t = performance.now();
  await Promise.all(items.map((it) => post('/', it.raw)));
  await Promise.all(pids.map((pid) => fetch(`${url}/results/${pid}?sort=DESC&limit=1`).then((x) => x.json())));
  finished = true;
  const busy = performance.now() - t;
  await getter;
  lat.sort((a, b) => a - b);
  const q = (f) => lat[Math.min(lat.length - 1, Math.floor(lat.length * f))];
  return [`${(busy / 1000).toFixed(2)} s`, ms(q(0.5)), ms(q(0.99)), ms(lat[lat.length - 1]), lat.length];
}

async function poolVersusThread() {
  const pooled = await startServer();
  const single = await startServer(['--workers', '0']);
  const P = 8;
  try {
    for (const kind of ['wasm', 'lua']) {
      const rows = [];
      for (const c of LEVELS) {
        // Alternating rounds, medians: the machine's load changes between them.
        const a = [];
        const b = [];
        for (let r = 0; r < 3; r++) {
          a.push(await on(pooled, () => spread(kind, c, P)));
          b.push(await on(single, () => spread(kind, c, P)));
        }
        const med = (xs) => [...xs].sort((x, y) => x - y)[1];
        rows.push([c, P, Math.max(N, c), fmt(med(b)), fmt(med(a)), `${(med(a) / med(b)).toFixed(2)}×`, os.loadavg()[0].toFixed(1)]);
      }
      table(`End to end, pool (one worker per core) vs one thread (\`--workers 0\`), same run: ${kind === 'wasm' ? 'aos-2-pure-xs.wasm' : 'hyper-aos.lua'}, an \`Eval\` of a 300,000-step loop per message, spread over ${P} processes`, ['clients', 'processes', 'messages', 'one thread msgs/s', 'pool msgs/s', 'ratio', 'load average'], rows);
    }
    const W = os.availableParallelism();
    const rows = [];
    rows.push(['pool', ...(await on(pooled, () => infoWhileBusy(W, 8)))]);
    rows.push(['one thread', ...(await on(single, () => infoWhileBusy(W, 8)))]);
    table(`\`GET /\` while ${W} aos-2-pure-xs processes each compute 8 heavy Evals (sequential requests from before the messages are posted until the last is computed; load average ${os.loadavg()[0].toFixed(1)})`, ['server', 'busy for', 'p50', 'p99', 'max', 'requests'], rows);
  } finally {
    pooled.child.kill('SIGTERM');
    single.child.kill('SIGTERM');
  }
}

try {
  if (process.env.BENCH_SERVE_ONLY !== 'pool') {
    await idleMemory(); // first, while the server's heap is fresh
    await messages('wasm');
    await messages('lua');
    await dryRuns('wasm');
    await dryRuns('lua');
  }
  await poolVersusThread();
} finally {
  child.kill('SIGTERM');
  fs.rmSync(store, { recursive: true, force: true });
}
