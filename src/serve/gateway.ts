/**
 * The few gateway GraphQL queries AO clients make, answered from the server's own modules and
 * processes (no GraphQL engine: the queries are recognised by their fields and variables).
 *
 * - `transactions(ids: [...])` (aoconnect's spawn checks its module's tags this way; the
 *   scheduler utilities read a process's `Scheduler` tag): one edge per known ID.
 * - `transactions(owners: [$owner], tags: [{name: "Type", values: ["Scheduler-Location"]}])`:
 *   the server's own Scheduler-Location record (`Url`, `Time-To-Live`) when `$owner` is the
 *   server's address, else no edges.
 */

import type { Tag } from './signing';
import type { ProcessRegistry } from './registry';

export interface GraphqlRequest {
  query?: unknown;
  variables?: unknown;
}

interface Node {
  id: string;
  anchor: string;
  signature: string;
  recipient: string;
  owner: { address: string; key: string };
  tags: Tag[];
  data: { size: string; type: string | null };
  block: { id: string; height: number; timestamp: number } | null;
  fee: { winston: string; ar: string };
  quantity: { winston: string; ar: string };
  parent: null;
}

function node(id: string, owner: string, tags: Tag[], size: number, recipient = ''): Node {
  return {
    id,
    anchor: '',
    signature: '',
    recipient,
    owner: { address: owner, key: '' },
    tags,
    data: { size: String(size), type: tags.find((t) => t.name.toLowerCase() === 'content-type')?.value ?? null },
    block: null,
    fee: { winston: '0', ar: '0.000000000000' },
    quantity: { winston: '0', ar: '0.000000000000' },
    parent: null,
  };
}

function stringList(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : typeof v === 'string' ? [v] : [];
}

/** IDs written literally in the query: `ids: ["a", "b"]`. */
function literalIds(query: string): string[] {
  const m = /ids\s*:\s*\[([^\]]*)\]/.exec(query);
  if (!m) return [];
  return [...m[1].matchAll(/"([^"]+)"/g)].map((x) => x[1]);
}

/** The transaction IDs a query asks for (variables and literals). */
export function graphqlIds(req: GraphqlRequest): string[] {
  const query = typeof req.query === 'string' ? req.query : '';
  const vars = (typeof req.variables === 'object' && req.variables !== null ? req.variables : {}) as Record<string, unknown>;
  return [...stringList(vars.transactionIds), ...stringList(vars.ids), ...literalIds(query)];
}

export interface SchedulerLocation {
  address: string;
  url: string;
  ttl: number;
}

/** The GraphQL answer (`{data: {transactions: {pageInfo, edges}}}`), or undefined for a query it does not know. */
export function answerGraphql(req: GraphqlRequest, registry: ProcessRegistry, scheduler: SchedulerLocation): unknown {
  const query = typeof req.query === 'string' ? req.query : '';
  const vars = (typeof req.variables === 'object' && req.variables !== null ? req.variables : {}) as Record<string, unknown>;
  if (!/\btransactions\s*\(/.test(query)) return undefined;
  const nodes: Node[] = [];
  if (query.includes('Scheduler-Location')) {
    const owners = [...stringList(vars.owner), ...stringList(vars.owners)];
    if (owners.length === 0 || owners.includes(scheduler.address)) {
      nodes.push(
        node(`scheduler-location-${scheduler.address}`.slice(0, 43), scheduler.address, [
          { name: 'Data-Protocol', value: 'ao' },
          { name: 'Variant', value: 'ao.TN.1' },
          { name: 'Type', value: 'Scheduler-Location' },
          { name: 'Url', value: scheduler.url },
          { name: 'Time-To-Live', value: String(scheduler.ttl) },
        ], 0),
      );
    }
  } else {
    for (const id of graphqlIds(req)) {
      const mod = registry.modules.get(id);
      if (mod) {
        nodes.push(node(id, mod.owner, mod.tags, mod.bytes.length));
        continue;
      }
      const p = registry.recordOf(id);
      if (p) {
        nodes.push(node(id, p.owner, p.tags, 0));
        continue;
      }
      for (const proc of registry.processes.values()) {
        const slot = proc.slotOf(id);
        if (slot === undefined) continue;
        const m = proc.assignments[slot].message;
        nodes.push(node(id, m.Owner, m.Tags, Buffer.byteLength(m.Data), m.Target));
        break;
      }
    }
  }
  return {
    data: {
      transactions: {
        pageInfo: { hasNextPage: false },
        edges: nodes.map((n) => ({ cursor: n.id, node: n })),
      },
    },
  };
}
