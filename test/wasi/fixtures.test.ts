/** WASI on the shared third-party fixtures (SPEC §11): 32-bit and emscripten 64-bit fd_write. */
import { expect, it } from 'vitest';
import { WasmInstance, WasmModule, WasmTrap } from '../../src/index';
import { WasiPreview1, exitCodeOf, wasiImportsFor } from '../../src/wasi';
import { describeShared, sharedFixture } from '../helpers/fixtures';

function run(file: string): { wasi: WasiPreview1; inst: WasmInstance } {
  const mod = WasmModule.compile(sharedFixture(file));
  const wasi = new WasiPreview1();
  let inst: WasmInstance | undefined;
  inst = new WasmInstance(mod, wasiImportsFor(mod, wasi, () => inst!));
  return { wasi, inst };
}

describeShared('WASI on shared fixtures', () => {
  it('test-print.wasm: hello() writes two 8-byte iovecs ({66,14},{80,8}) to stdout and returns nwritten 22', () => {
    const { wasi, inst } = run('test-print.wasm');
    expect(inst.call('hello')).toEqual([22]);
    // The second iovec is 8 bytes long over the 7-byte "Howdy!\n", so a NUL follows it.
    expect(Buffer.from(wasi.stdout)).toEqual(Buffer.from('Hello, World!\nHowdy!\n\0', 'latin1'));
    expect(inst.memory.read(92, 4).readUInt32LE(0)).toBe(22);
  });

  it('test-calling.wasm: print_args(1n, 2n) prints two empty strings through the 64-bit fd_write', () => {
    // print_args takes two char* (addresses 1 and 2 hold NUL bytes).
    const { wasi, inst } = run('test-calling.wasm');
    expect(inst.call('print_args', [1n, 2n])).toEqual([]);
    expect(Buffer.from(wasi.stdout).toString()).toBe("ARGS: '' ''\n");
  });

  it('test-calling.wasm: print_args(a, b) prints b then a', () => {
    const { wasi, inst } = run('test-calling.wasm');
    const a = inst.writeString('1');
    const b = inst.writeString('2');
    inst.call('print_args', [a, b]);
    expect(Buffer.from(wasi.stdout).toString()).toBe("ARGS: '2' '1'\n");
    expect(Buffer.from(wasi.vfs.toMessage()['dev/stdout'] as Uint8Array).toString()).toBe("ARGS: '2' '1'\n");
  });

  it('test-calling.wasm: _start ends in proc_exit(1), seen as a trap carrying the exit code', () => {
    const { wasi, inst } = run('test-calling.wasm');
    let err: unknown;
    try {
      inst.call('_start');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(WasmTrap);
    expect(exitCodeOf(err)).toBe(1);
    expect(wasi.exitCode).toBe(1);
  });
});
