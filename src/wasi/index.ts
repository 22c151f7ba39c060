/**
 * WASI preview1 over an in-memory VFS: the core of the `wasi@1.0` device. See docs/wasi.md.
 * preview1.ts holds the environment (`WasiPreview1`); each call family has its own file (args,
 * clocks, fd, path, random, proc), over the shared state (state.ts) and guest memory (guest.ts);
 * imports.ts binds a module's WASI imports.
 */
export * from './errno';
export { Vfs, VfsDir, VfsError, VfsFile, checkRename } from './vfs';
export type { ToMessageOptions, VfsMessage, VfsNode, VfsOptions, VfsStat } from './vfs';
export { WASI_FUNCTIONS, WASI_SIGNATURES, WasiExit, WasiPreview1, exitCodeOf, wasiFuncType } from './preview1';
export { wasiImportsFor } from './imports';
export type {
  WasiAbi,
  WasiCounters,
  WasiFlavor,
  WasiFunction,
  WasiFunctionName,
  WasiOptions,
  WasiParam,
} from './preview1';
