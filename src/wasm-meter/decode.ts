/**
 * Decoding function bodies instruction by instruction, with each instruction's gas cost under
 * @permaweb/wasm-metering's default cost table (the one @permaweb/ao-loader meters with).
 *
 * The cost table names instructions without their type (`add` for i32.add, i64.add, f32.add and
 * f64.add); instructions it does not name cost 0. Only the instruction set that wasm-metering's
 * decoder (wasm-json-toolkit) reads is accepted: the MVP plus sign extension. Anything else is an
 * error, as it is for ao-loader, which cannot meter such a module.
 */
import { Reader } from '../wasm-binary';

export class MeterError extends Error {}

/** Instructions after which wasm-metering starts a new metered segment. */
export const BRANCHING = new Set([0x40, 0x0b, 0x0c, 0x0e, 0x0d, 0x04, 0x05, 0x0f, 0x03]);

/** Gas of each one-byte opcode (default cost table; absent: 0). */
export const COST = new Map<number, number>();
{
  const set = (ops: number[], c: number): void => ops.forEach((o) => COST.set(o, c));
  const range = (a: number, b: number): number[] => Array.from({ length: b - a + 1 }, (_, i) => a + i);
  set([0x00, 0x01, 0x02, 0x03, 0x04], 1); // unreachable nop block loop if
  set([0x05, 0x0c, 0x0d, 0x0f, 0x10], 90); // else br br_if return call
  set([0x0e], 120); // br_table
  set([0x11], 10_000); // call_indirect
  set([0x1a, 0x1b], 120); // drop select
  set(range(0x20, 0x24), 120); // get_local set_local tee_local get_global set_global
  set(range(0x28, 0x3e), 120); // loads and stores
  set([0x3f], 100); // current_memory
  set([0x40], 10_000); // grow_memory
  set(range(0x41, 0x44), 1); // const
  // i32 comparisons, then i64: eqz eq ne lt_s lt_u gt_s gt_u le_s le_u ge_s ge_u
  set(range(0x45, 0x4f), 45);
  set(range(0x50, 0x5a), 45);
  set([0x5b, 0x5c, 0x61, 0x62], 45); // f32/f64 eq ne (lt gt le ge are unnamed: 0)
  for (const base of [0x67, 0x79]) {
    // clz ctz popcnt add sub mul div_s div_u rem_s rem_u and or xor shl shr_s shr_u rotl rotr
    const costs = [45, 45, 45, 45, 45, 45, 36_000, 36_000, 36_000, 36_000, 45, 45, 45, 67, 67, 67, 90, 90];
    costs.forEach((c, i) => COST.set(base + i, c));
  }
  set([0x92, 0x93, 0x94, 0xa0, 0xa1, 0xa2], 45); // f32/f64 add sub mul
}

/** One decoded instruction: its opcode and the byte range it occupies in the body. */
export interface Instr {
  op: number;
  start: number;
  end: number;
}

function blockType(r: Reader): void {
  const b = r.byte();
  if (b === 0x40 || b === 0x7f || b === 0x7e || b === 0x7d || b === 0x7c) return;
  if (b & 0x80) while (r.byte() & 0x80);
  else if (b < 0x40) return; // a small type index (s33 with sign bit clear)
  else throw new MeterError(`block type 0x${b.toString(16)} cannot be metered`);
}

/** Reads the immediates of `op` (the opcode byte already read). */
function immediates(r: Reader, op: number): void {
  if (op === 0x02 || op === 0x03 || op === 0x04) return blockType(r);
  if (op === 0x0c || op === 0x0d || op === 0x10 || (op >= 0x20 && op <= 0x24)) return void r.uleb();
  if (op === 0x0e) {
    const n = r.uleb();
    for (let i = 0; i <= n; i++) r.uleb();
    return;
  }
  if (op === 0x11) {
    r.uleb();
    r.uleb();
    return;
  }
  if (op >= 0x28 && op <= 0x3e) {
    r.uleb();
    r.uleb();
    return;
  }
  if (op === 0x3f || op === 0x40) return void r.uleb();
  if (op === 0x41 || op === 0x42) return r.skipLeb();
  if (op === 0x43) return r.skip(4);
  if (op === 0x44) return r.skip(8);
  if (op <= 0x01 || op === 0x05 || op === 0x0b || op === 0x0f || op === 0x1a || op === 0x1b || (op >= 0x45 && op <= 0xc4)) return;
  throw new MeterError(`opcode 0x${op.toString(16)} cannot be metered (wasm-metering reads the MVP instruction set and sign extension only)`);
}

/** The instructions of a body's expression, from `start` (after the locals) to `end`. */
export function decodeBody(b: Uint8Array, start: number, end: number): Instr[] {
  const r = new Reader(b.subarray(0, end), start);
  const out: Instr[] = [];
  while (r.pos < end) {
    const at = r.pos;
    const op = r.byte();
    immediates(r, op);
    out.push({ op, start: at, end: r.pos });
  }
  return out;
}

/** Where a body's locals end: the local declarations are skipped. */
export function skipLocals(b: Uint8Array, start: number): number {
  const r = new Reader(b, start);
  const groups = r.uleb();
  for (let i = 0; i < groups; i++) {
    r.uleb();
    const t = r.byte();
    if (t === 0x63 || t === 0x64) r.skipLeb();
  }
  return r.pos;
}
