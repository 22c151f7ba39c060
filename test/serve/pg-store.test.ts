/**
 * `hb-runtimes serve --store postgres://…` on a real PostgreSQL (scripts/postgres.js): one node
 * restarted on the database; two nodes on one database, where any node answers, a message sent to
 * either is scheduled once, a dead node's process is carried on by the other with the same
 * results, and a node that lost a lease can no longer write.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Client } from 'pg';
import { startServer, type ServeHandle } from '../../src/serve/app';
import { addressOf } from '../../src/serve/signing';
import { sharedFixture } from '../helpers/fixtures';
import { describePg, startTempPostgres } from '../helpers/postgres';
import { tempStore, testWallet, uploadModule, EVAL_TAGS, postItem, signedItem, spawnLuaProcess } from '../helpers/serve';
import { compute, COUNTER, hbProcess } from '../helpers/hyperbeam';

const evalTags = EVAL_TAGS;
const item = signedItem;
const post = postItem;

async function outputs(url: string, pid: string): Promise<string[]> {
  const r = (await fetch(`${url}/results/${pid}?limit=100`).then((x) => x.json())) as { edges: Array<{ node: { Output: { data: string } } }> };
  return r.edges.slice(1).map((e) => e.node.Output.data);
}
const spawnLua = (url: string) => spawnLuaProcess(url, sharedFixture('hyper-aos.lua'));
async function evalOn(url: string, pid: string, token: string) {
  const m = await item(`S = (S or "") .. "${token}"; return S`, evalTags, pid);
  const r = await post(url, m.raw);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return { ...m, ...r };
}

let pg: Awaited<ReturnType<typeof startTempPostgres>>;
const servers: ServeHandle[] = [];
async function node(url: string, nodeId: string, leaseMs = 1000, more: { retainSlots?: number; checkpointAuthorities?: string[] } = {}): Promise<ServeHandle> {
  const s = await startServer({ store: url, nodeId, leaseMs, workers: 0, snapshotInterval: 2, ...more });
  servers.push(s);
  return s;
}
/** A node that stops as if killed: it neither renews nor releases its leases, nor writes again. */
async function crash(s: ServeHandle): Promise<void> {
  await s.registry.leases!.stop(false);
  await s.close();
}

