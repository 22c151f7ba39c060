/**
 * What emscripten's JavaScript runtime does around one AOS instance, on our Wasmtime handles:
 * typed access to linear memory, the C stack (`ccall`'s strings live there), `invoke_*`
 * trampolines for setjmp/longjmp, the resizing rule of `emscripten_resize_heap`, and Asyncify
 * (unwind the guest's stack into a malloc'ed buffer at an asynchronous import, rewind it when
 * the promise settles). Every write to memory is the one emscripten makes, so that the memory
 * image stays byte-equal with @permaweb/ao-loader's.
 */
import { AoError, LimitError } from '../errors';
import type { WasmInstance, WasmValue } from '../wasm';
import type { Generation } from './formats';

/**
 * Thrown by `_emscripten_throw_longjmp`: unwinds to the nearest `invoke_*`. Not an Error (no
 * stack to capture: AOS longjmps on every Lua error); one instance serves every throw.
 */
export class Longjmp {
  readonly message = 'longjmp';
}
export const LONGJMP = new Longjmp();

/** `e` or the first error of class `cls` down its `cause` chain (traps wrap what imports threw). */
function causeIs<T>(e: unknown, cls: new (...a: never[]) => T): T | undefined {
  for (let c = e, depth = 0; c && depth < 64; c = (c as { cause?: unknown }).cause, depth++) if (c instanceof cls) return c;
  return undefined;
}
export { causeIs };

const ASYNC_STACK_SIZE = 41_943_040;

export class Runtime {
  inst!: WasmInstance;
  readonly wide: boolean;
  #asyncState = 0; // 0 normal, 1 unwinding, 2 rewinding
  #asyncData = 0;
  #asyncValue: unknown = 0;
  #pending: Promise<unknown> | undefined;
  readonly #exportStack: string[] = [];
  readonly #callStackIds = new Map<string, number>();
  readonly #callStackNames: string[] = [];

  constructor(readonly gen: Generation, readonly heapMax: number) {
    this.wide = gen === 'wasm64';
  }

  // --- memory ---------------------------------------------------------------------------
  #u8 = new Uint8Array(0);
  #dv = new DataView(new ArrayBuffer(0));

