/**
 * The declared surface of the native addon (`hb_runtimes.node`). This is the only module that
 * loads the binary: node-gyp-build loads `build/Release/` (a local source build) when
 * there is one, else the prebuilt binary in `prebuilds/<platform>-<arch>/`. Public classes in `wasm.ts` and `lua.ts` wrap these
 * handles; nothing else touches them.
 */
import * as path from 'node:path';
import { ERROR_CLASSES } from './errors';

/**
 * Value types of WebAssembly signatures as the addon reports them, in the text format's names:
 * the numeric types (the only ones that cross to JS), `v128`, and reference types (`funcref`,
 * `externref`, `anyref`, `exnref`, ..., or `(ref null? <heap type>)`, `$func` for a concrete one).
 */
export type NativeValType = 'i32' | 'i64' | 'f32' | 'f64' | 'v128' | 'funcref' | 'externref' | 'anyref' | 'exnref' | (string & {});

export interface NativeFuncType {
  params: NativeValType[];
  results: NativeValType[];
}

export interface NativeExternDesc {
  module?: string;
  name: string;
  kind: 'func' | 'memory' | 'table' | 'global' | 'tag';
  type?: NativeFuncType;
  /** memories: `{ min, max?, is64 }` in pages; globals: `{ content, mutable }`; tables: `{ element }`. */
  detail?: Record<string, unknown>;
}

/** A compiled module (Wasmtime `wasmtime_module_t`). */
export interface NativeWasmModule {
  serialize(): Buffer;
  imports(): NativeExternDesc[];
  exports(): NativeExternDesc[];
  dispose(): void;
}

export interface NativeWasmModuleCtor {
  /**
   * Compiles and validates `bytes` for an engine profile (bit 1: fuel metering, bit 2: no Spectre
   * mitigations, bit 4: no epoch checks, so no time limit possible: `interruptible: false`);
   * throws WasmError with the engine's message.
   */
  compile(bytes: Uint8Array, engineFlags?: number): NativeWasmModule;
  /** Loads code produced by `serialize()` for the same engine profile. */
  deserialize(bytes: Uint8Array, engineFlags?: number): NativeWasmModule;
  /**
   * Wasmtime's bytes from `offset` to the end of the file at `path`, mapped (not read into JS); at
   * offset 0 the file is Wasmtime's alone and its code runs in place, so it must never change
   * while mapped (write a new file and rename it over).
   */
  deserializeFile(path: string, offset: number, engineFlags?: number): NativeWasmModule;
}

/** Host import implementations, in the module's import order (undefined = not provided). */
export type NativeImportFn = (...args: Array<number | bigint>) => unknown;

export interface NativeInstanceOptions {
  /** Fuel for instantiation and per outermost call (undefined: unlimited). */
  fuel?: bigint;
  /** Cap on each memory in bytes, ≥ 1 or Infinity (undefined: its declared maximum, or 4 GiB). */
  maxMemoryBytes?: number;
  /** Cap on each table's elements, or Infinity (undefined: 10 million). */
  maxTableElements?: number;
  /** Time limit in ms of instantiation and of each outermost call, or Infinity (undefined: 10 s). */
  timeLimit?: number;
  /** Track writes for incremental snapshots: true from the first snapshot, false never, undefined from the first delta. */
  trackWrites?: boolean;
}

