/**
 * The WASI preview1 function table: the 46 names, their parameter kinds, and their wasm
 * signatures in the two ABIs (see preview1.ts for the layouts).
 */
import type { FuncType, WasmValue } from '../wasm';

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


/** Host functions of one call family before `guard` (internal: they may throw `fail`). */
export type WasiCalls = { [K in WasiFunctionName]?: (...args: WasmValue[]) => number };
