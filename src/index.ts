/**
 * hb-runtimes: AO/HyperBEAM runtime devices for Node.js.
 */
export * from './errors';
export * from './ao';
export * from './devices';
export { DEFAULT_LUA_MEMORY_LIMIT, DEFAULT_TIME_LIMIT_MS } from './limits';
export { WasmModule, WasmInstance, imageHash, snapshotId, DEFAULT_MAX_MEMORY_BYTES, DEFAULT_MAX_TABLE_ELEMENTS, DEFAULT_COMPILE_LIMITS } from './wasm';
export type { WasmImports, WasmMemory, WasmValue, InstanceOptions, CallOptions, SnapshotOptions, SnapshotFileOptions, CompileOptions, CompileLimits, FuncType, ExternDesc } from './wasm';
export { loadImage, translateLegacyExceptions } from './wasm-image';
export { LuaVM, LUA_LIBS, LUA_SAFE_LIBS } from './lua';
export { setLuaSnapshotKey } from './lua-trust';
export type { LuaVMOptions, LuaRestoreOptions, LuaCallOptions, LuaLib, LuaValue, LuaHostFunction } from './lua';
export { Vfs, VfsError, WasiPreview1, WasiExit, exitCodeOf, wasiImportsFor } from './wasi';
export type { VfsMessage, WasiOptions } from './wasi';
export { startServer } from './serve';
export { createPool, Pool, PoolProcess, AosProcess, DEFAULT_CHECKPOINT_EVERY } from './pool';
export type { PoolOptions, PoolStats, ProcessOptions, AosOpenOptions } from './pool';
export { DEFAULT_WASM_COMPUTE_LIMIT, DEFAULT_LUA_COMPUTE_LIMIT } from './serve/limits';
export type { ComputeLimits } from './serve/limits';
export type { ProcessDefinition, Assignment, LegacyMessage, LegacyResult } from './serve/engine';
export type { ServeHandle, ServeOptions } from './serve';
import { native } from './native';

/** Versions of the embedded engines. */
export function versions(): { wasmtime: string; lua: string; napi: number } {
  return native.versions();
}