/** A live instance with its own Wasmtime store. */
export interface NativeWasmInstance {
  /** Index of an export function by name, or -1. */
  exportIndex(name: string): number;
  /**
   * Calls the export function at `index` with the arguments (spread) converted per its signature.
   * Returns undefined for no result, the value for one result, an array for several.
   */
  call(index: number, ...args: unknown[]): number | bigint | undefined | Array<number | bigint>;
  /**
   * A function doing what `call` does, bound to this instance by the addon (no unwrapping of
   * `this`: a fifth to a third of a small call's cost). It throws once the instance is gone.
   */
  caller(): (index: number, ...args: unknown[]) => number | bigint | undefined | Array<number | bigint>;
  /** `call` with its own time limit in ms (Infinity: none); ignored for a nested call. */
  callLimited(timeLimitMs: number, index: number, ...args: unknown[]): number | bigint | undefined | Array<number | bigint>;
  /** Calls element `index` of the first exported table (host-side call_indirect); like `call`. */
  callTable(index: number | bigint, ...args: unknown[]): number | bigint | undefined | Array<number | bigint>;
  /** `callTable` with its own time limit in ms. */
  callTableLimited(timeLimitMs: number, index: number | bigint, ...args: unknown[]): number | bigint | undefined | Array<number | bigint>;
  memorySize(): bigint;
  memoryGrow(pages: number | bigint): bigint;
  memoryRead(ptr: number | bigint, len: number | bigint): Buffer;
  memoryWrite(ptr: number | bigint, bytes: Uint8Array): void;
  memoryView(): ArrayBuffer;
  /** A copy of memory 0 (copy-on-write where supported). */
  memoryCopy(): ArrayBuffer;
  /** Whether `bytes` is the last memoryCopy() and still equals memory 0. */
  memoryIsCopy(bytes: ArrayBuffer | Uint8Array): boolean;
  /** Reads a NUL-terminated string starting at `ptr` (bytes before the NUL). */
  readCString(ptr: number | bigint): Buffer;
  hasMemory(): boolean;
  /** Size in bytes of the snapshot blob `snapshot()` would write now. */
  snapshotSize(): number;
  /** Writes the snapshot blob into `into` (exactly `snapshotSize()` bytes, e.g. Buffer.allocUnsafe). */
  snapshot(moduleHash: Uint8Array, into: Buffer): Buffer;
  /** Restores a full blob, then the deltas that follow it, all verified first. */
  restore(blobs: Uint8Array[], moduleHash: Uint8Array): void;
  /** A delta blob: what changed since the latest snapshot, whose id must be `sinceId`. */
  snapshotDelta(moduleHash: Uint8Array, sinceId: bigint): Buffer;
  /** Writes the full blob to `fd` in chunks. */
  snapshotToFd(moduleHash: Uint8Array, fd: number): { bytes: number; id: bigint };
  /** Restores the full snapshot in the file `fd` (`size` bytes), then `deltas`. */
  restoreFromFd(fd: number, size: number, moduleHash: Uint8Array, deltas: Uint8Array[]): void;
  fuelConsumed(): bigint;
  dispose(): void;
}

export interface NativeWasmInstanceCtor {
  new (module: NativeWasmModule, imports: Array<NativeImportFn | undefined>, options: NativeInstanceOptions): NativeWasmInstance;
}

// ---- LuaVM ------------------------------------------------------------------------------------
/** Options of the native LuaVM constructor (validated in `lua.ts`). */
export interface NativeLuaVMOptions {
  /** Libraries opened in addition to the safe set: 'os' (full), 'io', 'debug', 'package'. */
  libs?: string[];
  /** Cap on the bytes allocated by the Lua state. */
  memoryLimit?: number;
  /** VM instructions per outermost call. */
  instructionLimit?: number;
  /** Wall-clock limit of each outermost call in ms (Infinity: none; default 10 s). */
  timeLimit?: number;
  /** Where `print` writes: the VM's output buffer (default) or the process's stdout. */
  print?: 'capture' | 'stdout';
  /** Bytes of `print` output kept per outermost call (default 1 MiB). */
  outputLimit?: number;
  /** `os.time`/`os.date`/`os.clock`: fixed and UTC (default), or the real clock. */
  clock?: 'fixed' | 'real';
}

