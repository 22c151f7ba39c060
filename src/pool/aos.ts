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
}

/** A compute's outcome, with the new checkpoint when this message moved it. */
export interface ComputeReply {
  outcome: Outcome;
  checkpoint?: Uint8Array;
}

export class AosProcess {
  private log: Assignment[];
  private checkpoint: Uint8Array | undefined;
  private readonly every: number;

  private constructor(
    readonly def: ProcessDefinition,
    private engine: LocalEngine,
    opts: AosOpenOptions,
  ) {
    this.checkpoint = opts.checkpoint;
    this.log = [...(opts.log ?? [])];
    this.every = opts.checkpointEvery ?? DEFAULT_CHECKPOINT_EVERY;
    if (!Number.isSafeInteger(this.every) || this.every < 1) throw new AoError('checkpointEvery must be a positive integer', { status: 400, code: 'ERR_INVALID_ARG' });
  }

  /** The process at `checkpoint` (or fresh) with `log` replayed. */
  static async open(def: ProcessDefinition, opts: AosOpenOptions = {}): Promise<AosProcess> {
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

  async compute(a: Assignment): Promise<ComputeReply> {
    const outcome = await this.engine.run(a);
    if (outcome.failure) {
      if (this.engine.keepsStateOnFailure) return { outcome };
      await this.rollBack();
      if (this.log.length === 0) return { outcome };
      // The state rebuilt is a checkpoint: a run of failing messages replays nothing again.
      this.checkpoint = this.engine.snapshot();
      this.log = [];
      return { outcome, checkpoint: this.checkpoint };
    }
    this.log.push(a);
    if (this.log.length < this.every) return { outcome };
    this.checkpoint = this.engine.snapshot();
    this.log = [];
    return { outcome, checkpoint: this.checkpoint };
  }

  /** Back to the state before the failed message: the checkpoint with the log replayed. */
  private async rollBack(): Promise<void> {
    this.engine.dispose();
    this.engine = await AosProcess.build(this.def, this.checkpoint, this.log);
  }

  dryRun(a: Assignment): Promise<LegacyResult> {
    return this.engine.dryRun(a);
  }

  snapshot(): Uint8Array {
    return this.engine.snapshot();
  }

  dispose(): void {
    this.engine.dispose();
  }
}
