/** wasm-64@1.0 through resolve (SPEC §3, §10.2). */
import { beforeAll, describe, expect, it } from 'vitest';
import { privateOf, resolve } from '../../src/ao';
import { AoError, SnapshotError, WasmInstance } from '../../src/index';
import { wasm } from '../../src/devices/wasm-64';
import { describeShared, sharedFixture } from '../helpers/fixtures';
import { wat } from '../helpers/wat';

/** The built-in registry has wasm-64@1.0 and json-iface@1.0. */
const opts = {};

let trapImage: Uint8Array;
let importsImage: Uint8Array;
beforeAll(async () => {
  trapImage = await wat(`(module (memory (export "memory") 1)
    (func (export "boom") (param i32) (result i32) unreachable)
    (func (export "ok") (result i32) i32.const 7))`);
  importsImage = await wat(`(module
    (import "env" "mystery" (func $m (param i32 i64) (result i64)))
    (func (export "go") (result i64) (call $m (i32.const 3) (i64.const 4))))`);
});

describeShared('wasm-64@1.0 on the classic fixtures', () => {
  it('init puts a WasmInstance and an import resolver in priv', async () => {
    const msg0 = await wasm.cacheWasmImage(sharedFixture('test.wasm'));
    expect(msg0).toEqual({ device: 'wasm-64@1.0', image: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/) });
    const msg1 = await resolve(msg0, 'init', opts);
    const priv = privateOf(msg1);
    expect(await resolve(priv, 'instance', opts)).toBeInstanceOf(WasmInstance);
    expect(typeof priv['import-resolver']).toBe('function');
    expect(wasm.instance(msg1)).toBe(priv.instance);
  });

  it('computes fac(5.0) → [120] and fac(6) → [720]', async () => {
    const msg1 = await resolve(await wasm.cacheWasmImage(sharedFixture('test.wasm')), 'init', opts);
    const r = await resolve({ ...msg1, function: 'fac', parameters: [5.0] }, 'compute', opts);
    expect(await resolve(r, 'results/output', opts)).toEqual([120]);
    expect(await resolve(r, 'results/type', opts)).toBe('ok');
    const r6 = await resolve(msg1, { path: 'compute', function: 'fac', parameters: [6] }, opts);
    expect(await resolve(r6, 'results/output', opts)).toEqual([720]);
  });

  it('reads the image under the input prefix and writes priv under the output prefix', async () => {
    const { image } = await wasm.cacheWasmImage(sharedFixture('test.wasm'));
    const a = await resolve({ device: 'WASM-64@1.0', 'input-prefix': 'test-in', 'test-in': { image } }, 'init', opts);
    expect(privateOf(a).instance).toBeInstanceOf(WasmInstance);
    const b = await resolve(
      { device: 'wasm-64@1.0', 'output-prefix': 'wasm', 'input-prefix': 'process', process: { device: 'wasm-64@1.0', image } },
      'init',
      opts,
    );
    expect(privateOf(b).wasm.instance).toBeInstanceOf(WasmInstance);
    expect(typeof privateOf(b).wasm['import-resolver']).toBe('function');
    const r = await resolve({ ...b, function: 'fac', parameters: [3] }, 'compute', opts);
    expect(await resolve(r, 'results/wasm/output', opts)).toEqual([6]);
  });

  it('routes imports to stdlib devices: pow(2, 5) with my_lib = test-device@1.0 → [32]', async () => {
    const msg0 = await wasm.cacheWasmImage(sharedFixture('pow_calculator.wasm'));
    const msg1 = await resolve({ ...msg0, stdlib: { my_lib: { device: 'test-device@1.0' } } }, 'init', opts);
    const r = await resolve({ ...msg1, function: 'pow', parameters: [2, 5] }, 'compute', opts);
    expect(await resolve(r, 'results/output', opts)).toEqual([32]);
  });

  it('restores a snapshot into a fresh message without an explicit init → [4]', async () => {
    const msg0 = { ...(await wasm.cacheWasmImage(sharedFixture('pow_calculator.wasm'))), stdlib: { my_lib: { device: 'test-device@1.0' } } };
    const msg1 = await resolve(msg0, 'init', opts);
    const r = await resolve({ ...msg1, function: 'pow', parameters: [2, 2] }, 'compute', opts);
    expect(await resolve(r, 'results/output', opts)).toEqual([4]);
    const snap = await resolve(r, 'snapshot', opts);
    expect(snap.body).toBeInstanceOf(Uint8Array);
    const fresh = { ...msg0, function: 'pow', parameters: [2, 2], snapshot: snap };
    expect(await resolve(fresh, 'compute/results/output', opts)).toEqual([4]);
  });

  it('state_export_and_restore (HyperBEAM dev_wasm.erl): the stdlib added after init is used, and the snapshot restores → [4]', async () => {
    const msg0 = await wasm.cacheWasmImage(sharedFixture('pow_calculator.wasm'));
    const base = await resolve(msg0, 'init', opts);
    const extras = { function: 'pow', parameters: [2, 2], stdlib: { my_lib: { device: 'test-device@1.0' } } };
    const resA = await resolve({ ...base, ...extras }, 'compute', opts);
    expect(await resolve(resA, 'results/output', opts)).toEqual([4]);
    expect(resA.results['undefined-calls']).toBeUndefined();
    const state = await resolve(resA, 'snapshot', opts);
    expect(await resolve({ ...msg0, ...extras, snapshot: state }, 'compute/results/output', opts)).toEqual([4]);
  });

  it('imported_function (HyperBEAM dev_wasm.erl): stdlib/my_lib set after init → pow(2, 5) = [32]', async () => {
    const base = await resolve(await wasm.cacheWasmImage(sharedFixture('pow_calculator.wasm')), 'init', opts);
    const r = await resolve({ ...base, function: 'pow', parameters: [2, 5], stdlib: { my_lib: { device: 'test-device@1.0' } } }, 'compute', opts);
    expect(await resolve(r, 'results/output', opts)).toEqual([32]);
  });

  it('resolves imports against each computed message: the same instance with and without a stdlib', async () => {
    const base = await resolve(await wasm.cacheWasmImage(sharedFixture('pow_calculator.wasm')), 'init', opts);
    const without = await resolve({ ...base, function: 'pow', parameters: [2, 3] }, 'compute', opts);
    expect(without.results.output).toEqual([0]); // HyperBEAM's stub answers 0 for every mul
    expect(without.results['undefined-calls']).toEqual([
      { module: 'my_lib', func: 'mul', args: [1, 2] },
      { module: 'my_lib', func: 'mul', args: [0, 2] },
      { module: 'my_lib', func: 'mul', args: [0, 2] },
    ]);
    const lib = { stdlib: { my_lib: { device: 'test-device@1.0' } } };
    const withLib = await resolve({ ...without, ...lib, function: 'pow', parameters: [2, 3] }, 'compute', opts);
    expect(withLib.results.output).toEqual([8]);
    expect(withLib.results['undefined-calls']).toBeUndefined();
    const strict = await resolve({ ...withLib, stdlib: {}, 'strict-imports': true, function: 'pow', parameters: [2, 3] }, 'compute', opts);
    expect(strict.results).toEqual({ type: 'error', output: 'call trapped: import my_lib.mul threw: import my_lib.mul is not provided (strict-imports)' });
  });

  it('rejects a snapshot taken from another image', async () => {
    const fac = await resolve(await wasm.cacheWasmImage(sharedFixture('test-print.wasm')), 'init', opts);
    const snap = await resolve(fac, 'snapshot', opts);
    const other = { ...(await wasm.cacheWasmImage(sharedFixture('test-calling.wasm'))), snapshot: snap, function: 'main' };
    await expect(resolve(other, 'compute', opts)).rejects.toThrow(SnapshotError);
  });
});

