/**
 * Packed marshalling of LuaVM values (the JS half; the native half is `native/lua_packed.cc`).
 * Arguments that contain objects or arrays are encoded here into one tagged byte stream that the
 * addon decodes straight into Lua values; results that contain tables come back the same way and
 * are decoded here. The mapping and the errors are those of docs/lua-vm.md, "Values"; the wire
 * format is in its "Marshalling" section. Plain JS over a reused Buffer: no N-API call per property.
 */
import { types } from 'node:util';
import { badArg } from './errors';

// Tags (native/lua_packed.h). Integers little-endian.
const NIL = 0;
const FALSE = 1;
const TRUE = 2;
const INT32 = 3; // i32
const INT64 = 4; // i64 (JS -> Lua: bigint; Lua -> JS: beyond 2^53-1, a bigint)
const FLOAT = 5; // f64
const INTF64 = 6; // JS -> Lua: f64 holding a safe integer beyond i32, pushed as a Lua integer
const STR = 7; // u32 length, bytes: JS -> Lua UTF-8, Lua -> JS ASCII
const UTF8 = 8; // Lua -> JS: u32 length, UTF-8 with non-ASCII bytes
const BYTES = 9; // u32 length, bytes: a Uint8Array, or (Lua -> JS) bytes that are not UTF-8
const ARRAY = 10; // u32 n, n values
const OBJECT = 11; // u32 n, n pairs: JS -> Lua (key, value); Lua -> JS (value, key)
const FUNCTION = 12;
const THREAD = 13;
const USERDATA = 14;

const MAX_DEPTH = 200;
const INITIAL_SIZE = 8192;
/** A writer whose buffer grew beyond this gets a fresh small one after use. */
const KEEP_SIZE = 1 << 20;

const objectProto = Object.prototype;
const getProto = Object.getPrototypeOf;
const isArray = Array.isArray;
const isView = ArrayBuffer.isView;
const fromCharCode = String.fromCharCode;
const hasOwn = Object.prototype.hasOwnProperty;

/** The string of the ASCII bytes b[s, s + len), len <= 16: fromCharCode with several arguments beats a loop. */
function shortAscii(b: Buffer, s: number, len: number): string {
  switch (len) {
    case 0:
      return '';
    case 1:
      return fromCharCode(b[s]);
    case 2:
      return fromCharCode(b[s], b[s + 1]);
    case 3:
      return fromCharCode(b[s], b[s + 1], b[s + 2]);
    case 4:
      return fromCharCode(b[s], b[s + 1], b[s + 2], b[s + 3]);
    case 5:
      return fromCharCode(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4]);
    case 6:
      return fromCharCode(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5]);
    case 7:
      return fromCharCode(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6]);
    case 8:
      return fromCharCode(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7]);
    default:
      return fromCharCode(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7]) + shortAscii(b, s + 8, len - 8);
  }
}

// Node's Buffer methods without argument parsing (undocumented, present since Node 0.x), with the
// documented ones as a fallback.
interface FastBuffer {
  utf8Write?(s: string, offset: number): number;
  latin1Slice?(start: number, end: number): string;
  utf8Slice?(start: number, end: number): string;
}
const proto = Buffer.prototype as unknown as FastBuffer;
const fast = typeof proto.utf8Write === 'function' && typeof proto.latin1Slice === 'function' && typeof proto.utf8Slice === 'function';
const utf8Write: (b: Buffer, s: string, offset: number) => number = fast
  ? (b, s, offset) => (b as unknown as Required<FastBuffer>).utf8Write(s, offset)
  : (b, s, offset) => b.write(s, offset);
const latin1Slice: (b: Buffer, start: number, end: number) => string = fast
  ? (b, start, end) => (b as unknown as Required<FastBuffer>).latin1Slice(start, end)
  : (b, start, end) => b.toString('latin1', start, end);
const utf8Slice: (b: Buffer, start: number, end: number) => string = fast
  ? (b, start, end) => (b as unknown as Required<FastBuffer>).utf8Slice(start, end)
  : (b, start, end) => b.toString('utf8', start, end);

