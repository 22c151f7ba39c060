/**
 * `hb-runtimes serve`: one HTTP server that is a complete local AO unit for the legacy interface
 * `@permaweb/aoconnect` speaks (MU, CU, SU and gateway roles), on fastify. Routes:
 *
 * | route | role | what |
 * | --- | --- | --- |
 * | `GET /` | all | info: signing `address`, public key, counts |
 * | `POST /` | MU | a signed ANS-104 item: `Type: Module` (registered), `Process` (spawned) or `Message` (scheduled); `?process-id=&assign=<id>`: assign a known message to a process |
 * | `POST /modules` | - | raw module bytes (`Content-Type: application/wasm` or `application/lua`); the ID is their SHA-256 |
 * | `GET /result/:message?process-id=` | CU | the result of a message (by ID, or by slot number) |
 * | `GET /results/:process?from&to&sort&limit` | CU | results, paged by slot cursors (compacted slots are left out) |
 * | `POST /dry-run?process-id=` | CU | evaluate a legacy JSON message on a copy of the state |
 * | `POST /result/:slot?process-id=` | CU | delegated compute: assign the posted item, JSON message or AOS-2 page (HyperBEAM's `delegated-compute@1.0`) at `slot`, answer its result |
 * | `GET /state/:process` | CU | the current state snapshot (bytes; `slot` header) |
 * | `POST /graphql` | gateway | module/process metadata and the Scheduler-Location |
 * | `GET /metrics` | ops | Prometheus metrics (metrics.ts) |
 * | `GET /status`, `POST /snapshot/:process`, `POST /state`, `GET /~scheduler@1.0/schedule` | CU for HyperBEAM | hyperbeam.ts |
| `GET /timestamp`, `GET /:process?from&to&limit`, `GET /:message?process-id=` | SU | the schedule (su.ts) |
 *
 * `commit-to=<id>` on either `/result` route answers a commitment signed by the server instead
 * of the result (see cu@1.0). Errors are JSON: `{error, code, status}`.
 */

import { createHash, randomUUID } from 'node:crypto';
import * as os from 'node:os';
import * as http from 'node:http';
import * as path from 'node:path';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { sha256Id } from '../ao/cache';
import { AoError } from '../errors';
import { legacyResult, type LegacyMessage, type LegacyResult } from './engine';
import { answerGraphql, graphqlIds } from './gateway';
import { legacyOf, moduleKind, moduleTagsFor, ProcessRegistry, resultHash, resultsBundleIds, type EngineFactory, type ServedProcess } from './registry';
import { remoteEngineFactory } from './remote';
import { setLuaSnapshotKey } from '../lua-trust';
import { inThreadEngineFactory, pooledEngineFactory } from './compute';
import type { ComputeLimits } from './limits';
import type { Pool } from '../pool';
import { registerSuRoutes } from './su';
import { dataText, isAos2Page, type AssignmentMeta } from './aos2';
import { delegatedAssignment, registerHyperbeamRoutes } from './hyperbeam';
import { Backpressure, DEFAULT_DRY_RUN_RATE_LIMIT, DEFAULT_MAX_QUEUE, dryRunRouteConfig, registerRateLimit, RetryLater } from './backpressure';
import { ServeMetrics } from './metrics';
import { generateJwk, ItemSigner, loadOrCreateWallet, tagValue, verifyItem, type Jwk } from './signing';
import { DirStore } from './dir-store';
import { registerFleet, startLeases } from './fleet';
import { DEFAULT_LEASE_MS, LeaseManager } from './leases';
import { PgStore } from './pg-store';
import { isPostgresUrl, type Store } from './store';

export const COMMIT_NOT_FOUND = 'Requested message to commit to not in results bundle.';

