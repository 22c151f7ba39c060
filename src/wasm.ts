/**
 * WebAssembly handles: `WasmModule` (compiled code, cached by image hash) and `WasmInstance`
 * (an instance in its own Wasmtime store, with JS host imports, 64-bit memory access and
 * snapshots). Thin wrappers over the native classes declared in `native.ts`: arguments are
 * validated here, then one native call does the work.
 */
import { createHash } from 'node:crypto';
import * as buffer from 'node:buffer';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from './atomic-file';
import { AoError, SnapshotError, WasmError, badArg } from './errors';
import { DEFAULT_TIME_LIMIT_MS } from './limits';
import {
  native,
  type NativeExternDesc,
  type NativeFuncType,
  type NativeInstanceOptions,
  type NativeWasmInstance,
  type NativeWasmModule,
} from './native';
import { INTERNAL_EXPORT_PREFIX, exposeInternals } from './wasm-binary';
import { scanCode } from './wasm-code';
import { memoryOf, type WasmMemory } from './wasm-memory';
import { SNAPSHOT_FILE_OPTIONS, SNAPSHOT_OPTIONS, snapshotId, syncDir, type SnapshotFileOptions, type SnapshotOptions } from './wasm-snapshot';

export type WasmValue = number | bigint;
export type { NativeFuncType as FuncType, NativeExternDesc as ExternDesc };
export { snapshotId, type SnapshotFileOptions, type SnapshotOptions, type WasmMemory };

/** Default cap on each memory that declares no maximum of its own: 4 GiB. */
export const DEFAULT_MAX_MEMORY_BYTES = 4 * 1024 ** 3;
/** Default cap on the elements of each table (a declared maximum applies as well). */
export const DEFAULT_MAX_TABLE_ELEMENTS = 10_000_000;
/** Compile limits: what `WasmModule.compile` accepts by default (costs measured in docs/wasm.md). */
export const DEFAULT_COMPILE_LIMITS: Readonly<Required<CompileLimits>> = Object.freeze({
  maxFunctionBytes: 1 << 20,
  maxNestingDepth: 10_000,
  maxLoopsSquared: 16_000_000,
  maxBranchesSquared: 160_000_000,
});

/**
 * Bounds on what compiling may cost, checked on the image before compiling (a few ms for an AOS
 * image). Over a limit, `compile` throws a `WasmError` with code `ERR_WASM_TOO_LARGE`. Each takes
 * `Infinity` to turn it off.
 */
export interface CompileLimits {
  /** Largest function body in bytes (default 1 MiB; Wasmtime's own limit is 7,654,321). */
  maxFunctionBytes?: number;
  /** Most blocks open at once in a function (default 10,000). */
  maxNestingDepth?: number;
  /**
   * Sum over the functions of the square of their number of loops (default 16 million: one
   * function of 4,000 loops, or 1,600 functions of 100): compile time grows with it.
   */
  maxLoopsSquared?: number;
  /**
   * With `fuel: true` only: sum over the functions of the square of their number of conditional
   * branches and loops, which fuel metering instruments (default 160 million: one function of
   * 12,649, or AOS's 0.3 million many times over).
   */
  maxBranchesSquared?: number;
}

/** The compile limits of `opts`, validated, defaults filled in. */
function compileLimits(opts: CompileOptions | undefined): Required<CompileLimits> {
  const limit = (k: keyof CompileLimits): number =>
    opts?.[k] === undefined ? DEFAULT_COMPILE_LIMITS[k] : capOption(opts[k], k, 'WasmModule.compile');
  return {
    maxFunctionBytes: limit('maxFunctionBytes'),
    maxNestingDepth: limit('maxNestingDepth'),
    maxLoopsSquared: limit('maxLoopsSquared'),
    maxBranchesSquared: limit('maxBranchesSquared'),
  };
}

