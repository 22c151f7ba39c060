/**
 * `LuaVM`: a real Lua 5.3 state (compiled from C into the native addon), sandboxed by default,
 * with memory and instruction limits, JS host functions and versioned snapshots. A thin wrapper
 * over the native handle declared in `native.ts`: arguments are validated here, then one native
 * call does the work. Value conversion, errors, limits and the snapshot format are described in
 * docs/lua-vm.md.
 */
import { badArg } from './errors';
import { DEFAULT_LUA_MEMORY_LIMIT, DEFAULT_TIME_LIMIT_MS } from './limits';
import { acquireWriter, decodeBuffer, decodeValues, packedHost, packValue } from './lua-packed';
import { SEAL_BYTES, sealInPlace, unseal } from './lua-trust';
import { native, type NativeLuaVM, type NativeLuaVMOptions } from './native';

/** Library names accepted by `libs`. */
export const LUA_LIBS = ['base', 'coroutine', 'table', 'string', 'utf8', 'math', 'os', 'io', 'debug', 'package'] as const;
export type LuaLib = (typeof LUA_LIBS)[number];

/**
 * The safe set, always open: these libraries with the sandbox restrictions (no `dofile`,
 * `loadfile` or `string.dump`, `load` of text only, `setmetatable` refuses `__gc`,
 * `collectgarbage` limited to collect/step/count/isrunning, a per-VM `math.random`), plus
 * `os.time`, `os.clock`, `os.date` and `os.difftime`.
 */
export const LUA_SAFE_LIBS: readonly LuaLib[] = Object.freeze(['base', 'coroutine', 'table', 'string', 'utf8', 'math']);

export interface LuaVMOptions {
  /**
   * Libraries to open in addition to the safe set. The unsafe ones are `os` (the whole library:
   * `os.execute`, `os.exit`, `os.remove`...), `io`, `debug` (can remove the instruction limit)
   * and `package` (`require` of preloaded modules and Lua files, text only). Naming a safe
   * library is allowed and changes nothing.
   */
  libs?: readonly LuaLib[];
  /** Cap, in bytes, on the memory the Lua state allocates (default `DEFAULT_LUA_MEMORY_LIMIT`, 4 GiB; `Infinity`: none). */
  memoryLimit?: number;
  /**
   * Steps allowed per outermost `load`/`call` (default: none): VM instructions plus the work of C
   * library functions (pattern matching, `string.rep`, `table.concat`, ...), see docs/lua-vm.md.
   */
  instructionLimit?: number;
  /**
   * Wall-clock limit of each outermost `load`/`call`, in milliseconds (default
   * `DEFAULT_TIME_LIMIT_MS`, 10 s; `Infinity`: none). It interrupts VM loops and C library loops
   * alike; past it the call throws `LimitError` (limit `time`, code `ERR_LIMIT_TIME`). It depends on
   * the machine: use `instructionLimit` for a deterministic bound.
   */
  timeLimit?: number;
  /**
   * Where `print` writes: `'capture'` (default) keeps the output of each outermost call in
   * `vm.output` (up to `outputLimit` bytes); `'stdout'` writes to the process's standard output.
   */
  print?: 'capture' | 'stdout';
  /** Bytes of `print` output kept per outermost call (default 1 MiB); the rest is counted in `vm.outputDropped`. */
  outputLimit?: number;
  /**
   * `os.time`, `os.date` and `os.clock`: `'fixed'` (default, deterministic: the time is 0, dates
   * are UTC, `os.clock()` is 0, `os.time(table)` reads the table as UTC) or `'real'` (Lua's own,
   * reading the host's clock and time zone).
   */
  clock?: 'fixed' | 'real';
}

/** Options of a restored VM (its libraries come from the snapshot). */
export interface LuaRestoreOptions extends Omit<LuaVMOptions, 'libs'> {
  /**
   * Restore a snapshot that this node did not seal (another node's, or an unsealed one). Its
   * bytecode is then run unverified: only for snapshots whose origin you trust (docs/lua-vm.md, "Trust").
   */
  trusted?: boolean;
}

