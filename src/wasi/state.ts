/**
 * The state one WASI environment keeps between calls: its options, file descriptors, args and
 * environment, clocks and random stream. Every call family (args.ts, clocks.ts, fd.ts, path.ts,
 * random.ts, proc.ts) works on it; `WasiPreview1` owns one.
 */
import { badArg } from '../errors';
import type { WasmValue } from '../wasm';
import { encodeStrings } from './args';
import { Clockid, Errno, Fdflags, Rights, RIGHTS_DIRECTORY, RIGHTS_FILE, RIGHTS_STDIO } from './errno';
import { fail, u32, type Guest } from './guest';
import { Drbg, seedBytes } from './random';
import { Vfs, VfsDir, VfsFile } from './vfs';

export interface WasiCounters {
  /** Nanoseconds the deterministic clock has advanced. */
  elapsedNs: bigint;
  /** Bytes drawn from the deterministic random stream. */
  randomBytes: number;
}

export interface WasiOptions {
  /** The filesystem (default: an empty `Vfs`). `/dev/stdin`, `/dev/stdout`, `/dev/stderr` are created when missing. */
  vfs?: Vfs;
  /** `argv`, including the program name (default `[]`). */
  args?: readonly string[];
  /** Environment variables (default `{}`), passed in sorted key order. */
  env?: Readonly<Record<string, string>>;
  /** `deterministic` (default) or `wall` (host clocks, real sleeps in `poll_oneoff`). */
  clock?: 'deterministic' | 'wall';
  /** Deterministic realtime at the first read, in ns since the epoch (default `0n`). */
  startTime?: bigint;
  /** Deterministic clock advance per `clock_time_get`, in ns (default 1 ms; `0n` freezes time). */
  clockStep?: bigint;
  /** `deterministic` (default, a stream keyed by `seed`) or `os` (`crypto.randomFillSync`). */
  random?: 'deterministic' | 'os';
  /** Seed of the deterministic random stream (default: empty). */
  seed?: Uint8Array | string | bigint | number;
  /** Replaces the content of `/dev/stdin`. */
  stdin?: Uint8Array | string;
  /** Directories handed to the guest as fds 3, 4, … (default `['/']`); created when missing. */
  preopens?: readonly string[];
  /** Resume the deterministic clock and random stream where a previous run left them. */
  counters?: Partial<WasiCounters>;
}
export const WASI_OPTIONS = new Set([
  'vfs',
  'args',
  'env',
  'clock',
  'startTime',
  'clockStep',
  'random',
  'seed',
  'stdin',
  'preopens',
  'counters',
]);

/** Largest fd number handed out. */
const MAX_FDS = 65536;
const utf8 = new TextEncoder();

export interface FileFd {
  kind: 'file';
  node: VfsFile;
  /** Stdio stream: not seekable, writes append, reads consume from `pos`. */
  stream: boolean;
  pos: number;
  flags: number;
  base: bigint;
  inheriting: bigint;
}
export interface DirFd {
  kind: 'dir';
  node: VfsDir;
  /** Name reported by `fd_prestat_dir_name` for preopened directories. */
  preopen?: Uint8Array;
  flags: number;
  base: bigint;
  inheriting: bigint;
}
export type Fd = FileFd | DirFd;

/** One WASI environment's state (fields are internal to src/wasi). */
export class WasiState {
  readonly vfs: Vfs;
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /** Set when the guest called `proc_exit`. */
  exitCode: number | undefined;

  readonly fds = new Map<number, Fd>();
  readonly argv: { bytes: Buffer; offsets: number[] };
  readonly environ: { bytes: Buffer; offsets: number[] };
  readonly wallClock: boolean;
  readonly startTime: bigint;
  readonly step: bigint;
  elapsed: bigint;
  readonly wallBase: bigint;
  readonly hrBase: bigint;
  readonly drbg: Drbg | undefined;