describePg('serve on PostgreSQL', () => {
  beforeAll(async () => {
    pg = await startTempPostgres();
  });
  afterAll(async () => {
    for (const s of servers) await s.close().catch(() => undefined);
    await pg?.stop();
  });

  it('keeps modules, processes, schedules, results and snapshots in the database: a restarted node goes on', async () => {
    const db = await pg.database();
    let a = await node(db, 'a');
    expect(await fetch(`${a.url}/`).then((r) => r.json())).toMatchObject({ store: 'postgres', node: 'a' });
    const pid = await spawnLua(a.url);
    for (const t of ['1', '2', '3', '4', '5']) await evalOn(a.url, pid, t);
    expect(await outputs(a.url, pid)).toEqual(['1', '12', '123', '1234', '12345']);
    const address = a.signer.address;
    await a.close();
    const c = new Client({ connectionString: db });
    await c.connect();
    const counts = await c.query(
      `SELECT (SELECT count(*) FROM hb_assignments WHERE pid = $1)::int AS a, (SELECT count(*) FROM hb_results WHERE pid = $1)::int AS r,
              (SELECT slot FROM hb_snapshots WHERE pid = $1)::int AS s, (SELECT count(*) FROM hb_modules)::int AS m`,
      [pid],
    );
    await c.end();
    // Slots 1..5 assigned (slot 0 is the spawn, in hb_processes), 6 results, snapshots every 2
    // slots (1, 3, 5): the one kept is the latest.
    expect(counts.rows[0]).toEqual({ a: 5, r: 6, s: 5, m: 1 });
    a = await node(db, 'a2');
    // The fleet's wallet is in the database: the same address on every node and after restarts.
    expect(a.signer.address).toBe(address);
    expect(await outputs(a.url, pid)).toEqual(['1', '12', '123', '1234', '12345']);
    await evalOn(a.url, pid, '6');
    expect((await outputs(a.url, pid)).at(-1)).toBe('123456');
    await a.close();
  });

  it('two nodes: any node schedules and answers; a message sent to both is scheduled once', async () => {
    const db = await pg.database();
    const a = await node(db, 'a');
    const b = await node(db, 'b');
    const pid = await spawnLua(a.url);
    const first = await evalOn(b.url, pid, 'x');
    // b forwarded it to a, which holds the process.
    expect(first.headers.get('x-hb-served-by')).toBe(a.url);
    expect(first.body).toMatchObject({ id: first.id, slot: 1 });
    const again = await post(a.url, first.raw);
    expect(again.body).toMatchObject({ id: first.id, message: 'Already scheduled', slot: 1 });
    const viaB = await fetch(`${b.url}/result/${first.id}?process-id=${pid}`).then((r) => r.json());
    const viaA = await fetch(`${a.url}/result/${first.id}?process-id=${pid}`).then((r) => r.json());
    expect(viaB).toEqual(viaA);
    expect((viaA as { Output: { data: string } }).Output.data).toBe('x');
    expect(await outputs(b.url, pid)).toEqual(['x']);
    const sched = (await fetch(`${b.url}/${pid}`).then((r) => r.json())) as { edges: unknown[] };
    expect(sched.edges).toHaveLength(2);
    const state = await fetch(`${b.url}/state/${pid}`);
    expect(state.status).toBe(200);
    expect(state.headers.get('slot')).toBe('1');
    const dry = await fetch(`${b.url}/dry-run?process-id=${pid}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ Owner: addressOf(testWallet('client').jwk.n), Tags: [{ name: 'Action', value: 'Eval' }], Data: 'return S' }),
    }).then((r) => r.json());
    expect((dry as { Output: { data: string } }).Output.data).toBe('x');
    // The gateway on b knows a process a spawned (its tags come from the database).
    const gql = await fetch(`${b.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'query ($ids: [ID!]!) { transactions(ids: $ids) { edges { node { id } } } }', variables: { ids: [pid] } }),
    }).then((r) => r.json());
    expect((gql as { data: { transactions: { edges: Array<{ node: { id: string } }> } } }).data.transactions.edges.map((e) => e.node.id)).toEqual([pid]);
    expect(a.registry.processes.has(pid)).toBe(true);
    expect(b.registry.processes.has(pid)).toBe(false);
    await a.close();
    await b.close();
  });

  it("carries on a dead node's process from its snapshot and log, with the same results", async () => {
    const db = await pg.database();
    const a = await node(db, 'a');
    const b = await node(db, 'b');
    const pid = await spawnLua(a.url);
    for (const t of ['1', '2', '3']) await evalOn(a.url, pid, t);
    await crash(a);
    const t0 = Date.now();
    // Within a lease (1 s) plus one renewal tick, b takes the process over on its own.
    while (!b.registry.processes.has(pid)) {
      expect(Date.now() - t0).toBeLessThan(10_000);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(await outputs(b.url, pid)).toEqual(["1", "12", "123"]);
    await evalOn(b.url, pid, '4');
    expect(await outputs(b.url, pid)).toEqual(['1', '12', '123', '1234']);
    expect(b.registry.get(pid).mismatches).toBe(0);
    await b.close();
  });

  it('loads a HyperBEAM checkpoint into the database (POST /state): any node answers, another carries it on after a crash', async () => {
    const db = await pg.database();
    const source = await startServer({ store: tempStore(), jwk: testWallet('server').jwk, workers: 0 });
    servers.push(source);
    const moduleId = await uploadModule(source.url, Buffer.from(COUNTER), 'application/lua');
    const { pid, slots } = hbProcess(moduleId, 'pg', ['a', 'b', 'c', 'd']);
    for (const s of slots.slice(0, 3)) expect((await compute(source.url, pid, s)).status).toBe(200);
    const checkpoint = Buffer.from(await (await fetch(`${source.url}/snapshot/${pid}`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })).arrayBuffer());
    const trust = { checkpointAuthorities: [source.signer.address] };
    const a = await node(db, 'a', 1000, trust);
    const b = await node(db, 'b', 1000, trust);
    expect(await uploadModule(a.url, Buffer.from(COUNTER), 'application/lua')).toBe(moduleId);
    const loaded = await fetch(`${b.url}/state`, { method: 'POST', headers: { 'content-type': 'application/ans104' }, body: checkpoint }).then((r) => r.json());
    expect(loaded).toMatchObject({ process: pid, slot: 2, outcome: 'restored', 'next-slot': 3 });
    expect(b.registry.processes.has(pid)).toBe(true);
    // Sent to a, computed by b (which holds it), equal to the source's own result.
    const viaA = await compute(a.url, pid, slots[3]);
    expect(viaA.headers.get('x-hb-served-by')).toBe(b.url);
    expect(viaA.body).toEqual((await compute(source.url, pid, slots[3])).body);
    await crash(b);
    const t0 = Date.now();
    while (!a.registry.processes.has(pid)) {
      expect(Date.now() - t0).toBeLessThan(10_000);
      await new Promise((r) => setTimeout(r, 50));
    }
    const p = a.registry.get(pid);
    expect([p.restoredAt, p.nextSlot, p.hashChainOf(3), p.mismatches]).toEqual([2, 4, slots[3].chain, 0]);
    const next = await compute(a.url, pid, slots[4]);
    expect(next.body).toEqual((await compute(source.url, pid, slots[4])).body);
    expect(next.body.Output).toEqual({ data: '5:d' });
    await a.close();
  });

  it('a node whose lease was taken cannot schedule (409 ERR_LEASE_LOST) and drops the process', async () => {
    const db = await pg.database();
    const a = await node(db, 'a', 60_000);
    const b = await node(db, 'b', 60_000);
    const pid = await spawnLua(a.url);
    await evalOn(a.url, pid, '1');
    const stale = a.registry.get(pid);
    // a stalls past its lease (as in a long GC pause): the lease lapses and b takes it.
    const c = new Client({ connectionString: db });
    await c.connect();
    await c.query("UPDATE hb_leases SET expires_at = now() - interval '1 second' WHERE pid = $1", [pid]);
    await c.end();
    await evalOn(b.url, pid, '2');
    expect(b.registry.processes.has(pid)).toBe(true);
    const m = await item('S = S .. "stale"', evalTags, pid);
    await expect(stale.assign({ Id: m.id, Owner: 'o', From: 'o', Target: pid, Anchor: '', Data: 'x', Tags: [] })).rejects.toMatchObject({
      status: 409,
      code: 'ERR_LEASE_LOST',
    });
    await a.registry.leases!.tick({ takeover: async () => undefined, lost: (id) => void a.registry.drop(id) });
    expect(a.registry.processes.has(pid)).toBe(false);
    // a now forwards to b.
    const third = await evalOn(a.url, pid, '3');
    expect(third.headers.get('x-hb-served-by')).toBe(b.url);
    expect(await outputs(a.url, pid)).toEqual(['1', '12', '123']);
    await a.close();
    await b.close();
  });

  it('compacts the schedule and results in the database behind snapshots', async () => {
    const db = await pg.database();
    const a = await node(db, 'a', 1000, { retainSlots: 4 });
    const pid = await spawnLua(a.url);
    const sent = [];
    for (let i = 1; i <= 12; i++) sent.push(await evalOn(a.url, pid, String(i % 10)));
    await a.registry.get(pid).whenComputed(12);
    // The snapshot (and compaction) after a slot runs after its result is answered.
    await a.registry.get(pid).exclusively(async () => undefined);
    const c = new Client({ connectionString: db });
    await c.connect();
    const rows = (await c.query('SELECT slot::int, body FROM hb_assignments WHERE pid = $1 ORDER BY slot', [pid])).rows as Array<{ slot: number; body: string }>;
    const results = (await c.query('SELECT slot::int FROM hb_results WHERE pid = $1 ORDER BY slot', [pid])).rows.map((r: { slot: number }) => r.slot);
    await c.end();
    const upTo = a.registry.get(pid).compactedUpTo;
    expect(upTo).toBeGreaterThanOrEqual(6);
    expect(rows.filter((r) => JSON.parse(r.body).compacted === true).map((r) => r.slot)).toEqual(Array.from({ length: upTo }, (_, i) => i + 1));
    expect(JSON.parse(rows[0].body)).toEqual({ slot: 1, timestamp: expect.any(Number), 'block-height': 1, id: sent[0].id, compacted: true });
    expect(results[0]).toBe(0);
    expect(results.slice(1)).toEqual(Array.from({ length: 12 - upTo }, (_, i) => upTo + 1 + i));
    expect((await fetch(`${a.url}/result/${sent[0].id}?process-id=${pid}`)).status).toBe(410);
    await a.close();
    // Another node carries on from the compacted store.
    const b = await node(db, 'b');
    expect((await evalOn(b.url, pid, 'z')).headers.get('x-hb-served-by')).toBeNull();
    expect((await outputs(b.url, pid)).at(-1)).toBe('1234567890' + '12z');
    await b.close();
  });
});