/** Encodes JS values for the native side. One shared instance; a nested use gets its own. */
class Writer {
  buf: Buffer;
  dv: DataView;
  pos = 0;
  busy = false;
  /** The containers on the current path (for cycle detection), by depth. */
  private anc: object[] = [];
  /** The keys (or array indices) on the current path, by depth; read only to name an error. */
  private keys: (string | number)[] = [];
  private what = '';
  private label = '';

  constructor(size = INITIAL_SIZE) {
    this.buf = Buffer.allocUnsafeSlow(size);
    this.dv = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
  }

  /** Encodes `values` from offset 0; returns the byte length. `label` names them in errors ("args[1]"). */
  encode(values: readonly unknown[], what: string, label: string): number {
    if (this.buf.length > KEEP_SIZE) this.reset(INITIAL_SIZE);
    this.pos = 0;
    this.what = what;
    for (let i = 0; i < values.length; i++) {
      this.label = label === '' ? '' : `${label}[${i}]`;
      this.value(values[i], 0);
    }
    return this.pos;
  }

  /** Encodes one value from offset 0 (a host function result); returns the byte length. */
  encodeOne(value: unknown, what: string): number {
    if (this.buf.length > KEEP_SIZE) this.reset(INITIAL_SIZE);
    this.pos = 0;
    this.what = what;
    this.label = '';
    this.value(value, 0);
    return this.pos;
  }

  /**
   * Ends a use: forgets the encoded values and frees the writer. A buffer that grew very large is
   * swapped for a small one at the next use (the caller may still read the current one).
   */
  release(): void {
    this.anc.length = 0;
    this.keys.length = 0;
    this.busy = false;
  }

  private reset(size: number): void {
    this.buf = Buffer.allocUnsafeSlow(size);
    this.dv = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
  }

  private grow(need: number): void {
    let size = this.buf.length * 2;
    while (size < this.pos + need) size *= 2;
    const old = this.buf;
    this.reset(size);
    old.copy(this.buf, 0, 0, this.pos);
  }

  private fail(why: string, depth: number): never {
    let where = this.label;
    for (let i = 0; i < depth; i++) {
      const k = this.keys[i];
      where += typeof k === 'number' ? `[${k}]` : `.${k}`;
    }
    throw badArg(`${this.what}: ${why}${where === '' ? '' : ` (at ${where})`}`);
  }

  private value(v: unknown, depth: number): void {
    switch (typeof v) {
      case 'number':
        this.number(v);
        return;
      case 'string':
        this.string(v);
        return;
      case 'boolean':
        if (this.pos + 1 > this.buf.length) this.grow(1);
        this.buf[this.pos++] = v ? TRUE : FALSE;
        return;
      case 'object':
        if (v === null) break;
        this.object(v, depth);
        return;
      case 'undefined':
        break;
      case 'bigint':
        if (BigInt.asIntN(64, v) !== v) this.fail('BigInt outside the int64 range', depth);
        if (this.pos + 9 > this.buf.length) this.grow(9);
        this.buf[this.pos] = INT64;
        this.dv.setBigInt64(this.pos + 1, v, true);
        this.pos += 9;
        return;
      case 'function':
        return this.fail('a function has no Lua form (register host functions with setGlobalFunction)', depth);
      default:
        return this.fail('a symbol or external value has no Lua form', depth);
    }
    if (this.pos + 1 > this.buf.length) this.grow(1);
    this.buf[this.pos++] = NIL;
  }

  private number(d: number): void {
    if (this.pos + 9 > this.buf.length) this.grow(9);
    const p = this.pos;
    if ((d | 0) === d && (d !== 0 || 1 / d > 0)) {
      this.buf[p] = INT32;
      this.dv.setInt32(p + 1, d, true);
      this.pos = p + 5;
      return;
    }
    // Safe integers become Lua integers; -0 (handled above as not an int32) stays a float.
    this.buf[p] = Number.isInteger(d) && d !== 0 && d <= 9007199254740991 && d >= -9007199254740991 ? INTF64 : FLOAT;
    this.dv.setFloat64(p + 1, d, true);
    this.pos = p + 9;
  }

