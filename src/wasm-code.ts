/**
 * A scan of a module's function bodies, read before compiling to bound what compiling costs:
 * body size, loops and nesting depth per function. Compile time and memory grow with each; loops
 * worst of all (Cranelift's work on epoch-checked loops grows with the square of their number in a
 * function), so `WasmModule.compile` refuses what is over its limits (docs/wasm.md).
 *
 * The scan decodes every instruction's immediates (the core instruction set with SIMD, bulk
 * memory, reference types, GC, tail calls, exceptions, legacy exceptions, wide arithmetic). On an
 * opcode it does not know, it counts the rest of that body pessimistically (every byte that could
 * open a block or a loop does), so a bound always holds: the estimate is only ever too high.
 */
import { Reader, sectionsOf, importCounts } from './wasm-binary';

/** What compiling one function will cost, roughly. */
export interface FunctionShape {
  /** Index in the function index space (imports first). */
  index: number;
  /** Body size in bytes. */
  size: number;
  /** `loop` instructions in the body. */
  loops: number;
  /** Conditional branches (if, br_if, br_table, br_on_*) and loops: fuel metering instruments each. */
  branches: number;
  /** Most blocks (block, loop, if, try, try_table) open at once. */
  depth: number;
  /** Every instruction was decoded and the body ends with its own `end`; else the counts are upper bounds. */
  decoded: boolean;
}

class Unknown extends Error {}

/** Opcodes that open a block: block, loop, if, try (legacy), try_table. */
const OPENERS = new Set([0x02, 0x03, 0x04, 0x06, 0x1f]);
/** One-byte opcodes of conditional branches and loops (br_on_cast, behind the 0xfb prefix, is counted apart). */
const BRANCHES = new Set([0x03, 0x04, 0x0d, 0x0e, 0xd5, 0xd6]);
const SINGLE_BYTE_BLOCKTYPES = new Set([0x40, 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f, 0x6e, 0x6d, 0x6c, 0x6b, 0x6a, 0x69, 0x71, 0x72, 0x73, 0x74]);

function blockType(r: Reader): void {
  const b = r.byte();
  if (SINGLE_BYTE_BLOCKTYPES.has(b)) return;
  if (b === 0x63 || b === 0x64) return r.skipLeb(); // (ref null? ht)
  if (b & 0x80) r.skipLeb(); // a type index (s33), continued
}

function memarg(r: Reader): void {
  const align = r.uleb();
  if (align & 0x40) r.uleb(); // memory index (multi-memory)
  r.uleb(); // offset
}

function valType(r: Reader): void {
  const t = r.byte();
  if (t === 0x63 || t === 0x64) r.skipLeb();
}

function prefixed0xFB(r: Reader): void {
  const op = r.uleb();
  if (op <= 1 || (op >= 6 && op <= 7) || (op >= 11 && op <= 14) || op === 16) r.uleb();
  else if ((op >= 2 && op <= 5) || op === 8 || op === 9 || op === 10 || op === 17 || op === 18 || op === 19) {
    r.uleb();
    r.uleb();
  } else if (op >= 20 && op <= 23) r.skipLeb();
  else if (op === 24 || op === 25) {
    r.byte();
    r.uleb();
    r.skipLeb();
    r.skipLeb();
  } else if (op === 15 || (op >= 26 && op <= 30)) return;
  else throw new Unknown();
}

function prefixed0xFC(r: Reader): void {
  const op = r.uleb();
  if (op <= 7 || (op >= 19 && op <= 22)) return;
  if (op === 9 || op === 11 || op === 13 || op === 15 || op === 16 || op === 17) r.uleb();
  else if (op === 8 || op === 10 || op === 12 || op === 14) {
    r.uleb();
    r.uleb();
  } else throw new Unknown();
}

function prefixed0xFD(r: Reader): void {
  const op = r.uleb();
  if (op <= 11 || op === 92 || op === 93) memarg(r);
  else if (op === 12 || op === 13) r.skip(16);
  else if (op >= 21 && op <= 34) r.byte();
  else if (op >= 84 && op <= 91) {
    memarg(r);
    r.byte();
  } else if (op > 0x113) throw new Unknown();
}