/** Options of one `load`/`call`. */
export interface LuaCallOptions {
  /** Wall-clock limit of this call in ms (default: the VM's `timeLimit`). Ignored for a call made from inside another call (a host function), which shares the outermost call's deadline. */
  timeLimit?: number;
}

/** What values look like on the JS side (see docs/lua-vm.md, "Values"). */
export type LuaValue = null | boolean | number | bigint | string | Uint8Array | LuaValue[] | { [key: string]: LuaValue };

/** A JS function callable from Lua; its arguments arrive converted, its return value is one Lua value. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type LuaHostFunction = (...args: any[]) => unknown;

const VM_OPTIONS = ['libs', 'memoryLimit', 'instructionLimit', 'timeLimit', 'print', 'outputLimit', 'clock'] as const;
const COMMON_OPTIONS = ['memoryLimit', 'instructionLimit', 'timeLimit', 'print', 'outputLimit', 'clock'] as const;
const RESTORE_OPTIONS = [...COMMON_OPTIONS, 'trusted'] as const;
const CALL_OPTIONS = ['timeLimit'] as const;
const PATH = /^[^.]+(\.[^.]+)*$/;

function squash(s: string): string {
  return s.toLowerCase().replace(/[-_\s]/g, '');
}

function checkOptions<K extends string>(opts: unknown, allowed: readonly K[], where: string): Partial<Record<K, unknown>> {
  if (opts === undefined) return {};
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) throw badArg(`${where}: options must be an object`);
  for (const k of Object.keys(opts)) {
    if ((allowed as readonly string[]).includes(k)) continue;
    const near = allowed.find((a) => squash(a) === squash(k) || squash(a).startsWith(squash(k)) || squash(k).startsWith(squash(a)));
    throw badArg(
      `${where}: unknown option '${k}'` + (near ? `: did you mean '${near}'?` : ` (allowed: ${allowed.join(', ')})`),
    );
  }
  return opts as Partial<Record<K, unknown>>;
}

function checkLimit(v: unknown, name: string, where: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) {
    throw badArg(`${where}: ${name} must be a positive integer, got ${typeof v === 'number' ? v : typeof v}`);
  }
  return v;
}

/** A time limit: a positive number of milliseconds, or `Infinity`. */
function checkTimeLimit(v: unknown, where: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !(v > 0)) throw badArg(`${where}: timeLimit must be a positive number of milliseconds, or Infinity`);
  return v;
}

function checkChoice<T extends string>(v: unknown, name: string, choices: readonly T[], where: string): T | undefined {
  if (v === undefined) return undefined;
  if (!(choices as readonly unknown[]).includes(v)) throw badArg(`${where}: ${name} must be ${choices.map((c) => `'${c}'`).join(' or ')}, got ${JSON.stringify(v)}`);
  return v as T;
}

/** The options every VM has (constructor and restore). */
function commonOptions(o: Partial<Record<(typeof COMMON_OPTIONS)[number], unknown>>, where: string): NativeLuaVMOptions {
  const out: NativeLuaVMOptions = {};
  const memoryLimit = o.memoryLimit === Infinity ? undefined : (checkLimit(o.memoryLimit, 'memoryLimit', where) ?? DEFAULT_LUA_MEMORY_LIMIT);
  const instructionLimit = checkLimit(o.instructionLimit, 'instructionLimit', where);
  if (memoryLimit !== undefined) out.memoryLimit = memoryLimit;
  if (instructionLimit !== undefined) out.instructionLimit = instructionLimit;
  out.timeLimit = checkTimeLimit(o.timeLimit, where) ?? DEFAULT_TIME_LIMIT_MS;
  const print = checkChoice(o.print, 'print', ['capture', 'stdout'] as const, where);
  if (print !== undefined) out.print = print;
  if (o.outputLimit !== undefined) {
    if (typeof o.outputLimit !== 'number' || !Number.isSafeInteger(o.outputLimit) || o.outputLimit < 0) {
      throw badArg(`${where}: outputLimit must be a non-negative integer, got ${String(o.outputLimit)}`);
    }
    out.outputLimit = o.outputLimit;
  }
  const clock = checkChoice(o.clock, 'clock', ['fixed', 'real'] as const, where);
  if (clock !== undefined) out.clock = clock;
  return out;
}

