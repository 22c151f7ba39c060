/** The README's example, step by step, on the shared fixtures. */
import { expect, it } from 'vitest';
import { AoError, lua, resolve, wasm, WasmInstance, WasmModule } from '../src/index';
import { describeShared, sharedFixture, SHARED_FIXTURES } from './helpers/fixtures';
import * as path from 'node:path';

describeShared('README example', () => {
  it('runs as written', async () => {
    const msg0 = await wasm.cacheWasmImage(path.join(SHARED_FIXTURES, 'test.wasm'));
    const msg1 = await resolve(msg0, 'init');
    const msg2 = await resolve({ ...msg1, function: 'fac', parameters: [5] }, 'compute');
    expect(await resolve(msg2, 'results/output')).toEqual([120]);

    const aos = await resolve(
      {
        device: 'stack@1.0',
        'device-stack': ['wasi@1.0', 'json-iface@1.0', 'wasm-64@1.0', 'multipass@1.0'],
        'input-prefix': 'process',
        'output-prefix': 'wasm',
        passes: 2,
        'stack-keys': ['init', 'compute'],
        process: {
          type: 'Process',
          id: 'P1',
          owner: 'ME',
          image: await wasm.cacheWasmImage(path.join(SHARED_FIXTURES, 'aos-2-pure-xs.wasm')).then((m) => m.image),
        },
      },
      'init',
    );
    const out = await resolve(aos, { path: 'compute', 'block-height': 1, body: { action: 'Eval', data: 'return 1 + 1', target: 'P1', from: 'ME', owner: 'ME' } });
    expect(out.results.data).toBe('2');

    const calc = await lua.init({ device: 'lua@5.3a', module: { 'content-type': 'application/lua', body: 'function add(a, b) return a + b end' } }, {}, {});
    expect(await resolve(calc, { path: 'add', parameters: [5, 3] })).toBe(8);

    const module = WasmModule.compile(sharedFixture('pow_calculator.wasm'));
    const instance = new WasmInstance(module, { my_lib: { mul: (a, b) => (a as number) * (b as number) } }, { missingImports: 'trap' });
    expect(instance.call('pow', [2, 5])).toEqual([32]);
    expect(instance.snapshot().subarray(0, 6).toString()).toBe('HBWASM');
    const e = (() => {
      try {
        instance.call('pow', [2]);
      } catch (err) {
        return err;
      }
    })();
    expect(e).toBeInstanceOf(AoError);
    expect(e).toMatchObject({ status: 400, message: 'expected 2 arguments, got 1' });
  });
});
