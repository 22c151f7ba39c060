/**
 * The pool's handle of one AO process: its operations in order (one in flight at a time), and the
 * pool's copy of its checkpoint and of the log of messages computed since, from which it is
 * opened again on a worker (after its worker died or was stopped, or when it moves to another).
 */
import { AoError } from '../errors';
import { failureResult, type Assignment, type LegacyResult, type ProcessDefinition, type Usage } from '../serve/engine';
import type { ComputeReply } from './aos';
import type { Request } from './protocol';

type Pending =
  | { kind: 'open'; resolve: (v: null) => void; reject: (e: Error) => void }
  | { kind: 'compute'; a: Assignment; resolve: (v: LegacyResult) => void; reject: (e: Error) => void }
  | { kind: 'dryRun'; a: Assignment; resolve: (v: LegacyResult) => void; reject: (e: Error) => void }
  | { kind: 'snapshot'; resolve: (v: Uint8Array) => void; reject: (e: Error) => void }
  | { kind: 'close'; resolve: (v: null) => void; reject: (e: Error) => void };

/** What the pool provides a handle: queueing it on its worker. */
export interface Scheduler {
  wake(p: PoolProcess): void;
  forget(p: PoolProcess): void;
}

/** How many times opening (or snapshotting) a process may be cut short by its worker's death before it is given up. */
const MAX_OPEN_LOSSES = 3;

export class PoolProcess {
  readonly id: string;
  /** Index of the worker the process is pinned to. */
  worker = -1;
  /** Not open on its worker: the next request opens it from `checkpoint` + `log`. */
  needsOpen = true;
  /** Queued on its worker's ready list. */
  queued = false;
  inFlight = false;
  checkpoint: Uint8Array | undefined;
  log: Assignment[] = [];
  private pending: Pending[] = [];
  private openLosses = 0;
  private snapshotLosses = 0;
  private closed = false;
  private broken: AoError | undefined;

  constructor(
    readonly def: ProcessDefinition,
    private readonly scheduler: Scheduler,
    private readonly checkpointEvery: number,
    checkpoint?: Uint8Array,
  ) {
    this.id = def.id;
    this.checkpoint = checkpoint;
  }

  private enqueue<T>(make: (resolve: (v: T) => void, reject: (e: Error) => void) => Pending): Promise<T> {
    if (this.broken) return Promise.reject(this.broken);
    if (this.closed) return Promise.reject(new AoError(`process ${this.id} is closed`, { status: 400, code: 'ERR_CLOSED' }));
    return new Promise<T>((resolve, reject) => {
      this.pending.push(make(resolve, reject));
      this.scheduler.wake(this);
    });
  }

  /** Opens the process on its worker (done by the first request anyway; reports a bad module early). */
  open(): Promise<null> {
    return this.enqueue((resolve, reject) => ({ kind: 'open', resolve, reject }));
  }

  /**
   * Computes one message (slots in order; slot 0 is the process's own spawn message). A failed
   * message answers `{Error, Limit?, Nondeterministic?}` and the state stays as before it.
   */
  compute(a: Assignment): Promise<LegacyResult> {
    return this.enqueue((resolve, reject) => ({ kind: 'compute', a, resolve, reject }));
  }

  /** What the last message computed cost (serve/engine.ts `Usage`), as its worker measured it. */
  lastUsage?: Usage;

  /** Evaluates a message on a copy of the current state (nothing changes). */
  dryRun(a: Assignment): Promise<LegacyResult> {
    return this.enqueue((resolve, reject) => ({ kind: 'dryRun', a, resolve, reject }));
  }

  /** The state after the last computed message, as bytes (`pool.process(def, {snapshot})` takes them back). */
  snapshot(): Promise<Uint8Array> {
    return this.enqueue((resolve, reject) => ({ kind: 'snapshot', resolve, reject }));
  }

  /** Ends the process on its worker after the operations already asked for. */
  async close(): Promise<void> {
    if (this.closed || this.broken) return;
    const done = this.enqueue<null>((resolve, reject) => ({ kind: 'close', resolve, reject }));
    this.closed = true;
    await done;
  }

  hasWork(): boolean {
    return this.pending.length > 0;
  }

