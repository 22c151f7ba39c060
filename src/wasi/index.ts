/**
 * WASI preview1 over an in-memory VFS: the core of the `wasi@1.0` device. See docs/wasi.md.
 */
export * from './errno';
export { Vfs, VfsDir, VfsError, VfsFile, checkRename } from './vfs';
export type { ToMessageOptions, VfsMessage, VfsNode, VfsOptions, VfsStat } from './vfs';
export {
  WASI_FUNCTIONS,
  WASI_SIGNATURES,
  WasiExit,
  WasiPreview1,
  exitCodeOf,
  wasiFuncType,
  wasiImportsFor,
} from './preview1';
export type {
  WasiAbi,
  WasiCounters,
  WasiFlavor,
  WasiFunction,
  WasiFunctionName,
  WasiOptions,
  WasiParam,
} from './preview1';
