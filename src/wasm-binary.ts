/**
 * A minimal reader/rewriter of the WebAssembly binary format (its section reader is shared with
 * the code scan of wasm-code.ts), for one job: make every mutable global and every memory of a
 * module reachable from outside by adding exports named
 * `hb:global:<index>` / `hb:memory:<index>` for those the module does not export itself. Wasmtime's
 * C API can only read and write exported items, and a complete snapshot needs them all (an
 * emscripten module's stack pointer, for instance, is a non-exported mutable global).
 *
 * The rewrite adds entries to the export section only; code, indices and semantics are unchanged.
 * Anything this parser does not understand leaves the image untouched (`changed: false`).
 */

export const INTERNAL_EXPORT_PREFIX = 'hb:';

export class Reader {
  pos: number;
  constructor(
    readonly b: Uint8Array,
    pos = 0,
  ) {
    this.pos = pos;
  }
  byte(): number {
    if (this.pos >= this.b.length) throw new RangeError('unexpected end of module');
    return this.b[this.pos++]!;
  }
  /** Unsigned LEB128 (up to 64 bits, returned as a number: fine for sizes and indices). */
  uleb(): number {
    let result = 0;
    let mul = 1;
    for (;;) {
      const b = this.byte();
      result += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return result;
      mul *= 128;
    }
  }
  /** Signed LEB128 (up to 64 bits, as a bigint). */
  sleb(): bigint {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const b = this.byte();
      result |= BigInt(b & 0x7f) << shift;
      shift += 7n;
      if ((b & 0x80) === 0) {
        if (b & 0x40) result -= 1n << shift;
        return result;
      }
    }
  }
  /** Skips a signed LEB128. */
  skipLeb(): void {
    while (this.byte() & 0x80);
  }
  skip(n: number): void {
    this.pos += n;
    if (this.pos > this.b.length) throw new RangeError('unexpected end of module');
  }
  name(): string {
    const n = this.uleb();
    const s = Buffer.from(this.b.buffer, this.b.byteOffset + this.pos, n).toString('utf8');
    this.skip(n);
    return s;
  }
}

/** Unsigned LEB128 encoding of `n`. */
export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

