/**
 * Trap-preserving memory64 lowering: a module whose only memory is a defined memory64 with a
 * declared maximum below 4 GiB is rewritten to run on a 32-bit memory, where Wasmtime bounds
 * accesses with guard pages instead of explicit checks (and their Spectre guards).
 *
 * Unlike Binaryen's `memory64-lowering` (which wraps addresses: a load at 2^32 + 16 reads 16),
 * every 64-bit address, length and grow delta goes through a guard first:
 *
 *     i32(min_u(addr, 0xFFFFFFFF))       (select on addr <u 0xFFFFFFFF, then i32.wrap_i64)
 *
 * which Cranelift compiles to a compare and a conditional move (an unsigned minimum). That was 5%
 * and 10% faster on AOS `Eval` than testing `addr >> 32 == 0` (version 2: shift, test, cmove), and
 * a branch to a trapping access instead of the select was 20% slower.
 *
 * Since the memory can never reach 4 GiB − 64 KiB, an access at 0xFFFFFFFF (plus any offset and
 * at least one byte) is out of bounds, so it traps with the same trap code as the original access
 * ("out of bounds memory access"), after evaluating the same operands in the same order (a bulk
 * operation whose address or length is ≥ 2^32 always trapped, whatever its other operands). An
 * immediate offset ≥ 2^32 becomes address 0xFFFFFFFF with offset 0 (it always trapped). A grow
 * delta ≥ 2^32 pages becomes 0xFFFFFFFF pages, which fails (-1) as the original does;
 * `memory.size` and `memory.grow` results are zero- / sign-extended back to i64. Active data
 * segment offsets become i32 constants.
 *
 * The rewrite is on the binary (the instruction decoder of wasm-code.ts); anything it does not
 * know (atomics, imported or several memories, GC type definitions, non-constant segment offsets)
 * leaves the image as it is (`lowered: false` with the reason).
 */
import { Reader, sectionsOf, sleb, uleb } from './wasm-binary';
import { immediates } from './wasm-code';

/** Bumped whenever the output of `lowerMemory64` changes (part of cache keys). */
export const LOWER_VERSION = 3;

/** Largest declared maximum (in 64 KiB pages) that is lowered: 0xFFFFFFFF must stay out of bounds. */
export const MAX_LOWERED_PAGES = 65535;

export interface LowerResult {
  bytes: Uint8Array;
  lowered: boolean;
  /** Why the image was left as it is (when `lowered` is false). */
  reason?: string;
}

class Skip extends Error {}

const I32 = 0x7f;
const I64 = 0x7e;
const F32 = 0x7d;
const F64 = 0x7c;
const V128 = 0x7b;

/** Temporaries of one function, appended after its own locals on first use. */
class Temps {
  readonly types: number[] = [];
  readonly slots = new Map<string, number>();
  constructor(readonly base: number) {}
  get(type: number, n: number | string = 0): number[] {
    const key = `${type}:${n}`;
    let idx = this.slots.get(key);
    if (idx === undefined) {
      idx = this.base + this.types.length;
      this.types.push(type);
      this.slots.set(key, idx);
    }
    return uleb(idx);
  }
}

const U32MAX = [0x42, ...sleb(0xffffffffn)]; // i64.const 0xFFFFFFFF

/**
 * With the i64 in local `a` also on the stack: → i32(min_u(a, 0xFFFFFFFF)).
 * i64.const 0xFFFFFFFF; local.get a; i64.const 0xFFFFFFFF; i64.lt_u; select; i32.wrap_i64
 */
function clamp(out: number[], a: number[]): void {
  out.push(...U32MAX, 0x20, ...a, ...U32MAX, 0x54, 0x1b, 0xa7);
}

/** i64 address (or length) on the stack → i32 address, 0xFFFFFFFF when its high half is not zero. */
function guard(out: number[], t: Temps): void {
  const a = t.get(I64);
  out.push(0x22, ...a); // local.tee a
  clamp(out, a);
}

/** A grow delta: the same clamp, 0xFFFFFFFF pages being a growth that fails (-1). */
const clampDelta = guard;

const STORE_TYPES: Record<number, number> = { 0x36: I32, 0x37: I64, 0x38: F32, 0x39: F64, 0x3a: I32, 0x3b: I32, 0x3c: I64, 0x3d: I64, 0x3e: I64 };

