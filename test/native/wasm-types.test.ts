/**
 * Value types JavaScript cannot carry (v128 and every reference type): modules using them in
 * imports, exports and globals compile and instantiate; calling such a function is a typed error.
 * (Wasmtime's C API aborts the process when asked the kind of such a type: issue #14.)
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { WasmError, WasmInstance, WasmModule, WasmTrap } from '../../src/index';
import { thrown } from '../helpers/thrown';
import { wat, watAll } from '../helpers/wat';

const CANNOT = 'which JavaScript cannot carry (only i32, i64, f32 and f64 values cross)';

let simd: WasmModule;
let gc: WasmModule;

beforeAll(async () => {
  simd = WasmModule.compile(
    await wat(`(module
      (import "h" "v" (func $v (param v128) (result i32)))
      (import "h" "r" (func $r (result externref)))
      (import "h" "n" (func $n (param i32) (result i32)))
      (global (export "g") (mut v128) (v128.const i64x2 1 2))
      (table (export "t") 2 funcref)
      (func (export "callv") (result i32) (call $v (v128.const i64x2 1 2)))
      (func (export "callr") (result i32) (ref.is_null (call $r)))
      (func (export "calln") (param i32) (result i32) (call $n (local.get 0)))
      (func (export "takev") (param v128))
      (func (export "givev") (result v128) (v128.const i64x2 3 4))
      (func (export "givef") (result funcref) (ref.null func))
      (func (export "mixed") (param i32 externref) (result i32) (local.get 0)))`),
  );
  gc = WasmModule.compile(
    await watAll(`(module
      (type $t (func))
      (import "h" "a" (func $a (param anyref) (result (ref null $t))))
      (global (export "gi") (mut i31ref) (ref.null i31))
      (table (export "tx") 1 externref)
      (tag $x (param i32))
      (export "x" (tag $x))
      (func (export "any") (result anyref) (ref.null any))
      (func (export "nonnull") (param (ref func)))
      (func (export "exn") (param exnref))
      (func (export "concrete") (result (ref $t)) (ref.func $f))
      (func $f (type $t))
      (func (export "ok") (result i32) (i32.const 7))
      (elem declare func $f))`),
  );
});

describe('WasmModule with types JavaScript cannot carry', () => {
  it('compiles and lists v128 and reference types by their text-format names', () => {
    expect(simd.imports.map((i) => i.type)).toEqual([
      { params: ['v128'], results: ['i32'] },
      { params: [], results: ['externref'] },
      { params: ['i32'], results: ['i32'] },
    ]);
    expect(simd.exports.find((e) => e.name === 'g')).toEqual({ name: 'g', kind: 'global', detail: { content: 'v128', mutable: true } });
    expect(simd.exports.find((e) => e.name === 't')).toEqual({ name: 't', kind: 'table', detail: { element: 'funcref' } });
    expect(simd.exportType('givev')).toEqual({ params: [], results: ['v128'] });
    expect(gc.imports[0]!.type).toEqual({ params: ['anyref'], results: ['(ref null $func)'] });
    expect(Object.fromEntries(gc.exports.map((e) => [e.name, e.type ?? e.detail ?? e.kind]))).toEqual({
      gi: { content: 'i31ref', mutable: true },
      tx: { element: 'externref' },
      x: 'tag',
      any: { params: [], results: ['anyref'] },
      nonnull: { params: ['(ref func)'], results: [] },
      exn: { params: ['exnref'], results: [] },
      concrete: { params: [], results: ['(ref $func)'] },
      ok: { params: [], results: ['i32'] },
    });
  });

  it('instantiates, and the functions JS can call work', () => {
    const i = new WasmInstance(simd, { h: { v: () => 1, r: () => null, n: (x: unknown) => (x as number) * 3 } });
    expect(i.call('calln', [14])).toEqual([42]);
    const g = new WasmInstance(gc, { h: { a: () => null } });
    expect(g.call('ok', [])).toEqual([7]);
  });

  it('refuses to call an export with such a type: WasmError 400 ERR_WASM_TYPE naming it', () => {
    const i = new WasmInstance(simd, { h: { v: () => 1, r: () => null, n: () => 0 } });
    const g = new WasmInstance(gc, { h: { a: () => null } });
    const cases: Array<[WasmInstance, string, unknown[], string]> = [
      [i, 'takev', [0], "function 'takev' has a v128 parameter"],
      [i, 'givev', [], "function 'givev' has a v128 result"],
      [i, 'givef', [], "function 'givef' has a funcref result"],
      [i, 'mixed', [1, null], "function 'mixed' has an externref parameter"],
      [g, 'any', [], "function 'any' has an anyref result"],
      [g, 'nonnull', [null], "function 'nonnull' has a (ref func) parameter"],
      [g, 'exn', [null], "function 'exn' has an exnref parameter"],
      [g, 'concrete', [], "function 'concrete' has a (ref $func) result"],
    ];
    for (const [inst, name, args, message] of cases) {
      const e = thrown(() => inst.call(name, args));
      expect(e).toBeInstanceOf(WasmError);
      expect(e).toMatchObject({ status: 400, code: 'ERR_WASM_TYPE', message: `${message}, ${CANNOT}` });
    }
    expect(i.call('calln', [1])).toEqual([0]);
  });

  it('links imports with such types as stubs that trap when the guest calls them', () => {
    let called = 0;
    const i = new WasmInstance(simd, { h: { v: () => ++called, r: () => ++called, n: () => 0 } });
    for (const [fn, label, type] of [['callv', 'h.v', 'a v128 parameter'], ['callr', 'h.r', 'an externref result']] as const) {
      const e = thrown(() => i.call(fn, []));
      expect(e).toBeInstanceOf(WasmTrap);
      expect(e).toMatchObject({ status: 500, trapCode: 'host', message: `call trapped: import ${label} has ${type}, ${CANNOT}` });
      expect(e.cause).toBeInstanceOf(WasmError);
      expect(e.cause).toMatchObject({ status: 400, code: 'ERR_WASM_TYPE' });
    }
    expect(called).toBe(0);
    const g = new WasmInstance(gc, {}, { missingImports: 'trap' });
    expect(g.call('ok', [])).toEqual([7]);
  });

  it('calls table elements with numeric types and refuses the others', async () => {
    const m = WasmModule.compile(
      await wat(`(module (table (export "t") 2 funcref) (elem (i32.const 0) $a $b)
        (func $a (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))
        (func $b (param v128)))`),
    );
    const i = new WasmInstance(m);
    expect(i.callTable(0, [1])).toEqual([2]);
    expect(thrown(() => i.callTable(1, [0]))).toMatchObject({
      code: 'ERR_WASM_TYPE',
      message: `table element 1 has a v128 parameter, ${CANNOT}`,
    });
  });
});
