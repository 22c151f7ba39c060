/**
 * WASI preview1 (`wasi_snapshot_preview1`, and `wasi_unstable`) over a `Vfs`, in TypeScript.
 *
 * All 46 preview1 functions are implemented for two ABIs:
 * - `wasm32`: pointers and sizes are i32 parameters; `size` fields in memory are u32; iovecs are
 *   8 bytes `{u32 buf, u32 len}`; a prestat is 8 bytes `{u8 tag, u32 name_len @4}`.
 * - `wasm64` (emscripten's memory64 ABI, `size_t` = 8 bytes): pointers and sizes are i64
 *   parameters; `size` fields are u64; iovecs are 16 bytes `{u64 buf, u64 len}`; a prestat is 16
 *   bytes `{u8 tag, u64 name_len @8}`; `args_get`/`environ_get` write 8-byte pointers.
 * Every other struct (fdstat, filestat, dirent, subscription, event) is the same in both.
 *
 * Guest faults never escape as host crashes: a pointer or length outside linear memory gives
 * EFAULT (21) with nothing written; `proc_exit` throws `WasiExit` (the caller sees a `WasmTrap`
 * whose `cause` is it); anything else thrown is a host bug and becomes a trap.
 *
 * Determinism (the default): clocks read `startTime + elapsed`, where `elapsed` grows by
 * `clockStep` on each `clock_time_get` and jumps to the deadline when `poll_oneoff` sleeps;
 * `random_get` is a SHA-256 counter-mode stream keyed by `seed`. `clock: 'wall'` and
 * `random: 'os'` switch to the host clock (and real sleeps) and to `crypto.randomFillSync`.
 */
import { createHash, randomFillSync } from 'node:crypto';
import { AoError, WasmError, badArg } from '../errors';
import type { FuncType, WasmInstance, WasmMemory, WasmModule, WasmValue } from '../wasm';
import {
  ADVICE_MAX,
  Clockid,
  Errno,
  Eventtype,
  Fdflags,
  FDFLAGS_ALL,
  Filetype,
  Fstflags,
  FSTFLAGS_ALL,
  Oflags,
  OFLAGS_ALL,
  Preopentype,
  Rights,
  RIGHTS_DIRECTORY,
  RIGHTS_FILE,
  RIGHTS_STDIO,
  Subclockflags,
  Whence,
  WHENCE_UNSTABLE,
} from './errno';
import { Vfs, VfsDir, VfsFile, checkRename, type VfsNode } from './vfs';

/** Pointer width of the guest's WASI ABI. */
export type WasiAbi = 'wasm32' | 'wasm64';
/** Which WASI module: preview1, or the older `wasi_unstable` (snapshot 0). */
export type WasiFlavor = 'preview1' | 'unstable';

/** A WASI host function as handed to `WasmInstance` (i32 as number, i64 as bigint). */
export type WasiFunction = (...args: WasmValue[]) => number | undefined;

/**
 * Parameter kinds: `i32`/`i64` are fixed; `ptr` (a pointer) and `size` (a `size_t`) are i32 in
 * the wasm32 ABI and i64 in the wasm64 ABI. Every function returns an i32 errno except
 * `proc_exit`, which returns nothing.
 */
export type WasiParam = 'i32' | 'i64' | 'ptr' | 'size';

/** The 46 preview1 functions and their parameters. */
export const WASI_SIGNATURES = {
  args_get: ['ptr', 'ptr'],
  args_sizes_get: ['ptr', 'ptr'],
  environ_get: ['ptr', 'ptr'],
  environ_sizes_get: ['ptr', 'ptr'],
  clock_res_get: ['i32', 'ptr'],
  clock_time_get: ['i32', 'i64', 'ptr'],
  fd_advise: ['i32', 'i64', 'i64', 'i32'],
  fd_allocate: ['i32', 'i64', 'i64'],
  fd_close: ['i32'],
  fd_datasync: ['i32'],
  fd_fdstat_get: ['i32', 'ptr'],
  fd_fdstat_set_flags: ['i32', 'i32'],
  fd_fdstat_set_rights: ['i32', 'i64', 'i64'],
  fd_filestat_get: ['i32', 'ptr'],
  fd_filestat_set_size: ['i32', 'i64'],
  fd_filestat_set_times: ['i32', 'i64', 'i64', 'i32'],
  fd_pread: ['i32', 'ptr', 'size', 'i64', 'ptr'],
  fd_prestat_get: ['i32', 'ptr'],
  fd_prestat_dir_name: ['i32', 'ptr', 'size'],
  fd_pwrite: ['i32', 'ptr', 'size', 'i64', 'ptr'],
  fd_read: ['i32', 'ptr', 'size', 'ptr'],
  fd_readdir: ['i32', 'ptr', 'size', 'i64', 'ptr'],
  fd_renumber: ['i32', 'i32'],
  fd_seek: ['i32', 'i64', 'i32', 'ptr'],
  fd_sync: ['i32'],
  fd_tell: ['i32', 'ptr'],
  fd_write: ['i32', 'ptr', 'size', 'ptr'],
  path_create_directory: ['i32', 'ptr', 'size'],
  path_filestat_get: ['i32', 'i32', 'ptr', 'size', 'ptr'],
  path_filestat_set_times: ['i32', 'i32', 'ptr', 'size', 'i64', 'i64', 'i32'],
  path_link: ['i32', 'i32', 'ptr', 'size', 'i32', 'ptr', 'size'],
  path_open: ['i32', 'i32', 'ptr', 'size', 'i32', 'i64', 'i64', 'i32', 'ptr'],
  path_readlink: ['i32', 'ptr', 'size', 'ptr', 'size', 'ptr'],
  path_remove_directory: ['i32', 'ptr', 'size'],
  path_rename: ['i32', 'ptr', 'size', 'i32', 'ptr', 'size'],
  path_symlink: ['ptr', 'size', 'i32', 'ptr', 'size'],
  path_unlink_file: ['i32', 'ptr', 'size'],
  poll_oneoff: ['ptr', 'ptr', 'size', 'ptr'],
  proc_exit: ['i32'],
  proc_raise: ['i32'],
  sched_yield: [],
  random_get: ['ptr', 'size'],
  sock_accept: ['i32', 'i32', 'ptr'],
  sock_recv: ['i32', 'ptr', 'size', 'i32', 'ptr', 'ptr'],
  sock_send: ['i32', 'ptr', 'size', 'i32', 'ptr'],
  sock_shutdown: ['i32', 'i32'],
} as const satisfies Record<string, readonly WasiParam[]>;

export type WasiFunctionName = keyof typeof WASI_SIGNATURES;
export const WASI_FUNCTIONS = Object.keys(WASI_SIGNATURES) as WasiFunctionName[];

/** The wasm signature of a WASI function in an ABI. */
export function wasiFuncType(name: WasiFunctionName, abi: WasiAbi): FuncType {
  const wide = abi === 'wasm64';
  const params = (WASI_SIGNATURES[name] as readonly WasiParam[]).map((p) => (p === 'i64' || (wide && p !== 'i32') ? 'i64' : 'i32'));
  return { params, results: name === 'proc_exit' ? [] : ['i32'] };
}

