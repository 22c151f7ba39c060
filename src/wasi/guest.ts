/**
 * Guest memory as WASI calls see it: pointer and size arguments, the ABI's layouts (`size_t`,
 * iovecs), bounds checks giving EFAULT, and the internal errno exception (`fail`) that `guard`
 * turns into a call's result.
 */
import { AoError } from '../errors';
import type { WasmMemory, WasmValue } from '../wasm';
import { Errno } from './errno';
import type { WasiFunction } from './signatures';

/** Internal: an errno raised from deep inside a call (never escapes an import). */
class Fail {
  constructor(readonly errno: number) {}
}
const FAULT = new Fail(Errno.EFAULT);
export function fail(errno: number): never {
  throw errno === Errno.EFAULT ? FAULT : new Fail(errno);
}

/** Turns internal failures into errno results; guest memory faults into EFAULT. */
export function guard(fn: (...a: WasmValue[]) => number): WasiFunction {
  return (...args) => {
    try {
      return fn(...args);
    } catch (e) {
      if (e instanceof Fail) return e.errno;
      if (e instanceof AoError && e.code === 'ERR_OUT_OF_BOUNDS') return Errno.EFAULT;
      throw e;
    }
  };
}

export const MAX_SAFE = Number.MAX_SAFE_INTEGER;
export const MAX_SAFE_BIG = BigInt(MAX_SAFE);
export const TWO32 = 4294967296;
export const U32_MAX = TWO32 - 1;
export const EMPTY = Buffer.alloc(0);

/** A pointer or size argument as a safe integer (i32 arrives signed, i64 as bigint). */
export function addr(v: WasmValue): number {
  if (typeof v === 'number') return v < 0 ? v + TWO32 : v;
  const u = BigInt.asUintN(64, v);
  if (u > MAX_SAFE_BIG) fail(Errno.EFAULT);
  return Number(u);
}
export function u32(v: WasmValue): number {
  return typeof v === 'number' ? v >>> 0 : Number(BigInt.asUintN(32, v));
}
export function u64(v: WasmValue): bigint {
  return BigInt.asUintN(64, typeof v === 'bigint' ? v : BigInt(v));
}
export function s64(v: WasmValue): bigint {
  return BigInt.asIntN(64, typeof v === 'bigint' ? v : BigInt(v));
}

/** Guest memory with the ABI's layout rules. */
export class Guest {
  #limit = -1;

  constructor(
    private readonly mem: WasmMemory,
    readonly wide: boolean,
  ) {}

  /** Forgets the cached memory size; called at the start of every host call (memory cannot grow during one). */
  reset(): this {
    this.#limit = -1;
    return this;
  }

  /** Memory size in bytes. */
  get limit(): number {
    if (this.#limit < 0) this.#limit = Number(this.mem.size);
    return this.#limit;
  }

  /** Size in bytes of a `size_t` / pointer. */
  get word(): number {
    return this.wide ? 8 : 4;
  }

  /** EFAULT unless `[ptr, ptr+len)` is inside memory. */
  check(ptr: number, len: number): void {
    if (ptr + len > this.limit) fail(Errno.EFAULT);
  }

  read(ptr: number, len: number): Buffer {
    return len === 0 ? EMPTY : this.mem.read(ptr, len);
  }

  write(ptr: number, bytes: Uint8Array): void {
    if (bytes.length) this.mem.write(ptr, bytes);
  }

  u32(ptr: number, v: number): void {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32LE(v >>> 0, 0);
    this.mem.write(ptr, b);
  }

  u64(ptr: number, v: bigint): void {
    const b = Buffer.allocUnsafe(8);
    b.writeBigUInt64LE(v, 0);
    this.mem.write(ptr, b);
  }

  /** Writes a `size_t` (u32 or u64). */
  size(ptr: number, v: number): void {
    const b = Buffer.allocUnsafe(this.word);
    putSize(b, 0, v, this.wide);
    this.mem.write(ptr, b);
  }

  /** Reads `n` iovecs as a flat `[buf0, len0, buf1, len1, …]`, all inside memory. */
  iovecs(ptr: number, n: number): number[] {
    const stride = this.wide ? 16 : 8;
    if (n === 0) return [];
    this.check(ptr, n * stride);
    const raw = this.mem.read(ptr, n * stride);
    const limit = this.limit;
    const out = new Array<number>(2 * n);
    for (let i = 0; i < n; i++) {
      const o = i * stride;
      let buf: number;
      let len: number;
      if (this.wide) {
        buf = u64At(raw, o);
        len = u64At(raw, o + 8);
      } else {
        buf = raw.readUInt32LE(o);
        len = raw.readUInt32LE(o + 4);
      }
      if (buf + len > limit) fail(Errno.EFAULT);
      out[2 * i] = buf;
      out[2 * i + 1] = len;
    }
    return out;
  }
}

/** A u64 field as a safe integer (EFAULT beyond 2^53: no memory is that large). */
function u64At(b: Buffer, o: number): number {
  const hi = b.readUInt32LE(o + 4);
  if (hi >= 0x200000) fail(Errno.EFAULT);
  return hi * TWO32 + b.readUInt32LE(o);
}

export function putSize(b: Buffer, o: number, v: number, wide: boolean): void {
  if (wide) {
    b.writeUInt32LE(v % TWO32, o);
    b.writeUInt32LE(Math.floor(v / TWO32), o + 4);
  } else {
    b.writeUInt32LE(v, o);
  }
}
