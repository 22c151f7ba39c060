/**
 * One process a `serve` node holds: its schedule (slot 0 is its spawn item), a serial compute
 * loop, its results by slot, and a snapshot every `snapshotInterval` slots, all kept in a
 * `ProcessLog` (store.ts).
 *
 * Durability rule: a message is acknowledged only after its assignment is durable. Results are
 * appended without waiting; before a snapshot of slot S is written, they are made durable, so a
 * snapshot never covers a result that could be lost. On a restart (or a takeover by another node)
 * the process is rebuilt from its latest snapshot and the results, and the assignments after the
 * snapshot are computed again (deterministically: timestamps and heights come from the log).
 *
 * Eviction (`evict`) persists a snapshot and drops the engine; the next message, dry run or state
 * read restores it from that snapshot. Compaction (store.ts) follows snapshots.
 */
import { AoError } from '../errors';
import type { Assignment, Engine, LegacyMessage, LegacyResult, ProcessDefinition } from './engine';
import { nextHashChain, type AssignmentMeta } from './aos2';
import { isCompacted, stubsOf, type ProcessLog, type StoredAssignment } from './store';

/** Makes the engine of a process (default: local WASM or Lua; serve's delegation replaces it). */
export type EngineFactory = (def: ProcessDefinition, snapshot?: Uint8Array) => Promise<Engine>;

export interface ProcessPolicy {
  snapshotInterval: number;
  /** Slots of history kept behind the latest snapshot (Infinity: keep all). */
  retainSlots: number;
}

function notFound(message: string): AoError {
  return new AoError(message, { status: 404, code: 'ERR_NOT_FOUND' });
}

function conflict(message: string): AoError {
  return new AoError(message, { status: 409, code: 'ERR_CONFLICT' });
}

/** The in-memory form of a compacted assignment. */
function fromStored(a: StoredAssignment): Assignment {
  if (!isCompacted(a)) return a;
  return {
    slot: a.slot,
    timestamp: a.timestamp,
    'block-height': a['block-height'],
    message: { Id: a.id, Owner: '', From: '', Target: '', Anchor: '', Data: '', Tags: [] },
    ...(a['hash-chain'] ? { 'hash-chain': a['hash-chain'] } : {}),
    compacted: true,
  };
}

export class ServedProcess {
  readonly assignments: Assignment[] = [];
  readonly results: Array<LegacyResult | undefined> = [];
  private readonly bySlotId = new Map<string, number>();
  /** Hash chains by slot, as far as computed (hashChainOf). */
  private readonly chains: string[] = [];
  /** Slots whose assignment is durable. */
  durable = 0;
  /** Last computed slot. */
  computed = -1;
  snapshotSlot = -1;
  /** Highest slot whose history was compacted (0: none; slot 0 is never compacted). */
  compactedUpTo = 0;
  /** The slot of the checkpoint this process was restored from (POST /state); -1: none. */
  restoredAt = -1;
  mismatches = 0;
  /** Size of the last snapshot written or restored (what eviction accounts for); -1 unknown. */
  stateBytes = -1;
  /** Date.now() of the last message, dry run or read that needed the engine. */
  lastUsed = Date.now();
  /** Set when the store failed under this process: it computes nothing more. */
  fault?: Error;
  private closing = false;
  private engine?: Engine;
  private pumping?: Promise<void>;
  private waiters: Array<{ slot: number; resolve: () => void }> = [];
  private exclusive: Promise<unknown> = Promise.resolve();
  private busy = 0;

  constructor(
    readonly def: ProcessDefinition,
    private readonly log: ProcessLog,
    private readonly policy: ProcessPolicy,
    private readonly engineFactory: EngineFactory,
  ) {}

  get id(): string {
    return this.def.id;
  }

  get nextSlot(): number {
    return this.assignments.length;
  }

  /** Whether its engine is in memory (false once evicted). */
  get resident(): boolean {
    return this.engine !== undefined;
  }

