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

/**
 * The default memory limit of a raw `LuaVM`, in bytes (4 GiB, as a WASM memory without a declared
 * maximum): allocations past it fail as Lua's "not enough memory" (`LuaMemoryError`). `Infinity`
 * opts out. lua@5.3a sets its own, lower default (1 GiB).
 */
export const DEFAULT_LUA_MEMORY_LIMIT = 4 * 1024 ** 3;
