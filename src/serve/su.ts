/**
 * The read routes of the legacy Scheduler Unit interface, over the server's own schedule:
 *
 * - `GET /timestamp` → `{timestamp, block_height}`
 * - `GET /:process?from&to&limit` → a page of the process's assignments in slot order,
 *   `{page_info: {has_next_page}, edges: [{cursor, node: {message, assignment}}]}`; `from` and
 *   `to` are timestamps in milliseconds (inclusive), `limit` at most 1000 (default 100);
 * - `GET /:message?process-id=` → `{message, assignment}` of one scheduled message;
 * - `GET /:process?…&accept=application/aos-2` (or that Accept header): HyperBEAM's AOS-2 page,
 *   `from`/`to` being slots (hyperbeam.ts).
 *
 * `message` is the item as the SU shows it (`id`, `owner: {address, key}`, `data`, `tags`,
 * `target`, `anchor`); `assignment` carries the tags `Process`, `Epoch` (0), `Nonce` (the slot),
 * `Block-Height`, `Timestamp` and `Message`. Assignments are not signed items here: their `id` is
 * derived from the process and slot, and `owner` is the server.
 */

import type { FastifyInstance, FastifyRequest } from 'fastify';
import { sha256Id } from '../ao/cache';
import { AoError } from '../errors';
import type { Assignment } from './engine';
import type { ProcessRegistry, ServedProcess } from './registry';
import { aos2Schedule, wantsAos2 } from './hyperbeam';

const ID = /^[A-Za-z0-9_-]{43}$/;

function bad(message: string): AoError {
  return new AoError(message, { status: 400, code: 'ERR_BAD_REQUEST' });
}

function node(p: ServedProcess, a: Assignment, server: string) {
  const m = a.message;
  return {
    message: { id: m.Id, owner: { address: m.Owner, key: '' }, data: m.Data, tags: m.Tags, target: m.Target, anchor: m.Anchor ?? '' },
    assignment: {
      id: sha256Id(Buffer.from(`${p.id}/${a.slot}`)),
      owner: { address: server, key: '' },
      tags: [
        { name: 'Process', value: p.id },
        { name: 'Epoch', value: '0' },
        { name: 'Nonce', value: String(a.slot) },
        { name: 'Block-Height', value: String(a['block-height']) },
        { name: 'Timestamp', value: String(a.timestamp) },
        { name: 'Message', value: m.Id },
      ],
    },
  };
}

function ms(q: Record<string, unknown>, name: string, dflt: number): number {
  const v = q[name];
  if (v === undefined || v === '' || v === 'undefined') return dflt;
  if (typeof v !== 'string' || !/^[0-9]{1,15}$/.test(v)) throw bad(`'${name}' must be a timestamp in milliseconds`);
  return Number(v);
}

export function registerSuRoutes(app: FastifyInstance, registry: ProcessRegistry, address: () => string): void {
  app.get('/timestamp', async () => ({ timestamp: Date.now(), block_height: 0 }));

  app.get('/:id', async (req: FastifyRequest) => {
    const id = (req.params as { id: string }).id;
    if (!ID.test(id)) throw new AoError(`no route GET /${id}`, { status: 404, code: 'ERR_NOT_FOUND' });
    const q = req.query as Record<string, unknown>;
    const pid = q['process-id'];
    if (typeof pid === 'string' && pid !== id) {
      const p = registry.get(pid);
      const slot = p.slotOf(id);
      if (slot === undefined) throw new AoError(`message ${id} is not scheduled on process ${pid}`, { status: 404, code: 'ERR_NOT_FOUND' });
      return node(p, p.assignments[slot], address());
    }
    const p = registry.get(id);
    // HyperBEAM's form: slots, not timestamps (hyperbeam.ts).
    if (wantsAos2(req)) return aos2Schedule(p, q, address());
    const from = ms(q, 'from', 0);
    const to = ms(q, 'to', Number.MAX_SAFE_INTEGER);
    const limit = Math.min(ms(q, 'limit', 100), 1000);
    const picked = p.assignments.filter((a) => a.timestamp >= from && a.timestamp <= to);
    return {
      page_info: { has_next_page: picked.length > limit },
      edges: picked.slice(0, limit).map((a) => ({ cursor: String(a.timestamp), node: node(p, a, address()) })),
    };
  });
}
