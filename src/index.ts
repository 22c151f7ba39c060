/**
 * hb-runtimes: AO/HyperBEAM runtime devices for Node.js.
 */
export * from './errors';
export * from './ao';
export * from './devices';
export { WasmModule, WasmInstance, imageHash } from './wasm';
export type { WasmImports, WasmMemory, WasmValue, InstanceOptions, CompileOptions, FuncType, ExternDesc } from './wasm';
import { native } from './native';

/** Versions of the embedded engines. */
export function versions(): { wasmtime: string; lua: string; napi: number } {
  return native.versions();
}