/** The time limit of a `load`/`call`, or undefined for the VM's own. */
function callTimeLimit(opts: LuaCallOptions | undefined, where: string): number | undefined {
  if (opts === undefined) return undefined;
  return checkTimeLimit(checkOptions(opts, CALL_OPTIONS, where).timeLimit, where);
}

function nativeOptions(opts: LuaVMOptions | undefined): NativeLuaVMOptions {
  const o = checkOptions(opts, VM_OPTIONS, 'new LuaVM()');
  const out: NativeLuaVMOptions = commonOptions(o, 'new LuaVM()');
  if (o.libs !== undefined) {
    if (!Array.isArray(o.libs)) throw badArg(`new LuaVM(): libs must be an array of library names (${LUA_LIBS.join(', ')})`);
    for (const lib of o.libs) {
      if (!(LUA_LIBS as readonly unknown[]).includes(lib)) {
        throw badArg(`new LuaVM(): unknown library ${JSON.stringify(lib)} (known: ${LUA_LIBS.join(', ')})`);
      }
    }
    out.libs = [...(o.libs as string[])];
  }
  return out;
}

/** Results of the native side: an array, or packed in a Buffer when a table is among them. */
function results(r: unknown[] | Buffer): LuaValue[] {
  return (isArray(r) ? r : decodeBuffer(r)) as LuaValue[];
}

const isArray = Array.isArray;

/** `h.call(fn, ...args)` with the arguments packed into the shared writer's buffer. */
function callPacked(h: NativeLuaVM, fn: string, args: readonly unknown[], timeLimit: number | undefined): LuaValue[] {
  const w = acquireWriter();
  let len: number;
  try {
    len = w.encode(args, 'LuaVM#call()', 'args');
  } finally {
    w.release();
  }
  // The native side has read the arguments before any JS runs again (a host function may reuse
  // the writer); packed results come back in `buf` itself when they fit.
  const { buf, dv } = w;
  const r = timeLimit === undefined ? h.callPacked(fn, buf, len, args.length) : h.callPackedLimited(timeLimit, fn, buf, len, args.length);
  if (isArray(r)) return r as LuaValue[];
  if (typeof r !== 'number') return decodeBuffer(r) as LuaValue[];
  w.busy = true; // decoding runs no user code, unless Object.prototype has setters: be safe
  try {
    return decodeValues(buf, dv, r) as LuaValue[];
  } finally {
    w.busy = false;
  }
}

// Set while LuaVM.restore() wraps a handle that the native side already created.
let adopting: NativeLuaVM | undefined;

/** A Lua 5.3 state. Not thread-safe; each worker thread creates its own. */
export class LuaVM {
  readonly #h: NativeLuaVM;
  /** `#h.call`, bound by the addon: what `call` uses for scalar arguments. */
  readonly #call: (fn: string, ...args: unknown[]) => unknown[] | Buffer | number | bigint | boolean;

  constructor(opts?: LuaVMOptions) {
    if (adopting !== undefined) {
      this.#h = adopting;
      adopting = undefined;
    } else {
      this.#h = new native.LuaVM(nativeOptions(opts));
    }
    this.#h.setPackedHost(packedHost, packValue);
    this.#call = this.#h.caller();
  }