/** One Lua 5.3 state (`lua_State`). Values cross as described in docs/lua-vm.md. */
export interface NativeLuaVM {
  /** Compiles `code` (text only) as chunk `name` and runs it; returns its results. */
  load(code: string | Uint8Array, name: string): unknown[] | Buffer;
  /** `load` with this call's time limit in ms (ignored inside another call). */
  loadLimited(timeLimit: number, code: string | Uint8Array, name: string): unknown[] | Buffer;
  /** `call` with this call's time limit in ms (ignored inside another call). */
  callLimited(timeLimit: number, fn: string, ...args: unknown[]): unknown[] | Buffer | number | bigint | boolean;
  /** `callPacked` with this call's time limit in ms (ignored inside another call). */
  callPackedLimited(timeLimit: number, fn: string, buf: Uint8Array, len: number, nargs: number): unknown[] | number | Buffer;
  /** The `print` output of the latest outermost call, and the bytes dropped past `outputLimit`. */
  output(): [Buffer, number];
  /**
   * Calls the global function `fn` (or dotted path `a.b.f`, raw lookups) with the arguments; returns all
   * results, or (when one is a table) the results packed in a Buffer (see `lua-packed.ts`); a single
   * number or boolean result comes back as itself, without an array.
   */
  call(fn: string, ...args: unknown[]): unknown[] | Buffer | number | bigint | boolean;
  /** A function doing what `call` does, bound to this VM by the addon (no unwrapping of `this`). */
  caller(): (fn: string, ...args: unknown[]) => unknown[] | Buffer | number | bigint | boolean;
  /**
   * `call` with `nargs` arguments packed in `buf[0, len)`. Returns the results as an array (no table
   * among them), the byte length of the packed results written back into `buf`, or a Buffer of
   * packed results when they do not fit.
   */
  callPacked(fn: string, buf: Uint8Array, len: number, nargs: number): unknown[] | number | Buffer;
  /** Binds `path` (`f` or `a.b.f`, intermediate tables created) to a JS function. */
  setGlobalFunction(path: string, fn: (...args: never[]) => unknown): void;
  /**
   * The JS functions that run host functions called with a table among their arguments
   * (`entry(fn, packedArgs)`) and pack an object or array result of the others (`pack(value)`);
   * both return the result packed (see `lua-packed.ts`).
   */
  setPackedHost(entry: (fn: (...args: unknown[]) => unknown, args: Buffer) => Uint8Array, pack: (value: unknown) => Uint8Array): void;
  /** Sorted string keys of the globals table. */
  globals(): string[];
  /** A v1 snapshot blob (see docs/lua-vm.md). */
  snapshot(spare?: number): Buffer;
  /** Bytes currently allocated by the state. */
  memoryUsed(): number;
  /** Closes the state; deferred until the outermost call returns when called during one. */
  dispose(): void;
}

export interface NativeLuaVMCtor {
  new (options?: NativeLuaVMOptions): NativeLuaVM;
  /** A new VM from a snapshot; the blob is fully validated before anything is created. */
  restore(snapshot: Uint8Array, options?: Omit<NativeLuaVMOptions, 'libs'>): NativeLuaVM;
  /** The checks `restore` makes before creating anything (header, checksum, prefix): throws a SnapshotError. */
  check(snapshot: Uint8Array): void;
}
// ---- end LuaVM --------------------------------------------------------------------------------

export interface NativeBinding {
  WasmModule: NativeWasmModuleCtor;
  WasmInstance: NativeWasmInstanceCtor;
  LuaVM: NativeLuaVMCtor;
  setErrorClasses(classes: Record<string, Function>): void;
  versions(): { wasmtime: string; lua: string; napi: number };
  /** XXH3-64 of the bytes. */
  checksum(bytes: Uint8Array): bigint;
  /** The process-wide snapshot key: `candidate` becomes it if none is set yet, or when `replace`. */
  snapshotKey(candidate: Uint8Array, replace?: boolean): Buffer;
  /** Whether incremental snapshots can track writes on this system (userfaultfd WP_ASYNC + PAGEMAP_SCAN). */
  writeTracking(): boolean;
  copyOnWrite(): boolean;
  /** Returns the allocator's free pages to the system (glibc malloc_trim); false where unsupported. */
  trimMemory(): boolean;
}

function load(): NativeBinding {
  const root = path.join(__dirname, '..');
  let binding: NativeBinding;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    binding = require('node-gyp-build')(root) as NativeBinding;
  } catch (e) {
    const err = e as Error;
    throw new Error(
      `hb-runtimes: could not load the native addon (${err.message}).\n` +
        `Looked in ${path.join(root, 'prebuilds', `${process.platform}-${process.arch}`)} and ${path.join(root, 'build', 'Release')}.\n` +
        'Fixes: reinstall to get the prebuilt binary for your platform, or build from source with ' +
        '`npm run build:native` (needs cargo, cmake and a C++ compiler).',
      { cause: e },
    );
  }
  binding.setErrorClasses(ERROR_CLASSES);
  return binding;
}

/** The addon, loaded once per thread (each worker gets its own environment). */
export const native: NativeBinding = load();