/** Signed LEB128 encoding of `n`. */
export function sleb(n: bigint): number[] {
  const out: number[] = [];
  for (;;) {
    const b = Number(n & 0x7fn);
    n >>= 7n;
    if ((n === 0n && (b & 0x40) === 0) || (n === -1n && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

/** Skips a value type (numeric, vector, or reference with an optional heap type). */
function skipValType(r: Reader): void {
  const t = r.byte();
  if (t === 0x63 || t === 0x64) r.skipLeb(); // (ref null? ht)
}

function skipLimits(r: Reader): void {
  const flags = r.byte();
  r.uleb();
  if (flags & 0x01) r.uleb();
}

/** Skips a constant expression; throws on instructions outside the constant subset we know. */
function skipConstExpr(r: Reader): void {
  for (;;) {
    const op = r.byte();
    switch (op) {
      case 0x0b:
        return;
      case 0x41:
      case 0x42:
        r.skipLeb();
        break;
      case 0x43:
        r.skip(4);
        break;
      case 0x44:
        r.skip(8);
        break;
      case 0x23: // global.get
      case 0xd2: // ref.func
        r.uleb();
        break;
      case 0xd0: // ref.null ht
        r.skipLeb();
        break;
      case 0x6a: case 0x6b: case 0x6c: // i32.add/sub/mul (extended-const)
      case 0x7c: case 0x7d: case 0x7e: // i64.add/sub/mul
        break;
      case 0xfd: // v128.const
        if (r.uleb() !== 12) throw new RangeError('unsupported constant expression');
        r.skip(16);
        break;
      default:
        throw new RangeError(`unsupported constant expression opcode 0x${op.toString(16)}`);
    }
  }
}

const ORDER_AFTER_EXPORT = new Set([8, 9, 12, 10, 11]);

export interface ExposeResult {
  bytes: Uint8Array;
  changed: boolean;
}

/** Adds exports for every mutable global and memory that the module does not export. */
export function exposeInternals(image: Uint8Array): ExposeResult {
  try {
    return rewrite(image);
  } catch {
    return { bytes: image, changed: false };
  }
}

export interface Section {
  id: number;
  start: number;
  contentStart: number;
  end: number;
}

/** The sections of a module, in order; undefined when it is not a module or a size runs past the end. */
export function sectionsOf(image: Uint8Array): Section[] | undefined {
  if (image.length < 8 || image[0] !== 0 || image[1] !== 0x61 || image[2] !== 0x73 || image[3] !== 0x6d) return undefined;
  const r = new Reader(image, 8);
  const sections: Section[] = [];
  while (r.pos < image.length) {
    const start = r.pos;
    const id = r.byte();
    const size = r.uleb();
    const contentStart = r.pos;
    const end = contentStart + size;
    if (end > image.length) return undefined;
    sections.push({ id, start, contentStart, end });
    r.pos = end;
  }
  return sections;
}

/** How many functions, memories and globals a module imports (its import section). */
export function importCounts(image: Uint8Array, section: Section | undefined): { funcs: number; memories: number; globals: number } {
  const counts = { funcs: 0, memories: 0, globals: 0 };
  if (!section) return counts;
  const s = new Reader(image.subarray(0, section.end), section.contentStart);
  const n = s.uleb();
  for (let i = 0; i < n; i++) {
    s.name();
    s.name();
    const kind = s.byte();
    if (kind === 0x00) {
      s.uleb();
      counts.funcs++;
    } else if (kind === 0x01) {
      skipValType(s);
      skipLimits(s);
    } else if (kind === 0x02) {
      skipLimits(s);
      counts.memories++;
    } else if (kind === 0x03) {
      skipValType(s);
      s.byte();
      counts.globals++;
    } else if (kind === 0x04) {
      s.byte();
      s.uleb();
    } else throw new RangeError('unknown import kind');
  }
  return counts;
}

function rewrite(image: Uint8Array): ExposeResult {
  const sections = sectionsOf(image);
  if (!sections) return { bytes: image, changed: false };
  const imports = importCounts(image, sections.find((x) => x.id === 2));
  const mutableGlobals: number[] = []; // indices in the global index space
  let definedMemories = 0;
  const exported = { global: new Set<number>(), memory: new Set<number>() };
  let exportEntries: Array<{ name: string; kind: number; index: number }> = [];
  let exportSection = -1;

  for (let k = 0; k < sections.length; k++) {
    const { id, contentStart, end } = sections[k]!;
    const s = new Reader(image.subarray(0, end), contentStart);
    if (id === 5) {
      definedMemories = s.uleb();
    } else if (id === 6) {
      const n = s.uleb();
      for (let i = 0; i < n; i++) {
        skipValType(s);
        const mut = s.byte();
        skipConstExpr(s);
        if (mut === 1) mutableGlobals.push(imports.globals + i);
      }
    } else if (id === 7) {
      exportSection = k;
      const n = s.uleb();
      exportEntries = [];
      for (let i = 0; i < n; i++) {
        const name = s.name();
        const kind = s.byte();
        const index = s.uleb();
        exportEntries.push({ name, kind, index });
        if (kind === 3) exported.global.add(index);
        if (kind === 2) exported.memory.add(index);
      }
    }
  }

  const added: Array<{ name: string; kind: number; index: number }> = [];
  for (let m = 0; m < imports.memories + definedMemories; m++) {
    if (!exported.memory.has(m)) added.push({ name: `${INTERNAL_EXPORT_PREFIX}memory:${m}`, kind: 2, index: m });
  }
  for (const g of mutableGlobals) {
    if (!exported.global.has(g)) added.push({ name: `${INTERNAL_EXPORT_PREFIX}global:${g}`, kind: 3, index: g });
  }
  if (added.length === 0) return { bytes: image, changed: false };

  const entries = [...exportEntries, ...added];
  const body: number[] = [...uleb(entries.length)];
  for (const e of entries) {
    const name = Buffer.from(e.name, 'utf8');
    body.push(...uleb(name.length), ...name, e.kind, ...uleb(e.index));
  }
  const section = Uint8Array.from([7, ...uleb(body.length), ...body]);

  const parts: Uint8Array[] = [image.subarray(0, 8)];
  let inserted = false;
  for (let i = 0; i < sections.length; i++) {
    const s = sections[i]!;
    if (i === exportSection) {
      parts.push(section);
      inserted = true;
      continue;
    }
    if (!inserted && exportSection < 0 && ORDER_AFTER_EXPORT.has(s.id)) {
      parts.push(section);
      inserted = true;
    }
    parts.push(image.subarray(s.start, s.end));
  }
  if (!inserted) parts.push(section);
  return { bytes: Buffer.concat(parts), changed: true };
}
