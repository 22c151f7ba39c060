/**
 * One AO process with rollback: an engine (serve/engine.ts: WASM AOS or Lua AOS), a checkpoint
 * (a snapshot of its state) and the log of the messages computed since. A message that fails (a
 * trap, a limit, unreadable output, or for WASM AOS an `Error` response, whose memory the ao CU
 * discards) answers an `Error` result and leaves the state as it was before it: the engine is
 * rebuilt from the checkpoint and the log is replayed. Every `checkpointEvery` messages the
 * checkpoint moves forward and the log is emptied.
 *
 * The same class runs a process in this thread and inside a pool worker; the pool keeps a copy of
 * the checkpoint and the log on its side, so a process whose worker died is rebuilt the same way.
 */
import '../devices'; // registers the built-in devices (a worker loads nothing else)
import { AoError } from '../errors';
import { createEngine, type Assignment, type LegacyResult, type LocalEngine, type Outcome, type ProcessDefinition } from '../serve/engine';

/** Messages between two checkpoints when nothing else is configured. */
export const DEFAULT_CHECKPOINT_EVERY = 64;

export interface AosOpenOptions {
  /** The state to start from (bytes of `snapshot()`); default: a fresh process. */
  checkpoint?: Uint8Array;
  /** Messages computed after `checkpoint`, replayed on open. */
  log?: Assignment[];
  /** Messages between checkpoints (default 64). */
  checkpointEvery?: number;
  /**
   * The caller keeps the checkpoint and the log (the pool, for its workers): this side keeps
   * neither, hands each new checkpoint over, and after a failure that needs a rebuild reports
   * `reopen` instead of rebuilding (the caller opens it again from its copy).
   */
  detached?: boolean;
}

/** A compute's outcome, with the new checkpoint when this message moved it. */
export interface ComputeReply {
  outcome: Outcome;
  checkpoint?: Uint8Array;
  /** (detached) The process is no longer usable here: open it again from checkpoint + log. */
  reopen?: true;
}

export class AosProcess {
  private log: Assignment[];
  private checkpoint: Uint8Array | undefined;
  /** Messages computed since the checkpoint (`log.length` when not detached). */
  private since: number;
  private readonly every: number;
  private readonly detached: boolean;
  private closed = false;

  private constructor(
    readonly def: ProcessDefinition,
    private engine: LocalEngine,
    opts: AosOpenOptions,
  ) {
    this.detached = opts.detached === true;
    this.checkpoint = this.detached ? undefined : opts.checkpoint;
    this.log = this.detached ? [] : [...(opts.log ?? [])];
    this.since = opts.log?.length ?? 0;
    this.every = opts.checkpointEvery ?? DEFAULT_CHECKPOINT_EVERY;
  }

  /** The process at `checkpoint` (or fresh) with `log` replayed. */
  static async open(def: ProcessDefinition, opts: AosOpenOptions = {}): Promise<AosProcess> {
    const every = opts.checkpointEvery ?? DEFAULT_CHECKPOINT_EVERY;
    if (!Number.isSafeInteger(every) || every < 1) throw new AoError('checkpointEvery must be a positive integer', { status: 400, code: 'ERR_INVALID_ARG' });
    const engine = await AosProcess.build(def, opts.checkpoint, opts.log ?? []);
    return new AosProcess(def, engine, opts);
  }

  private static async build(def: ProcessDefinition, checkpoint: Uint8Array | undefined, log: Assignment[]): Promise<LocalEngine> {
    const engine = await createEngine(def, checkpoint);
    for (const a of log) {
      const { failure } = await engine.run(a);
      if (failure) {
        engine.dispose();
        // A message that succeeded once fails on replay only through the wall clock.
        throw new AoError(`process ${def.id}: replaying slot ${a.slot} failed: ${failure.message}`, { status: 500, code: 'ERR_REPLAY' });
      }
    }
    return engine;
  }

  /**
   * (detached) A checkpoint of the state just opened when a log was replayed, so the caller
   * replays nothing again (e.g. after a run of failing messages).
   */
  rebase(): Uint8Array | undefined {
    if (this.since === 0) return undefined;
    this.since = 0;
    return this.engine.snapshot();
  }

  async compute(a: Assignment): Promise<ComputeReply> {
    if (this.closed) throw new AoError(`process ${this.def.id} must be opened again`, { status: 500, code: 'ERR_REOPEN' });
    const outcome = await this.engine.run(a);
    if (outcome.failure) {
      if (this.engine.keepsStateOnFailure) return { outcome };
      if (this.detached) {
        this.dispose();
        return { outcome, reopen: true };
      }
      await this.rollBack();
      if (this.log.length === 0) return { outcome };
      // The state rebuilt is a checkpoint: a run of failing messages replays nothing again.
      this.checkpoint = this.engine.snapshot();
      this.log = [];
      return { outcome, checkpoint: this.checkpoint };
    }
    if (!this.detached) this.log.push(a);
    if (++this.since < this.every) return { outcome };
    const checkpoint = this.engine.snapshot();
    this.since = 0;
    if (!this.detached) {
      this.checkpoint = checkpoint;
      this.log = [];
    }
    return { outcome, checkpoint };
  }

  /** Back to the state before the failed message: the checkpoint with the log replayed. */
  private async rollBack(): Promise<void> {
    this.engine.dispose();
    this.engine = await AosProcess.build(this.def, this.checkpoint, this.log);
    this.since = this.log.length;
  }

  dryRun(a: Assignment): Promise<LegacyResult> {
    return this.engine.dryRun(a);
  }

  snapshot(): Uint8Array {
    return this.engine.snapshot();
  }

  dispose(): void {
    if (this.closed) return;
    this.closed = true;
    this.engine.dispose();
  }
}