  /** Assigned slots not computed yet. */
  get queueLength(): number {
    return this.durable - 1 - this.computed;
  }

  get idle(): boolean {
    return this.busy === 0 && this.queueLength === 0 && !this.pumping;
  }

  slotOf(messageId: string): number | undefined {
    return this.bySlotId.get(messageId);
  }

  /**
   * The hash chain after `slot` (aos2.ts): the one its scheduler gave, else sha256 of the chain
   * before it and its message ID. Slots before a restored checkpoint are not known here; the
   * checkpoint's slot carries its chain.
   */
  hashChainOf(slot: number): string {
    for (let s = this.chains.length; s <= slot; s++) {
      const a = this.assignments[s];
      this.chains[s] = a?.['hash-chain'] ?? (a ? nextHashChain(s > 0 ? this.chains[s - 1] : '', a.message.Id) : '');
    }
    return this.chains[slot];
  }

  private place(a: Assignment): void {
    this.assignments[a.slot] = a;
    this.bySlotId.set(a.message.Id, a.slot);
  }

  /**
   * Schedules a message at the next slot; resolves once its assignment is durable. `meta` is what
   * a HyperBEAM scheduler assigned it (timestamp, block height, hash chain): kept as given, so
   * that the message computes as it does on HyperBEAM. Without it, the server's clock (never
   * decreasing) and the slot number stand in.
   */
  async assign(message: LegacyMessage, at?: number, raw?: Uint8Array, meta: AssignmentMeta = {}): Promise<Assignment> {
    const slot = this.nextSlot;
    if (at !== undefined && at !== slot) throw conflict(`slot ${at} cannot be assigned: the next slot of process ${this.id} is ${slot}`);
    const prev = this.assignments[slot - 1];
    const a: Assignment = {
      slot,
      timestamp: meta.timestamp ?? Math.max(Date.now(), prev?.timestamp ?? 0),
      'block-height': meta.blockHeight ?? slot,
      message,
      ...(raw ? { raw: Buffer.from(raw).toString('base64url') } : {}),
      ...(meta.hashChain ? { 'hash-chain': meta.hashChain } : {}),
    };
    if (this.fault) throw this.faultError();
    this.place(a);
    this.lastUsed = Date.now();
    try {
      await this.log.appendAssignment(a);
    } catch (e) {
      // The slot is taken in memory but not in the store: accept nothing more for this process
      // (a restart, or the node that holds it now, reloads it from the store).
      this.fault ??= e as Error;
      throw e instanceof AoError ? e : this.faultError();
    }
    this.durable = Math.max(this.durable, slot + 1);
    void this.pump();
    return a;
  }

  /** Restores the in-memory schedule and results from the store. */
  async load(spawn: Assignment): Promise<void> {
    this.place(spawn);
    for (const a of await this.log.readAssignments()) {
      // A stub after a gap starts the history of a process restored from a checkpoint.
      if (isCompacted(a) && this.assignments[a.slot - 1] === undefined) this.restoredAt = a.slot;
      this.place(fromStored(a));
      if (isCompacted(a)) this.compactedUpTo = Math.max(this.compactedUpTo, a.slot);
    }
    this.durable = this.assignments.length;
    for (const { slot, result } of await this.log.readResults()) {
      if (this.results[slot] === undefined) this.results[slot] = result;
    }
  }

  /** Starts the engine, from the stored snapshot when it is usable, and computes what is left. */
  async start(): Promise<void> {
    await this.exclusively(() => this.revive());
    void this.pump();
  }