export interface ServeOptions {
  /** Store: a directory (created when missing), or a `postgres://` URL shared by several nodes. */
  store: string;
  /** This node's ID in a shared store (default: random). */
  nodeId?: string;
  /** The URL other nodes forward requests to (default: the address it listens on). */
  publicUrl?: string;
  /** Milliseconds a node's lease on a process lasts without renewal (shared store). Default 10 s. */
  leaseMs?: number;
  /** Slots of history kept behind each process's latest snapshot (default 10,000; Infinity keeps all). */
  retainSlots?: number;
  /** Bytes of process state held in memory before idle processes are evicted (default: no limit). */
  memoryBudget?: number;
  /** Directory of compiled modules (default: `<store>/compiled`, or the user cache with a database). */
  cacheDir?: string;
  /** Messages waiting in one process's queue before new ones are refused with 503 (202 from half of it). Default 1,000. */
  maxQueue?: number;
  /** Dry runs per minute per client IP (429 above); 0 turns the limit off. Default 600. */
  dryRunRateLimit?: number;
  port?: number;
  host?: string;
  /** Path of a JWK file; default: `<store>/wallet.json` (a database: the fleet's wallet in it), generated when missing. */
  wallet?: string;
  /** A JWK object (tests), instead of `wallet`. */
  jwk?: Jwk;
  /** Largest request body in bytes (413 above). Default 16 MiB. */
  bodyLimit?: number;
  /** Milliseconds a client has to send a whole request (408 after). Default 30 s. */
  requestTimeout?: number;
  /** Slots between persisted snapshots. */
  snapshotInterval?: number;
  /** Longest wait for a result before answering 503. Default 60 s. */
  resultTimeout?: number;
  /** Base URLs of CUs to delegate every process's computation to (routed by process ID). */
  delegate?: string[];
  /** Log requests (fastify's logger). */
  logger?: boolean;
  /**
   * Worker threads computing the processes (default: one per core); 0 computes on the server's
   * own thread (guest code then shares the HTTP event loop).
   */
  workers?: number;
  /** Addresses whose signed checkpoints `POST /state` loads, besides this node's own wallet. */
  checkpointAuthorities?: string[];
  /** Limits of processes whose tags set none: `computeLimit` (fuel / Lua steps), `memoryLimit`, `timeLimit` (ms). */
  limits?: ComputeLimits;
}

export interface ServeHandle {
  app: FastifyInstance;
  registry: ProcessRegistry;
  /** The worker pool computing the processes (absent with `workers: 0` or `delegate`). */
  pool?: Pool;
  signer: ItemSigner;
  /** Its Prometheus metrics (`GET /metrics`). */
  metrics: ServeMetrics;
  url: string;
  close(): Promise<void>;
}

const ID = /^[A-Za-z0-9_-]{43}$/;
const SLOT = /^[0-9]{1,15}$/;

function fail(status: number, message: string, code = status === 404 ? 'ERR_NOT_FOUND' : 'ERR_BAD_REQUEST'): AoError {
  return new AoError(message, { status, code });
}

function processIdOf(req: FastifyRequest): string {
  const q = req.query as Record<string, unknown>;
  const id = q['process-id'];
  if (typeof id !== 'string' || id === '') throw fail(400, "missing query parameter 'process-id'");
  return id;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string, retryAfter: () => number = () => 1): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new RetryLater(`${what} is not computed yet (waited ${ms} ms)`, 'ERR_NOT_READY', retryAfter())), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** A dry run's JSON body, checked: `{Id?, Owner, Target?, Anchor?, Data?, Tags}`. */
function dryRunMessage(body: unknown, pid: string): LegacyMessage {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw fail(400, 'the dry run body must be a JSON object (a legacy AO message)');
  const b = body as Record<string, unknown>;
  const tags = b.Tags ?? [];
  if (!Array.isArray(tags) || !tags.every((t) => typeof t === 'object' && t !== null && typeof t.name === 'string' && typeof t.value === 'string')) {
    throw fail(400, "'Tags' must be a list of {name, value} strings");
  }
  const owner = typeof b.Owner === 'string' ? b.Owner : '';
  const data = dataText(b.Data);
  return {
    Id: typeof b.Id === 'string' ? b.Id : sha256Id(Buffer.from(JSON.stringify(b))),
    Owner: owner,
    From: typeof b.From === 'string' ? b.From : owner,
    Target: typeof b.Target === 'string' ? b.Target : pid,
    Anchor: typeof b.Anchor === 'string' ? b.Anchor : '',
    Data: data,
    Tags: tags as LegacyMessage['Tags'],
  };
}