/** Reads a memarg; returns its bytes re-encoded and whether the offset was ≥ 2^32. */
function memarg(r: Reader): { bytes: number[]; big: boolean } {
  const align = r.uleb();
  const bytes = uleb(align);
  if (align & 0x40) {
    const mem = r.uleb();
    if (mem !== 0) throw new Skip('memory index other than 0');
    bytes.push(...uleb(mem));
  }
  const offset = r.uleb();
  const big = offset >= 2 ** 32;
  bytes.push(...uleb(big ? 0 : offset));
  return { bytes, big };
}

/** One instruction copied as it was: where it is in the output, and the local a `local.get` reads. */
interface Copied {
  start: number;
  end: number;
  get?: number;
  /** No side effect and one result: `local.get` or a scalar constant. */
  simple: boolean;
}

/**
 * What a body's rewrite knows at the current instruction: the last two instructions copied, and
 * the i64 locals whose guarded i32 address is in a temporary since the last control instruction
 * and the last write to the local (an address read again in the same straight-line code reuses it).
 */
class Body {
  prev?: Copied;
  prev2?: Copied;
  readonly guarded = new Map<number, number[]>();
  constructor(readonly t: Temps) {}
  /** The guarded i32 address of i64 local `x`. */
  address(out: number[], x: number): void {
    const known = this.guarded.get(x);
    if (known) {
      out.push(0x20, ...known);
      return;
    }
    const g = uleb(x);
    const x32 = this.t.get(I32, `a${x}`);
    out.push(0x20, ...g); // local.get x
    clamp(out, g);
    out.push(0x22, ...x32); // local.tee x32
    this.guarded.set(x, x32);
  }
}

/** An access: the address (under a value of type `above`, for stores) guarded, then the op. */
function access(out: number[], b: Body, r: Reader, prefix: number[], above: number | undefined, tail: number[] = []): void {
  const t = b.t;
  const m = memarg(r);
  const { prev, prev2 } = b;
  if (!m.big && above === undefined && prev?.get !== undefined && prev.end === out.length) {
    out.length = prev.start; // local.get x; load  →  guarded x; load
    b.address(out, prev.get);
    out.push(...prefix, ...m.bytes, ...tail);
    return;
  }
  if (!m.big && above !== undefined && prev2?.get !== undefined && prev?.simple && prev.start === prev2.end && prev.end === out.length) {
    const value = out.slice(prev.start, prev.end); // local.get x; local.get y (or a constant); store
    out.length = prev2.start;
    b.address(out, prev2.get);
    out.push(...value, ...prefix, ...m.bytes, ...tail);
    return;
  }
  const value = above === undefined ? undefined : t.get(above, 1);
  if (value) out.push(0x21, ...value);
  if (m.big) out.push(0x1a, 0x41, 0x7f);
  else guard(out, t);
  if (value) out.push(0x20, ...value);
  out.push(...prefix, ...m.bytes, ...tail);
}

function memIndex(r: Reader): number[] {
  const m = r.uleb();
  if (m !== 0) throw new Skip('memory index other than 0');
  return uleb(m);
}

/** Rewrites one instruction at `r` into `out`; false when it is not a memory instruction. */
function rewriteOp(out: number[], b: Body, r: Reader, op: number): boolean {
  const t = b.t;
  if (op >= 0x28 && op <= 0x35) {
    access(out, b, r, [op], undefined);
    return true;
  }
  if (op >= 0x36 && op <= 0x3e) {
    access(out, b, r, [op], STORE_TYPES[op]);
    return true;
  }
  if (op === 0x3f) {
    out.push(0x3f, ...memIndex(r), 0xad); // memory.size; i64.extend_i32_u
    return true;
  }
  if (op === 0x40) {
    const m = memIndex(r);
    clampDelta(out, t);
    out.push(0x40, ...m, 0xac); // memory.grow; i64.extend_i32_s (-1 stays -1)
    return true;
  }
  if (op === 0xfe) throw new Skip('atomic instructions');
  if (op !== 0xfc && op !== 0xfd) return false;
  const start = r.pos;
  const sub = r.uleb();
  const subBytes = [op, ...uleb(sub)];
  if (op === 0xfc) {
    if (sub === 8) {
      // memory.init: [dest i64, offset i32, n i32]
      const seg = uleb(r.uleb());
      const m = memIndex(r);
      const a = t.get(I32, 1);
      const b = t.get(I32, 2);
      out.push(0x21, ...b, 0x21, ...a);
      guard(out, t);
      out.push(0x20, ...a, 0x20, ...b, ...subBytes, ...seg, ...m);
      return true;
    }
    if (sub === 10) {
      // memory.copy: [dest i64, src i64, n i64]
      const m = [...memIndex(r), ...memIndex(r)];
      const s = t.get(I64, 1);
      const n = t.get(I64, 2);
      out.push(0x21, ...n, 0x21, ...s);
      guard(out, t);
      out.push(0x20, ...s);
      guard(out, t);
      out.push(0x20, ...n);
      guard(out, t);
      out.push(...subBytes, ...m);
      return true;
    }
    if (sub === 11) {
      // memory.fill: [dest i64, value i32, n i64]
      const m = memIndex(r);
      const v = t.get(I32, 1);
      const n = t.get(I64, 2);
      out.push(0x21, ...n, 0x21, ...v);
      guard(out, t);
      out.push(0x20, ...v, 0x20, ...n);
      guard(out, t);
      out.push(...subBytes, ...m);
      return true;
    }
  } else {
    if (sub <= 10 || sub === 92 || sub === 93) {
      access(out, b, r, subBytes, undefined);
      return true;
    }
    if (sub === 11) {
      access(out, b, r, subBytes, V128);
      return true;
    }
    if (sub >= 84 && sub <= 91) {
      // v128.load*_lane / store*_lane: [addr i64, v128] memarg lane
      const m = memarg(r);
      const lane = r.byte();
      const v = t.get(V128, 1);
      out.push(0x21, ...v);
      if (m.big) out.push(0x1a, 0x41, 0x7f);
      else guard(out, t);
      out.push(0x20, ...v, ...subBytes, ...m.bytes, lane);
      return true;
    }
  }
  r.pos = start;
  return false;
}

