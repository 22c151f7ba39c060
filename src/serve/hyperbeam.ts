/**
 * The routes a HyperBEAM node calls on its compute unit (`delegated-compute@1.0`, which
 * `genesis-wasm@1.0` wraps), besides `POST /result/:slot` and `POST /dry-run` (app.ts):
 *
 * | route | HyperBEAM caller | what |
 * | --- | --- | --- |
 * | `GET /status` | `dev_genesis_wasm:status/1` | 200 while the CU is up |
 * | `POST /snapshot/:process` | `dev_delegated_compute:snapshot/3` | a signed checkpoint of the state after every slot assigned (checkpoint.ts), `Content-Type: application/ans104`, its tags also as headers |
 * | `POST /state` | loading a checkpoint | carries the process on from it (registry.restore) |
 * | `GET /~scheduler@1.0/schedule?target=&from=&to=&limit=&accept=application/aos-2` | the CU side of HyperBEAM's SU interface | an AOS-2 page of the schedule, by slot |
 *
 * `delegatedAssignment` reads the AOS-2 body `POST /result/:slot` gets from
 * `dev_scheduler_formats:assignments_to_aos2/4`: the message at that slot, the timestamp, block
 * height and hash chain HyperBEAM assigned it, and (at slot 0) the process to spawn.
 */

import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AoError } from '../errors';
import { AOS2, aos2Page, readAos2Page, type AssignmentMeta } from './aos2';
import { ANS104, checkpointHeaders, makeCheckpoint, readCheckpoint } from './checkpoint';
import type { LegacyMessage } from './engine';
import type { ProcessRegistry, ServedProcess } from './registry';
import { tagValue, type ItemSigner } from './signing';
import type { ProcessRecord } from './store';

const ID = /^[A-Za-z0-9_-]{43}$/;

function bad(message: string): AoError {
  return new AoError(message, { status: 400, code: 'ERR_BAD_REQUEST' });
}

/** What an AOS-2 `POST /result/:slot` body assigns at `slot`. */
export interface DelegatedAssignment {
  message: LegacyMessage;
  meta: AssignmentMeta;
  /** At slot 0, when the message is the process itself: its record, to spawn. */
  spawn?: ProcessRecord;
}

export function delegatedAssignment(body: { edges: unknown[] }, slot: number, pid: string): DelegatedAssignment {
  const edges = readAos2Page(body, pid);
  const edge = edges.find((e) => e.slot === slot) ?? (edges.length === 1 && edges[0].slot === undefined ? edges[0] : undefined);
  if (!edge) throw bad(`the AOS-2 body has no assignment for slot ${slot} (it holds slots ${edges.map((e) => e.slot ?? '?').join(', ') || 'none'})`);
  const { message, ...meta } = edge;
  delete meta.slot;
  if (slot !== 0 || message.Id !== pid) return { message, meta };
  const module = tagValue(message.Tags, 'Module');
  if (!module) throw bad(`process ${pid} (slot 0) has no 'Module' tag`);
  const spawn: ProcessRecord = {
    id: pid,
    owner: message.Owner,
    module,
    tags: message.Tags,
    spawn: {
      slot: 0,
      timestamp: meta.timestamp ?? Date.now(),
      'block-height': meta.blockHeight ?? 0,
      message,
      ...(meta.hashChain ? { 'hash-chain': meta.hashChain } : {}),
    },
  };
  return { message, meta, spawn };
}

function slotParam(q: Record<string, unknown>, name: string, dflt: number): number {
  // `from+Integer=3` (the ao CU's typed form) arrives as 'from Integer': '+' is a space in a query.
  const v = q[`${name}+Integer`] ?? q[`${name} Integer`] ?? q[name];
  if (v === undefined || v === '') return dflt;
  if (typeof v !== 'string' || !/^[0-9]{1,15}$/.test(v)) throw bad(`'${name}' must be a slot number, got '${String(v)}'`);
  return Number(v);
}