  private async revive(): Promise<void> {
    if (this.engine) return;
    const stored = await this.log.readSnapshot();
    let snap: { slot: number; bytes: Uint8Array } | undefined;
    if (stored) {
      // Usable only when every result it covers (and was not compacted) is in the store.
      const from = this.compactedUpTo > 0 ? this.compactedUpTo + 1 : 0;
      const covered = stored.slot < this.durable && this.results.slice(from, stored.slot + 1).filter((r) => r !== undefined).length === stored.slot + 1 - from;
      if (covered && stored.slot >= this.computed) snap = stored;
    }
    if (!snap && this.computed >= 0 && this.snapshotSlot < this.computed) {
      throw new AoError(`process ${this.id}: no usable snapshot to restore from`, { status: 500, code: 'ERR_STORE' });
    }
    this.engine = await this.engineFactory(this.def, snap?.bytes);
    if (snap) this.stateBytes = snap.bytes.byteLength;
    this.computed = snap?.slot ?? -1;
    this.snapshotSlot = this.computed;
    this.wake();
  }

  private wake(): void {
    this.waiters = this.waiters.filter((w) => (w.slot <= this.computed ? (w.resolve(), false) : true));
  }

  /** Computes every durable slot not computed yet, in order. */
  pump(): Promise<void> {
    if (this.pumping || this.closing) return this.pumping ?? Promise.resolve();
    this.pumping = (async () => {
      // Yield first: with nothing to compute the body would finish (and clear `pumping`) before
      // `pumping` is assigned, leaving a settled promise there that stops every later pump.
      await null;
      try {
        while (this.computed + 1 < this.durable && !this.closing && !this.fault) {
          await this.exclusively(async () => {
            await this.revive();
            await this.computeNext();
          });
        }
      } catch (e) {
        // Only the store can fail here (engines turn compute failures into Error results):
        // stop computing this process, and say why on every later wait.
        this.fault = e as Error;
        process.stderr.write(`hb-runtimes serve: process ${this.id} stopped: ${this.fault.message}\n`);
        for (const w of this.waiters.splice(0)) w.resolve();
        return;
      } finally {
        this.pumping = undefined;
      }
      if (this.computed + 1 < this.durable && !this.closing) void this.pump();
    })();
    return this.pumping;
  }

  /** Runs `f` alone: computes, dry runs, state reads and eviction never overlap. */
  exclusively<T>(f: () => Promise<T>): Promise<T> {
    const g = async () => {
      this.busy++;
      try {
        return await f();
      } finally {
        this.busy--;
      }
    };
    const run = this.exclusive.then(g, g);
    this.exclusive = run.catch(() => undefined);
    return run;
  }

  private async computeNext(): Promise<void> {
    const slot = this.computed + 1;
    const known = this.results[slot];
    this.lastUsed = Date.now();
    // A message the deadline (or a lost worker) failed is not computed again: its recorded
    // outcome stands and the state stays the one before it, as it was the first time.
    const result = known?.Nondeterministic === true ? known : await this.engine!.compute(this.assignments[slot]);
    if (known === undefined) {
      this.results[slot] = result;
      // Not awaited (results can be recomputed); a failure is fatal for this process.
      this.log.appendResult(slot, result).catch((e: Error) => {
        this.fault ??= e;
      });
    } else if (JSON.stringify(known) !== JSON.stringify(result)) {
      this.mismatches++;
    }
    this.computed = slot;
    this.wake();
    if (slot - this.snapshotSlot >= this.policy.snapshotInterval) await this.persistSnapshot();
  }

  private async persistSnapshot(): Promise<void> {
    const slot = this.computed;
    await this.log.syncResults();
    const state = await this.engine!.snapshot();
    await this.log.writeSnapshot(slot, state);
    this.snapshotSlot = slot;
    this.stateBytes = state.byteLength;
    await this.compact();
  }

  /** Compacts the history behind the snapshot (store.ts), in batches of a quarter of what is kept. */
  private async compact(): Promise<void> {
    const retain = this.policy.retainSlots;
    if (!Number.isFinite(retain)) return;
    const upTo = this.snapshotSlot - retain;
    if (upTo - this.compactedUpTo < Math.max(1, Math.floor(retain / 4))) return;
    const stubs = stubsOf(this.assignments, this.compactedUpTo + 1, upTo);
    await this.log.compact(upTo, stubs);
    for (const s of stubs) this.assignments[s.slot] = fromStored(s);
    for (let s = this.compactedUpTo + 1; s <= upTo; s++) this.results[s] = undefined;
    this.compactedUpTo = upTo;
  }

