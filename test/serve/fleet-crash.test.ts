/**
 * Three `hb-runtimes serve` nodes (child processes) on one PostgreSQL, and `kill -9` of one of
 * them during a burst of signed messages sent through the unmodified @permaweb/aoconnect client.
 * Each of three hyper-aos processes is spawned on a different node; messages go to any node
 * (most are forwarded to the owner). A message that fails (its node died, or its process is
 * moving) is sent again as a new message through another node, as a client would.
 *
 * Then: every acknowledged message is in its process's schedule exactly once, its token is in the
 * process state exactly once, and every slot's result equals the same schedule computed by a
 * single local node.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { connect, createDataItemSigner } from '@permaweb/aoconnect';
import { Client } from 'pg';
import { startServer } from '../../src/serve/app';
import { sharedFixture } from '../helpers/fixtures';
import { describePg, startTempPostgres } from '../helpers/postgres';
import { startChildServer, tempStore, testWallet, uploadModule, type ChildServer } from '../helpers/serve';

type Ao = ReturnType<typeof connect>;
const signer = () => createDataItemSigner(testWallet('client').jwk);
const LEASE_MS = 1500;
const PER_PROCESS = 12;

let pg: Awaited<ReturnType<typeof startTempPostgres>>;
let db: string;
const nodes: ChildServer[] = [];
const alive = new Set<number>();

async function results(url: string, pid: string): Promise<Array<{ cursor: string; node: { Output?: { data?: string }; Error?: string } }>> {
  const r = await fetch(`${url}/results/${pid}?limit=1000`);
  expect(r.status).toBe(200);
  return ((await r.json()) as { edges: never[] }).edges;
}

describePg('three serve nodes on one PostgreSQL, one killed during a burst', () => {
  beforeAll(async () => {
    pg = await startTempPostgres();
    db = await pg.database();
    for (let i = 0; i < 3; i++) {
      nodes.push(await startChildServer(['--store', db, '--node-id', `node-${i}`, '--lease-ms', String(LEASE_MS), '--workers', '0']));
      alive.add(i);
    }
  });
  afterAll(async () => {
    for (const n of nodes) n.child.kill('SIGKILL');
    await pg?.stop();
  });

  it('computes every acknowledged message exactly once, with the results of a local run', async () => {
    const ao: Ao[] = nodes.map((n) => connect({ MODE: 'legacy', MU_URL: n.url, CU_URL: n.url, GATEWAY_URL: n.url }));
    const info = (await fetch(`${nodes[0].url}/`).then((r) => r.json())) as { address: string };
    const module = await uploadModule(nodes[0].url, sharedFixture('hyper-aos.lua'), 'application/lua');
    const pids: string[] = [];
    for (let i = 0; i < 3; i++) pids.push(await ao[i].spawn({ module, scheduler: info.address, signer: signer() }));

    const acked = new Map<string, string>(); // message ID -> token
    let ackCount = 0;
    let killed = false;
    let retries = 0;
    const chain = async (p: number) => {
      for (let k = 0; k < PER_PROCESS; k++) {
        for (let attempt = 0; ; attempt++) {
          expect(attempt).toBeLessThan(40);
          const live = [...alive];
          const via = live[(p + k + attempt + 1) % live.length];
          const token = `${p}.${k}.${attempt};`;
          try {
            const id = await ao[via].message({ process: pids[p], signer: signer(), tags: [{ name: 'Action', value: 'Eval' }], data: `S = (S or "") .. "${token}"; return S` });
            acked.set(id, token);
            ackCount++;
            break;
          } catch {
            retries++;
            await new Promise((r) => setTimeout(r, 200));
          }
        }
        if (ackCount >= 10 && !killed) {
          killed = true;
          // node-0 holds pids[0] (it spawned it), and forwards for the others.
          alive.delete(0);
          nodes[0].child.kill('SIGKILL');
        }
      }
    };
    await Promise.all([0, 1, 2].map(chain));
    expect(killed).toBe(true);
    expect(acked.size).toBe(3 * PER_PROCESS);
    // Some sends failed while node-0's process was moving (or through node-0 itself).
    expect(retries).toBeGreaterThan(0);

    const survivor = nodes[1].url;
    const c = new Client({ connectionString: db });
    await c.connect();
    const local = await startServer({ store: tempStore(), workers: 0 });
    try {
      await uploadModule(local.url, sharedFixture('hyper-aos.lua'), 'application/lua');
      for (const [p, pid] of pids.entries()) {
        const remote = await results(survivor, pid);
        const rows = (await c.query('SELECT message_id, body FROM hb_assignments WHERE pid = $1 ORDER BY slot', [pid])).rows as Array<{ message_id: string; body: string }>;
        expect(remote).toHaveLength(rows.length + 1);
        // Exactly once in the schedule.
        const scheduled = rows.map((r) => r.message_id);
        for (const [id, token] of acked) if (token.startsWith(`${p}.`)) expect(scheduled.filter((s) => s === id)).toHaveLength(1);
        // Exactly once in the state: the last result is the state string after every slot.
        const state = remote.at(-1)!.node.Output!.data!;
        const tokens = state.split(';').filter(Boolean).map((t) => `${t};`);
        expect(new Set(tokens).size).toBe(tokens.length);
        for (const token of acked.values()) if (token.startsWith(`${p}.`)) expect(tokens.filter((t) => t === token)).toHaveLength(1);
        // The same schedule on one local node gives the same results, slot by slot.
        const spawnRec = JSON.parse((await c.query('SELECT record FROM hb_processes WHERE id = $1', [pid])).rows[0].record) as { spawn: { raw: string } };
        const post = (raw: string) => fetch(local.url, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: Buffer.from(raw, 'base64url') });
        expect((await post(spawnRec.spawn.raw)).status).toBe(200);
        for (const r of rows) expect((await post((JSON.parse(r.body) as { raw: string }).raw)).status).toBe(200);
        const mine = await results(local.url, pid);
        expect(mine.map((e) => e.node)).toEqual(remote.map((e) => e.node));
      }
    } finally {
      await local.close();
      await c.end();
    }
    // The processes node-0 held are now held by the survivors.
    const holders = await Promise.all([1, 2].map((i) => fetch(`${nodes[i].url}/`).then((r) => r.json() as Promise<{ processes: number; 'recompute-mismatches': number }>)));
    expect(holders[0].processes + holders[1].processes).toBe(3);
    // What the takeover recomputed equals what node-0 had stored.
    expect(holders.map((h) => h['recompute-mismatches'])).toEqual([0, 0]);
  });
});
