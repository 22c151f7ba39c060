/**
 * `WasmInstance#memory`: access to an instance's first memory, over the native handle. Copies of
 * the whole memory are copy-on-write where the system supports it (native/wasm_cow_memory.h).
 */
import type { NativeWasmInstance } from './native';
import type { WasmValue } from './wasm';

/** Linear memory of an instance (its first exported memory). */
export interface WasmMemory {
  /** Copies `len` bytes at `ptr`. Out of bounds: `AoError` 400 `ERR_OUT_OF_BOUNDS`. */
  read(ptr: WasmValue, len: WasmValue): Buffer;
  /** Copies `bytes` to `ptr`. Out of bounds: `AoError` 400 `ERR_OUT_OF_BOUNDS`. */
  write(ptr: WasmValue, bytes: Uint8Array): void;
  /** Current size in bytes: a number for 32-bit memories, a bigint for memory64. */
  readonly size: number | bigint;
  /** Grows by `pages` 64 KiB pages; returns the previous size in pages. */
  grow(pages: WasmValue): number | bigint;
  /** Whether this is a 64-bit memory. */
  readonly is64: boolean;
  /**
   * The memory itself as an ArrayBuffer, without a copy. The view is detached (byteLength 0)
   * when the memory grows or moves (a `restore()` that changes its size included) and at
   * `dispose()`: take a new one then. It never outlives the memory.
   */
  view(): ArrayBuffer;
  /**
   * A copy of the whole memory, independent of it: later writes on either side never show in the
   * other. On Linux ≥ 6.7 it is copy-on-write: it shares pages with the memory and costs what the
   * guest wrote since the memory was last laid over a file (at most a sixteenth of its size; past
   * that, one full copy lays it over a new file). Elsewhere it is a plain copy.
   */
  copy(): ArrayBuffer;
  /**
   * Whether `bytes` (an ArrayBuffer, or a typed array over the whole of one) is the last `copy()`
   * and it and the memory still hold the same bytes, proven from the page tables and a comparison
   * of the pages either side wrote since (not the whole memory). False whenever that cannot be
   * proven; never true when they differ.
   */
  isCopy(bytes: ArrayBuffer | Uint8Array): boolean;
}

export function memoryOf(h: NativeWasmInstance, is64: boolean): WasmMemory {
  return {
    read: (ptr, len) => h.memoryRead(ptr, len),
    write: (ptr, bytes) => h.memoryWrite(ptr, bytes),
    get size() {
      const s = h.memorySize();
      return is64 ? s : Number(s);
    },
    grow: (pages) => {
      const prev = h.memoryGrow(pages);
      return is64 ? prev : Number(prev);
    },
    is64,
    view: () => h.memoryView(),
    copy: () => h.memoryCopy(),
    isCopy: (bytes) => h.memoryIsCopy(bytes),
  };
}
