/**
 * Limits shared by the runtimes. Every guest computation is bounded by default; a user opts out
 * explicitly (`Infinity`).
 */

/**
 * The default wall-clock time limit of a guest computation, in milliseconds: each outermost
 * `WasmInstance` call and its instantiation, each `LuaVM` call. Exceeding it throws a
 * `LimitError` with `limit: 'time'` (code `ERR_LIMIT_TIME`).
 */
export const DEFAULT_TIME_LIMIT_MS = 10_000;
