/**
 * The canonical encoding of values (format v1), the input of every cache ID and message ID.
 * Deterministic and type-preserving; docs/ao-core.md describes it byte by byte. In short, each
 * value is one tag byte followed by its payload, with lengths and counts as unsigned LEB128:
 *
 *   'N' null | 'T' true | 'F' false
 *   'i' len ascii-decimal     a number that is a safe integer (not -0)
 *   'd' 8 bytes               any other number: IEEE-754 binary64, big-endian (NaN = 7ff8000000000000)
 *   'n' len ascii-decimal     a bigint
 *   's' len utf-8             a string (must be well-formed UTF-16)
 *   'b' len bytes             a Uint8Array
 *   'l' count value*          a list
 *   'm' count (len key value)*  a message: private and undefined-valued keys left out, the others
 *                             sorted by their UTF-8 bytes; keys are kept exactly as written
 *
 * In ID mode (`forId`), live values (functions, class instances) are encoded as 'x' len token,
 * where the token is process-local; they can never be cached.
 */

import { AoError } from '../errors';
import { decodeUtf8Strict } from '../utf8';
import { describe, isMessage, isPrivateKey, Message, putKey } from './message';

/** Deepest nesting accepted by the encoder (guards the JS stack; cycles are detected exactly). */
export const MAX_DEPTH = 1000;

const TAG = {
  null: 0x4e, // N
  true: 0x54, // T
  false: 0x46, // F
  int: 0x69, // i
  double: 0x64, // d
  bigint: 0x6e, // n
  string: 0x73, // s
  bytes: 0x62, // b
  list: 0x6c, // l
  map: 0x6d, // m
  live: 0x78, // x
} as const;

class Writer {
  buf = Buffer.allocUnsafe(256);
  len = 0;

  ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  byte(b: number): void {
    this.ensure(1);
    this.buf[this.len++] = b;
  }

  /** Unsigned LEB128 of a non-negative safe integer. */
  varint(n: number): void {
    this.ensure(8);
    while (n >= 0x80) {
      this.buf[this.len++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    this.buf[this.len++] = n;
  }

  /** Length-prefixed UTF-8. */
  string(s: string): void {
    const len = s.length;
    if (len < 0x80) {
      // Fast path for short ASCII strings: one length byte, then the characters.
      this.ensure(len + 1);
      const buf = this.buf;
      const start = this.len + 1;
      let i = 0;
      for (; i < len; i++) {
        const c = s.charCodeAt(i);
        if (c > 0x7f) break;
        buf[start + i] = c;
      }
      if (i === len) {
        buf[this.len] = len;
        this.len = start + len;
        return;
      }
    }
    const n = Buffer.byteLength(s, 'utf8');
    this.varint(n);
    this.ensure(n);
    this.buf.write(s, this.len, n, 'utf8');
    this.len += n;
  }

  bytes(b: Uint8Array): void {
    this.varint(b.length);
    this.ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }

  double(x: number): void {
    this.ensure(8);
    if (Number.isNaN(x)) {
      this.buf.writeUInt32BE(0x7ff80000, this.len);
      this.buf.writeUInt32BE(0, this.len + 4);
    } else {
      this.buf.writeDoubleBE(x, this.len);
    }
    this.len += 8;
  }

  result(): Buffer {
    return this.buf.subarray(0, this.len);
  }
}

/** Compare two strings in the order of their UTF-8 bytes (= code point order). */
export function compareUtf8(a: string, b: string): number {
  const n = a.length < b.length ? a.length : b.length;
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x !== y) {
      // UTF-16 order differs from code point order only between surrogates and U+E000..U+FFFF.
      if (x >= 0xd800 && y >= 0xd800) {
        x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
        y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
      }
      return x - y;
    }
  }
  return a.length - b.length;
}

const isWellFormed: (s: string) => boolean =
  typeof (String.prototype as { isWellFormed?: unknown }).isWellFormed === 'function'
    ? (s) => (s as unknown as { isWellFormed(): boolean }).isWellFormed()
    : (s) => !/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s);

const liveTokens = new WeakMap<object, string>();
let liveCounter = 0;

function liveToken(v: object): string {
  let t = liveTokens.get(v);
  if (t === undefined) {
    t = `live:${++liveCounter}`;
    liveTokens.set(v, t);
  }
  return t;
}

function badValue(reason: string, path: string[]): AoError {
  const where = path.length > 0 ? ` at '${path.join('/')}'` : '';
  return new AoError(`Cannot encode message${where}: ${reason}`, {
    status: 400,
    code: 'ERR_BAD_REQUEST',
    key: path.length > 0 ? path.join('/') : undefined,
  });
}

class Encoder {
  readonly w = new Writer();
  private readonly ancestors: object[] = [];
  private readonly path: string[] = [];

  constructor(private readonly forId: boolean) {}

  private enter(v: object): void {
    if (this.ancestors.includes(v)) throw badValue('the message contains a cycle', this.path);
    if (this.ancestors.length >= MAX_DEPTH) throw badValue(`nesting deeper than ${MAX_DEPTH} levels`, this.path);
    this.ancestors.push(v);
  }