  /** The live memory (a view that the native side detaches when memory grows or moves). */
  heap(): Uint8Array {
    if (this.#u8.byteLength === 0) {
      const buf = this.inst.memory.view();
      this.#u8 = new Uint8Array(buf);
      this.#dv = new DataView(buf);
    }
    return this.#u8;
  }
  #view(): DataView {
    this.heap();
    return this.#dv;
  }
  get size(): number {
    return this.heap().byteLength;
  }
  ptr(v: WasmValue): number {
    return Number(v);
  }
  bytes(p: number, n: number): Buffer {
    const h = this.heap();
    if (p < 0 || p + n > h.byteLength) throw new RangeError(`memory access out of bounds: ${n} bytes at ${p}`);
    return Buffer.from(h.slice(p, p + n).buffer);
  }
  write(p: number, b: Uint8Array): void {
    const h = this.heap();
    if (p < 0 || p + b.byteLength > h.byteLength) throw new RangeError(`memory access out of bounds: ${b.byteLength} bytes at ${p}`);
    h.set(b, p);
  }
  i32(p: number): number {
    return this.#view().getInt32(p, true);
  }
  u32(p: number): number {
    return this.#view().getUint32(p, true);
  }
  /** A pointer-sized value (u32, or u64 on wasm64). */
  uptr(p: number): number {
    return this.wide ? Number(this.#view().getBigUint64(p, true)) : this.u32(p);
  }
  setI32(p: number, v: number): void {
    this.#view().setInt32(p, v | 0, true);
  }
  setU32(p: number, v: number): void {
    this.#view().setUint32(p, v >>> 0, true);
  }
  setI16(p: number, v: number): void {
    this.#view().setInt16(p, v, true);
  }
  setU64(p: number, v: number | bigint): void {
    this.#view().setBigUint64(p, BigInt.asUintN(64, BigInt(v)), true);
  }
  /** emscripten's 64-bit store of a double (`tempI64` split): low word, then the high word. */
  setI53(p: number, v: number): void {
    const lo = v >>> 0;
    const hi = Math.abs(v) >= 1 ? (v > 0 ? Math.floor(v / 4294967296) >>> 0 : ~~Math.ceil((v - (~~v >>> 0)) / 4294967296) >>> 0) : 0;
    this.setU32(p, lo);
    this.setU32(p + 4, hi);
  }
  setPtr(p: number, v: number): void {
    if (this.wide) this.setU64(p, v);
    else this.setU32(p, v);
  }
  cstr(p: number): string {
    if (!p) return '';
    const h = this.heap();
    let end = p;
    while (end < h.length && h[end] !== 0) end++;
    return Buffer.from(h.buffer, h.byteOffset + p, end - p).toString('utf8');
  }
  /** `stringToUTF8(str, ptr, max)`: at most max-1 bytes (whole characters) and a NUL. */
  writeString(str: string, p: number, max: number): number {
    if (max <= 0) return 0;
    let b = Buffer.from(str, 'utf8');
    if (b.length > max - 1) {
      let n = max - 1;
      while (n > 0 && (b[n]! & 0xc0) === 0x80) n--;
      b = b.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(b.length + 1);
    b.copy(out);
    out[b.length] = 0;
    this.write(p, out);
    return b.length;
  }

  // --- exports --------------------------------------------------------------------------
  arg(v: number): WasmValue {
    return this.wide ? BigInt(v) : v;
  }
  call(name: string, args: WasmValue[] = []): WasmValue | undefined {
    this.#exportStack.push(name);
    try {
      return this.inst.call(name, args)[0];
    } finally {
      this.#exportStack.pop();
      this.#maybeStopUnwind();
    }
  }
  malloc(n: number): number {
    return Number(this.call('malloc', [this.arg(n)]));
  }
  free(p: number): void {
    this.call('free', [this.arg(p)]);
  }
  stackSave(): number {
    return Number(this.call(this.gen === 'emscripten2' ? 'stackSave' : 'emscripten_stack_get_current'));
  }
  stackRestore(sp: number): void {
    this.call(this.gen === 'emscripten2' ? 'stackRestore' : '_emscripten_stack_restore', [this.arg(sp)]);
  }
  stackAlloc(n: number): number {
    return Number(this.call(this.gen === 'emscripten2' ? 'stackAlloc' : '_emscripten_stack_alloc', [this.arg(n)]));
  }

  /**
   * `invoke_<sig>(index, ...args)`: a table call that catches longjmp as emscripten does. Later
   * generations call through the module's `dynCall_<sig>` export (whose frame Asyncify saves
   * too), emscripten2 through the table.
   */
  invoke(sig: string, index: WasmValue, args: WasmValue[]): undefined {
    const sp = this.stackSave();
    try {
      if (this.gen === 'emscripten2') this.inst.callTable(index, args);
      else this.call(`dynCall_${sig}`, [Number(index), ...args]);
    } catch (e) {
      if (!causeIs(e, Longjmp)) throw e;
      this.stackRestore(sp);
      const t = this.inst.module.exportType('setThrew');
      this.call('setThrew', [t?.params[0] === 'i64' ? 1n : 1, 0]);
    }
    return undefined;
  }

  /** `emscripten_resize_heap(requested)`: grows by up to 20% more than asked, in 64 KiB pages. */
  resizeHeap(requested: number): boolean {
    const oldSize = this.size;
    if (requested > this.heapMax) return false;
    const alignUp = (x: number, m: number): number => x + ((m - (x % m)) % m);
    for (let cutDown = 1; cutDown <= 4; cutDown *= 2) {
      let over = oldSize * (1 + 0.2 / cutDown);
      over = Math.min(over, requested + 100663296);
      const newSize = Math.min(this.heapMax, alignUp(Math.max(requested, over), 65536));
      const pages = Math.floor((newSize - this.size + 65535) / 65536);
      try {
        if (Number(this.inst.memory.grow(this.arg(pages))) >= 0) return true;
      } catch {
        /* refused: try a smaller step */
      }
    }
    return false;
  }

  // --- Asyncify -------------------------------------------------------------------------
  #maybeStopUnwind(): void {
    if (this.#asyncData && this.#asyncState === 1 && this.#exportStack.length === 0) {
      this.#asyncState = 0;
      this.inst.call('asyncify_stop_unwind', []);
    }
  }

  /** An asynchronous import (`__asyncjs__*`): `start` runs once; its result is what the guest sees. */
  handleAsync(start: () => Promise<unknown>): unknown {
    if (this.#asyncState === 0) {
      this.#pending = start();
      this.#asyncState = 1;
      const hdr = this.wide ? 24 : 12;
      const ptr = this.malloc(hdr + ASYNC_STACK_SIZE);
      if (!ptr) throw new LimitError(`Asyncify could not allocate its ${hdr + ASYNC_STACK_SIZE}-byte buffer: out of memory`, { limit: 'memory' });
      this.setPtr(ptr, ptr + hdr);
      this.setPtr(ptr + (this.wide ? 8 : 4), ptr + hdr + ASYNC_STACK_SIZE);
      this.setI32(ptr + (this.wide ? 16 : 8), this.#callStackId(this.#exportStack[0]!));
      this.#asyncData = ptr;
      this.call('asyncify_start_unwind', [this.arg(ptr)]);
    } else if (this.#asyncState === 2) {
      this.#asyncState = 0;
      this.call('asyncify_stop_rewind');
      this.free(this.#asyncData);
      this.#asyncData = 0;
    } else {
      throw new AoError(`asyncify: invalid state ${this.#asyncState}`, { status: 500 });
    }
    return this.#asyncValue;
  }

  #callStackId(name: string): number {
    let id = this.#callStackIds.get(name);
    if (id === undefined) {
      id = this.#callStackNames.length;
      this.#callStackIds.set(name, id);
      this.#callStackNames.push(name);
    }
    return id;
  }

  /** Calls an export to completion, sleeping through asynchronous imports. */
  async callAsync(name: string, args: WasmValue[]): Promise<WasmValue | undefined> {
    let ret = this.call(name, args);
    while (this.#asyncData) {
      const pending = this.#pending!;
      this.#pending = undefined;
      this.#asyncValue = await pending;
      this.#asyncState = 2;
      const data = this.#asyncData;
      this.call('asyncify_start_rewind', [this.arg(data)]);
      const bottom = this.#callStackNames[this.i32(data + (this.wide ? 16 : 8))]!;
      const params = this.inst.module.exportType(bottom)?.params ?? [];
      ret = this.call(bottom, params.map((t) => (t === 'i64' ? 0n : 0)));
    }
    return ret;
  }
}
