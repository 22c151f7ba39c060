/**
 * Several `serve` nodes on one PostgreSQL store: any node answers any request. A request that
 * names a process (`process-id` in the query, a `:process`/`:pid`/`:id` path parameter, or the
 * target of a posted `Message` item) is handled where the process is held:
 *
 * - held here: handled here;
 * - its lease free or lapsed: this node takes it (loading it from snapshot + log) and handles it;
 * - held by another live node: forwarded to that node's URL (from its lease), and its answer
 *   relayed as it is. A forwarded request carries `x-hb-forwarded-by`; a node never forwards
 *   such a request again (a lease moving meanwhile answers 503 with `Retry-After` instead).
 *
 * The lease loop (leases.ts) renews leases, drops processes whose lease was taken, and takes over
 * processes whose node died.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AoError } from '../errors';
import type { LeaseManager } from './leases';
import type { ProcessRegistry } from './registry';

const FORWARDED = 'x-hb-forwarded-by';
const ID = /^[A-Za-z0-9_-]{43}$/;
/** Headers not relayed (hop-by-hop, or recomputed by fetch). */
const HOP = new Set(['host', 'connection', 'content-length', 'transfer-encoding', 'keep-alive', 'upgrade', 'expect', 'accept-encoding']);

/** The process a posted item is for: a Message's target, a Checkpoint's Process. */
function itemTargetOf(body: Buffer): string | undefined {
  try {
    const { DataItem } = require('@dha-team/arbundles') as typeof import('@dha-team/arbundles');
    const item = new DataItem(body);
    const type = item.tags.find((t) => t.name === 'Type')?.value;
    if (type === 'Checkpoint') return item.tags.find((t) => t.name === 'Process')?.value;
    return type === 'Message' && item.target ? item.target : undefined;
  } catch {
    return undefined;
  }
}

/** The process a request is about, if it names one. */
export function processOfRequest(req: FastifyRequest): string | undefined {
  const q = (req.query ?? {}) as Record<string, unknown>;
  if (typeof q['process-id'] === 'string' && ID.test(q['process-id'])) return q['process-id'];
  if (typeof q.target === 'string' && ID.test(q.target)) return q.target;
  const params = (req.params ?? {}) as Record<string, unknown>;
  for (const k of ['process', 'pid', 'id']) {
    const v = params[k];
    if (typeof v === 'string' && ID.test(v)) return v;
  }
  if (req.method === 'POST' && req.routeOptions.url === '/state') {
    const h = req.headers.process;
    if (typeof h === 'string' && ID.test(h)) return h;
  }
  if (req.method === 'POST' && (req.routeOptions.url === '/' || req.routeOptions.url === '/state') && Buffer.isBuffer(req.body)) return itemTargetOf(req.body);
  return undefined;
}

async function forward(req: FastifyRequest, reply: FastifyReply, url: string, self: string): Promise<void> {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) if (!HOP.has(k) && typeof v === 'string') headers[k] = v;
  headers[FORWARDED] = self;
  let body: Buffer | string | undefined;
  if (Buffer.isBuffer(req.body)) body = req.body;
  else if (req.body !== undefined && req.body !== null) body = JSON.stringify(req.body);
  let res: Response;
  try {
    res = await fetch(new URL(req.url, url), { method: req.method, headers, ...(body !== undefined && req.method !== 'GET' && req.method !== 'HEAD' ? { body } : {}) });
  } catch (e) {
    throw new AoError(`the node holding this process (${url}) did not answer: ${(e as Error).message}`, { status: 503, code: 'ERR_OWNER_UNREACHABLE' });
  }
  const bytes = Buffer.from(await res.arrayBuffer());
  reply.status(res.status);
  res.headers.forEach((v, k) => {
    if (!HOP.has(k) && k !== 'content-encoding' && k !== 'date') void reply.header(k, v);
  });
  void reply.header('x-hb-served-by', res.headers.get('x-hb-served-by') ?? url);
  await reply.send(bytes);
}

/** Routes every process request to the node holding the process (see above). */
export function registerFleet(app: FastifyInstance, registry: ProcessRegistry, leases: LeaseManager, selfUrl: () => string): void {
  app.addHook('preHandler', async (req, reply) => {
    const pid = processOfRequest(req);
    if (pid === undefined || registry.processes.has(pid)) return;
    if (await registry.hold(pid)) return;
    const owner = await leases.owner(pid);
    // Unknown process: the route answers its own 404.
    if (!owner) return;
    if (owner.live && owner.node !== leases.node && req.headers[FORWARDED] === undefined) {
      await forward(req, reply, owner.url, selfUrl());
      return reply;
    }
    void reply.header('retry-after', String(Math.max(1, Math.ceil(leases.leaseMs / 1000))));
    throw new AoError(`process ${pid} is moving between nodes; retry shortly`, { status: 503, code: 'ERR_NOT_READY' });
  });
}

/** Starts the lease loop: takes over lapsed processes, drops processes taken by others. */
export function startLeases(registry: ProcessRegistry, leases: LeaseManager): void {
  leases.start({
    takeover: async (pid) => {
      await registry.hold(pid);
    },
    lost: (pid) => {
      void registry.drop(pid);
    },
  });
}
