import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { WasmError, WasmInstance, WasmModule } from '../../src/index';
import { wat } from '../helpers/wat';

let facBytes: Uint8Array;
let sigBytes: Uint8Array;

beforeAll(async () => {
  facBytes = await wat(`(module
    (func $fac (export "fac") (param f64) (result f64)
      local.get 0 f64.const 1 f64.lt
      if (result f64) f64.const 1
      else local.get 0 local.get 0 f64.const 1 f64.sub call $fac f64.mul end))`);
  sigBytes = await wat(`(module
    (import "env" "f" (func (param i32 i64 f32 f64) (result i64)))
    (memory (export "mem") i64 2 10)
    (global (export "g") (mut i32) (i32.const 0))
    (func (export "both") (param i32 i64) (result f32 f64) f32.const 1 f64.const 2))`);
});

describe('WasmModule.compile()', () => {
  it('compiles a valid image and lists its exports with signatures', () => {
    const m = WasmModule.compile(facBytes, { cache: false });
    expect(m.exports).toEqual([{ name: 'fac', kind: 'func', type: { params: ['f64'], results: ['f64'] } }]);
    expect(m.imports).toEqual([]);
    expect(m.hash).toHaveLength(32);
  });

  it('lists imports, memories and globals with their types', () => {
    const m = WasmModule.compile(sigBytes, { cache: false });
    expect(m.imports).toEqual([
      { module: 'env', name: 'f', kind: 'func', type: { params: ['i32', 'i64', 'f32', 'f64'], results: ['i64'] } },
    ]);
    expect(m.exports).toEqual([
      { name: 'mem', kind: 'memory', detail: { min: 2n, max: 10n, is64: true } },
      { name: 'g', kind: 'global', detail: { content: 'i32', mutable: true } },
      { name: 'both', kind: 'func', type: { params: ['i32', 'i64'], results: ['f32', 'f64'] } },
    ]);
  });

  it('throws WasmError with the engine message on bytes that are not wasm', () => {
    let err: unknown;
    try {
      WasmModule.compile(Buffer.from('not wasm at all'));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(WasmError);
    expect(err).toMatchObject({ status: 400, code: 'ERR_WASM_COMPILE' });
    expect((err as Error).message).toMatch(/^invalid WebAssembly module: failed to parse WebAssembly module/);
    expect((err as Error).message).toContain('magic header not detected');
  });

  it('throws WasmError on a truncated image', () => {
    expect(() => WasmModule.compile(facBytes.subarray(0, facBytes.length - 3), { cache: false })).toThrow(WasmError);
  });

  it('rejects misspelled options', () => {
    expect(() => WasmModule.compile(facBytes, { cach: true } as never)).toThrow(
      "WasmModule.compile: unknown option 'cach' (allowed: cache, cacheDir, fuel, spectreMitigation, interruptible, maxFunctionBytes, maxNestingDepth, maxLoopsSquared, maxBranchesSquared)",
    );
  });

  it('never compiles the same image twice while the cache holds it', () => {
    const a = WasmModule.compile(facBytes);
    const b = WasmModule.compile(Buffer.from(facBytes));
    expect(b).toBe(a);
    a.dispose();
    const c = WasmModule.compile(facBytes);
    expect(c).not.toBe(a);
  });
});

describe('WasmModule#serialize()', () => {
  it('round-trips through deserialize() and the code still runs', () => {
    const m = WasmModule.compile(facBytes, { cache: false });
    const blob = m.serialize();
    expect(blob.subarray(0, 8).toString()).toBe('HBMODULE');
    const m2 = WasmModule.deserialize(blob);
    expect(m2.hash.equals(m.hash)).toBe(true);
    expect(new WasmInstance(m2).call('fac', [6])).toEqual([720]);
  });

  it('rejects foreign or damaged bytes with WasmError', () => {
    expect(() => WasmModule.deserialize(Buffer.from('garbage garbage garbage garbage garbage garbage'))).toThrow(
      'not a serialized hb-runtimes module (bad magic)',
    );
    const blob = WasmModule.compile(facBytes, { cache: false }).serialize();
    expect(() => WasmModule.deserialize(blob.subarray(0, 60))).toThrow(WasmError);
  });

  it('loads serialized code from a file (mapped, not read into JS), and refuses damaged or missing files the same way', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hbr-file-'));
    const m = WasmModule.compile(facBytes, { cache: false });
    const file = path.join(dir, 'fac.cwasm');
    fs.writeFileSync(file, m.serialize());
    const loaded = WasmModule.deserializeFile(file);
    expect(loaded.hash).toEqual(m.hash);
    expect(new WasmInstance(loaded).call('fac', [6])).toEqual([720]);
    fs.writeFileSync(file, m.serialize().subarray(0, 60));
    expect(() => WasmModule.deserializeFile(file)).toThrow(expect.objectContaining({ name: 'WasmError', code: 'ERR_WASM_DESERIALIZE' }));
    fs.writeFileSync(file, 'junk');
    expect(() => WasmModule.deserializeFile(file)).toThrow('not a serialized hb-runtimes module (bad magic)');
    expect(() => WasmModule.deserializeFile(path.join(dir, 'missing.cwasm'))).toThrow(/ENOENT/);
  });

  it('keeps compiled code in a cache directory that a later compile loads', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hbr-cache-'));
    const m = WasmModule.compile(facBytes, { cache: false, cacheDir: dir });
    const files = fs.readdirSync(dir);
    expect(files).toEqual([`${m.hash.toString('hex')}-0.wasmtime-48.0.8.cwasm`]);
    // Wasmtime's own bytes, which a later compile maps and runs in place.
    expect(fs.readFileSync(path.join(dir, files[0]!)).subarray(0, 4)).toEqual(Buffer.from('\x7fELF', 'latin1'));
    const again = WasmModule.compile(facBytes, { cache: false, cacheDir: dir });
    expect(new WasmInstance(again).call('fac', [5])).toEqual([120]);
    // A damaged entry is replaced, not trusted (put in place by rename, as a cache file always
    // is: its code may be mapped and running).
    const replace = (text: string): void => {
      fs.writeFileSync(path.join(dir, `${files[0]!}.new`), text);
      fs.renameSync(path.join(dir, `${files[0]!}.new`), path.join(dir, files[0]!));
    };
    replace('junk');
    const fixed = WasmModule.compile(facBytes, { cache: false, cacheDir: dir });
    expect(new WasmInstance(fixed).call('fac', [3])).toEqual([6]);
    expect(fs.readFileSync(path.join(dir, files[0]!)).subarray(0, 4)).toEqual(Buffer.from('\x7fELF', 'latin1'));
    // A file replaced while an instance runs its mapped code leaves that code alone.
    const running = new WasmInstance(WasmModule.compile(facBytes, { cache: false, cacheDir: dir }));
    replace('junk');
    expect(running.call('fac', [4])).toEqual([24]);
  });
});

describe('WasmModule#dispose()', () => {
  it('is idempotent and closes the instances made from it', () => {
    const m = WasmModule.compile(facBytes, { cache: false });
    const i = new WasmInstance(m);
    m.dispose();
    m.dispose();
    expect(() => i.call('fac', [1])).toThrow(new TypeError('WasmInstance is closed'));
    expect(() => new WasmInstance(m)).toThrow(new TypeError('WasmModule is closed'));
  });
});
