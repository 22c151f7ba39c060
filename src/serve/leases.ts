/**
 * Process ownership across `serve` nodes sharing one PostgreSQL store: a lease row per process
 * (`hb_leases`: node, URL, epoch, expiry). Expiry is the database's clock (`now()`), so node clocks
 * do not matter.
 *
 * - A node owns a process while its lease has not expired; it renews all its leases every
 *   `leaseMs / 3`. A renewal that finds the lease gone (another node took it after it lapsed)
 *   tells the registry to drop the process at once.
 * - Taking a lease is allowed when it is free or lapsed; it bumps the epoch. Every assignment
 *   insert checks node and epoch (pg-store.ts), so writes of a node that lost a lease fail.
 * - Every tick a node also takes up to `takeoverBatch` lapsed leases: a dead node's processes
 *   are carried on, from their last snapshot plus the log, by whichever node gets there first.
 * - On a clean shutdown a node expires its leases, so that others take over at once.
 */
import type { Pool } from 'pg';
import type { Fence } from './pg-store';

export interface Owner {
  node: string;
  url: string;
  live: boolean;
}

export interface LeaseEvents {
  /** A lapsed process this node may now carry on (it holds the lease already). */
  takeover(pid: string): Promise<void>;
  /** A process this node held and no longer does. */
  lost(pid: string): void;
}

export const DEFAULT_LEASE_MS = 10_000;

export class LeaseManager implements Fence {
  private readonly held = new Map<string, number>();
  private timer?: NodeJS.Timeout;
  private ticking?: Promise<void>;
  private stopped = false;

  constructor(
    private readonly db: Pool,
    readonly node: string,
    private url: string,
    readonly leaseMs: number = DEFAULT_LEASE_MS,
    private readonly takeoverBatch = 16,
  ) {}

  /** The URL other nodes forward to (known once the server listens). */
  setUrl(url: string): void {
    this.url = url;
  }

  epoch(pid: string): number | undefined {
    return this.held.get(pid);
  }

  get count(): number {
    return this.held.size;
  }

  heldIds(): string[] {
    return [...this.held.keys()];
  }

  /** Takes the lease of `pid` when it is free, lapsed or already ours; the epoch, or undefined. */
  async acquire(pid: string): Promise<number | undefined> {
    const mine = this.held.get(pid);
    if (mine !== undefined) return mine;
    const r = await this.db.query(
      `INSERT INTO hb_leases (pid, node, url, epoch, expires_at) VALUES ($1, $2, $3, 1, now() + $4 * interval '1 millisecond')
       ON CONFLICT (pid) DO UPDATE SET node = EXCLUDED.node, url = EXCLUDED.url, epoch = hb_leases.epoch + 1, expires_at = EXCLUDED.expires_at
       WHERE hb_leases.expires_at < now()
       RETURNING epoch`,
      [pid, this.node, this.url, this.leaseMs],
    );
    if (r.rowCount !== 1) return undefined;
    const epoch = Number(r.rows[0].epoch);
    this.held.set(pid, epoch);
    return epoch;
  }

  /** Who holds `pid`, if anyone ever did. */
  async owner(pid: string): Promise<Owner | undefined> {
    const r = await this.db.query('SELECT node, url, expires_at > now() AS live FROM hb_leases WHERE pid = $1', [pid]);
    if (r.rowCount === 0) return undefined;
    return r.rows[0] as Owner;
  }

  /** Forgets a lease locally and lets it lapse at once in the database. */
  async release(pid: string): Promise<void> {
    const epoch = this.held.get(pid);
    this.held.delete(pid);
    if (epoch === undefined) return;
    await this.db.query("UPDATE hb_leases SET expires_at = now() - interval '1 millisecond' WHERE pid = $1 AND node = $2 AND epoch = $3", [pid, this.node, epoch]);
  }

  start(events: LeaseEvents): void {
    const period = Math.max(50, Math.floor(this.leaseMs / 3));
    const loop = () => {
      if (this.stopped) return;
      this.ticking = this.tick(events)
        .catch((e: Error) => {
          process.stderr.write(`hb-runtimes serve: lease renewal failed: ${e.message}\n`);
        })
        .finally(() => {
          this.ticking = undefined;
          if (!this.stopped) this.timer = setTimeout(loop, period);
        });
    };
    this.timer = setTimeout(loop, 0);
  }

  /** Renews what this node holds, then takes lapsed leases. */
  async tick(events: LeaseEvents): Promise<void> {
    await this.db.query(
      `INSERT INTO hb_nodes (id, url, seen) VALUES ($1, $2, now()) ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, seen = EXCLUDED.seen`,
      [this.node, this.url],
    );
    if (this.held.size > 0) {
      const pids = [...this.held.keys()];
      const epochs = pids.map((p) => this.held.get(p)!);
      const r = await this.db.query(
        `UPDATE hb_leases l SET expires_at = now() + $2 * interval '1 millisecond'
         FROM unnest($3::text[], $4::bigint[]) AS h(pid, epoch)
         WHERE l.pid = h.pid AND l.node = $1 AND l.epoch = h.epoch
         RETURNING l.pid`,
        [this.node, this.leaseMs, pids, epochs],
      );
      const renewed = new Set((r.rows as Array<{ pid: string }>).map((x) => x.pid));
      for (const pid of pids) {
        if (!renewed.has(pid) && this.held.get(pid) !== undefined) {
          this.held.delete(pid);
          events.lost(pid);
        }
      }
    }
    if (this.stopped) return;
    const lapsed = await this.db.query('SELECT pid FROM hb_leases WHERE expires_at < now() ORDER BY random() LIMIT $1', [this.takeoverBatch]);
    for (const { pid } of lapsed.rows as Array<{ pid: string }>) {
      if (this.stopped) return;
      if ((await this.acquire(pid)) !== undefined) {
        await events.takeover(pid).catch(async (e: Error) => {
          process.stderr.write(`hb-runtimes serve: taking over process ${pid} failed: ${e.message}\n`);
          await this.release(pid).catch(() => undefined);
        });
      }
    }
  }

  /** Stops renewing; with `release`, lets every lease lapse now (a clean shutdown). */
  async stop(release: boolean): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.ticking;
    if (release && this.held.size > 0) {
      await this.db.query("UPDATE hb_leases SET expires_at = now() - interval '1 millisecond' WHERE node = $1", [this.node]);
    }
    this.held.clear();
  }
}
