/**
 * Gas injection into one function body, at the places @permaweb/wasm-metering puts its
 * `usegas` calls, but counted inside the module: the body is cut into segments that end at each
 * branching instruction (wasm-metering's rule); before a segment whose instructions cost
 * something goes
 *
 *     global.get $gas  i64.const <cost + 91>  i64.add  global.set $gas
 *     global.get $gas  global.get $limit  i64.gt_u  if  unreachable  end
 *
 * where 91 is what wasm-metering charges for its own `i32.const; call` statement. The trap at
 * `unreachable` is recognised afterwards by the counter being past the limit.
 *
 * `replaceCall`: for images with metering already built in (AOS 1 imports `metering.usegas`),
 * each `call <that import>` becomes the same add-and-check on the amount the guest passes.
 */
import { sleb, uleb } from '../wasm-binary';
import { BRANCHING, COST, decodeBody, skipLocals } from './decode';

/** wasm-metering's charge for its own metering statement (`const` 1 + `call` 90). */
export const METERING_OVERHEAD = 91;

export interface GasGlobals {
  gas: number;
  limit: number;
}

/** Adds the amount on the stack (i64) to the counter, then traps when past the limit. */
function addAndCheck(g: GasGlobals): number[] {
  return [0x23, ...uleb(g.gas), 0x7c, 0x24, ...uleb(g.gas), 0x23, ...uleb(g.gas), 0x23, ...uleb(g.limit), 0x56, 0x04, 0x40, 0x00, 0x0b];
}

/** A metered body (without its size prefix). `body` spans [start, end) of `b`. */
export function meterBody(b: Uint8Array, start: number, end: number, g: GasGlobals, opts: { inject: boolean; replaceCall?: number }): Uint8Array {
  const codeStart = skipLocals(b, start);
  const instrs = decodeBody(b, codeStart, end);
  const out: number[] = Array.from(b.subarray(start, codeStart));
  const check = addAndCheck(g);
  const copy = (from: number, to: number): void => {
    for (let k = from; k < to; k++) {
      const ins = instrs[k]!;
      if (opts.replaceCall !== undefined && ins.op === 0x10 && callee(b, ins.start) === opts.replaceCall) {
        out.push(0xac, ...check); // i64.extend_i32_s, then add and check
      } else for (let p = ins.start; p < ins.end; p++) out.push(b[p]!);
    }
  };
  if (!opts.inject) {
    copy(0, instrs.length);
    return Uint8Array.from(out);
  }
  let i = 0;
  while (i < instrs.length) {
    let cost = 0;
    let j = i;
    for (;;) {
      const op = instrs[j++]!.op;
      cost += COST.get(op) ?? 0;
      if (BRANCHING.has(op) || j >= instrs.length) break;
    }
    if (cost !== 0) out.push(0x42, ...sleb(BigInt(cost + METERING_OVERHEAD)), ...check);
    copy(i, j);
    i = j;
  }
  return Uint8Array.from(out);
}

function callee(b: Uint8Array, at: number): number {
  let result = 0;
  let mul = 1;
  for (let p = at + 1; ; p++) {
    const x = b[p]!;
    result += (x & 0x7f) * mul;
    if ((x & 0x80) === 0) return result;
    mul *= 128;
  }
}