/** Skips the immediates of `op` (its opcode byte already read). */
export function immediates(r: Reader, op: number): void {
  switch (op) {
    case 0x02: case 0x03: case 0x04: case 0x06:
      return blockType(r);
    case 0x07: case 0x08: case 0x09: case 0x0c: case 0x0d: case 0x10: case 0x12: case 0x14: case 0x15: case 0x18:
    case 0x20: case 0x21: case 0x22: case 0x23: case 0x24: case 0x25: case 0x26: case 0x3f: case 0x40:
    case 0xd2: case 0xd5: case 0xd6:
      r.uleb();
      return;
    case 0x0e: {
      for (let n = r.uleb(); n > 0; n--) r.uleb();
      r.uleb();
      return;
    }
    case 0x11: case 0x13:
      r.uleb();
      r.uleb();
      return;
    case 0x1c:
      for (let n = r.uleb(); n > 0; n--) valType(r);
      return;
    case 0x1f: {
      blockType(r);
      for (let n = r.uleb(); n > 0; n--) {
        const kind = r.byte();
        if (kind <= 1) r.uleb();
        else if (kind > 3) throw new Unknown();
        r.uleb();
      }
      return;
    }
    case 0x41: case 0x42: case 0xd0:
      r.skipLeb();
      return;
    case 0x43:
      return r.skip(4);
    case 0x44:
      return r.skip(8);
    case 0xfb:
      return prefixed0xFB(r);
    case 0xfc:
      return prefixed0xFC(r);
    case 0xfd:
      return prefixed0xFD(r);
    default:
      if (op >= 0x28 && op <= 0x3e) return memarg(r);
      if (op <= 0x01 || op === 0x05 || op === 0x0a || op === 0x0b || op === 0x0f || op === 0x19 || op === 0x1a || op === 0x1b) return;
      if ((op >= 0x45 && op <= 0xc4) || op === 0xd1 || op === 0xd3 || op === 0xd4) return;
      throw new Unknown();
  }
}

/** The shape of one body, `r` at its first byte and `end` its end. */
function shapeOf(r: Reader, end: number): { loops: number; branches: number; depth: number; decoded: boolean } {
  let loops = 0;
  let branches = 0;
  let depth = 0;
  let open = 0;
  try {
    for (let n = r.uleb(); n > 0; n--) {
      r.uleb();
      valType(r);
    }
    while (r.pos < end) {
      const op = r.byte();
      if (op === 0x03) loops++;
      if (BRANCHES.has(op) || (op === 0xfb && (r.b[r.pos] === 24 || r.b[r.pos] === 25))) branches++;
      if (OPENERS.has(op)) depth = Math.max(depth, ++open);
      else if (op === 0x0b || op === 0x18) open--; // end; delegate closes its try
      immediates(r, op);
    }
    if (open === -1 && r.pos === end) return { loops, branches, depth, decoded: true };
    throw new Unknown();
  } catch {
    // Unknown or malformed from here: count every byte that could open a block or a loop.
    for (let p = r.pos; p < end; p++) {
      const b = r.b[p]!;
      if (b === 0x03) loops++;
      if (BRANCHES.has(b) || b === 0xfb) branches++;
      if (OPENERS.has(b)) depth = Math.max(depth, ++open);
    }
  }
  return { loops, branches, depth, decoded: false };
}

/**
 * The shape of every function body, in order; empty when the module has no code section or its
 * sections cannot be read (the engine then reports what is wrong).
 */
export function scanCode(image: Uint8Array): FunctionShape[] {
  const out: FunctionShape[] = [];
  try {
    const sections = sectionsOf(image);
    const code = sections?.find((x) => x.id === 10);
    if (!sections || !code) return out;
    let base = 0; // for the indices in messages only
    try {
      base = importCounts(image, sections.find((x) => x.id === 2)).funcs;
    } catch {
      // an import section this reader does not know: the engine decides on it
    }
    const r = new Reader(image.subarray(0, code.end), code.contentStart);
    for (let i = 0, n = r.uleb(); i < n; i++) {
      const size = r.uleb();
      const start = r.pos;
      const end = Math.min(start + size, code.end);
      out.push({ index: base + i, size, ...shapeOf(new Reader(image.subarray(0, end), start), end) });
      r.pos = start;
      r.skip(size);
    }
  } catch {
    // a truncated code section: the bodies read so far
  }
  return out;
}
