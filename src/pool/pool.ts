/**
 * A pool of worker threads computing AO processes off the calling thread. Each process is pinned
 * to one worker (the one with the fewest processes when it is opened) and its operations run in
 * order, one at a time; a worker serves its ready processes round-robin, one request at a time,
 * so a process waits at most one request of each other process on its worker.
 *
 * Failures cost one message: the worker rolls the process back itself (aos.ts); when a worker dies
 * (exit, crash) or stays busy past a request's deadline plus `grace` (the watchdog stops it), it
 * is replaced, the request in flight answers an `Error` result flagged `Nondeterministic`, and
 * its processes are opened again from the pool's copy of their checkpoint and log. Processes
 * waiting on a worker that has been busy with one request for `migrateAfter` ms move to another.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { AoError } from '../errors';
import type { ProcessDefinition } from '../serve/engine';
import { limitsFor, type ComputeLimits } from '../serve/limits';
import { DEFAULT_CHECKPOINT_EVERY } from './aos';
import { PoolProcess, type Scheduler } from './process-handle';
import { deserializeError, type Reply, type Request } from './protocol';
import { Watchdog } from './watchdog';

/** Extra time an open may take, for compiling its module (AOS: seconds on a loaded 2-core VM). */
const OPEN_ALLOWANCE_MS = 60_000;

/** Requests sent ahead to a worker (so it never waits for the pool between two of them). */
const DEPTH = 2;

/** The worker's entry: the compiled file beside this one (from src/ under a TS runner: lib/). */
const WORKER_FILE = __filename.endsWith('.ts') ? path.resolve(__dirname, '..', '..', 'lib', 'pool', 'worker.js') : path.join(__dirname, 'worker.js');

export interface PoolOptions {
  /** Worker threads (default: `os.availableParallelism()`). */
  workers?: number;
  /** Messages between two checkpoints of a process (default 64). */
  checkpointEvery?: number;
  /** Milliseconds past a request's deadline before the watchdog stops its worker (default 1000). */
  grace?: number;
  /** Milliseconds a worker may be busy with one request before the processes waiting on it move (default 250). */
  migrateAfter?: number;
  /** Limits for processes whose tags set none (serve/limits.ts). */
  limits?: ComputeLimits;
  /**
   * A directory for compiled WASM code, so a replacement worker loads a module instead of
   * compiling it again (default: none). Its files are loaded as trusted machine code: give a
   * directory only this program writes (serve uses `<store>/compiled`).
   */
  cacheDir?: string;
}

export interface ProcessOptions {
  /** Start from this state (bytes of `snapshot()`). */
  snapshot?: Uint8Array;
}

export interface PoolStats {
  workers: number;
  processes: number;
  /** Workers replaced after they died or were stopped. */
  restarts: number;
  /** Workers the watchdog stopped (a request past its deadline). */
  stopped: number;
  /** Processes moved off a busy worker. */
  migrations: number;
}

interface Call {
  id: number;
  req: Request;
  proc?: PoolProcess;
  sentAt: number;
  /** Milliseconds the request may run before the watchdog stops the worker. */
  limit: number;
}

class WorkerSlot {
  worker!: Worker;
  /** Requests sent and not answered yet, in order; the first is the one running. */
  readonly inflight: Call[] = [];
  /** When the first of `inflight` started (its send, or the answer before it). */
  headSince = 0;
  readonly ready: PoolProcess[] = [];
  /** Requests for processes that left this worker (their `close`), sent before the ready ones. */
  readonly admin: Request[] = [];
  readonly processes = new Set<PoolProcess>();
  /** Shared with the worker: requests with an ID up to this one are withdrawn (not started). */
  cancel = new Int32Array(new SharedArrayBuffer(4));
  constructor(readonly index: number) {}
}

function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

export class Pool implements Scheduler {
  private readonly slots: WorkerSlot[];
  private readonly procs = new Map<string, PoolProcess>();
  private readonly watchdog: Watchdog;
  private readonly checkpointEvery: number;
  private readonly grace: number;
  private readonly migrateAfter: number;
  private readonly limits: ComputeLimits | undefined;
  private readonly cacheDir: string | undefined;
  private nextId = 1;
  private closed = false;
  private readonly counters = { restarts: 0, stopped: 0, migrations: 0 };

  constructor(opts: PoolOptions = {}) {
    const n = opts.workers ?? os.availableParallelism();
    if (!Number.isSafeInteger(n) || n < 1) throw new AoError('createPool: workers must be a positive integer', { status: 400, code: 'ERR_INVALID_ARG' });
    this.checkpointEvery = opts.checkpointEvery ?? DEFAULT_CHECKPOINT_EVERY;
    this.grace = opts.grace ?? 1000;
    this.migrateAfter = opts.migrateAfter ?? 250;
    this.limits = opts.limits;
    this.cacheDir = opts.cacheDir;
    this.slots = Array.from({ length: n }, (_, i) => new WorkerSlot(i));
    for (const s of this.slots) this.startWorker(s);
    this.watchdog = new Watchdog(50, () => this.inspect());
  }