describe('wasm-64@1.0 with its own fixtures', () => {
  it('reports a trap as results type error, and the instance keeps working', async () => {
    const msg1 = await resolve({ device: 'wasm-64@1.0', image: trapImage }, 'init', opts);
    const r = await resolve({ ...msg1, function: 'boom', parameters: [1] }, 'compute', opts);
    expect(await resolve(r, 'results/type', opts)).toBe('error');
    expect(await resolve(r, 'results/output', opts)).toBe('call trapped: wasm trap: wasm `unreachable` instruction executed');
    const ok = await resolve({ ...r, function: 'ok', parameters: [] }, 'compute', opts);
    expect(await resolve(ok, 'results/output', opts)).toEqual([7]);
  });

  it('skips compute on passes other than 1 and without a function', async () => {
    const msg1 = await resolve({ device: 'wasm-64@1.0', image: trapImage }, 'init', opts);
    const r = await resolve({ ...msg1, pass: 2, function: 'ok' }, 'compute', opts);
    expect(r.results).toBeUndefined();
    expect((await resolve(msg1, 'compute', opts)).results).toBeUndefined();
  });

  it('stubs unknown imports with zeros and records the calls; strict-imports traps', async () => {
    const msg1 = await resolve({ device: 'wasm-64@1.0', image: importsImage, function: 'go' }, 'init', opts);
    const r = await resolve(msg1, 'compute', opts);
    expect(await resolve(r, 'results/output', opts)).toEqual([0n]);
    expect(await resolve(r, 'results/undefined-calls', opts)).toEqual([{ module: 'env', func: 'mystery', args: [3, 4n] }]);
    const strict = await resolve({ device: 'wasm-64@1.0', image: importsImage, function: 'go', 'strict-imports': true }, 'init', opts);
    const s = await resolve(strict, 'compute', opts);
    expect(await resolve(s, 'results/type', opts)).toBe('error');
    expect(await resolve(s, 'results/output', opts)).toBe('call trapped: import env.mystery threw: import env.mystery is not provided (strict-imports)');
  });

  it('fails init with 400 when there is no image', async () => {
    const e = await resolve({ device: 'wasm-64@1.0' }, 'init', opts).catch((x) => x);
    expect(e).toBeInstanceOf(AoError);
    expect(e).toMatchObject({ status: 400, message: expect.stringContaining('No viable image found in image.') });
  });

  it('disposes the previous instance when init runs again, and on terminate', async () => {
    const a = await resolve({ device: 'wasm-64@1.0', image: trapImage }, 'init', opts);
    const first = wasm.instance(a)!;
    const b = await resolve(a, 'init', opts);
    expect(first.disposed).toBe(true);
    const second = wasm.instance(b)!;
    const c = await resolve(b, 'terminate', opts);
    expect(second.disposed).toBe(true);
    expect(wasm.instance(c)).toBeUndefined();
  });
});