/** Throws `ERR_WASM_TOO_LARGE` when `image` is over one of `limits` (branches only when `metered`). */
function checkCompileLimits(image: Uint8Array, limits: Required<CompileLimits>, metered: boolean): void {
  const over = (what: string, option: keyof CompileLimits): never => {
    throw new WasmError(`${what}, over the compile limit of ${limits[option]} (compile option ${option})`, { code: 'ERR_WASM_TOO_LARGE' });
  };
  let loops2 = 0;
  let branches2 = 0;
  for (const f of scanCode(image)) {
    if (f.size > limits.maxFunctionBytes) over(`function ${f.index} has a body of ${f.size} bytes`, 'maxFunctionBytes');
    if (f.depth > limits.maxNestingDepth) over(`function ${f.index} nests ${f.depth} blocks`, 'maxNestingDepth');
    loops2 += f.loops * f.loops;
    branches2 += f.branches * f.branches;
  }
  if (loops2 > limits.maxLoopsSquared) over(`the sum over functions of their loops squared is ${loops2}`, 'maxLoopsSquared');
  if (metered && branches2 > limits.maxBranchesSquared) {
    over(`the sum over functions of their branches squared is ${branches2}`, 'maxBranchesSquared');
  }
}

const MODULE_MAGIC = Buffer.from('HBMODULE');
const MODULE_FORMAT = 2;
const MODULE_HEADER = 8 + 4 + 4 + 32; // magic, format, engine flags, image hash

export interface CompileOptions extends CompileLimits {
  /** Use the in-memory module cache (default true): the same image is never compiled twice. */
  cache?: boolean;
  /**
   * Also keep compiled code in this directory (`<sha256>-<profile>….wasmtime-<version>.cwasm`),
   * loaded from there by mapping the file and running its code in place. Compiled code is trusted:
   * the directory must be writable by this user alone, and its files replaced only by rename.
   */
  cacheDir?: string;
  /**
   * Compile fuel metering in, so that instances can be given a `fuel` budget per call (default
   * false: metering costs about 20% of guest speed).
   */
  fuel?: boolean;
  /**
   * Keep Cranelift's Spectre mitigations on heap and table bounds checks (default true). Turning
   * them off speeds up memory-heavy guests (~30% on AOS) at the cost of speculative side-channel
   * hardening: only for guests you trust not to attack the host process.
   */
  spectreMitigation?: boolean;
  /**
   * Compile Wasmtime's epoch checks in, which wall-clock time limits need (default true). `false`
   * is an explicit opt-out of every time limit for this module's instances (their `timeLimit` is
   * then `Infinity`, and a finite one is refused) for 8% to 23% of speed on AOS (docs/wasm.md):
   * only with another bound on the guest, such as fuel.
   */
  interruptible?: boolean;
}
const COMPILE_OPTIONS = new Set(['cache', 'cacheDir', 'fuel', 'spectreMitigation', 'interruptible', 'maxFunctionBytes', 'maxNestingDepth', 'maxLoopsSquared', 'maxBranchesSquared']);

/** Engine profile bits (native/wasm_engine.h EngineFlags). */
const ENGINE_FUEL = 1;
const ENGINE_NO_SPECTRE = 2;
const ENGINE_NO_EPOCH = 4;
function engineFlags(opts: CompileOptions | undefined): number {
  return (
    (opts?.fuel ? ENGINE_FUEL : 0) |
    (opts?.spectreMitigation === false ? ENGINE_NO_SPECTRE : 0) |
    (opts?.interruptible === false ? ENGINE_NO_EPOCH : 0)
  );
}

function checkOptions(opts: object | undefined, allowed: Set<string>, where: string): void {
  if (opts === undefined) return;
  if (opts === null || typeof opts !== 'object') throw badArg(`${where}: options must be an object`);
  for (const k of Object.keys(opts)) {
    if (!allowed.has(k)) throw badArg(`${where}: unknown option '${k}' (allowed: ${[...allowed].join(', ')})`);
  }
}

/** A cap option: a non-negative integer, or `Infinity` (positive integers only when `positive`). */
function capOption(value: unknown, name: string, where: string, positive = false): number {
  const ok = value === Infinity || (typeof value === 'number' && Number.isSafeInteger(value) && value >= (positive ? 1 : 0));
  if (!ok) throw badArg(`${where}: ${name} must be a ${positive ? 'positive' : 'non-negative'} integer or Infinity`);
  return value as number;
}