  get size(): number {
    return this.slots.length;
  }

  stats(): PoolStats {
    return { workers: this.slots.length, processes: this.procs.size, ...this.counters };
  }

  /** Opens an AO process on a worker; resolves once it is ready (rejects for a module that cannot run). */
  async process(def: ProcessDefinition, opts: ProcessOptions = {}): Promise<PoolProcess> {
    if (this.closed) throw new AoError('the pool is closed', { status: 400, code: 'ERR_CLOSED' });
    if (this.procs.has(def.id)) throw new AoError(`process ${def.id} is already open in this pool`, { status: 409, code: 'ERR_CONFLICT' });
    const full: ProcessDefinition = { ...def, limits: def.limits ?? this.limits, ...(this.cacheDir && !def.cacheDir ? { cacheDir: this.cacheDir } : {}) };
    limitsFor(full); // bad limits fail here, not on the worker
    const p = new PoolProcess(full, this, this.checkpointEvery, opts.snapshot);
    const h = hash(def.id);
    const slot = [...this.slots].sort((a, b) => a.processes.size - b.processes.size || ((h + a.index) % this.slots.length) - ((h + b.index) % this.slots.length))[0];
    p.worker = slot.index;
    slot.processes.add(p);
    this.procs.set(def.id, p);
    await p.open();
    return p;
  }

  /** Stops every worker; waiting operations reject. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.watchdog.stop();
    const err = new AoError('the pool is closed', { status: 503, code: 'ERR_CLOSED' });
    for (const p of this.procs.values()) p.abandon(err);
    for (const s of this.slots) s.inflight.length = 0;
    // A thread inside native code ends only when that code returns (bounded by its own limits):
    // do not wait for it longer than a moment.
    const ended = Promise.all(this.slots.map((s) => s.worker.terminate().catch(() => undefined)));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([ended, new Promise((r) => (timer = setTimeout(r, 2_000).unref()))]);
    clearTimeout(timer);
  }

  // ------------------------------------------------------------------ scheduling (Scheduler)

  wake(p: PoolProcess): void {
    if (this.closed || p.queued || p.inFlight) return;
    const slot = this.slots[p.worker];
    p.queued = true;
    slot.ready.push(p);
    this.dispatch(slot);
  }

  forget(p: PoolProcess): void {
    this.procs.delete(p.id);
    const slot = this.slots[p.worker];
    slot.processes.delete(p);
    const i = slot.ready.indexOf(p);
    if (i >= 0) slot.ready.splice(i, 1);
    p.queued = false;
  }

  private dispatch(slot: WorkerSlot): void {
    while (slot.inflight.length < DEPTH && !this.closed) {
      const admin = slot.admin.shift();
      if (admin) return this.send(slot, admin);
      const p = slot.ready.shift();
      if (!p) return;
      p.queued = false;
      const req = p.nextRequest();
      if (req) return this.send(slot, req, p);
    }
  }

  private send(slot: WorkerSlot, req: Request, proc?: PoolProcess): void {
    const id = this.nextId++;
    if (slot.inflight.length === 0) slot.headSince = Date.now();
    slot.inflight.push({ id, req, proc, sentAt: Date.now(), limit: this.limitOf(req, proc) });
    if (proc) proc.inFlight = true;
    slot.worker.postMessage({ id, req });
  }

  /**
   * How long a request may run: its process's time limit plus grace; opening gets one time limit
   * per replayed message (and one for instantiation) plus `OPEN_ALLOWANCE_MS` for compiling the
   * module, which no time limit bounds (compile limits do).
   */
  private limitOf(req: Request, proc?: PoolProcess): number {
    if (!proc) return Infinity;
    const t = limitsFor(proc.def).timeLimit;
    if (t === Infinity) return Infinity;
    return req.op === 'open' ? t * (req.log.length + 1) + OPEN_ALLOWANCE_MS + this.grace : t + this.grace;
  }

  private onReply(slot: WorkerSlot, reply: Reply): void {
    const call = slot.inflight[0];
    if (!call || call.id !== reply.id) return;
    slot.inflight.shift();
    slot.headSince = Date.now();
    const p = call.proc;
    if (p) {
      p.inFlight = false;
      if (reply.ok) p.settled(call.req, reply.value);
      else p.failed(call.req, deserializeError(reply.error));
      if (p.hasWork()) this.wake(p);
    }
    this.dispatch(slot);
  }

  // ------------------------------------------------------------------ worker lifecycle

