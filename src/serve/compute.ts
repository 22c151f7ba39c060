/**
 * Where serve computes its processes: on a worker pool (the default, `--workers N`), so the HTTP
 * event loop never runs guest code, or in this thread (`--workers 0`). Either way a process is an
 * `AosProcess` (src/pool/aos.ts): a failed message answers an `Error` result and the state rolls
 * back to before it.
 */
import { AosProcess, createPool, type Pool, type PoolOptions } from '../pool';
import type { PoolProcess } from '../pool/process-handle';
import type { Assignment, Engine, LegacyResult, ProcessDefinition, Usage } from './engine';
import type { ComputeLimits } from './limits';
import type { EngineFactory } from './registry';

class InThreadEngine implements Engine {
  usage?: Usage;
  constructor(private readonly p: AosProcess) {}
  get kind() {
    return this.p.def.kind;
  }
  async compute(a: Assignment): Promise<LegacyResult> {
    const { outcome } = await this.p.compute(a);
    this.usage = outcome.usage;
    return outcome.result;
  }
  dryRun(a: Assignment): Promise<LegacyResult> {
    return this.p.dryRun(a);
  }
  snapshot(): Uint8Array {
    return this.p.snapshot();
  }
  dispose(): void {
    this.p.dispose();
  }
}

class PooledEngine implements Engine {
  constructor(private readonly p: PoolProcess) {}
  get kind() {
    return this.p.def.kind;
  }
  get usage(): Usage | undefined {
    return this.p.lastUsage;
  }
  compute(a: Assignment): Promise<LegacyResult> {
    return this.p.compute(a);
  }
  dryRun(a: Assignment): Promise<LegacyResult> {
    return this.p.dryRun(a);
  }
  snapshot(): Promise<Uint8Array> {
    return this.p.snapshot();
  }
  dispose(): Promise<void> {
    return this.p.close().catch(() => undefined);
  }
}

/** Engines in this thread, with `limits` for processes whose tags set none. */
export function inThreadEngineFactory(limits?: ComputeLimits, checkpointEvery?: number): EngineFactory {
  return async (def: ProcessDefinition, snapshot?: Uint8Array) =>
    new InThreadEngine(await AosProcess.open({ ...def, limits: def.limits ?? limits }, { checkpoint: snapshot, checkpointEvery }));
}

/** Engines on a new worker pool; `close` stops it (after the registry has closed its processes). */
export function pooledEngineFactory(opts: PoolOptions): { factory: EngineFactory; pool: Pool } {
  const pool = createPool(opts);
  const factory: EngineFactory = async (def, snapshot) => new PooledEngine(await pool.process(def, { snapshot }));
  return { factory, pool };
}
