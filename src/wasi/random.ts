/**
 * WASI randomness: `random_get`, from a deterministic stream keyed by the seed (the default) or
 * from the OS (`random: 'os'`).
 */
import { createHash, randomFillSync } from 'node:crypto';
import { badArg } from '../errors';
import { Errno } from './errno';
import { addr, EMPTY, TWO32 } from './guest';
import type { WasiCalls } from './signatures';
import type { CallContext, WasiOptions } from './state';

const utf8 = new TextEncoder();

/** Deterministic random stream: block i = SHA-256(key ‖ u64le(i)), key = SHA-256(domain ‖ seed). */
export class Drbg {
  readonly #key: Buffer;
  #pos: number;
  #blockIndex = -1;
  #block: Buffer = EMPTY;
  constructor(seed: Uint8Array, pos: number) {
    this.#key = createHash('sha256').update('hb-runtimes/wasi/random/v1\0').update(seed).digest();
    this.#pos = pos;
  }
  get position(): number {
    return this.#pos;
  }
  fill(out: Uint8Array): void {
    let i = 0;
    while (i < out.length) {
      const bi = Math.floor(this.#pos / 32);
      const off = this.#pos % 32;
      if (bi !== this.#blockIndex) {
        const ctr = Buffer.alloc(8);
        ctr.writeUInt32LE(bi % TWO32, 0);
        ctr.writeUInt32LE(Math.floor(bi / TWO32), 4);
        this.#block = createHash('sha256').update(this.#key).update(ctr).digest();
        this.#blockIndex = bi;
      }
      const k = Math.min(32 - off, out.length - i);
      out.set(this.#block.subarray(off, off + k), i);
      i += k;
      this.#pos += k;
    }
  }
}

export function seedBytes(seed: WasiOptions['seed']): Uint8Array {
  if (seed === undefined) return new Uint8Array(0);
  if (seed instanceof Uint8Array) return seed;
  if (typeof seed === 'string') return utf8.encode(seed);
  if (typeof seed === 'bigint' || typeof seed === 'number') return utf8.encode(String(seed));
  throw badArg('WasiPreview1: seed must be a Uint8Array, string, bigint or number');
}

export function randomCalls({ st, guest }: CallContext): WasiCalls {
  return {
    random_get: (buf, len) => {
      const g = guest();
      const p = addr(buf);
      const n = addr(len);
      g.check(p, n);
      if (n === 0) return Errno.SUCCESS;
      const bytes = Buffer.allocUnsafe(n);
      if (st.drbg) st.drbg.fill(bytes);
      else randomFillSync(bytes);
      g.write(p, bytes);
      return Errno.SUCCESS;
    },
  };
}
