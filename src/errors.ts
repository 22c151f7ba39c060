/**
 * Error classes of hb-runtimes. Every failure surfaces as an `AoError` (or a subclass) with an
 * HTTP-like `status`, a stable `code`, a `body` (string or message) and, for Lua and WASM faults,
 * a `trace`. The native addon instantiates these classes itself (they are handed to it at load
 * time by `native.ts`), so C++ and TypeScript throw the very same types.
 */

export interface AoErrorProps {
  status?: number;
  code?: string;
  body?: unknown;
  trace?: unknown;
  cause?: unknown;
  [extra: string]: unknown;
}

export class AoError extends Error {
  /** HTTP-like status: 400 bad request, 404 not found, 500 fault inside a device or guest. */
  readonly status: number;
  /** Stable machine-readable code, e.g. `ERR_WASM_TRAP`. */
  readonly code: string;
  /** What a failed resolution evaluates to: a string or a message. Defaults to the message text. */
  readonly body: unknown;
  /** Lua traceback or WASM frames, when the fault came from a guest. */
  readonly trace?: unknown;

  constructor(message: string, props: AoErrorProps = {}) {
    super(message, props.cause !== undefined ? { cause: props.cause } : undefined);
    const { status, code, body, trace, cause: _cause, ...extra } = props;
    this.status = status ?? 500;
    this.code = code ?? 'ERR_AO';
    this.body = body ?? message;
    if (trace !== undefined) this.trace = trace;
    Object.assign(this, extra);
  }

  override get name(): string {
    return this.constructor.name;
  }
}

/** Compiling, linking or instantiating a WebAssembly module failed (bad bytes, missing imports). */
export class WasmError extends AoError {
  constructor(message: string, props: AoErrorProps = {}) {
    super(message, { status: 400, code: 'ERR_WASM', ...props });
  }
}

export interface WasmFrame {
  /** Function index inside the module. */
  funcIndex: number;
  /** Function name from the name section, when present. */
  funcName?: string;
  /** Byte offset of the faulting instruction in the module. */
  moduleOffset: number;
}

/** A WebAssembly call trapped: `trapCode` names the trap, `frames` the wasm stack (innermost first). */
export class WasmTrap extends AoError {
  declare readonly trapCode: string;
  declare readonly frames: WasmFrame[];
  constructor(message: string, props: AoErrorProps = {}) {
    super(message, { status: 500, code: 'ERR_WASM_TRAP', trapCode: 'unknown', frames: [], ...props });
    if (this.trace === undefined) (this as { trace?: unknown }).trace = this.frames;
  }
}

/** Base class of errors raised by Lua code or the Lua VM. */
export class LuaError extends AoError {
  constructor(message: string, props: AoErrorProps = {}) {
    super(message, { status: 500, code: 'ERR_LUA', ...props });
  }
}
/** The Lua source did not compile; the message carries the chunk name and line. */
export class LuaSyntaxError extends LuaError {
  constructor(message: string, props: AoErrorProps = {}) {
    super(message, { code: 'ERR_LUA_SYNTAX', ...props });
  }
}
/** A Lua error raised while running code (`error(...)` or a failed operation). */
export class LuaRuntimeError extends LuaError {
  constructor(message: string, props: AoErrorProps = {}) {
    super(message, { code: 'ERR_LUA_RUNTIME', ...props });
  }
}
/** The Lua VM ran out of memory (allocation failure or its memory cap). */
export class LuaMemoryError extends LuaError {
  constructor(message: string, props: AoErrorProps = {}) {
    super(message, { code: 'ERR_LUA_MEMORY', ...props });
  }
}

/** Which limit a `LimitError` reports. */
export type LimitKind = 'time' | 'fuel' | 'memory' | 'steps';

/**
 * A limit was reached: `limit` says which (`time`: the wall-clock deadline; `fuel`: a WASM
 * compute budget; `memory`: a memory or table cap; `steps`: a Lua step budget). The `code` is
 * stable per kind: `ERR_LIMIT_TIME`, `ERR_LIMIT_FUEL`, `ERR_LIMIT_MEMORY`, `ERR_LIMIT_STEPS`.
 * Only `time` depends on the machine: the others are deterministic.
 */
export class LimitError extends AoError {
  declare readonly limit: LimitKind;
  constructor(message: string, props: AoErrorProps = {}) {
    const limit = typeof props.limit === 'string' ? props.limit : undefined;
    super(message, { status: 500, code: limit ? `ERR_LIMIT_${limit.toUpperCase()}` : 'ERR_LIMIT', ...props });
  }
}

/** A snapshot blob was truncated, corrupted, of the wrong kind or version, or from another image. */
export class SnapshotError extends AoError {
  constructor(message: string, props: AoErrorProps = {}) {
    super(message, { status: 400, code: 'ERR_SNAPSHOT', ...props });
  }
}

/** The classes handed to the native addon, by the names it uses. */
export const ERROR_CLASSES = {
  AoError,
  WasmError,
  WasmTrap,
  LuaError,
  LuaSyntaxError,
  LuaRuntimeError,
  LuaMemoryError,
  LimitError,
  SnapshotError,
} as const;

/** A 400 for a bad argument, naming what was wrong. */
export function badArg(message: string, extra: AoErrorProps = {}): AoError {
  return new AoError(message, { status: 400, code: 'ERR_INVALID_ARG', ...extra });
}
