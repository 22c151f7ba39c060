/** Conformance on the classic third-party modules in ../shared/fixtures (SPEC §10.1). */
import { expect, it } from 'vitest';
import { AoError, WasmInstance, WasmModule } from '../../src/index';
import { describeShared, sharedFixture } from '../helpers/fixtures';

describeShared('shared fixtures through the native handles', () => {
  it('test.wasm: fac(5.0) → [120]', () => {
    const i = new WasmInstance(WasmModule.compile(sharedFixture('test.wasm')));
    expect(i.call('fac', [5.0])).toEqual([120]);
  });

  it('pow_calculator.wasm: pow(2, 5) with a JS my_lib.mul → [32]', () => {
    const m = WasmModule.compile(sharedFixture('pow_calculator.wasm'));
    const calls: Array<[number, number]> = [];
    // wasm-bindgen's placeholder imports are never called; they only have to exist.
    const imports: Record<string, Record<string, (...a: unknown[]) => unknown>> = {};
    for (const x of m.imports) {
      imports[x.module!] ??= {};
      imports[x.module!]![x.name] = () => {
        throw new Error(`${x.module}.${x.name} called`);
      };
    }
    imports.my_lib!.mul = (a, b) => (calls.push([a as number, b as number]), (a as number) * (b as number));
    const i = new WasmInstance(m, imports as never);
    expect(i.call('pow', [2, 5])).toEqual([32]);
    expect(calls).toEqual([[1, 2], [2, 2], [4, 2], [8, 2], [16, 2]]);
  });

  it('test-print.wasm: the memory holds "Hello, World!" at 66 and reads past the end fail', () => {
    const i = new WasmInstance(WasmModule.compile(sharedFixture('test-print.wasm')), {
      wasi_snapshot_preview1: { fd_write: () => 0 },
    });
    expect(i.memory.size).toBe(65536);
    expect(i.memory.read(66, 13).toString()).toBe('Hello, World!');
    const e = (() => {
      try {
        i.memory.read(1_000_000, 13);
      } catch (err) {
        return err;
      }
    })();
    expect(e).toBeInstanceOf(AoError);
    expect(e).toMatchObject({ status: 400, code: 'ERR_OUT_OF_BOUNDS' });
    i.memory.write(0, Buffer.from('Hello, World!'));
    expect(() => i.memory.write(1_000_000, Buffer.from('x'))).toThrow(AoError);
  });

  it('test-calling.wasm: writeString/readString round-trip and a 128 MiB malloc fails cleanly', () => {
    const i = new WasmInstance(WasmModule.compile(sharedFixture('test-calling.wasm')), {
      wasi_snapshot_preview1: { fd_write: () => 0, proc_exit: () => { throw new Error('proc_exit'); } },
    });
    expect(i.memory.is64).toBe(true);
    const ptr = i.writeString('Hello, World!');
    expect(typeof ptr).toBe('bigint');
    expect(ptr).not.toBe(0n);
    expect(i.readString(ptr).toString()).toBe('Hello, World!');
    expect(i.readString([ptr]).toString()).toBe('Hello, World!');
    expect(i.malloc(100)).not.toBe(0n);
    expect(() => i.malloc(128 * 1024 * 1024)).toThrow('malloc(134217728) failed: the guest returned NULL');
    // Still usable afterwards.
    expect(i.readString(i.writeString('again')).toString()).toBe('again');
  });

  it('aos-2-pure-xs.wasm: legacy exception opcodes are reported, not crashed on', () => {
    // Translation to standard exceptions belongs to the wasm-64 device (SPEC decision 4).
    expect(() => WasmModule.compile(sharedFixture('aos-2-pure-xs.wasm'), { cache: false })).toThrow(
      /legacy_exceptions feature required for try instruction/,
    );
  });
});