/** Thrown by `proc_exit`: a clean exit with `code`, not a fault. */
export class WasiExit extends Error {
  /** The exit status (u32). */
  readonly code: number;
  constructor(code: number) {
    super(`the guest called proc_exit(${code})`);
    this.code = code;
  }
  override get name(): string {
    return 'WasiExit';
  }
}

/** The exit code when `err` is a `WasiExit` or a trap caused by one; otherwise undefined. */
export function exitCodeOf(err: unknown): number | undefined {
  for (let e: unknown = err, depth = 0; e !== null && typeof e === 'object' && depth < 4; depth++) {
    if (e instanceof WasiExit) return e.code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

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
const WASI_OPTIONS = new Set([
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

/** Internal: an errno raised from deep inside a call (never escapes an import). */
class Fail {
  constructor(readonly errno: number) {}
}
const FAULT = new Fail(Errno.EFAULT);
function fail(errno: number): never {
  throw errno === Errno.EFAULT ? FAULT : new Fail(errno);
}

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const MAX_SAFE_BIG = BigInt(MAX_SAFE);
const TWO32 = 4294967296;
const U32_MAX = TWO32 - 1;
/** Longest path a guest may pass (bytes). */
const PATH_MAX = 65536;
/** Largest gap between two iovec buffers still fetched with a single memory read. */
const GATHER_GAP = 256;
/** Largest fd number handed out. */
const MAX_FDS = 65536;
const EMPTY = Buffer.alloc(0);
const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

/** A pointer or size argument as a safe integer (i32 arrives signed, i64 as bigint). */
function addr(v: WasmValue): number {
  if (typeof v === 'number') return v < 0 ? v + TWO32 : v;
  const u = BigInt.asUintN(64, v);
  if (u > MAX_SAFE_BIG) fail(Errno.EFAULT);
  return Number(u);
}
function u32(v: WasmValue): number {
  return typeof v === 'number' ? v >>> 0 : Number(BigInt.asUintN(32, v));
}
function u64(v: WasmValue): bigint {
  return BigInt.asUintN(64, typeof v === 'bigint' ? v : BigInt(v));
}
function s64(v: WasmValue): bigint {
  return BigInt.asIntN(64, typeof v === 'bigint' ? v : BigInt(v));
}

/** Guest memory with the ABI's layout rules. */
class Guest {
  #limit = -1;

  constructor(
    private readonly mem: WasmMemory,
    readonly wide: boolean,
  ) {}

  /** Forgets the cached memory size; called at the start of every host call (memory cannot grow during one). */
  reset(): this {
    this.#limit = -1;
    return this;
  }

  /** Memory size in bytes. */
  get limit(): number {
    if (this.#limit < 0) this.#limit = Number(this.mem.size);
    return this.#limit;
  }

  /** Size in bytes of a `size_t` / pointer. */
  get word(): number {
    return this.wide ? 8 : 4;
  }

  /** EFAULT unless `[ptr, ptr+len)` is inside memory. */
  check(ptr: number, len: number): void {
    if (ptr + len > this.limit) fail(Errno.EFAULT);
  }

  read(ptr: number, len: number): Buffer {
    return len === 0 ? EMPTY : this.mem.read(ptr, len);
  }

  write(ptr: number, bytes: Uint8Array): void {
    if (bytes.length) this.mem.write(ptr, bytes);
  }

  u32(ptr: number, v: number): void {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32LE(v >>> 0, 0);
    this.mem.write(ptr, b);
  }

  u64(ptr: number, v: bigint): void {
    const b = Buffer.allocUnsafe(8);
    b.writeBigUInt64LE(v, 0);
    this.mem.write(ptr, b);
  }

  /** Writes a `size_t` (u32 or u64). */
  size(ptr: number, v: number): void {
    const b = Buffer.allocUnsafe(this.word);
    putSize(b, 0, v, this.wide);
    this.mem.write(ptr, b);
  }

  /** Reads `n` iovecs as a flat `[buf0, len0, buf1, len1, …]`, all inside memory. */
  iovecs(ptr: number, n: number): number[] {
    const stride = this.wide ? 16 : 8;
    if (n === 0) return [];
    this.check(ptr, n * stride);
    const raw = this.mem.read(ptr, n * stride);
    const limit = this.limit;
    const out = new Array<number>(2 * n);
    for (let i = 0; i < n; i++) {
      const o = i * stride;
      let buf: number;
      let len: number;
      if (this.wide) {
        buf = u64At(raw, o);
        len = u64At(raw, o + 8);
      } else {
        buf = raw.readUInt32LE(o);
        len = raw.readUInt32LE(o + 4);
      }
      if (buf + len > limit) fail(Errno.EFAULT);
      out[2 * i] = buf;
      out[2 * i + 1] = len;
    }
    return out;
  }
}

/** A u64 field as a safe integer (EFAULT beyond 2^53: no memory is that large). */
function u64At(b: Buffer, o: number): number {
  const hi = b.readUInt32LE(o + 4);
  if (hi >= 0x200000) fail(Errno.EFAULT);
  return hi * TWO32 + b.readUInt32LE(o);
}

function putSize(b: Buffer, o: number, v: number, wide: boolean): void {
  if (wide) {
    b.writeUInt32LE(v % TWO32, o);
    b.writeUInt32LE(Math.floor(v / TWO32), o + 4);
  } else {
    b.writeUInt32LE(v, o);
  }
}

interface FileFd {
  kind: 'file';
  node: VfsFile;
  /** Stdio stream: not seekable, writes append, reads consume from `pos`. */
  stream: boolean;
  pos: number;
  flags: number;
  base: bigint;
  inheriting: bigint;
}
interface DirFd {
  kind: 'dir';
  node: VfsDir;
  /** Name reported by `fd_prestat_dir_name` for preopened directories. */
  preopen?: Uint8Array;
  flags: number;
  base: bigint;
  inheriting: bigint;
}
type Fd = FileFd | DirFd;

interface Resolved {
  /** Directory holding the last component. */
  dir: VfsDir;
  /** The last component, or null when the path ends in `.` or `..`. */
  name: string | null;
  /** What the path names, if it exists. */
  node: VfsNode | undefined;
  /** The path ended with `/`. */
  slash: boolean;
  /** The path's last component was `..` (otherwise `.` when `name` is null). */
  dotdot: boolean;
}

/** Deterministic random stream: block i = SHA-256(key ‖ u64le(i)), key = SHA-256(domain ‖ seed). */
class Drbg {
  readonly #key: Buffer;
  #pos: number;
  #blockIndex = -1;
  #block: Buffer = EMPTY;
  constructor(seed: Uint8Array, pos: number) {
    this.#key = createHash('sha256').update('hb-runtimes/wasi/random/v1\0').update(seed).digest();
    this.#pos = pos;
  }
  get position(): number {
    return this.#pos;
  }
  fill(out: Uint8Array): void {
    let i = 0;
    while (i < out.length) {
      const bi = Math.floor(this.#pos / 32);
      const off = this.#pos % 32;
      if (bi !== this.#blockIndex) {
        const ctr = Buffer.alloc(8);
        ctr.writeUInt32LE(bi % TWO32, 0);
        ctr.writeUInt32LE(Math.floor(bi / TWO32), 4);
        this.#block = createHash('sha256').update(this.#key).update(ctr).digest();
        this.#blockIndex = bi;
      }
      const k = Math.min(32 - off, out.length - i);
      out.set(this.#block.subarray(off, off + k), i);
      i += k;
      this.#pos += k;
    }
  }
}

function seedBytes(seed: WasiOptions['seed']): Uint8Array {
  if (seed === undefined) return new Uint8Array(0);
  if (seed instanceof Uint8Array) return seed;
  if (typeof seed === 'string') return utf8.encode(seed);
  if (typeof seed === 'bigint' || typeof seed === 'number') return utf8.encode(String(seed));
  throw badArg('WasiPreview1: seed must be a Uint8Array, string, bigint or number');
}

function encodeStrings(list: readonly string[]): { bytes: Buffer; offsets: number[] } {
  const parts: Buffer[] = [];
  const offsets: number[] = [];
  let at = 0;
  for (const s of list) {
    offsets.push(at);
    const b = Buffer.from(`${s}\0`, 'utf8');
    parts.push(b);
    at += b.length;
  }
  return { bytes: Buffer.concat(parts, at), offsets };
}

let sleepCell: Int32Array | undefined;
function sleepNs(ns: bigint): void {
  if (ns <= 0n) return;
  sleepCell ??= new Int32Array(new SharedArrayBuffer(4));
  Atomics.wait(sleepCell, 0, 0, Number(ns) / 1e6);
}

/**
 * A WASI preview1 environment: file descriptors over a `Vfs`, args, env, clocks and randomness.
 * One object serves one guest instance; `imports()` gives its host functions.
 */
export class WasiPreview1 {
  readonly vfs: Vfs;
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /** Set when the guest called `proc_exit`. */
  exitCode: number | undefined;

  readonly #fds = new Map<number, Fd>();
  readonly #argv: { bytes: Buffer; offsets: number[] };
  readonly #environ: { bytes: Buffer; offsets: number[] };
  readonly #wallClock: boolean;
  readonly #startTime: bigint;
  readonly #step: bigint;
  #elapsed: bigint;
  readonly #wallBase: bigint;
  readonly #hrBase: bigint;
  readonly #drbg: Drbg | undefined;

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
    this.#argv = encodeStrings(this.args);
    this.#environ = encodeStrings(envList);

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
    this.#wallClock = opts.clock === 'wall';
    this.#startTime = opts.startTime ?? 0n;
    this.#step = opts.clockStep ?? 1_000_000n;
    const counters = opts.counters ?? {};
    this.#elapsed = counters.elapsedNs ?? 0n;
    if (typeof this.#elapsed !== 'bigint' || this.#elapsed < 0n) {
      throw badArg('WasiPreview1: counters.elapsedNs must be a non-negative bigint');
    }
    const randomPos = counters.randomBytes ?? 0;
    if (!Number.isSafeInteger(randomPos) || randomPos < 0) {
      throw badArg('WasiPreview1: counters.randomBytes must be a non-negative integer');
    }
    this.#wallBase = BigInt(Date.now()) * 1_000_000n;
    this.#hrBase = process.hrtime.bigint();
    this.#drbg = opts.random === 'os' ? undefined : new Drbg(seedBytes(opts.seed), randomPos);

    const t = this.#now();
    const stdio = ['stdin', 'stdout', 'stderr'].map((name) => {
      const dev = this.#mkdirs(['dev'], '/dev');
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
      this.#fds.set(fd, { kind: 'file', node, stream: true, pos: 0, flags: fd === 0 ? 0 : Fdflags.APPEND, base, inheriting: 0n });
    });

    const preopens = opts.preopens ?? ['/'];
    if (!Array.isArray(preopens) || preopens.some((p) => typeof p !== 'string')) {
      throw badArg('WasiPreview1: preopens must be an array of paths');
    }
    for (const p of preopens) {
      const parts = Vfs.split(p);
      const dir = this.#mkdirs(parts, p);
      this.#fds.set(this.#fds.size, {
        kind: 'dir',
        node: dir,
        preopen: utf8.encode(`/${parts.join('/')}`),
        flags: 0,
        base: RIGHTS_DIRECTORY,
        inheriting: RIGHTS_FILE | RIGHTS_DIRECTORY,
      });
    }
  }

  /** Bytes the guest wrote to `/dev/stdout` (a copy; empty if the file is gone). */
  get stdout(): Uint8Array {
    return this.#devFile('stdout');
  }

  /** Bytes the guest wrote to `/dev/stderr` (a copy; empty if the file is gone). */
  get stderr(): Uint8Array {
    return this.#devFile('stderr');
  }

  /** Position of the deterministic clock and random stream, to resume them after a snapshot. */
  get counters(): WasiCounters {
    return { elapsedNs: this.#elapsed, randomBytes: this.#drbg?.position ?? 0 };
  }

  #devFile(name: string): Uint8Array {
    const n = this.vfs.lookup(`/dev/${name}`);
    return n?.kind === 'file' ? n.bytes() : new Uint8Array(0);
  }

  #mkdirs(parts: readonly string[], shown: string): VfsDir {
    let dir = this.vfs.root;
    const t = this.#now();
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

  // ---- clocks -------------------------------------------------------------------------------

  /** Current value of a clock without advancing the deterministic one (undefined: bad id). */
  #clockNow(id: number): bigint | undefined {
    if (id > Clockid.THREAD_CPUTIME_ID) return undefined;
    if (!this.#wallClock) return (id === Clockid.REALTIME ? this.#startTime : 0n) + this.#elapsed;
    switch (id) {
      case Clockid.REALTIME:
        return this.#wallBase + (process.hrtime.bigint() - this.#hrBase);
      case Clockid.MONOTONIC:
        return process.hrtime.bigint();
      default: {
        const u = process.cpuUsage();
        return BigInt(u.user + u.system) * 1000n;
      }
    }
  }

  /** Timestamp for file metadata (realtime, never advances the deterministic clock). */
  #now(): bigint {
    return this.#clockNow(Clockid.REALTIME)!;
  }

  // ---- fds and paths ------------------------------------------------------------------------

  #fd(fd: WasmValue): Fd {
    const e = this.#fds.get(u32(fd));
    if (!e) fail(Errno.EBADF);
    return e;
  }

  #dir(fd: WasmValue): DirFd {
    const e = this.#fd(fd);
    if (e.kind !== 'dir') fail(Errno.ENOTDIR);
    return e;
  }

  #newFd(entry: Fd): number {
    for (let i = 0; i < MAX_FDS; i++) {
      if (!this.#fds.has(i)) {
        this.#fds.set(i, entry);
        return i;
      }
    }
    fail(Errno.EMFILE);
  }

  #hasFreeFd(): boolean {
    return this.#fds.size < MAX_FDS;
  }

  /** Reads a guest path: EFAULT out of memory, ENAMETOOLONG, EILSEQ (bad UTF-8), EINVAL (NUL). */
  #path(g: Guest, ptr: WasmValue, len: WasmValue): string {
    const p = addr(ptr);
    const n = addr(len);
    if (n > PATH_MAX) fail(Errno.ENAMETOOLONG);
    g.check(p, n);
    const raw = g.read(p, n);
    if (raw.includes(0)) fail(Errno.EINVAL);
    try {
      return utf8Strict.decode(raw);
    } catch {
      fail(Errno.EILSEQ);
    }
  }

  /**
   * Resolves `path` under directory `start`. Paths are relative and may not climb above
   * `start` (absolute paths and escaping `..` give ENOTCAPABLE); intermediate components must be
   * directories (ENOENT / ENOTDIR).
   */
  #resolve(start: VfsDir, path: string): Resolved {
    if (path === '') fail(Errno.ENOENT);
    if (path.startsWith('/')) fail(Errno.ENOTCAPABLE);
    const comps = path.split('/').filter((c) => c !== '');
    const slash = path.endsWith('/');
    const stack: VfsDir[] = [start];
    const last = comps.length - 1;
    for (let i = 0; i < last; i++) {
      const c = comps[i]!;
      if (c === '.') continue;
      if (c === '..') {
        if (stack.length === 1) fail(Errno.ENOTCAPABLE);
        stack.pop();
        continue;
      }
      const next = stack[stack.length - 1]!.get(c);
      if (!next) fail(Errno.ENOENT);
      if (next.kind !== 'dir') fail(Errno.ENOTDIR);
      stack.push(next);
    }
    const name = comps[last]!;
    if (name === '.') {
      const d = stack[stack.length - 1]!;
      return { dir: d, name: null, node: d, slash, dotdot: false };
    }
    if (name === '..') {
      if (stack.length === 1) fail(Errno.ENOTCAPABLE);
      stack.pop();
      const d = stack[stack.length - 1]!;
      return { dir: d, name: null, node: d, slash, dotdot: true };
    }
    const dir = stack[stack.length - 1]!;
    return { dir, name, node: dir.get(name), slash, dotdot: false };
  }

  /** An existing node named by a path (ENOENT; ENOTDIR for `file/`). */
  #lookup(r: Resolved): VfsNode {
    if (!r.node) fail(Errno.ENOENT);
    if (r.slash && r.node.kind !== 'dir') fail(Errno.ENOTDIR);
    return r.node;
  }

  #filestat(g: Guest, ptr: number, node: VfsNode, filetype: number, unstable: boolean): void {
    const size = unstable ? 56 : 64;
    g.check(ptr, size);
    const b = Buffer.alloc(size);
    b.writeBigUInt64LE(node.ino, 8);
    b.writeUInt8(filetype, 16);
    const bytes = BigInt(node.kind === 'file' ? node.size : 0);
    if (unstable) {
      b.writeUInt32LE(1, 20);
      b.writeBigUInt64LE(bytes, 24);
      b.writeBigUInt64LE(node.atim, 32);
      b.writeBigUInt64LE(node.mtim, 40);
      b.writeBigUInt64LE(node.ctim, 48);
    } else {
      b.writeBigUInt64LE(1n, 24);
      b.writeBigUInt64LE(bytes, 32);
      b.writeBigUInt64LE(node.atim, 40);
      b.writeBigUInt64LE(node.mtim, 48);
      b.writeBigUInt64LE(node.ctim, 56);
    }
    g.write(ptr, b);
  }

  #setTimes(node: VfsNode, atim: WasmValue, mtim: WasmValue, flags: WasmValue): number {
    const f = u32(flags);
    if (f & ~FSTFLAGS_ALL) return Errno.EINVAL;
    if ((f & Fstflags.ATIM && f & Fstflags.ATIM_NOW) || (f & Fstflags.MTIM && f & Fstflags.MTIM_NOW)) return Errno.EINVAL;
    const now = this.#now();
    if (f & Fstflags.ATIM) node.atim = u64(atim);
    if (f & Fstflags.ATIM_NOW) node.atim = now;
    if (f & Fstflags.MTIM) node.mtim = u64(mtim);
    if (f & Fstflags.MTIM_NOW) node.mtim = now;
    node.ctim = now;
    return Errno.SUCCESS;
  }

  /** EFBIG when a write of `total` bytes at `pos` would pass the VFS file size limit. */
  #checkGrowth(pos: number, total: number): void {
    if (pos + total > this.vfs.maxFileSize) fail(Errno.EFBIG);
  }

  #readInto(g: Guest, iovs: number[], node: VfsFile, pos: number): number {
    let at = pos;
    for (let i = 0; i < iovs.length && at < node.size; i += 2) {
      const chunk = node.view(at, at + iovs[i + 1]!);
      g.write(iovs[i]!, chunk);
      at += chunk.length;
    }
    return at - pos;
  }

  /** Total length of a write: EINVAL when it cannot be reported in a `size`. */
  #total(g: Guest, iovs: number[]): number {
    let total = 0;
    for (let i = 1; i < iovs.length; i += 2) total += iovs[i]!;
    if (total > (g.wide ? MAX_SAFE : U32_MAX)) fail(Errno.EINVAL);
    return total;
  }

  /**
   * Copies the iovec buffers out of guest memory. Each memory read is a native call, so iovecs
   * that follow each other closely (gaps up to GATHER_GAP bytes, as in `{66,14},{80,8}`) are
   * fetched with one read and sliced.
   */
  #chunks(g: Guest, iovs: number[]): Buffer[] {
    const chunks: Buffer[] = [];
    for (let i = 0; i < iovs.length; ) {
      const start = iovs[i]!;
      let end = start + iovs[i + 1]!;
      let j = i + 2;
      for (; j < iovs.length; j += 2) {
        const b = iovs[j]!;
        if (b < end || b - end > GATHER_GAP) break;
        end = b + iovs[j + 1]!;
      }
      if (end > start) {
        const span = g.read(start, end - start);
        for (let k = i; k < j; k += 2) {
          const len = iovs[k + 1]!;
          if (len) chunks.push(span.subarray(iovs[k]! - start, iovs[k]! - start + len));
        }
      }
      i = j;
    }
    return chunks;
  }

  // ---- the import table ---------------------------------------------------------------------

  /**
   * The 46 host functions for one guest. `getInstance` is called on each use (so the table can
   * be built before the instance exists); `abi` fixes the memory layouts; `flavor: 'unstable'`
   * switches `fd_seek` whence numbering and the filestat / subscription layouts to snapshot 0.
   */
  imports(getInstance: () => WasmInstance, abi: WasiAbi, flavor: WasiFlavor = 'preview1'): Record<WasiFunctionName, WasiFunction> {
    if (typeof getInstance !== 'function') throw badArg('WasiPreview1.imports: getInstance must be a function');
    if (abi !== 'wasm32' && abi !== 'wasm64') throw badArg(`WasiPreview1.imports: abi must be 'wasm32' or 'wasm64'`);
    if (flavor !== 'preview1' && flavor !== 'unstable') throw badArg(`WasiPreview1.imports: flavor must be 'preview1' or 'unstable'`);
    const wide = abi === 'wasm64';
    const unstable = flavor === 'unstable';
    let cachedFor: WasmInstance | undefined;
    let cached: Guest | undefined;
    const guest = (): Guest => {
      const inst = getInstance();
      if (inst !== cachedFor || !cached) {
        cachedFor = inst;
        cached = new Guest(inst.memory, wide);
      }
      return cached.reset();
    };

    const fns: Record<WasiFunctionName, (...a: WasmValue[]) => number> = {
      // -- args and environment --
      args_get: (argv, buf) => this.#strings(guest(), this.#argv, argv, buf),
      args_sizes_get: (argc, size) => this.#sizes(guest(), this.#argv, argc, size),
      environ_get: (envp, buf) => this.#strings(guest(), this.#environ, envp, buf),
      environ_sizes_get: (count, size) => this.#sizes(guest(), this.#environ, count, size),

      // -- clocks --
      clock_res_get: (id, out) => {
        const g = guest();
        const c = u32(id);
        if (c > Clockid.THREAD_CPUTIME_ID) return Errno.EINVAL;
        const p = addr(out);
        g.check(p, 8);
        let res: bigint;
        if (!this.#wallClock) res = this.#step > 0n ? this.#step : 1n;
        else res = c === Clockid.REALTIME || c === Clockid.MONOTONIC ? 1n : 1000n;
        g.u64(p, res);
        return Errno.SUCCESS;
      },
      clock_time_get: (id, _precision, out) => {
        const g = guest();
        const v = this.#clockNow(u32(id));
        if (v === undefined) return Errno.EINVAL;
        const p = addr(out);
        g.check(p, 8);
        g.u64(p, BigInt.asUintN(64, v));
        if (!this.#wallClock) this.#elapsed += this.#step;
        return Errno.SUCCESS;
      },

      // -- file descriptors --
      fd_advise: (fd, _offset, _len, advice) => {
        const e = this.#fd(fd);
        if (u32(advice) > ADVICE_MAX) return Errno.EINVAL;
        if (e.kind === 'dir') return Errno.EBADF;
        if (e.stream) return Errno.ESPIPE;
        return Errno.SUCCESS;
      },
      fd_allocate: (fd, offset, len) => {
        const e = this.#fd(fd);
        if (e.kind === 'dir') return Errno.EBADF;
        if (e.stream) return Errno.ESPIPE;
        if (!(e.base & Rights.FD_WRITE)) return Errno.EBADF;
        if (u64(len) === 0n) return Errno.EINVAL;
        const end = u64(offset) + u64(len);
        if (end > BigInt(this.vfs.maxFileSize)) return Errno.EFBIG;
        if (Number(end) > e.node.size) e.node.resize(Number(end), this.#now());
        return Errno.SUCCESS;
      },
      fd_close: (fd) => {
        const n = u32(fd);
        if (!this.#fds.delete(n)) return Errno.EBADF;
        return Errno.SUCCESS;
      },
      fd_datasync: (fd) => (this.#fd(fd), Errno.SUCCESS),
      fd_sync: (fd) => (this.#fd(fd), Errno.SUCCESS),
      fd_fdstat_get: (fd, out) => {
        const g = guest();
        const e = this.#fd(fd);
        const p = addr(out);
        g.check(p, 24);
        const b = Buffer.alloc(24);
        b.writeUInt8(e.kind === 'dir' ? Filetype.DIRECTORY : e.stream ? Filetype.CHARACTER_DEVICE : Filetype.REGULAR_FILE, 0);
        b.writeUInt16LE(e.flags, 2);
        b.writeBigUInt64LE(e.base, 8);
        b.writeBigUInt64LE(e.inheriting, 16);
        g.write(p, b);
        return Errno.SUCCESS;
      },
      fd_fdstat_set_flags: (fd, flags) => {
        const e = this.#fd(fd);
        const f = u32(flags);
        if (f & ~FDFLAGS_ALL) return Errno.EINVAL;
        e.flags = f;
        return Errno.SUCCESS;
      },
      fd_fdstat_set_rights: (fd, base, inheriting) => {
        const e = this.#fd(fd);
        const b = u64(base);
        const i = u64(inheriting);
        if (b & ~e.base || i & ~e.inheriting) return Errno.ENOTCAPABLE;
        e.base = b;
        e.inheriting = i;
        return Errno.SUCCESS;
      },
      fd_filestat_get: (fd, out) => {
        const g = guest();
        const e = this.#fd(fd);
        const type = e.kind === 'dir' ? Filetype.DIRECTORY : e.stream ? Filetype.CHARACTER_DEVICE : Filetype.REGULAR_FILE;
        this.#filestat(g, addr(out), e.node, type, unstable);
        return Errno.SUCCESS;
      },
      fd_filestat_set_size: (fd, size) => {
        const e = this.#fd(fd);
        if (e.kind === 'dir' || e.stream) return Errno.EINVAL;
        if (!(e.base & Rights.FD_WRITE)) return Errno.EBADF;
        const s = u64(size);
        if (s > BigInt(this.vfs.maxFileSize)) return Errno.EFBIG;
        e.node.resize(Number(s), this.#now());
        return Errno.SUCCESS;
      },
      fd_filestat_set_times: (fd, atim, mtim, flags) => this.#setTimes(this.#fd(fd).node, atim, mtim, flags),
      fd_pread: (fd, iovsPtr, iovsLen, offset, out) => {
        const g = guest();
        const e = this.#fd(fd);
        if (e.kind === 'dir') return Errno.EISDIR;
        if (e.stream) return Errno.ESPIPE;
        if (!(e.base & Rights.FD_READ)) return Errno.EBADF;
        const p = addr(out);
        g.check(p, g.word);
        const iovs = g.iovecs(addr(iovsPtr), addr(iovsLen));
        const off = u64(offset);
        const n = off >= BigInt(e.node.size) ? 0 : this.#readInto(g, iovs, e.node, Number(off));
        g.size(p, n);
        return Errno.SUCCESS;
      },
      fd_pwrite: (fd, iovsPtr, iovsLen, offset, out) => {
        const g = guest();
        const e = this.#fd(fd);
        if (e.kind === 'dir') return Errno.EBADF;
        if (e.stream) return Errno.ESPIPE;
        if (!(e.base & Rights.FD_WRITE)) return Errno.EBADF;
        const p = addr(out);
        g.check(p, g.word);
        const iovs = g.iovecs(addr(iovsPtr), addr(iovsLen));
        const total = this.#total(g, iovs);
        const off = u64(offset);
        if (off > BigInt(this.vfs.maxFileSize)) return Errno.EFBIG;
        this.#checkGrowth(Number(off), total);
        e.node.write(Number(off), this.#chunks(g, iovs), this.#now());
        g.size(p, total);
        return Errno.SUCCESS;
      },
      fd_read: (fd, iovsPtr, iovsLen, out) => {
        const g = guest();
        const e = this.#fd(fd);
        if (e.kind === 'dir') return Errno.EISDIR;
        if (!(e.base & Rights.FD_READ)) return Errno.EBADF;
        const p = addr(out);
        g.check(p, g.word);
        const iovs = g.iovecs(addr(iovsPtr), addr(iovsLen));
        const n = this.#readInto(g, iovs, e.node, e.pos);
        e.pos += n;
        g.size(p, n);
        return Errno.SUCCESS;
      },
      fd_write: (fd, iovsPtr, iovsLen, out) => {
        const g = guest();
        const e = this.#fd(fd);
        if (e.kind === 'dir' || !(e.base & Rights.FD_WRITE)) return Errno.EBADF;
        const p = addr(out);
        g.check(p, g.word);
        const iovs = g.iovecs(addr(iovsPtr), addr(iovsLen));
        const total = this.#total(g, iovs);
        const pos = e.stream || e.flags & Fdflags.APPEND ? e.node.size : e.pos;
        this.#checkGrowth(pos, total);
        e.node.write(pos, this.#chunks(g, iovs), this.#now());
        if (!e.stream) e.pos = pos + total;
        g.size(p, total);
        return Errno.SUCCESS;
      },
      fd_prestat_get: (fd, out) => {
        const g = guest();
        const e = this.#fds.get(u32(fd));
        if (!e || e.kind !== 'dir' || !e.preopen) return Errno.EBADF;
        const p = addr(out);
        const b = Buffer.alloc(wide ? 16 : 8);
        g.check(p, b.length);
        b.writeUInt8(Preopentype.DIR, 0);
        putSize(b, wide ? 8 : 4, e.preopen.length, wide);
        g.write(p, b);
        return Errno.SUCCESS;
      },
      fd_prestat_dir_name: (fd, path, pathLen) => {
        const g = guest();
        const e = this.#fds.get(u32(fd));
        if (!e || e.kind !== 'dir' || !e.preopen) return Errno.EBADF;
        const p = addr(path);
        if (addr(pathLen) < e.preopen.length) return Errno.ENAMETOOLONG;
        g.check(p, e.preopen.length);
        g.write(p, e.preopen);
        return Errno.SUCCESS;
      },
      fd_readdir: (fd, buf, bufLen, cookie, out) => {
        const g = guest();
        const e = this.#dir(fd);
        const bp = addr(buf);
        const blen = addr(bufLen);
        const p = addr(out);
        g.check(p, g.word);
        g.check(bp, blen);
        const dir = e.node;
        const names = dir.names();
        const count = names.length + 2;
        const used = [] as Buffer[];
        let total = 0;
        for (let i = u64(cookie); i < BigInt(count) && total < blen; i++) {
          const idx = Number(i);
          let name: string;
          let node: VfsNode;
          if (idx === 0) [name, node] = ['.', dir];
          else if (idx === 1) [name, node] = ['..', dir.parent ?? dir];
          else [name, node] = [names[idx - 2]!, dir.get(names[idx - 2]!)!];
          const nb = Buffer.from(name, 'utf8');
          const ent = Buffer.alloc(24 + nb.length);
          ent.writeBigUInt64LE(BigInt(idx + 1), 0);
          ent.writeBigUInt64LE(node.ino, 8);
          ent.writeUInt32LE(nb.length, 16);
          ent.writeUInt8(node.kind === 'dir' ? Filetype.DIRECTORY : Filetype.REGULAR_FILE, 20);
          nb.copy(ent, 24);
          const take = Math.min(ent.length, blen - total);
          used.push(take === ent.length ? ent : ent.subarray(0, take));
          total += take;
        }
        g.write(bp, Buffer.concat(used, total));
        g.size(p, total);
        return Errno.SUCCESS;
      },
      fd_renumber: (from, to) => {
        const f = u32(from);
        const t = u32(to);
        const e = this.#fds.get(f);
        if (!e || !this.#fds.has(t)) return Errno.EBADF;
        if (f === t) return Errno.SUCCESS;
        this.#fds.set(t, e);
        this.#fds.delete(f);
        return Errno.SUCCESS;
      },
      fd_seek: (fd, offset, whence, out) => {
        const g = guest();
        const e = this.#fd(fd);
        if (e.kind === 'dir') return Errno.EBADF;
        if (e.stream) return Errno.ESPIPE;
        const w = u32(whence);
        const W = unstable ? WHENCE_UNSTABLE : Whence;
        let base: bigint;
        if (w === W.SET) base = 0n;
        else if (w === W.CUR) base = BigInt(e.pos);
        else if (w === W.END) base = BigInt(e.node.size);
        else return Errno.EINVAL;
        const p = addr(out);
        g.check(p, 8);
        const next = base + s64(offset);
        if (next < 0n || next > MAX_SAFE_BIG) return Errno.EINVAL;
        e.pos = Number(next);
        g.u64(p, next);
        return Errno.SUCCESS;
      },
      fd_tell: (fd, out) => {
        const g = guest();
        const e = this.#fd(fd);
        if (e.kind === 'dir') return Errno.EBADF;
        if (e.stream) return Errno.ESPIPE;
        const p = addr(out);
        g.check(p, 8);
        g.u64(p, BigInt(e.pos));
        return Errno.SUCCESS;
      },

      // -- paths --
      path_create_directory: (fd, path, pathLen) => {
        const g = guest();
        const d = this.#dir(fd);
        const r = this.#resolve(d.node, this.#path(g, path, pathLen));
        if (r.node) return Errno.EEXIST;
        const t = this.#now();
        r.dir.set(r.name!, this.vfs.newDir(r.dir, t), t);
        return Errno.SUCCESS;
      },
      path_filestat_get: (fd, _flags, path, pathLen, out) => {
        const g = guest();
        const d = this.#dir(fd);
        const node = this.#lookup(this.#resolve(d.node, this.#path(g, path, pathLen)));
        this.#filestat(g, addr(out), node, node.kind === 'dir' ? Filetype.DIRECTORY : Filetype.REGULAR_FILE, unstable);
        return Errno.SUCCESS;
      },
      path_filestat_set_times: (fd, _flags, path, pathLen, atim, mtim, flags) => {
        const g = guest();
        const d = this.#dir(fd);
        const node = this.#lookup(this.#resolve(d.node, this.#path(g, path, pathLen)));
        return this.#setTimes(node, atim, mtim, flags);
      },
      path_link: (oldFd, _flags, _oldPath, _oldLen, newFd) => {
        this.#dir(oldFd);
        this.#dir(newFd);
        return Errno.ENOTSUP;
      },
      path_open: (fd, _dirflags, path, pathLen, oflags, rightsBase, rightsInheriting, fdflags, out) => {
        const g = guest();
        const d = this.#dir(fd);
        const o = u32(oflags);
        const ff = u32(fdflags);
        if (o & ~OFLAGS_ALL || ff & ~FDFLAGS_ALL) return Errno.EINVAL;
        if (o & Oflags.CREAT && o & Oflags.DIRECTORY) return Errno.EINVAL;
        const r = this.#resolve(d.node, this.#path(g, path, pathLen));
        const p = addr(out);
        g.check(p, 4);
        if (!this.#hasFreeFd()) return Errno.EMFILE;
        const base = u64(rightsBase) & d.inheriting;
        const inheriting = u64(rightsInheriting) & d.inheriting;
        let node = r.node;
        const t = this.#now();
        if (!node) {
          if (!(o & Oflags.CREAT)) return Errno.ENOENT;
          if (r.slash) return Errno.EISDIR;
          node = this.vfs.newFile(t);
          r.dir.set(r.name!, node, t);
        } else {
          if (o & Oflags.CREAT && o & Oflags.EXCL) return Errno.EEXIST;
          if (node.kind === 'file' && (r.slash || o & Oflags.DIRECTORY)) return Errno.ENOTDIR;
          if (node.kind === 'dir' && (o & Oflags.TRUNC || base & Rights.FD_WRITE)) return Errno.EISDIR;
          if (node.kind === 'file' && o & Oflags.TRUNC) node.resize(0, t);
        }
        const entry: Fd =
          node.kind === 'dir'
            ? { kind: 'dir', node, flags: ff, base: base & RIGHTS_DIRECTORY, inheriting }
            : { kind: 'file', node, stream: false, pos: 0, flags: ff, base: base & RIGHTS_FILE, inheriting: inheriting & RIGHTS_FILE };
        g.u32(p, this.#newFd(entry));
        return Errno.SUCCESS;
      },
      path_readlink: (fd, path, pathLen, _buf, _bufLen, _out) => {
        const g = guest();
        const d = this.#dir(fd);
        this.#lookup(this.#resolve(d.node, this.#path(g, path, pathLen)));
        return Errno.EINVAL; // exists, and nothing in this VFS is a symbolic link
      },
      path_remove_directory: (fd, path, pathLen) => {
        const g = guest();
        const d = this.#dir(fd);
        const r = this.#resolve(d.node, this.#path(g, path, pathLen));
        if (r.name === null) return r.dotdot ? Errno.ENOTEMPTY : Errno.EINVAL;
        if (!r.node) return Errno.ENOENT;
        if (r.node.kind !== 'dir') return Errno.ENOTDIR;
        if (r.node.size > 0) return Errno.ENOTEMPTY;
        r.dir.delete(r.name, this.#now());
        return Errno.SUCCESS;
      },
      path_rename: (fd, oldPath, oldLen, newFd, newPath, newLen) => {
        const g = guest();
        const sd = this.#dir(fd);
        const dd = this.#dir(newFd);
        const src = this.#resolve(sd.node, this.#path(g, oldPath, oldLen));
        const dst = this.#resolve(dd.node, this.#path(g, newPath, newLen));
        if (src.name === null || dst.name === null) return Errno.EBUSY;
        const node = src.node;
        if (!node) return Errno.ENOENT;
        if (node.kind === 'file' && (src.slash || dst.slash)) return Errno.ENOTDIR;
        const errno = checkRename(node, dst.dir, dst.node);
        if (errno !== Errno.SUCCESS || dst.node === node) return errno;
        const t = this.#now();
        src.dir.delete(src.name, t);
        dst.dir.set(dst.name, node, t);
        return Errno.SUCCESS;
      },
      path_symlink: (_oldPath, _oldLen, fd) => {
        this.#dir(fd);
        return Errno.ENOTSUP;
      },
      path_unlink_file: (fd, path, pathLen) => {
        const g = guest();
        const d = this.#dir(fd);
        const r = this.#resolve(d.node, this.#path(g, path, pathLen));
        if (r.name === null) return Errno.EISDIR;
        if (!r.node) return Errno.ENOENT;
        if (r.node.kind === 'dir') return Errno.EISDIR;
        if (r.slash) return Errno.ENOTDIR;
        r.dir.delete(r.name, this.#now());
        return Errno.SUCCESS;
      },

      // -- events, process, randomness --
      poll_oneoff: (inPtr, outPtr, nsubs, nevents) => this.#poll(guest(), addr(inPtr), addr(outPtr), addr(nsubs), addr(nevents), unstable),
      proc_exit: (code) => {
        this.exitCode = u32(code);
        throw new WasiExit(this.exitCode);
      },
      proc_raise: () => Errno.ENOSYS, // no signal delivery in a sandbox
      sched_yield: () => Errno.SUCCESS,
      random_get: (buf, len) => {
        const g = guest();
        const p = addr(buf);
        const n = addr(len);
        g.check(p, n);
        if (n === 0) return Errno.SUCCESS;
        const bytes = Buffer.allocUnsafe(n);
        if (this.#drbg) this.#drbg.fill(bytes);
        else randomFillSync(bytes);
        g.write(p, bytes);
        return Errno.SUCCESS;
      },

      // -- sockets: this host has none, so any open descriptor is not a socket --
      sock_accept: (fd) => (this.#fd(fd), Errno.ENOTSOCK),
      sock_recv: (fd) => (this.#fd(fd), Errno.ENOTSOCK),
      sock_send: (fd) => (this.#fd(fd), Errno.ENOTSOCK),
      sock_shutdown: (fd) => (this.#fd(fd), Errno.ENOTSOCK),
    };

    const out = {} as Record<WasiFunctionName, WasiFunction>;
    for (const name of WASI_FUNCTIONS) out[name] = guard(fns[name]);
    return out;
  }

  #strings(g: Guest, s: { bytes: Buffer; offsets: number[] }, arrayPtr: WasmValue, bufPtr: WasmValue): number {
    const ap = addr(arrayPtr);
    const bp = addr(bufPtr);
    const arr = Buffer.alloc(s.offsets.length * g.word);
    g.check(ap, arr.length);
    g.check(bp, s.bytes.length);
    s.offsets.forEach((o, i) => putSize(arr, i * g.word, bp + o, g.wide));
    g.write(ap, arr);
    g.write(bp, s.bytes);
    return Errno.SUCCESS;
  }

  #sizes(g: Guest, s: { bytes: Buffer; offsets: number[] }, countPtr: WasmValue, sizePtr: WasmValue): number {
    const cp = addr(countPtr);
    const sp = addr(sizePtr);
    g.check(cp, g.word);
    g.check(sp, g.word);
    g.size(cp, s.offsets.length);
    g.size(sp, s.bytes.length);
    return Errno.SUCCESS;
  }

  #poll(g: Guest, inPtr: number, outPtr: number, nsubs: number, neventsPtr: number, unstable: boolean): number {
    if (nsubs === 0) return Errno.EINVAL;
    const stride = unstable ? 56 : 48;
    g.check(inPtr, nsubs * stride);
    g.check(outPtr, nsubs * 32);
    g.check(neventsPtr, g.word);
    const subs = g.read(inPtr, nsubs * stride);
    interface Ev {
      userdata: bigint;
      error: number;
      type: number;
      nbytes: bigint;
    }
    const ready: Ev[] = [];
    const clocks: Array<{ userdata: bigint; remaining: bigint }> = [];
    for (let i = 0; i < nsubs; i++) {
      const o = i * stride;
      const userdata = subs.readBigUInt64LE(o);
      const type = subs.readUInt8(o + 8);
      if (type === Eventtype.CLOCK) {
        const c = unstable ? o + 24 : o + 16; // snapshot 0 has a u64 `identifier` first
        const id = subs.readUInt32LE(c);
        const timeout = subs.readBigUInt64LE(c + 8);
        const flags = subs.readUInt16LE(c + 24);
        const now = this.#clockNow(id);
        if (now === undefined) {
          ready.push({ userdata, error: Errno.EINVAL, type, nbytes: 0n });
          continue;
        }
        const remaining = flags & Subclockflags.ABSTIME ? timeout - now : timeout;
        clocks.push({ userdata, remaining });
      } else if (type === Eventtype.FD_READ || type === Eventtype.FD_WRITE) {
        const e = this.#fds.get(subs.readUInt32LE(o + 16));
        if (!e || e.kind === 'dir') {
          ready.push({ userdata, error: Errno.EBADF, type, nbytes: 0n });
          continue;
        }
        const right = type === Eventtype.FD_READ ? Rights.FD_READ : Rights.FD_WRITE;
        if (!(e.base & right)) {
          ready.push({ userdata, error: Errno.EBADF, type, nbytes: 0n });
          continue;
        }
        const nbytes = type === Eventtype.FD_READ ? BigInt(Math.max(0, e.node.size - e.pos)) : 0n;
        ready.push({ userdata, error: Errno.SUCCESS, type, nbytes });
      } else {
        return Errno.EINVAL;
      }
    }
    if (clocks.length > 0) {
      let wait = ready.length > 0 ? 0n : clocks.reduce((m, c) => (c.remaining < m ? c.remaining : m), clocks[0]!.remaining);
      if (wait < 0n) wait = 0n;
      if (wait > 0n) {
        if (this.#wallClock) sleepNs(wait);
        else this.#elapsed += wait;
      }
      for (const c of clocks) {
        if (c.remaining <= wait) ready.push({ userdata: c.userdata, error: Errno.SUCCESS, type: Eventtype.CLOCK, nbytes: 0n });
      }
    }
    const b = Buffer.alloc(ready.length * 32);
    ready.forEach((ev, i) => {
      const o = i * 32;
      b.writeBigUInt64LE(ev.userdata, o);
      b.writeUInt16LE(ev.error, o + 8);
      b.writeUInt8(ev.type, o + 10);
      b.writeBigUInt64LE(ev.nbytes, o + 16);
    });
    g.write(outPtr, b);
    g.size(neventsPtr, ready.length);
    return Errno.SUCCESS;
  }
}

/** Turns internal failures into errno results; guest memory faults into EFAULT. */
function guard(fn: (...a: WasmValue[]) => number): WasiFunction {
  return (...args) => {
    try {
      return fn(...args);
    } catch (e) {
      if (e instanceof Fail) return e.errno;
      if (e instanceof AoError && e.code === 'ERR_OUT_OF_BOUNDS') return Errno.EFAULT;
      throw e;
    }
  };
}

function sameType(a: FuncType, b: FuncType): boolean {
  const same = (x: readonly string[], y: readonly string[]) => x.length === y.length && x.every((v, i) => v === y[i]);
  return same(a.params, b.params) && same(a.results, b.results);
}

function showType(t: FuncType): string {
  return `(${t.params.join(', ')}) -> (${t.results.join(', ')})`;
}

/** What an unknown WASI import returns: ENOSYS when it returns an errno, zeros otherwise. */
function enosysStub(type: FuncType | undefined): (...args: WasmValue[]) => unknown {
  const results = type?.results ?? [];
  const value = (t: string, i: number): WasmValue => {
    const v = i === 0 && (t === 'i32' || t === 'i64') ? Errno.ENOSYS : 0;
    return t === 'i64' ? BigInt(v) : v;
  };
  if (results.length === 0) return () => undefined;
  if (results.length === 1) {
    const v = value(results[0]!, 0);
    return () => v;
  }
  const vs = results.map(value);
  return () => [...vs];
}

const WASI_MODULES = new Map<string, WasiFlavor>([
  ['wasi_snapshot_preview1', 'preview1'],
  ['wasi_unstable', 'unstable'],
]);

/**
 * Host functions for exactly the WASI imports `module` declares, under `wasi_snapshot_preview1`
 * and `wasi_unstable`, ready to merge into `WasmInstance` imports. The ABI of each function is
 * read from its declared signature (a pointer or size parameter declared i64 means wasm64),
 * and the whole signature must then match that ABI, else a `WasmError` (`ERR_WASI_SIGNATURE`)
 * names the import. Names preview1 does not define get a stub returning ENOSYS.
 */
export function wasiImportsFor(
  module: WasmModule,
  wasi: WasiPreview1,
  getInstance: () => WasmInstance,
): Record<string, Record<string, (...args: WasmValue[]) => unknown>> {
  if (!(wasi instanceof WasiPreview1)) throw badArg('wasiImportsFor: wasi must be a WasiPreview1');
  const tables = new Map<string, Record<WasiFunctionName, WasiFunction>>();
  const table = (abi: WasiAbi, flavor: WasiFlavor): Record<WasiFunctionName, WasiFunction> => {
    const key = `${abi}/${flavor}`;
    let t = tables.get(key);
    if (!t) tables.set(key, (t = wasi.imports(getInstance, abi, flavor)));
    return t;
  };
  const out: Record<string, Record<string, (...args: WasmValue[]) => unknown>> = {};
  for (const imp of module.imports) {
    const flavor = imp.module !== undefined ? WASI_MODULES.get(imp.module) : undefined;
    if (flavor === undefined || imp.kind !== 'func') continue;
    const mod = (out[imp.module!] ??= {});
    const known =
      Object.prototype.hasOwnProperty.call(WASI_SIGNATURES, imp.name) && !(flavor === 'unstable' && imp.name === 'sock_accept');
    if (!known) {
      mod[imp.name] = enosysStub(imp.type);
      continue;
    }
    const name = imp.name as WasiFunctionName;
    const declared = imp.type ?? { params: [], results: [] };
    const sig = WASI_SIGNATURES[name] as readonly WasiParam[];
    const wide = sig.some((p, i) => (p === 'ptr' || p === 'size') && declared.params[i] === 'i64');
    const abi: WasiAbi = wide ? 'wasm64' : 'wasm32';
    const expected = wasiFuncType(name, abi);
    if (!sameType(declared, expected)) {
      throw new WasmError(
        `${imp.module}.${name} is declared ${showType(declared)}, expected ` +
          `${showType(wasiFuncType(name, 'wasm32'))} (wasm32) or ${showType(wasiFuncType(name, 'wasm64'))} (wasm64)`,
        { code: 'ERR_WASI_SIGNATURE' },
      );
    }
    mod[name] = table(abi, flavor)[name];
  }
  return out;
}