  value(v: unknown): void {
    const w = this.w;
    switch (typeof v) {
      case 'string':
        if (!isWellFormed(v)) throw badValue('string with a lone surrogate', this.path);
        w.byte(TAG.string);
        w.string(v);
        return;
      case 'number':
        if (Number.isSafeInteger(v) && !Object.is(v, -0)) {
          w.byte(TAG.int);
          w.string(String(v));
        } else {
          w.byte(TAG.double);
          w.double(v);
        }
        return;
      case 'boolean':
        w.byte(v ? TAG.true : TAG.false);
        return;
      case 'bigint':
        w.byte(TAG.bigint);
        w.string(v.toString());
        return;
      case 'object':
        if (v === null) {
          w.byte(TAG.null);
          return;
        }
        if (v instanceof Uint8Array) {
          w.byte(TAG.bytes);
          w.bytes(v);
          return;
        }
        if (Array.isArray(v)) {
          this.list(v);
          return;
        }
        if (isMessage(v)) {
          this.map(v);
          return;
        }
        break;
      default:
        break;
    }
    if (this.forId && (typeof v === 'function' || typeof v === 'object')) {
      w.byte(TAG.live);
      w.string(liveToken(v as object));
      return;
    }
    throw badValue(`${describe(v)} is not a message value`, this.path);
  }

  private list(v: unknown[]): void {
    this.enter(v);
    this.w.byte(TAG.list);
    this.w.varint(v.length);
    for (let i = 0; i < v.length; i++) {
      const item = v[i];
      this.path.push(String(i + 1));
      if (item === undefined) throw badValue('undefined in a list', this.path);
      this.value(item);
      this.path.pop();
    }
    this.ancestors.pop();
  }

  private map(v: Message): void {
    this.enter(v);
    const keys: string[] = [];
    for (const k of Object.keys(v)) {
      if (v[k] !== undefined && !isPrivateKey(k)) keys.push(k);
    }
    keys.sort(compareUtf8);
    this.w.byte(TAG.map);
    this.w.varint(keys.length);
    for (const k of keys) {
      this.path.push(k);
      if (!isWellFormed(k)) throw badValue('key with a lone surrogate', this.path);
      this.w.string(k);
      this.value(v[k]);
      this.path.pop();
    }
    this.ancestors.pop();
  }
}

/**
 * Canonical bytes of a value. Throws a 400 `AoError` naming the offending key for cycles,
 * nesting deeper than MAX_DEPTH, lone surrogates, `undefined` in lists, and (unless `forId`)
 * values that are not message values (functions, class instances, symbols).
 */
export function encode(value: unknown, forId = false): Buffer {
  const e = new Encoder(forId);
  e.value(value);
  return e.w.result();
}

function corrupt(reason: string): AoError {
  return new AoError(`Corrupt canonical encoding: ${reason}`, { status: 500, code: 'ERR_CACHE_CORRUPT' });
}

class Decoder {
  pos = 0;
  private readonly view: DataView;

  constructor(private readonly buf: Uint8Array) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  private need(n: number): void {
    if (this.pos + n > this.buf.length) throw corrupt('truncated');
  }

  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      this.need(1);
      const b = this.buf[this.pos++];
      result += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) {
        if (!Number.isSafeInteger(result)) throw corrupt('length out of range');
        return result;
      }
      scale *= 0x80;
    }
    throw corrupt('varint too long');
  }

  chunk(): Uint8Array {
    const n = this.varint();
    this.need(n);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  string(): string {
    try {
      return decodeUtf8Strict(this.chunk());
    } catch (e) {
      if (e instanceof AoError) throw e;
      throw corrupt('invalid UTF-8');
    }
  }

  ascii(): string {
    return Buffer.from(this.chunk()).toString('latin1');
  }

  value(depth: number): unknown {
    if (depth > MAX_DEPTH) throw corrupt('nesting too deep');
    this.need(1);
    const tag = this.buf[this.pos++];
    switch (tag) {
      case TAG.null:
        return null;
      case TAG.true:
        return true;
      case TAG.false:
        return false;
      case TAG.int: {
        const s = this.ascii();
        const n = Number(s);
        if (!/^-?(0|[1-9][0-9]*)$/.test(s) || !Number.isSafeInteger(n)) throw corrupt(`bad integer '${s}'`);
        return n;
      }
      case TAG.double: {
        this.need(8);
        const x = this.view.getFloat64(this.pos, false);
        this.pos += 8;
        return x;
      }
      case TAG.bigint: {
        const s = this.ascii();
        if (!/^-?(0|[1-9][0-9]*)$/.test(s)) throw corrupt(`bad bigint '${s}'`);
        return BigInt(s);
      }
      case TAG.string:
        return this.string();
      case TAG.bytes:
        return new Uint8Array(this.chunk());
      case TAG.list: {
        const n = this.varint();
        const out: unknown[] = [];
        for (let i = 0; i < n; i++) out.push(this.value(depth + 1));
        return out;
      }
      case TAG.map: {
        const n = this.varint();
        const out: Message = {};
        let prev: string | undefined;
        for (let i = 0; i < n; i++) {
          const k = this.string();
          if (prev !== undefined && compareUtf8(prev, k) >= 0) throw corrupt('map keys out of order');
          prev = k;
          putKey(out, k, this.value(depth + 1));
        }
        return out;
      }
      default:
        throw corrupt(`unknown tag 0x${tag.toString(16).padStart(2, '0')}`);
    }
  }
}

/** Decode canonical bytes back into a value. Throws a 500 ERR_CACHE_CORRUPT on malformed input. */
export function decode(bytes: Uint8Array): unknown {
  const d = new Decoder(bytes);
  const v = d.value(0);
  if (d.pos !== bytes.length) throw corrupt('trailing bytes');
  return v;
}
