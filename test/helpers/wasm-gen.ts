/**
 * A seeded generator of WebAssembly binaries for fuzz tests: modules with every value type in
 * imports, exports, globals and signatures, odd sections, bodies that return, trap, loop, grow or
 * call out, and mutated copies (truncated, bit-flipped, spliced). Deterministic for a seed.
 */
import { uleb } from '../../src/wasm-binary';

/** xorshift32: small, fast, reproducible. */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0 || 1;
  }
  next(): number {
    let x = this.#s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#s = x >>> 0;
    return this.#s;
  }
  int(n: number): number {
    return this.next() % n;
  }
  chance(p: number): boolean {
    return this.next() / 2 ** 32 < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
}

const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const name = (s: string): number[] => {
  const b = [...Buffer.from(s, 'utf8')];
  return [...uleb(b.length), ...b];
};
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];

/** A value type: its encoding, and the constant instruction(s) producing a default (none for non-nullable refs). */
interface ValType {
  name: string;
  enc: number[];
  init?: number[];
}
const NUMERIC: ValType[] = [
  { name: 'i32', enc: [0x7f], init: [0x41, 0x00] },
  { name: 'i64', enc: [0x7e], init: [0x42, 0x00] },
  { name: 'f32', enc: [0x7d], init: [0x43, 0, 0, 0xc0, 0x3f] },
  { name: 'f64', enc: [0x7c], init: [0x44, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f] },
];
const V128: ValType = { name: 'v128', enc: [0x7b], init: [0xfd, 0x0c, ...Array(16).fill(7)] };
// Abstract heap types (their one-byte encodings), nullable shorthands and non-nullable forms.
const HEAPS = [0x70, 0x6f, 0x6e, 0x6d, 0x6c, 0x6b, 0x6a, 0x69, 0x71, 0x72, 0x73, 0x74];
const REFS: ValType[] = [
  ...HEAPS.map((h) => ({ name: `ref null ${h}`, enc: [h], init: [0xd0, h] })),
  ...HEAPS.map((h) => ({ name: `ref null* ${h}`, enc: [0x63, h], init: [0xd0, h] })),
  ...HEAPS.map((h) => ({ name: `ref ${h}`, enc: [0x64, h] })),
];
export const ALL_TYPES: readonly ValType[] = [...NUMERIC, ...NUMERIC, V128, ...REFS];

interface FuncType {
  params: ValType[];
  results: ValType[];
}

/** Instructions producing one value of each type in `types` (unreachable when one has no default). */
function defaults(types: ValType[]): number[] {
  if (types.some((t) => !t.init)) return [0x00];
  return types.flatMap((t) => t.init!);
}

export interface GenOptions {
  /** Probability of each optional feature; the defaults give varied, mostly valid modules. */
  foreign?: number;
}

