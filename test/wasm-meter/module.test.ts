/**
 * The in-module gas counter against @permaweb/wasm-metering (ao-loader's metering) run on V8 with
 * a JS `usegas`: the same totals on a module that exercises every kind of segment boundary and
 * every cost class, and a trap at the same point when over the limit.
 */
import { describe, expect, it } from 'vitest';
import { WasmInstance, WasmModule, WasmTrap } from '../../src/index';
import { GAS_GET, GAS_LIMIT_SET, GAS_SET, MeterError, meterModule } from '../../src/wasm-meter/module';
import { wat } from '../helpers/wat';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const metering = require('@permaweb/wasm-metering') as { meterWASM(b: Uint8Array, o: { meterType: string }): Uint8Array };

const TEXT = `(module
  (type $t (func (param i32) (result i32)))
  (import "env" "ext" (func $ext (param i32) (result i32)))
  (memory 1)
  (table 2 funcref)
  (elem (i32.const 0) $sq $ext)
  (global $g (mut i32) (i32.const 7))
  (func $sq (param i32) (result i32) (i32.mul (local.get 0) (local.get 0)))
  (func (export "run") (param $n i32) (result i32)
    (local $i i32) (local $acc i32) (local $d f64) (local $w i64)
    (block $out
      (loop $top
        (br_if $out (i32.ge_u (local.get $i) (local.get $n)))
        (if (i32.rem_u (local.get $i) (i32.const 3))
          (then (local.set $acc (i32.add (local.get $acc) (call $sq (local.get $i)))))
          (else (local.set $acc (i32.div_s (local.get $acc) (i32.const 2)))))
        (block $b0 (block $b1 (block $b2
          (br_table $b0 $b1 $b2 (i32.and (local.get $i) (i32.const 3))))
          (local.set $w (i64.add (local.get $w) (i64.extend_i32_u (local.get $i)))))
          (local.set $d (f64.add (local.get $d) (f64.sqrt (f64.convert_i32_u (local.get $i))))))
        (i32.store (i32.const 16) (select (local.get $acc) (local.get $i) (i32.lt_s (local.get $acc) (i32.const 100))))
        (drop (call_indirect (type $t) (local.get $i) (i32.and (local.get $i) (i32.const 0))))
        (global.set $g (i32.xor (global.get $g) (i32.shl (local.get $i) (i32.const 1))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $top)))
    (if (i32.eqz (local.get $n)) (then (drop (memory.grow (i32.const 1))) (return (memory.size))))
    (i32.add (local.get $acc) (i32.add (i32.wrap_i64 (local.get $w)) (i32.trunc_f64_u (local.get $d))))))`;

async function reference(bytes: Uint8Array, n: number): Promise<{ result: number; gas: number }> {
  const metered = metering.meterWASM(bytes, { meterType: 'i32' });
  let gas = 0;
  const { instance } = await WebAssembly.instantiate(metered, { env: { ext: (x: number) => x + 1 }, metering: { usegas: (g: number) => void (gas += g) } });
  const result = (instance.exports.run as (n: number) => number)(n);
  return { result, gas };
}

describe('wasm-meter: gas counted inside the module', () => {
  it('gives @permaweb/wasm-metering\'s totals, with no metering import', async () => {
    const bytes = await wat(TEXT);
    const mod = WasmModule.compile(meterModule(bytes, { inject: true }), { cache: false });
    expect(mod.imports.map((i) => `${i.module}.${i.name}`)).toEqual(['env.ext']);
    const inst = new WasmInstance(mod, { env: { ext: (x) => Number(x) + 1 } });
    for (const n of [0, 1, 2, 7, 100, 1000]) {
      inst.call(GAS_SET, [0n]);
      const [result] = inst.call('run', [n]);
      const ref = await reference(bytes, n);
      expect(result).toBe(ref.result);
      expect(Number(inst.call(GAS_GET)[0])).toBe(ref.gas);
      expect(ref.gas).toBeGreaterThan(0);
    }
  });

  it('traps at the segment that goes past the limit, where wasm-metering\'s usegas would throw', async () => {
    const bytes = await wat(TEXT);
    const inst = new WasmInstance(WasmModule.compile(meterModule(bytes, { inject: true }), { cache: false }), { env: { ext: (x) => Number(x) + 1 } });
    const { gas } = await reference(bytes, 50);
    inst.call(GAS_LIMIT_SET, [BigInt(gas)]);
    inst.call(GAS_SET, [0n]);
    expect(inst.call('run', [50])).toEqual([(await reference(bytes, 50)).result]);
    inst.call(GAS_LIMIT_SET, [BigInt(gas - 1)]);
    inst.call(GAS_SET, [0n]);
    let err: unknown;
    try {
      inst.call('run', [50]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(WasmTrap);
    expect((err as WasmTrap).trapCode).toBe('unreachable');
    const after = Number(inst.call(GAS_GET)[0]);
    expect(after).toBeGreaterThan(gas - 1);
    expect(after).toBeLessThanOrEqual(gas);
  });

  it('turns calls to a built-in usegas import into the counter (AOS 1)', async () => {
    const bytes = await wat(`(module
      (import "metering" "usegas" (func $use (param i32)))
      (func (export "run") (param $n i32)
        (loop $l (call $use (i32.const 250)) (local.set $n (i32.sub (local.get $n) (i32.const 1))) (br_if $l (local.get $n)))))`);
    const inst = new WasmInstance(WasmModule.compile(meterModule(bytes, { inject: false, replaceImport: { module: 'metering', name: 'usegas' } }), { cache: false }), {
      metering: {
        usegas: () => {
          throw new Error('the import must not be called');
        },
      },
    });
    inst.call('run', [40]);
    expect(inst.call(GAS_GET)).toEqual([10_000n]);
  });

  it('refuses what wasm-metering cannot meter either (bulk memory)', async () => {
    const bytes = await wat('(module (memory 1) (func (export "f") (memory.fill (i32.const 0) (i32.const 0) (i32.const 4))))');
    expect(() => meterModule(bytes, { inject: true })).toThrow(MeterError);
    expect(() => metering.meterWASM(bytes, { meterType: 'i32' })).toThrow();
  });
});