  /** Persists a snapshot of the current state if the stored one is older (before eviction, or to measure). */
  async checkpoint(): Promise<void> {
    await this.exclusively(async () => {
      if (this.engine && (this.computed > this.snapshotSlot || this.stateBytes < 0)) await this.persistSnapshot();
    });
  }

  /** Drops the engine (after a checkpoint); false when the process is busy. */
  async evict(): Promise<boolean> {
    if (!this.idle || !this.engine) return false;
    return this.exclusively(async () => {
      if (!this.engine || this.queueLength > 0 || this.closing) return false;
      if (this.computed > this.snapshotSlot || this.stateBytes < 0) await this.persistSnapshot();
      const engine = this.engine;
      this.engine = undefined;
      await engine.dispose();
      return true;
    });
  }

  /** Resolves once `slot` is computed. */
  whenComputed(slot: number): Promise<void> {
    if (this.computed >= slot) return Promise.resolve();
    if (this.fault) return Promise.reject(this.faultError());
    return new Promise<void>((resolve) => this.waiters.push({ slot, resolve })).then(() => {
      if (this.computed < slot && this.fault) throw this.faultError();
    });
  }

  private faultError(): AoError {
    return new AoError(`process ${this.id} stopped computing: ${this.fault?.message}`, { status: 500, code: 'ERR_STORE' });
  }

  /** 410 for a slot whose history compaction dropped. */
  compactedError(slot: number): AoError {
    if (slot <= this.restoredAt) {
      return new AoError(`slot ${slot} of process ${this.id} precedes the checkpoint (slot ${this.restoredAt}) it was restored from: its history is not here`, {
        status: 410,
        code: 'ERR_COMPACTED',
      });
    }
    return new AoError(`slot ${slot} of process ${this.id} was compacted (history is kept for ${this.policy.retainSlots} slots behind the latest snapshot)`, {
      status: 410,
      code: 'ERR_COMPACTED',
    });
  }

  async resultOf(slot: number): Promise<LegacyResult> {
    if (slot < 0 || slot >= this.nextSlot) throw notFound(`process ${this.id} has no slot ${slot}`);
    if (slot <= this.compactedUpTo && slot > 0) throw this.compactedError(slot);
    await this.whenComputed(slot);
    const r = this.results[slot];
    // Slots at or before a checkpoint this process was restored from have no result here.
    if (r === undefined) throw this.compactedError(slot);
    return r;
  }

  /** A dry run on the state after every slot assigned so far. */
  async dryRun(message: LegacyMessage): Promise<LegacyResult> {
    const last = this.nextSlot - 1;
    this.lastUsed = Date.now();
    await this.whenComputed(last);
    return this.exclusively(async () => {
      await this.revive();
      const prev = this.assignments[this.computed];
      // Heights never decrease (process@1.0 checks): a HyperBEAM scheduler's are block heights.
      const height = Math.max(this.computed + 1, prev?.['block-height'] ?? 0);
      return this.engine!.dryRun({ slot: this.computed + 1, timestamp: Math.max(Date.now(), prev?.timestamp ?? 0), 'block-height': height, message });
    });
  }

  /** The current state as bytes, with the slot it is at. */
  async state(): Promise<{ slot: number; bytes: Uint8Array }> {
    await this.whenComputed(this.nextSlot - 1);
    return this.exclusively(async () => {
      await this.revive();
      return { slot: this.computed, bytes: await this.engine!.snapshot() };
    });
  }

  /** Stops after the slot being computed; what is left is computed again on the next start. */
  async close(): Promise<void> {
    this.closing = true;
    await this.pumping;
    await this.exclusive;
    await this.log.close();
    await this.engine?.dispose();
    this.engine = undefined;
  }
}