  private startWorker(slot: WorkerSlot): void {
    slot.cancel = new Int32Array(new SharedArrayBuffer(4));
    const w = new Worker(WORKER_FILE, { workerData: { cancel: slot.cancel } });
    slot.worker = w;
    w.on('message', (r: Reply) => {
      if (slot.worker === w) this.onReply(slot, r);
    });
    w.on('error', (e: Error) => {
      if (slot.worker === w) this.replace(slot, `the worker computing it crashed: ${e.message}`, false);
    });
    w.on('exit', (code: number) => {
      if (slot.worker === w) this.replace(slot, `the worker computing it exited (code ${code})`, false);
    });
  }

  /** The worker of `slot` is gone (or must go): a new one takes its processes. */
  private replace(slot: WorkerSlot, reason: string, timedOut: boolean): void {
    if (this.closed) return;
    const old = slot.worker;
    const [call, ...waiting] = slot.inflight.splice(0);
    this.counters.restarts++;
    // Not awaited: a thread still inside native code ends when that code returns (its own limits).
    void old.terminate().catch(() => undefined);
    this.startWorker(slot);
    slot.admin.length = 0;
    for (const p of slot.processes) p.needsOpen = true;
    if (call?.proc) {
      call.proc.inFlight = false;
      call.proc.lost(call.req, reason, timedOut);
      if (call.proc.hasWork()) this.wake(call.proc);
    }
    // Requests sent behind the one running had not started: they run again on the new worker.
    for (const c of waiting) {
      if (!c.proc) continue;
      c.proc.inFlight = false;
      c.proc.requeue(c.req);
      this.wake(c.proc);
    }
    this.dispatch(slot);
  }

  /** The watchdog's round: stop workers past a deadline, move processes off busy workers. */
  private inspect(): void {
    if (this.closed) return;
    const now = Date.now();
    for (const slot of this.slots) {
      const call = slot.inflight[0];
      if (!call) continue;
      const elapsed = now - slot.headSince;
      if (elapsed > call.limit) {
        this.counters.stopped++;
        this.replace(slot, `time limit: the worker computing it was stopped after ${elapsed} ms (deadline ${call.limit - this.grace} ms + ${this.grace} ms grace)`, true);
      } else if (elapsed > this.migrateAfter && (slot.ready.length > 0 || slot.inflight.length > 1)) {
        this.migrateFrom(slot, now);
      }
    }
  }

  private migrateFrom(slot: WorkerSlot, now: number): void {
    const free = this.slots.filter((s) => s !== slot && (s.inflight.length === 0 || now - s.headSince <= this.migrateAfter));
    if (free.length === 0) return;
    // Requests sent behind the one running have not started: withdraw them (the worker skips them).
    const withdrawn: PoolProcess[] = [];
    for (let i = slot.inflight.length - 1; i >= 1; i--) {
      const c = slot.inflight[i];
      if (!c.proc) continue;
      Atomics.store(slot.cancel, 0, Math.max(Atomics.load(slot.cancel, 0), c.id));
      slot.inflight.splice(i, 1);
      c.proc.inFlight = false;
      withdrawn.push(c.proc);
    }
    for (const p of [...withdrawn.reverse(), ...slot.ready.splice(0)]) {
      const to = free.reduce((a, b) => (b.ready.length + b.inflight.length < a.ready.length + a.inflight.length ? b : a));
      slot.processes.delete(p);
      if (!p.needsOpen) slot.admin.push({ op: 'close', pid: p.id });
      p.needsOpen = true;
      p.worker = to.index;
      p.queued = false;
      to.processes.add(p);
      this.counters.migrations++;
      this.wake(p);
    }
  }

  // ------------------------------------------------------------------ testing aids

  /**
   * Testing aid: the worker of process `pid` dies inside the next message it computes, or the
   * next snapshot it takes (`exit`: `process.exit(3)`; `throw`: an uncaught exception; `hang`:
   * an endless JS loop, which only the watchdog ends).
   */
  crashWorkerOf(pid: string, how: 'exit' | 'throw' | 'hang' = 'exit'): void {
    const p = this.procs.get(pid);
    if (!p) throw new AoError(`process ${pid} is not in this pool`, { status: 404, code: 'ERR_NOT_FOUND' });
    this.slots[p.worker].worker.postMessage({ id: 0, req: { op: 'crash', how } });
  }

  /** The worker index process `pid` is pinned to. */
  workerOf(pid: string): number {
    const p = this.procs.get(pid);
    if (!p) throw new AoError(`process ${pid} is not in this pool`, { status: 404, code: 'ERR_NOT_FOUND' });
    return p.worker;
  }
}

/** A pool of `workers` threads (default: one per core) computing AO processes. */
export function createPool(opts: PoolOptions = {}): Pool {
  return new Pool(opts);
}