  private string(s: string): void {
    const n = s.length;
    // Room for the worst case (3 bytes per UTF-16 unit); long strings are measured instead.
    const room = n <= 4096 ? 5 + n * 3 : 5 + Buffer.byteLength(s, 'utf8');
    if (this.pos + room > this.buf.length) this.grow(room);
    const b = this.buf;
    const start = this.pos + 5;
    let len = 0;
    if (n < 48) {
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        b[start + i] = c;
      }
      len = i === n ? n : utf8Write(b, s, start);
    } else {
      len = utf8Write(b, s, start);
    }
    b[this.pos] = STR;
    this.dv.setUint32(this.pos + 1, len, true);
    this.pos = start + len;
  }

  private object(v: object, depth: number): void {
    if (isView(v)) {
      if (types.isUint8Array(v) || types.isUint8ClampedArray(v)) {
        const u = v as Uint8Array;
        const n = u.length;
        if (n > 0xffffffff) this.fail('a Uint8Array of 4 GiB or more has no Lua form here', depth);
        if (this.pos + 5 + n > this.buf.length) this.grow(5 + n);
        this.buf[this.pos] = BYTES;
        this.dv.setUint32(this.pos + 1, n, true);
        this.buf.set(u, this.pos + 5);
        this.pos += 5 + n;
        return;
      }
      // A DataView goes on to the plain-object check (and fails it), as in lua_marshal.cc.
      if (!types.isDataView(v)) this.fail('only Uint8Array (or Buffer) converts to a Lua string', depth);
    }
    if (depth >= MAX_DEPTH) this.fail(`value nested deeper than ${MAX_DEPTH} levels`, depth);
    const anc = this.anc;
    for (let i = 0; i < depth; i++) {
      if (anc[i] === v) this.fail('cycle detected (the value contains itself)', depth);
    }
    anc[depth] = v;
    if (this.pos + 5 > this.buf.length) this.grow(5);
    const at = this.pos;
    this.pos = at + 5;
    const keys = this.keys;
    if (isArray(v)) {
      const n = v.length;
      this.buf[at] = ARRAY;
      this.dv.setUint32(at + 1, n, true);
      for (let i = 0; i < n; i++) {
        keys[depth] = i;
        this.value(v[i], depth + 1);
      }
      return;
    }
    // Plain objects only: the prototype is null or Object.prototype (of any realm).
    const proto = getProto(v);
    if (proto !== objectProto && proto !== null && getProto(proto) !== null) {
      this.fail('only plain objects and arrays convert to Lua tables (got a class instance, Map, Date, ...)', depth);
    }
    if (proto === null && types.isExternal(v)) this.fail('a symbol or external value has no Lua form', depth);
    let pairs = 0;
    // Own enumerable string keys, in Object.keys order: for-in (V8's enum cache makes it much
    // faster than Object.keys plus keyed loads) filtered to own properties.
    for (const k in v) {
      if (!hasOwn.call(v, k)) continue;
      const x = (v as Record<string, unknown>)[k];
      if (x === undefined || x === null) continue; // a nil value is an absent key
      keys[depth] = k;
      this.string(k);
      this.value(x, depth + 1);
      pairs++;
    }
    this.buf[at] = OBJECT;
    this.dv.setUint32(at + 1, pairs, true);
  }
}

const shared = new Writer();

/** The shared writer, or a fresh one when it is in use (a getter calling back into a LuaVM). */
export function acquireWriter(): Writer {
  const w = shared.busy ? new Writer(1024) : shared;
  w.busy = true;
  return w;
}

export type { Writer };

/**
 * Runs a host function called from Lua with a table among its arguments (registered on each VM
 * with `setPackedHost`): `args` holds them packed (u32 count, values); the result comes back packed
 * (one value), in a view of the shared writer's buffer that the native side reads at once.
 */
export function packedHost(fn: (...args: unknown[]) => unknown, args: Buffer): Uint8Array {
  return packValue(fn(...decodeBuffer(args)));
}

/** Packs one value a host function returned (an object or array, when its arguments were scalars). */
export function packValue(result: unknown): Uint8Array {
  const w = acquireWriter();
  try {
    return w.buf.subarray(0, w.encodeOne(result, 'host function result'));
  } finally {
    w.release();
  }
}

/** Decodes results (u32 count, then the values) from `buf[0, len)`; runs no user code. */
export function decodeValues(buf: Buffer, dv: DataView, len: number): unknown[] {
  return new Reader(buf, dv, len).values();
}