/** Instructions that start or end a block (straight-line code ends there): guarded addresses are forgotten. */
const CONTROL = new Set([0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x0b, 0x18, 0x19, 0x1f]);

function skipValType(r: Reader): void {
  const t = r.byte();
  if (t === 0x63 || t === 0x64) r.sleb();
}

/** Parameter counts of the type section's function types (anything else: Skip). */
function paramCounts(image: Uint8Array, start: number, end: number): number[] {
  const r = new Reader(image.subarray(0, end), start);
  const out: number[] = [];
  for (let i = 0, n = r.uleb(); i < n; i++) {
    if (r.byte() !== 0x60) throw new Skip('type definitions other than function types');
    const params = r.uleb();
    for (let k = 0; k < params; k++) skipValType(r);
    for (let k = 0, results = r.uleb(); k < results; k++) skipValType(r);
    out.push(params);
  }
  return out;
}

function rewriteBody(image: Uint8Array, start: number, end: number, params: number): number[] {
  const r = new Reader(image.subarray(0, end), start);
  const groups: number[][] = [];
  let locals = params;
  for (let n = r.uleb(); n > 0; n--) {
    const gs = r.pos;
    locals += r.uleb();
    skipValType(r);
    groups.push(Array.from(image.subarray(gs, r.pos)));
  }
  const t = new Temps(locals);
  const b = new Body(t);
  const code: number[] = [];
  while (r.pos < end) {
    const at = r.pos;
    const op = r.byte();
    if (rewriteOp(code, b, r, op)) {
      b.prev2 = b.prev = undefined;
      continue;
    }
    immediates(r, op);
    const start = code.length;
    for (let p = at; p < r.pos; p++) code.push(image[p]!);
    const local = op >= 0x20 && op <= 0x22 ? new Reader(image, at + 1).uleb() : undefined;
    if (op === 0x21 || op === 0x22) b.guarded.delete(local!);
    else if (CONTROL.has(op)) b.guarded.clear();
    b.prev2 = b.prev;
    b.prev = { start, end: code.length, get: op === 0x20 ? local : undefined, simple: op === 0x20 || (op >= 0x41 && op <= 0x44) };
  }
  if (r.pos !== end) throw new Skip('malformed body');
  for (const type of t.types) groups.push([1, type]);
  const body = [...uleb(groups.length), ...groups.flat(), ...code];
  return [...uleb(body.length), ...body];
}

function section(id: number, body: number[]): Uint8Array {
  return Uint8Array.from([id, ...uleb(body.length), ...body]);
}

/** The code section with every body rewritten, built in chunks (code sections are large). */
function codeSection(image: Uint8Array, start: number, end: number, funcTypes: number[], params: number[]): Uint8Array {
  const r = new Reader(image.subarray(0, end), start);
  const chunks: Uint8Array[] = [];
  const n = r.uleb();
  let size = uleb(n).length;
  chunks.push(Uint8Array.from(uleb(n)));
  for (let i = 0; i < n; i++) {
    const len = r.uleb();
    const bs = r.pos;
    const type = funcTypes[i];
    if (type === undefined || params[type] === undefined) throw new Skip('function without a type');
    const body = Uint8Array.from(rewriteBody(image, bs, bs + len, params[type]!));
    chunks.push(body);
    size += body.length;
    r.pos = bs + len;
  }
  return Buffer.concat([Uint8Array.from([10, ...uleb(size)]), ...chunks]);
}