  /** The next request for the worker, or undefined when nothing needs it. */
  nextRequest(): Request | undefined {
    for (;;) {
      const head = this.pending[0];
      if (!head) return undefined;
      if (head.kind === 'close' && this.needsOpen) {
        this.settleClose();
        return undefined;
      }
      if (this.needsOpen) {
        return { op: 'open', pid: this.id, def: this.def, checkpoint: this.checkpoint, log: this.log, checkpointEvery: this.checkpointEvery };
      }
      if (head.kind === 'open') {
        this.pending.shift();
        head.resolve(null);
        continue;
      }
      if (head.kind === 'compute' || head.kind === 'dryRun') return { op: head.kind, pid: this.id, a: head.a };
      return { op: head.kind, pid: this.id };
    }
  }

  private settleClose(): void {
    const head = this.pending.shift() as Extract<Pending, { kind: 'close' }>;
    for (const p of this.pending.splice(0)) p.reject(new AoError(`process ${this.id} is closed`, { status: 400, code: 'ERR_CLOSED' }));
    this.scheduler.forget(this);
    head.resolve(null);
  }

  /** The worker answered `req`. */
  settled(req: Request, value: unknown): void {
    if (req.op === 'open') {
      this.needsOpen = false;
      this.openLosses = 0;
      const checkpoint = (value as { checkpoint?: Uint8Array } | null)?.checkpoint;
      if (checkpoint) {
        // The state opened (checkpoint + log replayed) is the new checkpoint.
        this.checkpoint = checkpoint;
        this.log = [];
      }
      return;
    }
    if (req.op === 'close') return this.settleClose();
    if (req.op === 'snapshot') this.snapshotLosses = 0;
    const head = this.pending.shift()!;
    if (req.op === 'compute') {
      const reply = value as ComputeReply;
      if (reply.checkpoint) {
        // The state after this message: the worker keeps no copy.
        this.checkpoint = reply.checkpoint;
        this.log = [];
      } else if (!reply.outcome.failure) this.log.push(req.a);
      // A failure the worker cannot undo in place: open it again from the state before it.
      if (reply.reopen) this.needsOpen = true;
      this.lastUsage = reply.outcome.usage;
      (head as Extract<Pending, { kind: 'compute' }>).resolve(reply.outcome.result);
      return;
    }
    (head.resolve as (v: unknown) => void)(value);
  }

  /** The worker reported an error for `req`. */
  failed(req: Request, error: AoError): void {
    // A process that cannot be opened (bad module, replay failing) is given up.
    if (req.op === 'open') return this.giveUp(error);
    this.pending.shift()!.reject(error);
  }

  /**
   * The worker died (or was stopped) while running `req`: a compute or dry run answers an `Error`
   * result flagged nondeterministic (its state is the one before it: the process is opened again
   * from the pool's checkpoint and log).
   */
  lost(req: Request | undefined, reason: string, timedOut: boolean): void {
    this.needsOpen = true;
    if (!req) return;
    if (req.op === 'open') {
      if (++this.openLosses >= MAX_OPEN_LOSSES) this.giveUp(new AoError(`process ${this.id}: its worker died ${this.openLosses} times while opening it (${reason})`, { status: 500, code: 'ERR_WORKER' }));
      return;
    }
    if (req.op === 'close') return this.settleClose();
    if (req.op === 'snapshot' && ++this.snapshotLosses < MAX_OPEN_LOSSES) return; // asked again once reopened
    const head = this.pending.shift()!;
    if (head.kind === 'compute' || head.kind === 'dryRun') {
      if (head.kind === 'compute') this.lastUsage = undefined;
      head.resolve(failureResult({ message: reason, ...(timedOut ? { limit: 'time' as const } : {}), deterministic: false }));
      return;
    }
    head.reject(new AoError(`process ${this.id}: ${reason}`, { status: 500, code: 'ERR_WORKER' }));
  }

  /** A request sent to a worker that died before starting it: it is sent again (after an open). */
  requeue(req: Request): void {
    this.needsOpen = true;
    void req;
  }

  private giveUp(error: AoError): void {
    this.broken = error;
    for (const p of this.pending.splice(0)) p.reject(error);
    this.scheduler.forget(this);
  }

  /** Rejects every waiting operation (the pool is closing). */
  abandon(error: AoError): void {
    this.broken ??= error;
    for (const p of this.pending.splice(0)) p.reject(error);
  }
}