/** A time limit option: a positive number of milliseconds, or `Infinity`. */
function timeLimitOption(value: unknown, where: string): number {
  if (typeof value !== 'number' || !(value > 0)) {
    throw badArg(`${where}: timeLimit must be a positive number of milliseconds, or Infinity`);
  }
  return value;
}

function asBytes(bytes: unknown, where: string): Uint8Array {
  if (bytes instanceof Uint8Array) return bytes;
  if (bytes instanceof ArrayBuffer) return new Uint8Array(bytes);
  throw badArg(`${where}: expected a Uint8Array`);
}

/** SHA-256 of an image: the identity of a module in caches and snapshots. */
export function imageHash(bytes: Uint8Array): Buffer {
  return createHash('sha256').update(bytes).digest();
}

const memoryCache = new Map<string, WasmModule>();

/** Modules compiled from a memory64 image lowered to a 32-bit memory (src/wasm-lower.ts). */
const lowered64 = new WeakSet<WasmModule>();

/**
 * Marks `m` as compiled from a lowered memory64 image (loadImage does): its memory is still
 * described and accessed as a memory64 (`is64`, bigint sizes), as in the original module.
 */
export function markMemory64Lowered(m: WasmModule): void {
  lowered64.add(m);
  for (const e of m.exports) if (e.kind === 'memory' && e.detail) (e.detail as { is64?: boolean }).is64 = true;
}

/** A compiled WebAssembly module. */
export class WasmModule {
  readonly #native: NativeWasmModule;
  /** SHA-256 of the original image (before hb-runtimes added its internal exports). */
  readonly hash: Buffer;
  /** Whether fuel metering is compiled in (see `CompileOptions.fuel`). */
  readonly metered: boolean;
  /** Whether epoch checks are compiled in, so that instances can have a time limit (`CompileOptions.interruptible`). */
  readonly interruptible: boolean;
  readonly #flags: number;
  /** The module's imports, in order, with their types. */
  readonly imports: readonly NativeExternDesc[];
  /** Whether the image's memory64 was lowered to a 32-bit memory at load time (docs/wasm.md). */
  get memory64Lowered(): boolean {
    return lowered64.has(this);
  }
  /** The module's own exports (internal `hb:` exports are hidden). */
  readonly exports: readonly NativeExternDesc[];
  #disposed = false;
  #cacheKey: string | undefined;

  private constructor(handle: NativeWasmModule, hash: Buffer, flags: number) {
    this.#native = handle;
    this.hash = hash;
    this.#flags = flags;
    this.metered = (flags & ENGINE_FUEL) !== 0;
    this.interruptible = (flags & ENGINE_NO_EPOCH) === 0;
    this.imports = Object.freeze(handle.imports());
    this.exports = Object.freeze(handle.exports().filter((e) => !e.name.startsWith(INTERNAL_EXPORT_PREFIX)));
  }

  /**
   * Compiles and validates an image. Invalid bytes throw a `WasmError` (code `ERR_WASM_COMPILE`)
   * carrying the engine's message. Cached by SHA-256: compiling the same bytes again returns the
   * same module without recompiling.
   */
  static compile(bytes: Uint8Array, opts?: CompileOptions, /** @internal the image `bytes` stand for (see wasm-image.ts) */ identity?: Buffer): WasmModule {
    checkOptions(opts, COMPILE_OPTIONS, 'WasmModule.compile');
    const limits = compileLimits(opts);
    const image = asBytes(bytes, 'WasmModule.compile');
    const hash = imageHash(image);
    const flags = engineFlags(opts);
    const key = `${hash.toString('hex')}-${flags}${identity ? `-as-${identity.toString('hex')}` : ''}`;
    const useCache = opts?.cache !== false;
    if (useCache) {
      const hit = memoryCache.get(key);
      if (hit && !hit.#disposed) return hit;
    }
    const dir = opts?.cacheDir;
    let mod = dir ? WasmModule.#mapped(dir, key, identity ?? hash, flags) : undefined;
    if (!mod) {
      checkCompileLimits(image, limits, Boolean(opts?.fuel));
      mod = new WasmModule(native.WasmModule.compile(exposeInternals(image).bytes, flags), identity ?? hash, flags);
      if (dir) mod.#store(dir, key);
    }
    mod.#cacheKey = key;
    if (useCache) memoryCache.set(key, mod);
    return mod;
  }

  /**
   * The disk cache's module stored under `key` (its file name says the engine profile), mapped and
   * run in place; undefined when there is none, or when it is stale or damaged (Wasmtime checks
   * its version and settings), so that the caller compiles and replaces it.
   */
  static #mapped(dir: string, key: string, hash: Buffer, flags: number): WasmModule | undefined {
    const file = cacheFile(dir, key);
    if (!fs.existsSync(file)) return undefined;
    try {
      return new WasmModule(native.WasmModule.deserializeFile(file, 0, flags), hash, flags);
    } catch {
      return undefined;
    }
  }

