/**
 * `wasiImportsFor`: the WASI host functions a compiled module imports, with the ABI of each read
 * from its declared signature (checked), ready to merge into `WasmInstance` imports.
 */
import { badArg, WasmError } from '../errors';
import type { FuncType, WasmInstance, WasmModule, WasmValue } from '../wasm';
import { Errno } from './errno';
import { WasiPreview1 } from './preview1';
import { WASI_SIGNATURES, wasiFuncType, type WasiAbi, type WasiFlavor, type WasiFunction, type WasiFunctionName, type WasiParam } from './signatures';

function sameType(a: FuncType, b: FuncType): boolean {
  const same = (x: readonly string[], y: readonly string[]) => x.length === y.length && x.every((v, i) => v === y[i]);
  return same(a.params, b.params) && same(a.results, b.results);
}

function showType(t: FuncType): string {
  return `(${t.params.join(', ')}) -> (${t.results.join(', ')})`;
}

/** What an unknown WASI import returns: ENOSYS when it returns an errno, zeros otherwise. */
function enosysStub(type: FuncType | undefined): (...args: WasmValue[]) => unknown {
  const results = type?.results ?? [];
  const value = (t: string, i: number): WasmValue => {
    const v = i === 0 && (t === 'i32' || t === 'i64') ? Errno.ENOSYS : 0;
    return t === 'i64' ? BigInt(v) : v;
  };
  if (results.length === 0) return () => undefined;
  if (results.length === 1) {
    const v = value(results[0]!, 0);
    return () => v;
  }
  const vs = results.map(value);
  return () => [...vs];
}

const WASI_MODULES = new Map<string, WasiFlavor>([
  ['wasi_snapshot_preview1', 'preview1'],
  ['wasi_unstable', 'unstable'],
]);

/**
 * Host functions for exactly the WASI imports `module` declares, under `wasi_snapshot_preview1`
 * and `wasi_unstable`, ready to merge into `WasmInstance` imports. The ABI of each function is
 * read from its declared signature (a pointer or size parameter declared i64 means wasm64),
 * and the whole signature must then match that ABI, else a `WasmError` (`ERR_WASI_SIGNATURE`)
 * names the import. Names preview1 does not define get a stub returning ENOSYS.
 */
export function wasiImportsFor(
  module: WasmModule,
  wasi: WasiPreview1,
  getInstance: () => WasmInstance,
): Record<string, Record<string, (...args: WasmValue[]) => unknown>> {
  if (!(wasi instanceof WasiPreview1)) throw badArg('wasiImportsFor: wasi must be a WasiPreview1');
  const tables = new Map<string, Record<WasiFunctionName, WasiFunction>>();
  const table = (abi: WasiAbi, flavor: WasiFlavor): Record<WasiFunctionName, WasiFunction> => {
    const key = `${abi}/${flavor}`;
    let t = tables.get(key);
    if (!t) tables.set(key, (t = wasi.imports(getInstance, abi, flavor)));
    return t;
  };
  const out: Record<string, Record<string, (...args: WasmValue[]) => unknown>> = {};
  for (const imp of module.imports) {
    const flavor = imp.module !== undefined ? WASI_MODULES.get(imp.module) : undefined;
    if (flavor === undefined || imp.kind !== 'func') continue;
    const mod = (out[imp.module!] ??= {});
    const known =
      Object.prototype.hasOwnProperty.call(WASI_SIGNATURES, imp.name) && !(flavor === 'unstable' && imp.name === 'sock_accept');
    if (!known) {
      mod[imp.name] = enosysStub(imp.type);
      continue;
    }
    const name = imp.name as WasiFunctionName;
    const declared = imp.type ?? { params: [], results: [] };
    const sig = WASI_SIGNATURES[name] as readonly WasiParam[];
    const wide = sig.some((p, i) => (p === 'ptr' || p === 'size') && declared.params[i] === 'i64');
    const abi: WasiAbi = wide ? 'wasm64' : 'wasm32';
    const expected = wasiFuncType(name, abi);
    if (!sameType(declared, expected)) {
      throw new WasmError(
        `${imp.module}.${name} is declared ${showType(declared)}, expected ` +
          `${showType(wasiFuncType(name, 'wasm32'))} (wasm32) or ${showType(wasiFuncType(name, 'wasm64'))} (wasm64)`,
        { code: 'ERR_WASI_SIGNATURE' },
      );
    }
    mod[name] = table(abi, flavor)[name];
  }
  return out;
}
