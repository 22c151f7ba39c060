/**
 * Guest code off the calling thread: `createPool({ workers })` runs AO processes (WASM AOS or Lua
 * AOS, as `hb-runtimes serve` does) on worker threads, each pinned to one worker, each message
 * costing only itself when it fails. `AosProcess` is the same process in this thread.
 */
export { createPool, Pool } from './pool';
export type { PoolOptions, PoolStats, ProcessOptions } from './pool';
export { PoolProcess } from './process-handle';
export { AosProcess, DEFAULT_CHECKPOINT_EVERY } from './aos';
export type { AosOpenOptions, ComputeReply } from './aos';