  /**
   * Compiles `code` (Lua source; binary chunks are refused) with chunk name `name` and runs it.
   * Returns the chunk's return values. Syntax errors throw `LuaSyntaxError` whose message reads
   * `[string "<name>"]:<line>: ...`; runtime errors as in `call`.
   */
  load(code: string | Uint8Array, name: string, opts?: LuaCallOptions): LuaValue[] {
    if (typeof code !== 'string' && !(code instanceof Uint8Array)) {
      throw badArg('LuaVM#load(code, name): code must be a string or a Uint8Array');
    }
    if (typeof name !== 'string' || name.length === 0) throw badArg('LuaVM#load(code, name): name must be a non-empty string');
    const t = callTimeLimit(opts, 'LuaVM#load()');
    return results(t === undefined ? this.#h.load(code, name) : this.#h.loadLimited(t, code, name));
  }

  /**
   * Calls the global function `fn` (a dotted path `a.b.f` is looked up with raw access) with
   * `args` and returns all its results. Errors: `LuaRuntimeError` (status 500, `trace`,
   * non-string error values as `body`, a host function's JS exception as `cause`),
   * `LuaMemoryError`, `LimitError` (limit `steps` or `time`).
   */
  call(fn: string, args: readonly unknown[] = [], opts?: LuaCallOptions): LuaValue[] {
    if (typeof fn !== 'string' || fn.length === 0) throw badArg('LuaVM#call(fn, args): fn must be a non-empty string');
    if (!isArray(args)) throw badArg('LuaVM#call(fn, args): args must be an array');
    const t = opts === undefined ? undefined : callTimeLimit(opts, 'LuaVM#call()');
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      // Objects, arrays, bytes: one packed buffer each way (docs/lua-vm.md, "Marshalling").
      if (typeof a === 'object' && a !== null) return callPacked(this.#h, fn, args, t);
    }
    // Scalars only: native call arguments, no buffer.
    const r = t === undefined ? this.#call(fn, ...args) : this.#h.callLimited(t, fn, ...args);
    // A single number or boolean comes back bare (no array built natively), else an array or packed.
    if (typeof r !== 'object') return [r];
    return (isArray(r) ? r : decodeBuffer(r)) as LuaValue[];
  }

  /**
   * Makes `fn` callable from Lua as `path` (`f` or `a.b.f`; missing intermediate tables are
   * created). Registering a path again replaces the function everywhere Lua holds it.
   */
  setGlobalFunction(path: string, fn: LuaHostFunction): void {
    if (typeof path !== 'string' || !PATH.test(path)) {
      throw badArg(`LuaVM#setGlobalFunction(path, fn): path must be a name or a dotted path like 'host.add', got ${JSON.stringify(path)}`);
    }
    if (typeof fn !== 'function') throw badArg('LuaVM#setGlobalFunction(path, fn): fn must be a function');
    this.#h.setGlobalFunction(path, fn);
  }

  /** Sorted names of the string keys of the globals table (raw). */
  globals(): string[] {
    return this.#h.globals();
  }

  /**
   * What `print` wrote during the latest outermost `load`/`call` (with `print: 'capture'`, the
   * default), decoded as UTF-8; at most `outputLimit` bytes.
   */
  get output(): string {
    return this.#h.output()[0].toString('utf8');
  }

  /** Bytes of `print` output of the latest outermost call dropped past `outputLimit`. */
  get outputDropped(): number {
    return this.#h.output()[1];
  }

  /** Bytes currently allocated by the Lua state. */
  get memoryUsed(): number {
    return this.#h.memoryUsed();
  }

  /**
   * A snapshot (format v2, see docs/lua-vm.md) of the whole state, sealed under this node's key
   * (docs/lua-vm.md, "Trust"); not allowed during a call.
   */
  snapshot(): Buffer {
    return sealInPlace(this.#h.snapshot(SEAL_BYTES));
  }

  /**
   * A new VM from `snapshot()` bytes. The seal is checked (a snapshot this node did not seal is
   * refused with `SnapshotError` 403 `ERR_SNAPSHOT_UNTRUSTED` unless `trusted: true`), then the blob
   * is validated (magic, version, word size, length, checksum) before anything is created; any
   * problem throws `SnapshotError`. Host functions are
   * restored by path and must be registered again with `setGlobalFunction`.
   */
  static restore(snapshot: Uint8Array, opts?: LuaRestoreOptions): LuaVM {
    if (!(snapshot instanceof Uint8Array)) throw badArg('LuaVM.restore(snapshot): snapshot must be a Uint8Array');
    const o = checkOptions(opts, RESTORE_OPTIONS, 'LuaVM.restore()');
    if (o.trusted !== undefined && typeof o.trusted !== 'boolean') throw badArg('LuaVM.restore(): trusted must be a boolean');
    const limits = commonOptions(o, 'LuaVM.restore()');
    adopting = native.LuaVM.restore(unseal(snapshot, o.trusted === true), limits);
    return new LuaVM();
  }

  /** Closes the state. Idempotent; during a call (from a host function) it takes effect when the outermost call returns. */
  dispose(): void {
    this.#h.dispose();
  }
}