/** One module. Most are valid; a few are invalid on purpose (odd sections). */
export function genModule(rng: Rng, opts: GenOptions = {}): Uint8Array {
  const foreign = opts.foreign ?? 0.3;
  const valType = (): ValType => (rng.chance(foreign) ? rng.pick(rng.chance(0.3) ? [V128] : REFS) : rng.pick(NUMERIC));
  const types: FuncType[] = [];
  const ntypes = 1 + rng.int(6);
  for (let i = 0; i < ntypes; i++) {
    types.push({
      params: Array.from({ length: rng.int(4) }, valType),
      results: Array.from({ length: rng.int(3) }, valType),
    });
  }
  types.push({ params: [], results: [] }); // for start functions and tags
  const voidType = types.length - 1;
  const out: number[][] = [];
  const custom = (): number[] =>
    section(0, [...name(rng.pick(['name', 'producers', 'x', '', 'target_features', '\u{1F600}'])), ...Array.from({ length: rng.int(40) }, () => rng.int(256))]);
  if (rng.chance(0.2)) out.push(custom());
  out.push(section(1, vec(types.map((t) => [0x60, ...vec(t.params.map((p) => p.enc)), ...vec(t.results.map((r) => r.enc))]))));

  // Imports: functions of any type, sometimes a memory, table, global or tag (not linkable from JS).
  const imports: number[][] = [];
  const importedFuncs: number[] = [];
  for (let i = rng.int(4); i > 0; i--) {
    const t = rng.int(types.length);
    importedFuncs.push(t);
    imports.push([...name('env'), ...name(`f${imports.length}`), 0x00, ...uleb(t)]);
  }
  if (rng.chance(0.05)) imports.push([...name('env'), ...name('mem'), 0x02, 0x00, 0x01]);
  if (rng.chance(0.05)) imports.push([...name('env'), ...name('g'), 0x03, ...rng.pick(ALL_TYPES).enc, rng.int(2)]);
  if (imports.length) out.push(section(2, vec(imports)));

  // Defined functions.
  const funcs = Array.from({ length: 1 + rng.int(5) }, () => rng.int(types.length));
  out.push(section(3, vec(funcs.map((t) => uleb(t)))));
  const hasTable = rng.chance(0.5);
  if (hasTable) {
    const elem = rng.pick([[0x70], [0x6f], [0x6e], [0x63, 0x70]]);
    const max = rng.chance(0.5);
    out.push(section(4, vec([[...elem, max ? 0x01 : 0x00, ...uleb(rng.int(4)), ...(max ? uleb(4 + rng.int(100)) : [])]])));
  }
  const mem = rng.chance(0.7) ? rng.pick(['32', '64']) : undefined;
  if (mem) {
    const max = rng.chance(0.5);
    const flags = (mem === '64' ? 0x04 : 0x00) | (max ? 0x01 : 0x00);
    out.push(section(5, vec([[flags, ...uleb(rng.int(3)), ...(max ? uleb(3 + rng.int(20)) : [])]])));
  }
  const globals: Array<{ type: ValType; mutable: boolean }> = [];
  for (let i = rng.int(5); i > 0; i--) {
    const type = rng.pick(ALL_TYPES.filter((t) => t.init));
    globals.push({ type, mutable: rng.chance(0.6) });
  }
  if (globals.length) out.push(section(6, vec(globals.map((g) => [...g.type.enc, g.mutable ? 1 : 0, ...g.type.init!, 0x0b]))));
  const tag = rng.chance(0.2);
  if (tag) out.push(section(13, vec([[0x00, ...uleb(voidType)]])));

  // Exports: every defined function, some globals, the memory and table.
  const nimp = importedFuncs.length;
  const exports: number[][] = funcs.map((_, i) => [...name(`e${i}`), 0x00, ...uleb(nimp + i)]);
  globals.forEach((g, i) => rng.chance(0.5) && exports.push([...name(`g${i}`), 0x03, ...uleb(i)]));
  if (mem) exports.push([...name('memory'), 0x02, 0x00]);
  if (hasTable) exports.push([...name('table'), 0x01, 0x00]);
  if (tag && rng.chance(0.5)) exports.push([...name('tag'), 0x04, 0x00]);
  out.push(section(7, vec(exports)));
  const start = funcs.findIndex((t) => t === voidType);
  if (start >= 0 && rng.chance(0.5)) out.push(section(8, uleb(nimp + start)));

  // Bodies.
  const addr = (): number[] => (mem === '64' ? [0x42, ...uleb(rng.int(200000))] : [0x41, ...uleb(rng.int(200000))]);
  const bodies = funcs.map((t) => {
    const ft = types[t]!;
    const parts: number[] = [];
    for (let k = rng.int(3); k >= 0; k--) {
      switch (rng.int(9)) {
        case 0: // call an import (or a defined function) with default arguments, drop its results
          if (nimp > 0) {
            const f = rng.int(nimp);
            const ct = types[importedFuncs[f]!]!;
            parts.push(...defaults(ct.params), 0x10, ...uleb(f), ...ct.results.map(() => 0x1a));
          }
          break;
        case 1: // a load that may be out of bounds
          if (mem) parts.push(...addr(), 0x28, 0x02, 0x00, 0x1a);
          break;
        case 2: // grow memory
          if (mem) parts.push(...(mem === '64' ? [0x42, ...uleb(rng.int(70000))] : [0x41, ...uleb(rng.int(70000))]), 0x40, 0x00, 0x1a);
          break;
        case 3: // integer division by zero
          parts.push(0x41, 0x01, 0x41, 0x00, 0x6d, 0x1a);
          break;
        case 4: // a loop that never ends
          if (rng.chance(0.3)) parts.push(0x03, 0x40, 0x0c, 0x00, 0x0b);
          break;
        case 5: // set the function's own i32 local (declared after the parameters)
          parts.push(0x41, ...uleb(rng.int(100000)), 0x21, ...uleb(ft.params.length));
          break;
        case 6: // throw the tag
          if (tag) parts.push(0x08, 0x00);
          break;
        case 7: // mutate a mutable numeric global
          {
            const gi = globals.findIndex((g) => g.mutable && NUMERIC.includes(g.type));
            if (gi >= 0) parts.push(...globals[gi]!.type.init!, 0x24, ...uleb(gi));
          }
          break;
        default:
          if (rng.chance(0.1)) parts.push(0x00); // unreachable
      }
    }
    const body = [...vec([[1, 0x7f]]), ...parts, ...defaults(ft.results), 0x0b];
    return [...uleb(body.length), ...body];
  });
  if (rng.chance(0.1)) out.push(custom());
  out.push(section(10, vec(bodies)));
  if (mem && rng.chance(0.4)) {
    const bytes = Array.from({ length: rng.int(64) }, () => rng.int(256));
    out.push(section(11, vec([[0x00, ...(mem === '64' ? [0x42] : [0x41]), ...uleb(rng.int(70000)), 0x0b, ...uleb(bytes.length), ...bytes]])));
  }
  if (rng.chance(0.2)) out.push(custom());
  // Odd structure on purpose, now and then: an unknown section id, or a section twice.
  if (rng.chance(0.03)) out.push(section(0x20 + rng.int(0x40), [1, 2, 3]));
  if (rng.chance(0.03)) out.push(out[1]!);
  return Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...out.flat()]);
}

/** A damaged copy: truncated, bit-flipped, or with bytes inserted or spliced in. */
export function mutate(rng: Rng, image: Uint8Array): Uint8Array {
  const b = Buffer.from(image);
  switch (rng.int(4)) {
    case 0:
      return b.subarray(0, rng.int(b.length));
    case 1:
      for (let k = 1 + rng.int(4); k > 0; k--) b[rng.int(b.length)]! ^= 1 << rng.int(8);
      return b;
    case 2: {
      const at = rng.int(b.length);
      return Buffer.concat([b.subarray(0, at), Buffer.from([rng.int(256)]), b.subarray(at)]);
    }
    default: {
      const at = 8 + rng.int(Math.max(1, b.length - 8));
      const from = rng.int(b.length);
      return Buffer.concat([b.subarray(0, at), b.subarray(from, from + 1 + rng.int(16)), b.subarray(at)]);
    }
  }
}