/** Whether a request asks for AOS-2 JSON (`accept` in the query, or the Accept header). */
export function wantsAos2(req: FastifyRequest): boolean {
  const q = req.query as Record<string, unknown>;
  return q.accept === AOS2 || String(req.headers.accept ?? '').includes(AOS2);
}

/** A page of a process's schedule as AOS-2 JSON: slots `from`..`to` (inclusive), at most `limit` (1000). */
export function aos2Schedule(p: ServedProcess, q: Record<string, unknown>, server: string): Record<string, unknown> {
  const from = slotParam(q, 'from', 0);
  const to = Math.min(slotParam(q, 'to', p.nextSlot - 1), p.nextSlot - 1);
  const limit = Math.max(1, Math.min(slotParam(q, 'limit', 100), 1000));
  const picked = [];
  let s = from;
  for (; s <= to && picked.length < limit; s++) if (p.assignments[s]) picked.push(p.assignments[s]);
  const more = s <= to;
  const last = p.assignments[p.nextSlot - 1];
  return aos2Page(p.id, picked, more, server, (slot) => p.hashChainOf(slot), { timestamp: Math.max(Date.now(), last?.timestamp ?? 0), blockHeight: last?.['block-height'] ?? 0 });
}

export interface HyperbeamRouteOptions {
  registry: ProcessRegistry;
  signer: ItemSigner;
  /** Addresses whose checkpoints `POST /state` loads, besides this node's own. */
  checkpointAuthorities: string[];
  /** Longest wait for a state (ms). */
  resultTimeout: number;
  withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T>;
  info(): Record<string, unknown>;
}

export function registerHyperbeamRoutes(app: FastifyInstance, o: HyperbeamRouteOptions): void {
  const { registry, signer } = o;
  const trusted = new Set([signer.address, ...o.checkpointAuthorities]);

  app.get('/status', async () => ({ status: 'ok', ...o.info() }));

  app.post('/snapshot/:process', async (req, reply) => {
    const p = registry.get((req.params as { process: string }).process);
    const st = await o.withTimeout(p.state(), o.resultTimeout, `process ${p.id}`);
    const a = p.assignments[st.slot];
    const item = await makeCheckpoint(signer, {
      record: { id: p.id, owner: p.def.owner, module: p.def.module, tags: p.def.tags, spawn: p.assignments[0] },
      slot: st.slot,
      message: a.message.Id,
      timestamp: a.timestamp,
      blockHeight: a['block-height'],
      hashChain: p.hashChainOf(st.slot),
      state: st.bytes,
    });
    for (const [k, v] of Object.entries(checkpointHeaders(item, signer))) void reply.header(k, v);
    return reply.header('content-type', ANS104).header('codec-device', 'ans104@1.0').send(item.raw);
  });

  // The server's --body-limit, as everywhere: the body is buffered before its signature is checked.
  app.post('/state', async (req, reply) => {
    if (!Buffer.isBuffer(req.body) || req.body.length === 0) {
      throw bad('expected a checkpoint: its ANS-104 item (Content-Type: application/ans104), or its gzipped data with its tags as headers');
    }
    const ctype = String(req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    const cp = await readCheckpoint(ctype, req.headers, req.body, trusted);
    const { process: p, outcome } = await registry.restore(cp);
    return reply.status(200).send({ process: p.id, slot: cp.slot, checkpoint: cp.id, outcome, 'next-slot': p.nextSlot });
  });

  app.get('/~scheduler@1.0/schedule', async (req) => {
    const q = req.query as Record<string, unknown>;
    const target = q.target ?? q['process-id'];
    if (typeof target !== 'string' || !ID.test(target)) throw bad("missing query parameter 'target' (a process ID)");
    if (!wantsAos2(req)) throw new AoError(`this SU answers schedules as ${AOS2} only (add accept=${AOS2})`, { status: 406, code: 'ERR_NOT_ACCEPTABLE' });
    return aos2Schedule(registry.get(target), q, signer.address);
  });
}
