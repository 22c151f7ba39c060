/** WasiPreview1 (src/wasi/preview1.ts): options and the import table. */
import { describe, expect, it } from 'vitest';
import { WasiPreview1 } from '../../src/wasi';
import { SIGNATURES } from '../helpers/wasi-guest';

describe('WasiPreview1#imports()', () => {
  it('returns all 46 preview1 functions', () => {
    const fns = new WasiPreview1().imports(() => {
      throw new Error('not called');
    }, 'wasm32');
    expect(Object.keys(fns).sort()).toEqual(Object.keys(SIGNATURES).sort());
    expect(Object.keys(fns)).toHaveLength(46);
  });

  it('rejects an unknown option, ABI or flavor with a message naming it', () => {
    expect(() => new WasiPreview1({ sed: 1 } as never)).toThrow("unknown option 'sed'");
    const w = new WasiPreview1();
    expect(() => w.imports(() => undefined as never, 'wasm16' as never)).toThrow("abi must be 'wasm32' or 'wasm64'");
    expect(() => w.imports(() => undefined as never, 'wasm32', 'preview2' as never)).toThrow('flavor');
    expect(() => new WasiPreview1({ env: { 'A=B': 'x' } })).toThrow("invalid environment variable name 'A=B'");
    expect(() => new WasiPreview1({ args: ['a\0b'] })).toThrow('args must be an array of strings without NUL');
  });
});