function lower(image: Uint8Array): LowerResult {
  const sections = sectionsOf(image);
  if (!sections) return { bytes: image, lowered: false, reason: 'not a module' };
  let params: number[] = [];
  let funcTypes: number[] = [];
  let memory: Uint8Array | undefined;
  for (const s of sections) {
    const r = new Reader(image.subarray(0, s.end), s.contentStart);
    if (s.id === 1) params = paramCounts(image, s.contentStart, s.end);
    else if (s.id === 2) {
      for (let i = 0, n = r.uleb(); i < n; i++) {
        r.name();
        r.name();
        const kind = r.byte();
        if (kind === 0x02) throw new Skip('imported memory');
        if (kind === 0x00) r.uleb();
        else if (kind === 0x01) {
          skipValType(r);
          const f = r.byte();
          r.uleb();
          if (f & 1) r.uleb();
        } else if (kind === 0x03) {
          skipValType(r);
          r.byte();
        } else if (kind === 0x04) {
          r.byte();
          r.uleb();
        } else throw new Skip('unknown import kind');
      }
    } else if (s.id === 3) {
      funcTypes = [];
      for (let i = 0, n = r.uleb(); i < n; i++) funcTypes.push(r.uleb());
    } else if (s.id === 5) {
      if (r.uleb() !== 1) throw new Skip('not exactly one memory');
      const flags = r.byte();
      if (flags !== 0x05) throw new Skip(flags & 0x04 ? 'memory64 without a maximum, shared or with custom pages' : 'not a memory64');
      const min = r.uleb();
      const max = r.uleb();
      if (max > MAX_LOWERED_PAGES) throw new Skip(`declared maximum ${max} pages is not below 4 GiB`);
      memory = section(5, [1, 0x01, ...uleb(min), ...uleb(max)]);
    }
  }
  if (!memory) throw new Skip('no memory64');
  const parts: Uint8Array[] = [image.subarray(0, 8)];
  for (const s of sections) {
    if (s.id === 5) parts.push(memory);
    else if (s.id === 10) parts.push(codeSection(image, s.contentStart, s.end, funcTypes, params));
    else if (s.id === 11) parts.push(dataSection(image, s.contentStart, s.end));
    else parts.push(image.subarray(s.start, s.end));
  }
  return { bytes: Buffer.concat(parts), lowered: true };
}

/** Active segments' `i64.const` offsets become `i32.const` (offsets ≥ 2^32 or not constant: Skip). */
function dataSection(image: Uint8Array, start: number, end: number): Uint8Array {
  const r = new Reader(image.subarray(0, end), start);
  const chunks: Uint8Array[] = [];
  const n = r.uleb();
  chunks.push(Uint8Array.from(uleb(n)));
  for (let i = 0; i < n; i++) {
    const flag = r.uleb();
    const head: number[] = uleb(flag);
    if (flag === 2) head.push(...memIndex(r));
    else if (flag !== 0 && flag !== 1) throw new Skip('unknown data segment kind');
    if (flag !== 1) {
      if (r.byte() !== 0x42) throw new Skip('data segment offset is not an i64.const');
      const v = r.sleb();
      if (r.byte() !== 0x0b) throw new Skip('data segment offset is not an i64.const');
      if (v < 0n || v >= 1n << 32n) throw new Skip('data segment offset ≥ 2^32');
      head.push(0x41, ...sleb(BigInt.asIntN(32, v)), 0x0b);
    }
    const len = r.uleb();
    const bytes = image.subarray(r.pos, r.pos + len);
    r.skip(len);
    chunks.push(Uint8Array.from([...head, ...uleb(len)]), bytes);
  }
  const size = chunks.reduce((s, c) => s + c.length, 0);
  return Buffer.concat([Uint8Array.from([11, ...uleb(size)]), ...chunks]);
}

/**
 * Lowers a memory64 module to a 32-bit memory with every out-of-bounds access still trapping the
 * same way. Images that do not qualify (or that this rewriter does not understand) come back
 * unchanged with `lowered: false` and a reason.
 */
export function lowerMemory64(image: Uint8Array): LowerResult {
  try {
    return lower(image);
  } catch (err) {
    return { bytes: image, lowered: false, reason: err instanceof Skip ? err.message : `unreadable: ${(err as Error).message}` };
  }
}