  /** Writes Wasmtime's bytes for this module to the disk cache under `key` (a new file, renamed over). */
  #store(dir: string, key: string): void {
    writeFileAtomic(cacheFile(dir, key), this.#native.serialize());
  }

  /**
   * @internal loadImage's disk cache: the module stored under `name` for the profile of `opts`,
   * whose image is `hash` (see wasm-image.ts), or undefined.
   */
  static fromCache(dir: string, name: string, hash: Buffer, opts: CompileOptions): WasmModule | undefined {
    const flags = engineFlags(opts);
    return WasmModule.#mapped(dir, `${name}-${flags}`, hash, flags);
  }

  /** @internal Stores this module in `dir` for `fromCache(dir, name, …)`. */
  toCache(dir: string, name: string): void {
    this.#store(dir, `${name}-${this.#flags}`);
  }

  /** Checks the header of `serialize()`'s bytes; their engine flags and image hash. */
  static #header(blob: Buffer): { flags: number; hash: Buffer } {
    if (blob.length < MODULE_HEADER || !blob.subarray(0, 8).equals(MODULE_MAGIC)) {
      throw new WasmError('not a serialized hb-runtimes module (bad magic)', { code: 'ERR_WASM_DESERIALIZE' });
    }
    const version = blob.readUInt32LE(8);
    if (version !== MODULE_FORMAT) {
      throw new WasmError(`unsupported serialized module version ${version}`, { code: 'ERR_WASM_DESERIALIZE' });
    }
    return { flags: blob.readUInt32LE(12), hash: Buffer.from(blob.subarray(16, MODULE_HEADER)) };
  }

  /**
   * `deserialize` of a file holding `serialize()`'s bytes (the disk cache): the header is read
   * here, the code mapped by the addon, so it never passes through the JS heap.
   */
  static deserializeFile(file: string): WasmModule {
    const header = Buffer.alloc(MODULE_HEADER);
    const fd = fs.openSync(file, 'r');
    let n: number;
    try {
      n = fs.readSync(fd, header, 0, MODULE_HEADER, 0);
    } finally {
      fs.closeSync(fd);
    }
    const { flags, hash } = WasmModule.#header(header.subarray(0, n));
    return new WasmModule(native.WasmModule.deserializeFile(file, MODULE_HEADER, flags), hash, flags);
  }

  /** Loads code produced by `serialize()` (same hb-runtimes build and platform). */
  static deserialize(bytes: Uint8Array): WasmModule {
    // A view, not a copy: the engine copies the code out before this returns.
    const b = asBytes(bytes, 'WasmModule.deserialize');
    const blob = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
    const { flags, hash } = WasmModule.#header(blob);
    return new WasmModule(native.WasmModule.deserialize(blob.subarray(MODULE_HEADER), flags), hash, flags);
  }

  /**
   * Precompiled code: `HBMODULE`, u32 format, u32 engine profile, 32-byte image hash, then
   * Wasmtime's bytes (which Wasmtime itself checks against the engine's version and settings).
   */
  serialize(): Buffer {
    const header = Buffer.alloc(16);
    MODULE_MAGIC.copy(header, 0);
    header.writeUInt32LE(MODULE_FORMAT, 8);
    header.writeUInt32LE(this.#flags, 12);
    return Buffer.concat([header, this.hash, this.#native.serialize()]);
  }

  /** The signature of an exported function, or undefined. */
  exportType(name: string): NativeFuncType | undefined {
    const e = this.exports.find((x) => x.name === name && x.kind === 'func');
    return e?.type;
  }

  /** Frees the compiled code and closes every instance created from it. Idempotent. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    const key = this.#cacheKey ?? `${this.hash.toString('hex')}-${this.#flags}`;
    if (memoryCache.get(key) === this) memoryCache.delete(key);
    this.#native.dispose();
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /** @internal */
  static handleOf(m: WasmModule): NativeWasmModule {
    if (m.#disposed) throw new TypeError('WasmModule is closed');
    return m.#native;
  }
}

let wasmtimeVersion: string | undefined;

/**
 * A disk-cache file: Wasmtime's bytes alone, mapped in place when loaded. (Files of the earlier
 * form, `<key>-wasmtime-<version>.cwasm` with the serialize() header, are left unread.)
 */
function cacheFile(dir: string, key: string): string {
  wasmtimeVersion ??= native.versions().wasmtime;
  return path.join(dir, `${key}.wasmtime-${wasmtimeVersion}.cwasm`);
}

/** Host functions by module and name: `{ env: { log: (x) => … } }`. */
export type WasmImports = Record<string, Record<string, (...args: WasmValue[]) => unknown>>;

export interface InstanceOptions {
  /**
   * Wall-clock time limit in milliseconds of instantiation (the start function included) and of
   * each outermost call (default `DEFAULT_TIME_LIMIT_MS`, 10 s; `Infinity`: none). Time spent in
   * host imports counts. Exceeding it throws a `LimitError` (limit `time`, trapCode `interrupt`).
   * Machine-dependent: for a deterministic bound use `fuel`.
   */
  timeLimit?: number;
  /**
   * Fuel budget for instantiation (the start function) and for each outermost call; exceeding it
   * throws a `LimitError` (limit `fuel`). Needs a module compiled with `{ fuel: true }`.
   */
  fuel?: number | bigint;
  /**
   * Cap on each memory's size in bytes (default: the memory's declared maximum, or
   * `DEFAULT_MAX_MEMORY_BYTES`, 4 GiB, when it declares none; `Infinity`: only the declared
   * maximum). A `memory.grow` beyond it returns -1 to the guest; a call that then traps, or an
   * instantiation that needs more, throws a `LimitError` (limit `memory`).
   */
  maxMemoryBytes?: number;
  /**
   * Cap on each table's elements (default `DEFAULT_MAX_TABLE_ELEMENTS`, 10 million; a declared
   * maximum applies as well). Refusals behave as for memory.
   */
  maxTableElements?: number;
  /**
   * Function imports missing from `imports`: `'error'` (default) refuses to instantiate with a
   * `WasmError`; `'trap'` links a stub that traps with the import's name if the guest calls it.
   */
  missingImports?: 'error' | 'trap';
  /**
   * Track which memory pages are written, so that `snapshot({ since })` copies only those (Linux ≥
   * 6.7; elsewhere a delta holds every page). `true`: from the first snapshot or restore on;
   * `false`: never (every delta holds every page); default (undefined): from the first incremental
   * snapshot on, which itself holds every page, so that instances that never take one pay nothing.
   * While tracking, each page's first write after a snapshot costs a minor fault (~1 µs).
   */
  trackWrites?: boolean;
}
const INSTANCE_OPTIONS = new Set(['timeLimit', 'fuel', 'maxMemoryBytes', 'maxTableElements', 'missingImports', 'trackWrites']);

/** Options of one call. */
export interface CallOptions {
  /** Wall-clock time limit of this call in milliseconds (default: the instance's `timeLimit`). Ignored for a call made from inside another call (a host import), which shares the outermost call's deadline. */
  timeLimit?: number;
}
const CALL_OPTIONS = new Set(['timeLimit']);

/** The time limit of a call given options; `instanceLimit` when they name none. */
function callTimeLimit(opts: CallOptions, where: string, instanceLimit: number): number {
  checkOptions(opts, CALL_OPTIONS, where);
  return opts.timeLimit === undefined ? instanceLimit : timeLimitOption(opts.timeLimit, where);
}

/** An instance of a module, with its own store, memory and globals. */
export class WasmInstance {
  readonly #native: NativeWasmInstance;
  /** `#native.call`, bound by the addon: what `call` uses. */
  readonly #call: (index: number, ...args: unknown[]) => number | bigint | undefined | Array<number | bigint>;
  readonly module: WasmModule;
  readonly memory: WasmMemory;
  readonly #index = new Map<string, number>();
  #lastName: string | undefined;
  #lastIndex: number | undefined;
  readonly #timeLimit: number;
  #disposed = false;

  constructor(module: WasmModule, imports: WasmImports = {}, opts?: InstanceOptions) {
    if (!(module instanceof WasmModule)) throw badArg('WasmInstance: the first argument must be a WasmModule');
    checkOptions(opts, INSTANCE_OPTIONS, 'WasmInstance');
    if (imports === null || typeof imports !== 'object') throw badArg('WasmInstance: imports must be an object');
    if (opts?.missingImports !== undefined && opts.missingImports !== 'error' && opts.missingImports !== 'trap') {
      throw badArg(`WasmInstance: missingImports must be 'error' or 'trap'`);
    }
    const fns = module.imports.map((imp) => {
      const fn = imports[imp.module ?? '']?.[imp.name];
      if (fn !== undefined && typeof fn !== 'function') {
        throw badArg(`WasmInstance: import ${imp.module}.${imp.name} must be a function`);
      }
      if (fn === undefined && opts?.missingImports === 'trap' && imp.kind === 'func') {
        return () => {
          throw new AoError(`import ${imp.module}.${imp.name} was called but not provided`, { status: 500, code: 'ERR_WASM_IMPORT' });
        };
      }
      return fn as ((...args: Array<number | bigint>) => unknown) | undefined;
    });
    this.#timeLimit =
      opts?.timeLimit === undefined ? (module.interruptible ? DEFAULT_TIME_LIMIT_MS : Infinity) : timeLimitOption(opts.timeLimit, 'WasmInstance');
    if (!module.interruptible && this.#timeLimit !== Infinity) {
      throw badArg('WasmInstance: a timeLimit needs a module compiled with interruptible: true (the default)');
    }
    const nopts: NativeInstanceOptions = {
      timeLimit: this.#timeLimit,
      maxTableElements:
        opts?.maxTableElements === undefined ? DEFAULT_MAX_TABLE_ELEMENTS : capOption(opts.maxTableElements, 'maxTableElements', 'WasmInstance'),
    };
    if (opts?.fuel !== undefined) nopts.fuel = BigInt(opts.fuel);
    if (opts?.maxMemoryBytes !== undefined) nopts.maxMemoryBytes = capOption(opts.maxMemoryBytes, 'maxMemoryBytes', 'WasmInstance', true);
    if (opts?.trackWrites !== undefined) {
      if (typeof opts.trackWrites !== 'boolean') throw badArg('WasmInstance: trackWrites must be a boolean');
      nopts.trackWrites = opts.trackWrites;
    }
    this.#native = new native.WasmInstance(WasmModule.handleOf(module), fns, nopts);
    this.#call = this.#native.caller();
    this.module = module;
    const mem = module.exports.find((e) => e.kind === 'memory') ?? module.imports.find((e) => e.kind === 'memory');
    this.memory = memoryOf(this.#native, Boolean(mem?.detail?.is64));
  }

  /**
   * Calls an exported function. Arguments are converted to its signature (i64 takes bigint or a
   * safe integer; f32/f64 take any number); results come back as an array (i64 as bigint). A wrong
   * name, arity or type is an `AoError` 400 (a function with a type JS cannot carry, such as
   * v128, a `WasmError` `ERR_WASM_TYPE`); a trap is a `WasmTrap` 500 with `trapCode` and `frames`;
   * a limit reached (time, fuel, memory) a `LimitError`.
   */
  call(name: string, args: readonly unknown[] = [], opts?: CallOptions): WasmValue[] {
    // The export called last is found without the map (a loop calling one export is the hot case).
    let idx = name === this.#lastName ? this.#lastIndex : this.#index.get(name);
    if (idx === undefined) {
      idx = this.#native.exportIndex(name);
      if (idx < 0) {
        throw new AoError(`function not found: ${name}`, { status: 404, code: 'ERR_NOT_FOUND', key: name });
      }
      this.#index.set(name, idx);
    }
    this.#lastName = name;
    this.#lastIndex = idx;
    if (!Array.isArray(args)) throw badArg(`call(${name}): args must be an array`);
    const r = opts === undefined ? this.#call(idx, ...args) : this.#native.callLimited(callTimeLimit(opts, 'call', this.#timeLimit), idx, ...args);
    return r === undefined ? [] : Array.isArray(r) ? r : [r];
  }

  /**
   * Calls element `index` of the module's (first exported) function table, as `call_indirect`
   * would: emscripten's `invoke_*` trampolines need it. Same conversions and errors as `call`.
   */
  callTable(index: WasmValue, args: readonly unknown[] = [], opts?: CallOptions): WasmValue[] {
    const r =
      opts === undefined ? this.#native.callTable(index, ...args) : this.#native.callTableLimited(callTimeLimit(opts, 'callTable', this.#timeLimit), index, ...args);
    return r === undefined ? [] : Array.isArray(r) ? r : [r];
  }

  /** Whether the module exports a function of that name. */
  hasExport(name: string): boolean {
    return this.module.exports.some((e) => e.name === name && e.kind === 'func');
  }

  /** Calls the guest's `malloc(size)`; a null result is an `AoError` 500 `ERR_MALLOC`. */
  malloc(size: WasmValue): WasmValue {
    const [ptr] = this.call('malloc', [this.#pointerArg('malloc', size)]);
    if (ptr === 0 || ptr === 0n) {
      throw new AoError(`malloc(${size}) failed: the guest returned NULL`, { status: 500, code: 'ERR_MALLOC' });
    }
    return ptr!;
  }

  /** Calls the guest's `free(ptr)` when it exports one. */
  free(ptr: WasmValue): void {
    if (this.hasExport('free')) this.call('free', [this.#pointerArg('free', ptr)]);
  }

  /** Writes `bytes` plus a NUL into memory from the guest's `malloc`; returns the pointer. */
  writeString(bytes: string | Uint8Array): WasmValue {
    const data = typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes;
    const ptr = this.malloc(data.length + 1);
    const withNul = Buffer.allocUnsafe(data.length + 1);
    withNul.set(data, 0);
    withNul[data.length] = 0;
    this.#native.memoryWrite(ptr, withNul);
    return ptr;
  }

  /** Reads the NUL-terminated bytes at `ptr` (a one-element array is accepted, as HyperBEAM does). */
  readString(ptr: WasmValue | [WasmValue]): Buffer {
    const p = Array.isArray(ptr) ? ptr[0] : ptr;
    return this.#native.readCString(p as WasmValue);
  }

  #pointerArg(fn: string, v: WasmValue): WasmValue {
    const t = this.module.exportType(fn);
    if (!t) throw new AoError(`function not found: ${fn}`, { status: 404, code: 'ERR_NOT_FOUND', key: fn });
    return t.params[0] === 'i64' ? BigInt(v) : Number(v);
  }

  /**
   * Captures every memory and mutable global into a versioned blob tied to this module's image
   * hash, checksummed over every byte (format in docs/wasm.md). Only between calls: from inside a
   * call (a host import) it throws a busy `TypeError`. A module with a mutable reference-typed
   * global cannot be snapshotted (`SnapshotError`).
   *
   * With `{ since }` (this instance's latest snapshot), an incremental snapshot: the pages written
   * since then, every global, and the memories' sizes; its cost follows what changed. `restore(base,
   * ...deltas)` applies a chain. A full blob larger than the largest Buffer (4 GiB on Node 20) is
   * a `SnapshotError`: use `snapshotToFile()`.
   */
  snapshot(opts?: SnapshotOptions): Buffer {
    if (opts !== undefined) {
      checkOptions(opts, SNAPSHOT_OPTIONS, 'snapshot');
      if (opts.since !== undefined) return this.#native.snapshotDelta(this.module.hash, snapshotId(opts.since));
    }
    const size = this.#native.snapshotSize();
    if (size > buffer.constants.MAX_LENGTH) {
      throw new SnapshotError(`a snapshot of ${size} bytes is larger than the largest Buffer (${buffer.constants.MAX_LENGTH}): use snapshotToFile()`);
    }
    return this.#native.snapshot(this.module.hash, Buffer.allocUnsafe(size));
  }

  /**
   * Writes a full snapshot, of any size, to `file`: the same bytes as `snapshot()`, streamed in
   * chunks from memory to the file (no buffer of the whole). Written to a temporary file in the
   * same directory and renamed over `file`, so `file` is never partial. Returns its size and id.
   */
  snapshotToFile(file: string, opts?: SnapshotFileOptions): { bytes: number; id: bigint } {
    checkOptions(opts, SNAPSHOT_FILE_OPTIONS, 'snapshotToFile');
    if (typeof file !== 'string' || file === '') throw badArg('snapshotToFile(file): file must be a path');
    const tmp = `${file}.${process.pid}.${Date.now()}.${Math.random().toString(36).slice(2)}.tmp`;
    const fd = fs.openSync(tmp, 'w', 0o644);
    try {
      const out = this.#native.snapshotToFd(this.module.hash, fd);
      if (opts?.fsync) fs.fsyncSync(fd);
      fs.closeSync(fd);
      fs.renameSync(tmp, file);
      if (opts?.fsync) syncDir(path.dirname(file));
      return out;
    } catch (e) {
      try {
        fs.closeSync(fd);
      } catch {
        // already closed
      }
      fs.rmSync(tmp, { force: true });
      throw e;
    }
  }

  /**
   * Restores a snapshot taken from an instance of the same image (format version 2, or 1 from
   * earlier releases), then the incremental snapshots that follow it, in order. Every blob is
   * fully validated (magic, version, flags, image, checksum, shapes, and each delta's parent)
   * before anything is touched: a bad one throws a `SnapshotError` and leaves the instance as it
   * was. Only between calls: from inside a call (a host import) it throws a busy `TypeError`.
   */
  restore(snapshot: Uint8Array, ...deltas: Uint8Array[]): void {
    const blobs = [asBytes(snapshot, 'WasmInstance.restore'), ...deltas.map((d) => asBytes(d, 'WasmInstance.restore'))];
    this.#native.restore(blobs, this.module.hash);
  }

  /**
   * Restores a full snapshot file (from `snapshotToFile()`, or a blob written to disk), of any
   * size, then `deltas`. The file is read twice: once to verify all of it (a damaged file is a
   * `SnapshotError`, the instance untouched), then into memory, checksummed again; a file that
   * changes in between is caught by the second checksum, and the half-restored instance is
   * disposed (`SnapshotError`).
   */
  restoreFromFile(file: string, ...deltas: Uint8Array[]): void {
    if (typeof file !== 'string' || file === '') throw badArg('restoreFromFile(file): file must be a path');
    const blobs = deltas.map((d) => asBytes(d, 'WasmInstance.restoreFromFile'));
    const fd = fs.openSync(file, 'r');
    try {
      this.#native.restoreFromFd(fd, fs.fstatSync(fd).size, this.module.hash, blobs);
    } catch (e) {
      if ((e as { disposed?: boolean }).disposed === true) this.#disposed = true;
      throw e;
    } finally {
      fs.closeSync(fd);
    }
  }

  /**
   * Whether this system tracks memory writes for incremental snapshots (Linux ≥ 6.7 with
   * userfaultfd allowed; `HB_RUNTIMES_NO_WRITE_TRACKING=1` turns it off). Without it a delta holds
   * every page: still exact, but as large as a full snapshot.
   */
  static get writeTracking(): boolean {
    return native.writeTracking();
  }

  /**
   * Whether `memory.copy()` is copy-on-write here (Linux ≥ 6.7, memfd and PAGEMAP_SCAN;
   * `HB_RUNTIMES_NO_COW=1` turns it off). Without it a copy is a plain copy, and `isCopy` is false.
   */
  static get copyOnWrite(): boolean {
    return native.copyOnWrite();
  }

  /** Fuel consumed by the last outermost call (0 when no budget was set). */
  get fuelConsumed(): bigint {
    return this.#native.fuelConsumed();
  }

  /** Frees the store. Idempotent; during a call it takes effect when the call returns. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#native.dispose();
  }

  get disposed(): boolean {
    return this.#disposed;
  }
}