export async function startServer(opts: ServeOptions): Promise<ServeHandle> {
  const store: Store = isPostgresUrl(opts.store) ? await PgStore.open(opts.store) : new DirStore(opts.store);
  let jwk: Jwk;
  let leases: LeaseManager | undefined;
  try {
    if (store instanceof PgStore) {
      jwk = opts.jwk ?? (opts.wallet ? loadOrCreateWallet(opts.wallet, os.tmpdir()) : await store.sharedWallet(generateJwk));
      leases = new LeaseManager(store.db, opts.nodeId ?? randomUUID(), opts.publicUrl ?? '', opts.leaseMs ?? DEFAULT_LEASE_MS);
      store.fence = leases;
    } else {
      jwk = opts.jwk ?? loadOrCreateWallet(opts.wallet, opts.store);
    }
  } catch (e) {
    await store.close();
    throw e;
  }
  const cacheDir = opts.cacheDir ?? (store instanceof DirStore ? path.join(store.dir, 'compiled') : path.join(os.homedir(), '.cache', 'hb-runtimes', 'serve-compiled'));
  const signer = new ItemSigner(jwk);
  // Lua snapshots are sealed with the node's key (src/lua-trust.ts): derive it from the wallet so
  // that the snapshots in the store restore after a restart (unless HB_RUNTIMES_SNAPSHOT_KEY sets one).
  if (!process.env.HB_RUNTIMES_SNAPSHOT_KEY) setLuaSnapshotKey(createHash('sha256').update('hb-runtimes serve: Lua snapshot key\0').update(jwk.d ?? jwk.n).digest());
  let pool: Pool | undefined;
  let engineFactory: EngineFactory;
  if (opts.delegate && opts.delegate.length > 0) engineFactory = remoteEngineFactory(opts.delegate);
  else if (opts.workers === 0) engineFactory = inThreadEngineFactory(opts.limits);
  else ({ factory: engineFactory, pool } = pooledEngineFactory({ workers: opts.workers, limits: opts.limits, cacheDir }));
  const metrics = new ServeMetrics();
  engineFactory = metrics.wrap(engineFactory);
  const backpressure = new Backpressure(opts.maxQueue ?? DEFAULT_MAX_QUEUE, metrics);
  const dryRunRateLimit = opts.dryRunRateLimit ?? DEFAULT_DRY_RUN_RATE_LIMIT;
  const registry = new ProcessRegistry({
    store,
    snapshotInterval: opts.snapshotInterval,
    retainSlots: opts.retainSlots,
    memoryBudget: opts.memoryBudget,
    engineFactory,
    ...(leases ? { leases } : {}),
  });
  try {
    await registry.open();
  } catch (e) {
    await pool?.close();
    await store.close();
    throw e;
  }
  const resultTimeout = opts.resultTimeout ?? 60_000;
  const requestTimeout = opts.requestTimeout ?? 30_000;
  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: opts.bodyLimit ?? 16 * 1024 * 1024,
    requestTimeout,
    // Node checks request deadlines every `connectionsCheckingInterval` ms (30 s by default):
    // check often enough that a slow client gets its 408 (fastify's JSON answer) on time.
    // Errors before a request exists (a client too slow, a malformed request line): the same
    // JSON error shape as every other answer, then the connection is closed.
    clientErrorHandler: (err: Error & { code?: string }, socket) => {
      const timeout = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
      const status = timeout ? 408 : 400;
      const body = JSON.stringify({
        error: timeout ? `the request was not received within ${requestTimeout} ms` : `malformed HTTP request: ${err.message}`,
        code: err.code ?? 'ERR_BAD_REQUEST',
        status,
      });
      if (socket.writable) {
        socket.end(`HTTP/1.1 ${status} ${timeout ? 'Request Timeout' : 'Bad Request'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
      } else {
        socket.destroy();
      }
    },
    serverFactory: (handler) => {
      const server = http.createServer(
        { requestTimeout, headersTimeout: requestTimeout, connectionsCheckingInterval: Math.max(50, Math.min(1000, requestTimeout / 4)) },
        handler,
      );
      // fastify's own default (Node's is 5 s): longer than clients' keep-alive (undici: 4 s), so
      // a client never reuses a connection the server is closing.
      server.keepAliveTimeout = 72_000;
      return server;
    },
  });
  let publicUrl = '';

  // Raw bodies for data items and modules; fastify's own parser for JSON (400 when malformed).
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string; status?: number }, _req, reply) => {
    if (err instanceof RetryLater) void reply.header('retry-after', String(err.retryAfter));
    const status = err instanceof AoError ? err.status : (err.statusCode ?? 500);
    const code = err instanceof AoError ? err.code : (err.code ?? 'ERR_INTERNAL');
    void reply.status(status >= 400 && status < 600 ? status : 500).send({ error: err.message, code, status });
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.status(404).send({ error: `no route ${req.method} ${req.url.split('?')[0]}`, code: 'ERR_NOT_FOUND', status: 404 });
  });

  const info = () => ({
    name: 'hb-runtimes',
    version: require('../../package.json').version as string,
    address: signer.address,
    'public-key': signer.publicKey,
    timestamp: Date.now(),
    processes: registry.processes.size,
    modules: registry.modules.size,
    store: store.kind,
    ...(leases ? { node: leases.node } : {}),
    evictions: registry.evictions,
    'recompute-mismatches': [...registry.processes.values()].reduce((n, p) => n + p.mismatches, 0),
  });

  metrics.install(app, registry);
  await registerRateLimit(app, dryRunRateLimit);

  app.get('/', async () => info());

  function rawBody(req: FastifyRequest): Buffer {
    if (!Buffer.isBuffer(req.body) || req.body.length === 0) throw fail(400, 'expected the raw bytes of an ANS-104 data item (Content-Type: application/octet-stream)');
    return req.body;
  }

  // MU: data-item intake; with `?process-id=&assign=`, an assignment of a known message.
  app.post('/', async (req, reply) => {
    const q = req.query as Record<string, unknown>;
    if (q.assign !== undefined) {
      if (typeof q.assign !== 'string' || !ID.test(q.assign)) throw fail(400, "'assign' must be a message ID");
      const p = registry.get(processIdOf(req));
      const known = p.slotOf(q.assign);
      if (known !== undefined) return reply.status(200).send({ id: q.assign, message: 'Already scheduled', slot: known });
      const original = registry.findMessage(q.assign);
      if (!original) throw fail(404, `message ${q.assign} is not known to this server`);
      backpressure.admit(p);
      const a = await p.assign(original.message, undefined, original.raw ? Buffer.from(original.raw, 'base64url') : undefined);
      return reply.status(backpressure.accepted(p, reply)).send({ id: q.assign, message: 'Assigned', slot: a.slot, timestamp: a.timestamp });
    }
    const item = await verifyItem(rawBody(req));
    const type = tagValue(item.tags, 'Type');
    if (type === 'Module') {
      await registry.addModule(item.id, item.owner, item.tags, item.data, item.raw);
      return reply.status(200).send({ id: item.id, message: 'Module stored' });
    }
    if (type === 'Process') {
      const p = await registry.spawn(item);
      return reply.status(200).send({ id: item.id, processId: p.id, message: 'Processing DataItem', slot: 0 });
    }
    if (type === 'Message') {
      const p = registry.get(item.target);
      const known = p.slotOf(item.id);
      if (known !== undefined) return reply.status(200).send({ id: item.id, message: 'Already scheduled', slot: known });
      backpressure.admit(p);
      const a = await p.assign(legacyOf(item), undefined, item.raw);
      return reply.status(backpressure.accepted(p, reply)).send({ id: item.id, message: 'Processing DataItem', slot: a.slot, timestamp: a.timestamp });
    }
    throw fail(400, `unsupported data item Type '${type ?? ''}' (expected Module, Process or Message)`);
  });

  app.post('/modules', async (req, reply) => {
    const bytes = rawBody(req);
    const ctype = String(req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    const kind = moduleKind([{ name: 'Content-Type', value: ctype }]);
    if (!kind) throw fail(400, `unsupported module Content-Type '${ctype}' (application/wasm or application/lua)`);
    const id = sha256Id(bytes);
    await registry.addModule(id, signer.address, moduleTagsFor(kind), bytes);
    return reply.status(200).send({ id, kind });
  });

  async function resultOrCommitment(p: ServedProcess, slot: number, req: FastifyRequest): Promise<unknown> {
    const result = await withTimeout(p.resultOf(slot), resultTimeout, `slot ${slot} of process ${p.id}`, () => backpressure.retryAfter(p, slot - p.computed));
    const commitTo = (req.query as Record<string, unknown>)['commit-to'];
    if (commitTo === undefined) return result;
    if (typeof commitTo !== 'string' || commitTo === '') throw fail(400, "'commit-to' must be a message ID");
    return commitment(p, slot, result, commitTo);
  }

  async function commitment(p: ServedProcess, slot: number, result: LegacyResult, id: string): Promise<unknown> {
    const ids = resultsBundleIds(p.assignments[slot].message.Id, result);
    if (!ids.includes(id)) return { status: 404, body: COMMIT_NOT_FOUND };
    const signed = await signer.sign('', [
      { name: 'status', value: '200' },
      { name: 'commitment-for', value: id },
      { name: 'process', value: p.id },
      { name: 'slot', value: String(slot) },
      { name: 'results-hash', value: resultHash(result) },
    ]);
    return { status: 200, 'commitment-for': id, id: signed.id, 'committed-by': signer.address, commitment: signed.raw.toString('base64url') };
  }

  // CU: the result of one message (by ID or slot).
  app.get('/result/:message', async (req) => {
    const p = registry.get(processIdOf(req));
    const key = (req.params as { message: string }).message;
    let slot: number | undefined;
    if (SLOT.test(key)) slot = Number(key);
    else if (ID.test(key)) slot = p.slotOf(key);
    else throw fail(400, `'${key}' is neither a message ID nor a slot`);
    if (slot === undefined || slot >= p.nextSlot) throw fail(404, `message ${key} is not scheduled on process ${p.id}`);
    return resultOrCommitment(p, slot, req);
  });

  // CU: delegated compute of one assignment.
  app.post('/result/:slot', async (req) => {
    const key = (req.params as { slot: string }).slot;
    if (!SLOT.test(key)) throw fail(400, `'${key}' is not a slot number`);
    const slot = Number(key);
    const pid = processIdOf(req);
    let message: LegacyMessage;
    let raw: Buffer | undefined;
    let meta: AssignmentMeta = {};
    if (isAos2Page(req.body)) {
      // HyperBEAM's delegated-compute@1.0: an AOS-2 page holding this slot's assignment.
      const d = delegatedAssignment(req.body, slot, pid);
      if (d.spawn && !registry.processes.has(pid) && !(await registry.hold(pid))) {
        await registry.spawnRecord(d.spawn);
        return resultOrCommitment(registry.get(pid), 0, req);
      }
      ({ message, meta } = d);
    } else if (Buffer.isBuffer(req.body)) {
      const item = await verifyItem(req.body);
      if (slot === 0 && item.id === pid && !registry.processes.has(pid) && !(await registry.hold(pid))) {
        await registry.spawn(item);
        return resultOrCommitment(registry.get(pid), 0, req);
      }
      message = legacyOf(item);
      raw = item.raw;
    } else {
      message = dryRunMessage(req.body, pid);
    }
    const p = registry.get(pid);
    if (slot < p.nextSlot) {
      const held = p.assignments[slot]?.message.Id;
      if (held === undefined) throw p.compactedError(slot);
      if (held !== message.Id) throw fail(409, `slot ${slot} of process ${pid} holds message ${held}, not ${message.Id}`, 'ERR_CONFLICT');
    } else {
      backpressure.admit(p);
      await p.assign(message, slot, raw, meta);
    }
    return resultOrCommitment(p, slot, req);
  });

  // CU: paged results.
  app.get('/results/:process', async (req) => {
    const p = registry.get((req.params as { process: string }).process);
    const q = req.query as Record<string, unknown>;
    const sort = q.sort === undefined ? 'ASC' : String(q.sort).toUpperCase();
    if (sort !== 'ASC' && sort !== 'DESC') throw fail(400, "'sort' must be ASC or DESC");
    const num = (name: string, dflt: number): number => {
      const v = q[name];
      if (v === undefined || v === '') return dflt;
      if (typeof v !== 'string' || !SLOT.test(v)) throw fail(400, `'${name}' must be a cursor (a slot number), got '${String(v)}'`);
      return Number(v);
    };
    const limit = Math.min(num('limit', 25), 1000);
    const last = p.nextSlot - 1;
    await withTimeout(p.whenComputed(last), resultTimeout, `process ${p.id}`);
    const edges: unknown[] = [];
    if (sort === 'ASC') {
      const from = q.from === undefined ? -1 : num('from', -1);
      const to = Math.min(num('to', last), last);
      for (let s = from + 1; s <= to && edges.length < limit; s++) if (!(s > 0 && s <= p.compactedUpTo)) edges.push({ cursor: String(s), node: p.results[s] });
    } else {
      const from = q.from === undefined ? last + 1 : num('from', last + 1);
      const to = num('to', 0);
      for (let s = Math.min(from - 1, last); s >= to && edges.length < limit; s--) if (!(s > 0 && s <= p.compactedUpTo)) edges.push({ cursor: String(s), node: p.results[s] });
    }
    return { edges };
  });

  app.post('/dry-run', dryRunRouteConfig(dryRunRateLimit), async (req) => {
    const pid = processIdOf(req);
    const p = registry.get(pid);
    if (Buffer.isBuffer(req.body) || req.body === undefined) throw fail(400, 'the dry run body must be JSON (Content-Type: application/json)');
    const message = dryRunMessage(req.body, pid);
    return withTimeout(p.dryRun(message), resultTimeout, `a dry run on process ${pid}`).then(legacyResult);
  });

  app.get('/state/:process', async (req, reply) => {
    const p = registry.get((req.params as { process: string }).process);
    const st = await withTimeout(p.state(), resultTimeout, `process ${p.id}`);
    return reply
      .header('content-type', 'application/octet-stream')
      .header('slot', String(st.slot))
      .header('process-kind', p.def.kind)
      .send(Buffer.from(st.bytes));
  });

  app.post('/graphql', async (req) => {
    if (leases) await registry.prefetch(graphqlIds((req.body ?? {}) as never));
    const answer = answerGraphql((req.body ?? {}) as never, registry, { address: signer.address, url: publicUrl, ttl: 3_600_000 });
    if (answer === undefined) throw fail(400, 'unsupported GraphQL query (only transactions by ids, and Scheduler-Location)');
    return answer;
  });

  registerHyperbeamRoutes(app, {
    registry,
    signer,
    checkpointAuthorities: opts.checkpointAuthorities ?? [],
    resultTimeout,
    withTimeout,
    info,
  });
  registerSuRoutes(app, registry, () => signer.address);
  if (leases) registerFleet(app, registry, leases, () => publicUrl);

  await app.listen({ port: opts.port ?? 0, host: opts.host ?? '127.0.0.1' });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port;
  const host = opts.host ?? '127.0.0.1';
  publicUrl = opts.publicUrl ?? `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  if (leases) {
    leases.setUrl(publicUrl);
    startLeases(registry, leases);
  }
  return {
    app,
    registry,
    ...(pool ? { pool } : {}),
    signer,
    metrics,
    url: publicUrl,
    async close() {
      await leases?.stop(true);
      await app.close();
      await registry.close();
      await pool?.close();
      await store.close();
    },
  };
}

export type { FastifyReply };
