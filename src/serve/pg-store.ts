/**
 * The PostgreSQL store (`--store postgres://…`, the `pg` driver): several `serve` nodes on one
 * database. Tables (created on first use, under an advisory lock so that nodes starting together
 * do not race):
 *
 * | table | what |
 * | --- | --- |
 * | `hb_modules` | module bytes, tags, signed item |
 * | `hb_processes` | process records (spawn item and assignment) |
 * | `hb_assignments` | the schedule: `(pid, slot)` and `(pid, message_id)` unique; `body` is a stub once compacted |
 * | `hb_results` | results by `(pid, slot)` |
 * | `hb_snapshots` | each process's latest snapshot |
 * | `hb_leases` | which node owns which process, until when, with a fencing epoch (leases.ts) |
 * | `hb_nodes` | the nodes, their URLs and last heartbeat |
 * | `hb_wallet` | the fleet's signing key, shared by every node unless `--wallet` is given |
 *
 * JSON is kept as `text`, not `jsonb`: the bytes a node answers are the bytes it stored. An
 * assignment is written only under the writer's lease: the insert locks the lease row (`FOR
 * SHARE`) and checks node and epoch, so a node that lost its lease can write nothing, and a node
 * taking over waits for an insert in flight before it reads the schedule.
 */
import { Pool, type PoolClient } from 'pg';
import { AoError } from '../errors';
import type { Assignment, LegacyResult } from './engine';
import type { Jwk } from './signing';
import type { CompactedAssignment, ModuleRecord, ProcessLog, ProcessRecord, StoredAssignment, Store } from './store';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS hb_modules (id text PRIMARY KEY, owner text NOT NULL, tags text NOT NULL, kind text NOT NULL, bytes bytea NOT NULL, item bytea);
CREATE TABLE IF NOT EXISTS hb_processes (id text PRIMARY KEY, record text NOT NULL);
CREATE TABLE IF NOT EXISTS hb_assignments (pid text NOT NULL, slot bigint NOT NULL, message_id text NOT NULL, body text NOT NULL, PRIMARY KEY (pid, slot), UNIQUE (pid, message_id));
CREATE TABLE IF NOT EXISTS hb_results (pid text NOT NULL, slot bigint NOT NULL, result text NOT NULL, PRIMARY KEY (pid, slot));
CREATE TABLE IF NOT EXISTS hb_snapshots (pid text PRIMARY KEY, slot bigint NOT NULL, bytes bytea NOT NULL);
CREATE TABLE IF NOT EXISTS hb_leases (pid text PRIMARY KEY, node text NOT NULL, url text NOT NULL, epoch bigint NOT NULL, expires_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS hb_nodes (id text PRIMARY KEY, url text NOT NULL, seen timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS hb_wallet (id int PRIMARY KEY, jwk text NOT NULL);
`;

/** A lease as the store sees it: who may write a process's schedule. */
export interface Fence {
  node: string;
  epoch(pid: string): number | undefined;
}

export function leaseLost(pid: string, why: string): AoError {
  return new AoError(`process ${pid}: this node no longer holds its lease (${why})`, { status: 409, code: 'ERR_LEASE_LOST' });
}

class PgProcessLog implements ProcessLog {
  private readonly pending = new Set<Promise<void>>();

  constructor(
    private readonly db: Pool,
    private readonly pid: string,
    private readonly fence: Fence,
  ) {}

  async readAssignments(): Promise<StoredAssignment[]> {
    const r = await this.db.query('SELECT body FROM hb_assignments WHERE pid = $1 AND slot > 0 ORDER BY slot', [this.pid]);
    return r.rows.map((row: { body: string }) => JSON.parse(row.body) as StoredAssignment);
  }

  async readResults(): Promise<Array<{ slot: number; result: LegacyResult }>> {
    const r = await this.db.query('SELECT slot, result FROM hb_results WHERE pid = $1 ORDER BY slot', [this.pid]);
    return r.rows.map((row: { slot: string; result: string }) => ({ slot: Number(row.slot), result: JSON.parse(row.result) as LegacyResult }));
  }

  async appendAssignment(a: Assignment): Promise<void> {
    const epoch = this.fence.epoch(this.pid);
    if (epoch === undefined) throw leaseLost(this.pid, 'not held');
    let r;
    try {
      r = await this.db.query(
        `INSERT INTO hb_assignments (pid, slot, message_id, body)
         SELECT $1, $2, $3, $4 FROM hb_leases WHERE pid = $1 AND node = $5 AND epoch = $6 FOR SHARE`,
        [this.pid, a.slot, a.message.Id, JSON.stringify(a), this.fence.node, epoch],
      );
    } catch (e) {
      if ((e as { code?: string }).code === '23505') throw leaseLost(this.pid, `slot ${a.slot} or message ${a.message.Id} was written by another node`);
      throw e;
    }
    if (r.rowCount !== 1) throw leaseLost(this.pid, `epoch ${epoch} is over`);
  }

  appendResult(slot: number, result: LegacyResult): Promise<void> {
    const q = this.db.query('INSERT INTO hb_results (pid, slot, result) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [this.pid, slot, JSON.stringify(result)]).then(() => undefined);
    this.pending.add(q);
    void q.catch(() => undefined).finally(() => this.pending.delete(q));
    return q;
  }

  /** Waits for every result insert in flight (each commits on its own). */
  async syncResults(): Promise<void> {
    await Promise.all([...this.pending]);
  }

  async readSnapshot(): Promise<{ slot: number; bytes: Uint8Array } | undefined> {
    const r = await this.db.query('SELECT slot, bytes FROM hb_snapshots WHERE pid = $1', [this.pid]);
    if (r.rowCount === 0) return undefined;
    return { slot: Number(r.rows[0].slot), bytes: r.rows[0].bytes as Buffer };
  }

  async writeSnapshot(slot: number, bytes: Uint8Array): Promise<void> {
    // Never replace a later snapshot (a node that lost its lease may still be finishing one).
    await this.db.query(
      `INSERT INTO hb_snapshots (pid, slot, bytes) VALUES ($1, $2, $3)
       ON CONFLICT (pid) DO UPDATE SET slot = EXCLUDED.slot, bytes = EXCLUDED.bytes WHERE hb_snapshots.slot < EXCLUDED.slot`,
      [this.pid, slot, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)],
    );
  }

  async compact(upTo: number, stubs: CompactedAssignment[]): Promise<void> {
    await transaction(this.db, async (c) => {
      for (const s of stubs) await c.query('UPDATE hb_assignments SET body = $3 WHERE pid = $1 AND slot = $2', [this.pid, s.slot, JSON.stringify(s)]);
      await c.query('DELETE FROM hb_results WHERE pid = $1 AND slot BETWEEN 1 AND $2', [this.pid, upTo]);
    });
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.pending]);
  }
}

export async function transaction<T>(db: Pool, f: (c: PoolClient) => Promise<T>): Promise<T> {
  const c = await db.connect();
  try {
    await c.query('BEGIN');
    const out = await f(c);
    await c.query('COMMIT');
    return out;
  } catch (e) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw e;
  } finally {
    c.release();
  }
}

export class PgStore implements Store {
  readonly kind = 'postgres' as const;
  readonly where: string;
  readonly db: Pool;
  /** Set by the lease manager before any process log is opened. */
  fence?: Fence;

  private constructor(url: string) {
    const u = new URL(url);
    if (u.password) u.password = '***';
    this.where = u.toString();
    this.db = new Pool({ connectionString: url, max: 8 });
    // An idle client's error (the server restarting) must not crash the node; queries fail instead.
    this.db.on('error', () => undefined);
  }

  static async open(url: string): Promise<PgStore> {
    const s = new PgStore(url);
    try {
      await transaction(s.db, async (c) => {
        await c.query("SELECT pg_advisory_xact_lock(hashtext('hb-runtimes schema'))");
        await c.query(SCHEMA);
      });
    } catch (e) {
      await s.db.end().catch(() => undefined);
      throw new AoError(`cannot open the PostgreSQL store ${s.where}: ${(e as Error).message}`, { status: 500, code: 'ERR_STORE' });
    }
    return s;
  }

  async listModules(): Promise<ModuleRecord[]> {
    const r = await this.db.query('SELECT id FROM hb_modules');
    const out: ModuleRecord[] = [];
    for (const row of r.rows as Array<{ id: string }>) out.push((await this.getModule(row.id))!);
    return out;
  }

  async getModule(id: string): Promise<ModuleRecord | undefined> {
    const r = await this.db.query('SELECT id, owner, tags, kind, bytes, item FROM hb_modules WHERE id = $1', [id]);
    if (r.rowCount === 0) return undefined;
    const row = r.rows[0] as { id: string; owner: string; tags: string; kind: ModuleRecord['kind']; bytes: Buffer; item: Buffer | null };
    return { id: row.id, owner: row.owner, tags: JSON.parse(row.tags), kind: row.kind, bytes: row.bytes, ...(row.item ? { item: row.item } : {}) };
  }

  async putModule(m: ModuleRecord): Promise<void> {
    await this.db.query('INSERT INTO hb_modules (id, owner, tags, kind, bytes, item) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING', [
      m.id,
      m.owner,
      JSON.stringify(m.tags),
      m.kind,
      Buffer.from(m.bytes.buffer, m.bytes.byteOffset, m.bytes.byteLength),
      m.item ? Buffer.from(m.item) : null,
    ]);
  }

  async listProcesses(): Promise<ProcessRecord[]> {
    const r = await this.db.query('SELECT record FROM hb_processes');
    return r.rows.map((row: { record: string }) => JSON.parse(row.record) as ProcessRecord);
  }

  async getProcess(id: string): Promise<ProcessRecord | undefined> {
    const r = await this.db.query('SELECT record FROM hb_processes WHERE id = $1', [id]);
    return r.rowCount === 0 ? undefined : (JSON.parse(r.rows[0].record) as ProcessRecord);
  }

  async putProcess(p: ProcessRecord): Promise<boolean> {
    const r = await this.db.query('INSERT INTO hb_processes (id, record) VALUES ($1, $2) ON CONFLICT DO NOTHING', [p.id, JSON.stringify(p)]);
    return r.rowCount === 1;
  }

  processLog(id: string): ProcessLog {
    if (!this.fence) throw new Error('PgStore: no lease manager');
    return new PgProcessLog(this.db, id, this.fence);
  }

  /** The fleet's wallet: the one in the database, else `jwk` stored as it (first node wins). */
  async sharedWallet(generate: () => Jwk): Promise<Jwk> {
    await this.db.query('INSERT INTO hb_wallet (id, jwk) VALUES (1, $1) ON CONFLICT DO NOTHING', [JSON.stringify(generate())]);
    const r = await this.db.query('SELECT jwk FROM hb_wallet WHERE id = 1');
    return JSON.parse(r.rows[0].jwk) as Jwk;
  }

  async close(): Promise<void> {
    await this.db.end();
  }
}
