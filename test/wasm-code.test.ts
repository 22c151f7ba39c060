/** The code scan behind the compile limits (src/wasm-code.ts): sizes, loops and nesting per function. */
import { describe, expect, it } from 'vitest';
import { WasmModule, translateLegacyExceptions } from '../src/index';
import { scanCode } from '../src/wasm-code';
import { describeShared, sharedFixture } from './helpers/fixtures';
import { Rng, genModule } from './helpers/wasm-gen';
import { wat, watAll } from './helpers/wat';

describe('scanCode()', () => {
  it('counts loops, branches and nesting per function, imports first in the index space', async () => {
    const shapes = scanCode(
      await wat(`(module (import "h" "f" (func))
        (func (loop (block (loop (if (i32.const 0) (then (loop)))))) (loop))
        (func (block (block (block)))))`),
    );
    expect(shapes.map(({ index, loops, branches, depth, decoded }) => ({ index, loops, branches, depth, decoded }))).toEqual([
      { index: 1, loops: 4, branches: 5, depth: 5, decoded: true },
      { index: 2, loops: 0, branches: 0, depth: 3, decoded: true },
    ]);
  });

  it('decodes every instruction family the engine accepts (SIMD, bulk memory, GC, tail calls, exceptions)', async () => {
    const image = await watAll(`(module
      (type $s (struct (field (mut i32)) (field i64)))
      (type $a (array (mut i8)))
      (type $f (func (param i32) (result i32)))
      (memory $m 1) (memory $n i64 1) (table $t 2 funcref) (tag $e (param i32))
      (data $d "abc") (elem $el func $id)
      (func $id (type $f) (local.get 0))
      (func (export "all") (param i32) (result i32) (local v128) (local (ref null $s)) (local anyref)
        (local.set 1 (v128.load offset=3 align=4 (i32.const 0)))
        (local.set 1 (i8x16.shuffle 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 (local.get 1) (local.get 1)))
        (local.set 1 (i32x4.replace_lane 2 (local.get 1) (i32x4.extract_lane 1 (local.get 1))))
        (local.set 1 (v128.load8_lane 3 (i32.const 0) (local.get 1)))
        (v128.store $n (i64.const 16) (local.get 1))
        (memory.copy $m $m (i32.const 0) (i32.const 1) (i32.const 1))
        (memory.init $m $d (i32.const 0) (i32.const 0) (i32.const 1))
        (data.drop $d)
        (drop (memory.grow $n (i64.const 0)))
        (table.init $t $el (i32.const 0) (i32.const 0) (i32.const 1))
        (drop (table.grow $t (ref.null func) (i32.const 1)))
        (local.set 2 (struct.new $s (i32.const 1) (i64.const 2)))
        (struct.set $s 0 (local.get 2) (struct.get $s 0 (local.get 2)))
        (drop (array.new_fixed $a 3 (i32.const 1) (i32.const 2) (i32.const 3)))
        (local.set 3 (ref.i31 (i32.const 5)))
        (drop (ref.test (ref i31) (local.get 3)))
        (drop (block $l (result anyref) (br_on_cast $l anyref (ref i31) (local.get 3)) (drop) (ref.null any)))
        (drop (call_ref $f (i32.const 1) (ref.func $id)))
        (drop (call_indirect $t (type $f) (i32.const 1) (i32.const 0)))
        (drop (select (result i32) (i32.const 1) (i32.const 2) (local.get 0)))
        (drop (block $out (result i32) (try_table (catch $e $out) (throw $e (i32.const 1))) (i32.const 0)))
        (block $any (try_table (catch_all $any) (throw $e (i32.const 2))))
        (block $b (br_table $b $b (i32.const 0)))
        (return_call $id (local.get 0))))`);
    const all = scanCode(image);
    expect(all.every((f) => f.decoded)).toBe(true);
    expect(WasmModule.compile(image, { cache: false }).exportType('all')).toEqual({ params: ['i32'], results: ['i32'] });
  });

  it('decodes every function of every module the generator makes and the engine compiles', () => {
    const rng = new Rng(4242);
    let compiled = 0;
    for (let i = 0; i < 300; i++) {
      const image = genModule(rng);
      try {
        WasmModule.compile(image, { cache: false });
      } catch {
        continue;
      }
      compiled++;
      expect(scanCode(image).filter((f) => !f.decoded)).toEqual([]);
    }
    expect(compiled).toBeGreaterThan(100);
  });

  it('counts pessimistically past an opcode it does not know', () => {
    // One body: loop, an unknown 0xff opcode, then bytes 0x03 0x03 0x02 that may or may not be code.
    const body = [0x00, 0x03, 0x40, 0x0b, 0xff, 0x03, 0x03, 0x02, 0x0b];
    const image = Uint8Array.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 4, 1, 0x60, 0, 0, 3, 2, 1, 0, 10, body.length + 2, 1, body.length, ...body]);
    expect(scanCode(image)).toEqual([{ index: 0, size: body.length, loops: 3, branches: 3, depth: 3, decoded: false }]);
  });

  it('returns nothing for bytes that are not a module', () => {
    expect(scanCode(Buffer.from('not wasm at all'))).toEqual([]);
  });
});

describeShared('scanCode() on the shared fixtures', () => {
  it('decodes every function exactly, AOS before and after the exception translation', async () => {
    for (const name of ['test.wasm', 'test-print.wasm', 'test-calling.wasm', 'pow_calculator.wasm', 'test-ex.wasm', 'aos-2-pure-xs.wasm']) {
      expect(scanCode(sharedFixture(name)).filter((f) => !f.decoded), name).toEqual([]);
    }
    const aos = scanCode(await translateLegacyExceptions(sharedFixture('aos-2-pure-xs.wasm')));
    expect(aos.every((f) => f.decoded)).toBe(true);
    expect([aos.length, Math.max(...aos.map((f) => f.loops)), Math.max(...aos.map((f) => f.depth))]).toEqual([602, 26, 56]);
    expect(aos.reduce((n, f) => n + f.loops ** 2, 0)).toBe(4648);
    expect(aos.reduce((n, f) => n + f.branches ** 2, 0)).toBe(291313);
  });
});
