/**
 * Metering a whole module: every function body rewritten by `meterBody`, plus two mutable i64
 * globals (the gas counter and its limit) and three exported functions to reach them from the
 * host (`hb_gas_get`, `hb_gas_set`, `hb_gas_limit_set`). Nothing is renumbered: the globals,
 * types and functions are appended to their index spaces.
 */
import { Reader, importCounts, sectionsOf, uleb } from '../wasm-binary';
import { MeterError } from './decode';
import { meterBody } from './inject';

export { MeterError };

export const GAS_GET = 'hb_gas_get';
export const GAS_SET = 'hb_gas_set';
export const GAS_LIMIT_SET = 'hb_gas_limit_set';

export interface MeterOptions {
  /** Inject gas at wasm-metering's places (the `-metering` formats). */
  inject: boolean;
  /** Replace calls to this imported function `module.name` (a built-in `usegas(i32)`) by the counter. */
  replaceImport?: { module: string; name: string };
}

function section(id: number, body: number[] | Uint8Array): Uint8Array {
  return Uint8Array.from([id, ...uleb(body.length), ...body]);
}

/** The position after a vector's count, and the count. */
function vecStart(image: Uint8Array, contentStart: number): { count: number; at: number } {
  const r = new Reader(image, contentStart);
  const count = r.uleb();
  return { count, at: r.pos };
}

function importIndex(image: Uint8Array, start: number, end: number, want: { module: string; name: string }): number | undefined {
  const r = new Reader(image.subarray(0, end), start);
  const n = r.uleb();
  let funcs = 0;
  for (let i = 0; i < n; i++) {
    const mod = r.name();
    const name = r.name();
    const kind = r.byte();
    if (kind === 0) {
      r.uleb();
      if (mod === want.module && name === want.name) return funcs;
      funcs++;
    } else if (kind === 1) {
      r.byte();
      const f = r.byte();
      r.uleb();
      if (f & 1) r.uleb();
    } else if (kind === 2) {
      const f = r.byte();
      r.uleb();
      if (f & 1) r.uleb();
    } else if (kind === 3) {
      r.byte();
      r.byte();
    } else throw new MeterError('unknown import kind');
  }
  return undefined;
}

/** The metered image. Throws `MeterError` on what wasm-metering could not meter either. */
export function meterModule(image: Uint8Array, opts: MeterOptions): Uint8Array {
  const sections = sectionsOf(image);
  if (!sections) throw new MeterError('not a WebAssembly module');
  const find = (id: number) => sections.find((s) => s.id === id);
  const imp = find(2);
  const imports = importCounts(image, imp);
  const types = find(1);
  const funcs = find(3);
  const globals = find(6);
  const exportSec = find(7);
  const code = find(10);
  if (!types || !funcs || !code) throw new MeterError('a module without functions cannot be metered');
  const replaceCall = opts.replaceImport && imp ? importIndex(image, imp.contentStart, imp.end, opts.replaceImport) : undefined;

  const t = vecStart(image, types.contentStart);
  const tGet = t.count;
  const tSet = t.count + 1;
  const newTypes = section(1, [...uleb(t.count + 2), ...image.subarray(t.at, types.end), 0x60, 0x00, 0x01, 0x7e, 0x60, 0x01, 0x7e, 0x00]);

  const f = vecStart(image, funcs.contentStart);
  const firstNew = imports.funcs + f.count;
  const newFuncs = section(3, [...uleb(f.count + 3), ...image.subarray(f.at, funcs.end), ...uleb(tGet), ...uleb(tSet), ...uleb(tSet)]);

  const g = globals ? vecStart(image, globals.contentStart) : { count: 0, at: 0 };
  const gas = imports.globals + g.count;
  const limit = gas + 1;
  const i64Max = [0x42, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00]; // i64.const 2^63-1
  const newGlobals = section(6, [
    ...uleb(g.count + 2),
    ...(globals ? image.subarray(g.at, globals.end) : []),
    0x7e, 0x01, 0x42, 0x00, 0x0b,
    0x7e, 0x01, ...i64Max, 0x0b,
  ]);

  const e = exportSec ? vecStart(image, exportSec.contentStart) : { count: 0, at: 0 };
  const exp = (name: string, index: number): number[] => [...uleb(name.length), ...Buffer.from(name), 0x00, ...uleb(index)];
  const newExports = section(7, [
    ...uleb(e.count + 3),
    ...(exportSec ? image.subarray(e.at, exportSec.end) : []),
    ...exp(GAS_GET, firstNew),
    ...exp(GAS_SET, firstNew + 1),
    ...exp(GAS_LIMIT_SET, firstNew + 2),
  ]);

  const c = vecStart(image, code.contentStart);
  const r = new Reader(image.subarray(0, code.end), c.at);
  const bodies: number[] = [...uleb(c.count + 3)];
  const meter = { gas, limit };
  for (let i = 0; i < c.count; i++) {
    const size = r.uleb();
    const start = r.pos;
    const body = meterBody(image, start, start + size, meter, { inject: opts.inject, ...(replaceCall === undefined ? {} : { replaceCall }) });
    bodies.push(...uleb(body.length));
    for (const x of body) bodies.push(x);
    r.pos = start + size;
  }
  for (const body of [
    [0x00, 0x23, ...uleb(gas), 0x0b],
    [0x00, 0x20, 0x00, 0x24, ...uleb(gas), 0x0b],
    [0x00, 0x20, 0x00, 0x24, ...uleb(limit), 0x0b],
  ]) bodies.push(...uleb(body.length), ...body);
  const newCode = section(10, bodies);

  const replaced = new Map<number, Uint8Array>([[1, newTypes], [3, newFuncs], [6, newGlobals], [7, newExports], [10, newCode]]);
  const parts: Uint8Array[] = [image.subarray(0, 8)];
  const order = [1, 2, 3, 4, 5, 13, 6, 7, 8, 9, 12, 10, 11];
  const rank = (id: number): number => order.indexOf(id);
  const pending = new Set([6, 7].filter((id) => !find(id)));
  for (const s of sections) {
    for (const id of [...pending]) {
      if (s.id !== 0 && rank(s.id) > rank(id)) {
        parts.push(replaced.get(id)!);
        pending.delete(id);
      }
    }
    parts.push(replaced.get(s.id) ?? image.subarray(s.start, s.end));
  }
  for (const id of pending) parts.push(replaced.get(id)!);
  return Buffer.concat(parts);
}