/** Decodes packed results from a Buffer the native side returned. */
export function decodeBuffer(buf: Buffer): unknown[] {
  return new Reader(buf, new DataView(buf.buffer, buf.byteOffset, buf.byteLength), buf.length).values();
}

// Object keys repeat (the same field names in every message): short ASCII keys are looked up by a
// hash of their bytes here, and a hit reuses the (internalized) string instead of building one.
const KEY_CACHE_SIZE = 4096;
const KEY_MAX = 32;
const keyCache: (string | undefined)[] = new Array<string | undefined>(KEY_CACHE_SIZE).fill(undefined);

function asciiKey(b: Buffer, s: number, len: number): string {
  let h = len;
  for (let i = s; i < s + len; i++) h = Math.imul(h, 31) + b[i];
  const slot = (h ^ (h >>> 13)) & (KEY_CACHE_SIZE - 1);
  const c = keyCache[slot];
  if (c !== undefined && c.length === len) {
    let i = 0;
    while (i < len && c.charCodeAt(i) === b[s + i]) i++;
    if (i === len) return c;
  }
  const out = len <= 16 ? shortAscii(b, s, len) : latin1Slice(b, s, s + len);
  keyCache[slot] = out;
  return out;
}

class Reader {
  constructor(
    private readonly b: Buffer,
    private readonly dv: DataView,
    private readonly end: number,
    private p = 0,
  ) {}

  values(): unknown[] {
    const n = this.dv.getUint32(0, true);
    this.p = 4;
    const out = new Array<unknown>(n);
    for (let i = 0; i < n; i++) out[i] = this.value();
    if (this.p !== this.end) throw new Error('LuaVM: malformed packed results');
    return out;
  }

  private value(): unknown {
    const b = this.b;
    const p = this.p;
    switch (b[p]) {
      case NIL:
        this.p = p + 1;
        return null;
      case FALSE:
        this.p = p + 1;
        return false;
      case TRUE:
        this.p = p + 1;
        return true;
      case INT32:
        this.p = p + 5;
        return this.dv.getInt32(p + 1, true);
      case FLOAT:
        this.p = p + 9;
        return this.dv.getFloat64(p + 1, true);
      case INT64:
        this.p = p + 9;
        return this.dv.getBigInt64(p + 1, true);
      case STR: {
        const len = this.dv.getUint32(p + 1, true);
        const s = p + 5;
        this.p = s + len;
        return len <= 16 ? shortAscii(b, s, len) : latin1Slice(b, s, s + len);
      }
      case UTF8: {
        const len = this.dv.getUint32(p + 1, true);
        this.p = p + 5 + len;
        return utf8Slice(b, p + 5, p + 5 + len);
      }
      case BYTES: {
        const len = this.dv.getUint32(p + 1, true);
        this.p = p + 5 + len;
        const out = Buffer.allocUnsafeSlow(len);
        b.copy(out, 0, p + 5, p + 5 + len);
        return out;
      }
      case ARRAY: {
        const n = this.dv.getUint32(p + 1, true);
        this.p = p + 5;
        const out = new Array<unknown>(n);
        for (let i = 0; i < n; i++) out[i] = this.value();
        return out;
      }
      case OBJECT: {
        const n = this.dv.getUint32(p + 1, true);
        this.p = p + 5;
        const out: Record<string, unknown> = {};
        for (let i = 0; i < n; i++) {
          const v = this.value();
          const q = this.p;
          const klen = b[q] === STR ? this.dv.getUint32(q + 1, true) : KEY_MAX + 1;
          let k: string;
          if (klen <= KEY_MAX) {
            this.p = q + 5 + klen;
            k = asciiKey(b, q + 5, klen);
          } else {
            k = this.value() as string;
          }
          if (k === '__proto__') {
            // An own data property: a plain assignment would set the prototype instead.
            Object.defineProperty(out, k, { value: v, writable: true, enumerable: true, configurable: true });
          } else {
            out[k] = v; // number and boolean keys become their string form
          }
        }
        return out;
      }
      case FUNCTION:
        this.p = p + 1;
        return '[lua function]';
      case THREAD:
        this.p = p + 1;
        return '[lua thread]';
      case USERDATA:
        this.p = p + 1;
        return '[lua userdata]';
      default:
        throw new Error(`LuaVM: malformed packed results (tag ${b[p]} at ${p})`);
    }
  }
}