  constructor(opts: WasiOptions = {}) {
    if (opts === null || typeof opts !== 'object') throw badArg('WasiPreview1: options must be an object');
    for (const k of Object.keys(opts)) {
      if (!WASI_OPTIONS.has(k)) {
        throw badArg(`WasiPreview1: unknown option '${k}' (allowed: ${[...WASI_OPTIONS].join(', ')})`);
      }
    }
    if (opts.vfs !== undefined && !(opts.vfs instanceof Vfs)) throw badArg('WasiPreview1: vfs must be a Vfs');
    this.vfs = opts.vfs ?? new Vfs();

    const args = opts.args ?? [];
    if (!Array.isArray(args) || args.some((a) => typeof a !== 'string' || a.includes('\0'))) {
      throw badArg('WasiPreview1: args must be an array of strings without NUL');
    }
    this.args = Object.freeze([...args]);
    const env = opts.env ?? {};
    if (env === null || typeof env !== 'object') throw badArg('WasiPreview1: env must be an object');
    const envList: string[] = [];
    for (const key of Object.keys(env).sort()) {
      const value = env[key];
      if (key === '' || key.includes('=') || key.includes('\0')) {
        throw badArg(`WasiPreview1: invalid environment variable name '${key}'`);
      }
      if (typeof value !== 'string' || value.includes('\0')) {
        throw badArg(`WasiPreview1: environment variable '${key}' must be a string without NUL`);
      }
      envList.push(`${key}=${value}`);
    }
    this.env = Object.freeze({ ...env });
    this.argv = encodeStrings(this.args);
    this.environ = encodeStrings(envList);

    if (opts.clock !== undefined && opts.clock !== 'deterministic' && opts.clock !== 'wall') {
      throw badArg(`WasiPreview1: clock must be 'deterministic' or 'wall'`);
    }
    if (opts.random !== undefined && opts.random !== 'deterministic' && opts.random !== 'os') {
      throw badArg(`WasiPreview1: random must be 'deterministic' or 'os'`);
    }
    for (const k of ['startTime', 'clockStep'] as const) {
      const v = opts[k];
      if (v !== undefined && (typeof v !== 'bigint' || v < 0n || v >= 1n << 64n)) {
        throw badArg(`WasiPreview1: ${k} must be a non-negative bigint (ns)`);
      }
    }
    this.wallClock = opts.clock === 'wall';
    this.startTime = opts.startTime ?? 0n;
    this.step = opts.clockStep ?? 1_000_000n;
    const counters = opts.counters ?? {};
    this.elapsed = counters.elapsedNs ?? 0n;
    if (typeof this.elapsed !== 'bigint' || this.elapsed < 0n) {
      throw badArg('WasiPreview1: counters.elapsedNs must be a non-negative bigint');
    }
    const randomPos = counters.randomBytes ?? 0;
    if (!Number.isSafeInteger(randomPos) || randomPos < 0) {
      throw badArg('WasiPreview1: counters.randomBytes must be a non-negative integer');
    }
    this.wallBase = BigInt(Date.now()) * 1_000_000n;
    this.hrBase = process.hrtime.bigint();
    this.drbg = opts.random === 'os' ? undefined : new Drbg(seedBytes(opts.seed), randomPos);

    const t = this.now();
    const stdio = ['stdin', 'stdout', 'stderr'].map((name) => {
      const dev = this.mkdirs(['dev'], '/dev');
      const node = dev.get(name);
      if (node?.kind === 'dir') throw badArg(`WasiPreview1: /dev/${name} is a directory in the VFS`);
      if (node) return node;
      const f = this.vfs.newFile(t);
      dev.set(name, f, t);
      return f;
    });
    if (opts.stdin !== undefined) {
      if (typeof opts.stdin !== 'string' && !(opts.stdin instanceof Uint8Array)) {
        throw badArg('WasiPreview1: stdin must be a string or a Uint8Array');
      }
      stdio[0]!.replace(typeof opts.stdin === 'string' ? utf8.encode(opts.stdin) : opts.stdin, t);
    }
    stdio.forEach((node, fd) => {
      const base = RIGHTS_STDIO & ~(fd === 0 ? Rights.FD_WRITE : Rights.FD_READ);
      this.fds.set(fd, { kind: 'file', node, stream: true, pos: 0, flags: fd === 0 ? 0 : Fdflags.APPEND, base, inheriting: 0n });
    });

    const preopens = opts.preopens ?? ['/'];
    if (!Array.isArray(preopens) || preopens.some((p) => typeof p !== 'string')) {
      throw badArg('WasiPreview1: preopens must be an array of paths');
    }
    for (const p of preopens) {
      const parts = Vfs.split(p);
      const dir = this.mkdirs(parts, p);
      this.fds.set(this.fds.size, {
        kind: 'dir',
        node: dir,
        preopen: utf8.encode(`/${parts.join('/')}`),
        flags: 0,
        base: RIGHTS_DIRECTORY,
        inheriting: RIGHTS_FILE | RIGHTS_DIRECTORY,
      });
    }
  }

  devFile(name: string): Uint8Array {
    const n = this.vfs.lookup(`/dev/${name}`);
    return n?.kind === 'file' ? n.bytes() : new Uint8Array(0);
  }

  mkdirs(parts: readonly string[], shown: string): VfsDir {
    let dir = this.vfs.root;
    const t = this.now();
    for (const name of parts) {
      const next = dir.get(name);
      if (next?.kind === 'file') throw badArg(`WasiPreview1: '${shown}' is not a directory in the VFS`);
      if (next) {
        dir = next;
      } else {
        const d = this.vfs.newDir(dir, t);
        dir.set(name, d, t);
        dir = d;
      }
    }
    return dir;
  }

  /** Current value of a clock without advancing the deterministic one (undefined: bad id). */
  clockNow(id: number): bigint | undefined {
    if (id > Clockid.THREAD_CPUTIME_ID) return undefined;
    if (!this.wallClock) return (id === Clockid.REALTIME ? this.startTime : 0n) + this.elapsed;
    switch (id) {
      case Clockid.REALTIME:
        return this.wallBase + (process.hrtime.bigint() - this.hrBase);
      case Clockid.MONOTONIC:
        return process.hrtime.bigint();
      default: {
        const u = process.cpuUsage();
        return BigInt(u.user + u.system) * 1000n;
      }
    }
  }

  /** Timestamp for file metadata (realtime, never advances the deterministic clock). */
  now(): bigint {
    return this.clockNow(Clockid.REALTIME)!;
  }

  fd(fd: WasmValue): Fd {
    const e = this.fds.get(u32(fd));
    if (!e) fail(Errno.EBADF);
    return e;
  }

  dir(fd: WasmValue): DirFd {
    const e = this.fd(fd);
    if (e.kind !== 'dir') fail(Errno.ENOTDIR);
    return e;
  }

  newFd(entry: Fd): number {
    for (let i = 0; i < MAX_FDS; i++) {
      if (!this.fds.has(i)) {
        this.fds.set(i, entry);
        return i;
      }
    }
    fail(Errno.EMFILE);
  }

  hasFreeFd(): boolean {
    return this.fds.size < MAX_FDS;
  }
}

/** What a call family's functions work on: the state, the guest memory of the running call, the flavor. */
export interface CallContext {
  readonly st: WasiState;
  /** The guest's memory, its size re-read once per call. */
  readonly guest: () => Guest;
  /** `wasi_unstable` (snapshot 0) layouts and numbering. */
  readonly unstable: boolean;
}
