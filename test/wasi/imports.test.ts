/** wasiImportsFor (src/wasi/imports.ts): binding a module's WASI imports, ABI by ABI. */
import { beforeAll, describe, expect, it } from 'vitest';
import { WasmError, WasmInstance, WasmModule } from '../../src/index';
import { Errno, Filetype, RIGHTS_FILE, Vfs, WasiPreview1, wasiImportsFor } from '../../src/wasi';
import { BUF, compileGuests, enc, guestWat, OUT, PATH } from '../helpers/wasi-guest';
import { wat } from '../helpers/wat';

beforeAll(compileGuests);

describe('wasiImportsFor()', () => {
  it('provides exactly the WASI functions the module imports', async () => {
    const mod = WasmModule.compile(
      await wat(`(module
        (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i64 i64 i64) (result i32)))
        (import "env" "other" (func))
        (memory (export "memory") i64 1))`),
    );
    const imports = wasiImportsFor(mod, new WasiPreview1(), () => {
      throw new Error('unused');
    });
    expect(Object.keys(imports)).toEqual(['wasi_snapshot_preview1']);
    expect(Object.keys(imports.wasi_snapshot_preview1!)).toEqual(['fd_write']);
  });

  it('reads the ABI of each import from its pointer parameters', async () => {
    // A 32-bit fd_write declared by a module whose other calls are 64-bit still gets 8-byte iovecs.
    const mod = WasmModule.compile(
      await wat(`(module
        (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "args_sizes_get" (func $a (param i64 i64) (result i32)))
        (memory (export "memory") 1)
        (data (i32.const 0) "\\10\\00\\00\\00\\02\\00\\00\\00")
        (data (i32.const 16) "hi")
        (func (export "go") (result i32) i32.const 1 i32.const 0 i32.const 1 i32.const 32 call $w)
        (func (export "sizes") (result i32) i64.const 40 i64.const 48 call $a))`),
    );
    const wasi = new WasiPreview1({ args: ['x'] });
    let inst: WasmInstance | undefined;
    inst = new WasmInstance(mod, wasiImportsFor(mod, wasi, () => inst!));
    expect(inst.call('go')).toEqual([0]);
    expect(Buffer.from(wasi.stdout).toString()).toBe('hi');
    expect(inst.memory.read(32, 8)).toEqual(Buffer.from([2, 0, 0, 0, 0, 0, 0, 0]));
    expect(inst.call('sizes')).toEqual([0]);
    expect(inst.memory.read(40, 16)).toEqual(Buffer.from([1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]));
  });

  it('gives an ENOSYS stub for names preview1 does not define', async () => {
    const mod = WasmModule.compile(
      await wat(`(module
        (import "wasi_snapshot_preview1" "fd_frobnicate" (func $f (param i32) (result i32)))
        (func (export "go") (result i32) i32.const 0 call $f))`),
    );
    let inst: WasmInstance | undefined;
    inst = new WasmInstance(mod, wasiImportsFor(mod, new WasiPreview1(), () => inst!));
    expect(inst.call('go')).toEqual([Errno.ENOSYS]);
  });

  it('throws a WasmError naming the import when its signature matches neither ABI', async () => {
    const mod = WasmModule.compile(
      await wat(`(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i64 i32 i64) (result i32))))`),
    );
    let err: unknown;
    try {
      wasiImportsFor(mod, new WasiPreview1(), () => undefined as never);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(WasmError);
    expect(err).toMatchObject({ code: 'ERR_WASI_SIGNATURE' });
    expect((err as Error).message).toBe(
      'wasi_snapshot_preview1.fd_write is declared (i32, i64, i32, i64) -> (i32), ' +
        'expected (i32, i32, i32, i32) -> (i32) (wasm32) or (i32, i64, i64, i64) -> (i32) (wasm64)',
    );
  });

  it('serves wasi_unstable with its own whence numbering and 56-byte filestat', async () => {
    const names = ['path_open', 'fd_seek', 'fd_filestat_get'];
    const mod = WasmModule.compile(await wat(guestWat('wasm32', names, 'wasi_unstable')));
    const vfs = Vfs.fromMessage({ f: 'abcdef' });
    const wasi = new WasiPreview1({ vfs });
    let inst: WasmInstance | undefined;
    inst = new WasmInstance(mod, wasiImportsFor(mod, wasi, () => inst!));
    inst.memory.write(PATH, enc('f'));
    expect(inst.call('path_open', [3, 0, PATH, 1, 0, RIGHTS_FILE, 0n, 0, OUT])).toEqual([0]);
    const fd = inst.memory.read(OUT, 4).readUInt32LE(0);
    expect(inst.call('fd_seek', [fd, -2n, 1 /* END in snapshot 0 */, OUT])).toEqual([0]);
    expect(inst.memory.read(OUT, 8).readBigUInt64LE(0)).toBe(4n);
    expect(inst.call('fd_seek', [fd, 1n, 2 /* SET in snapshot 0 */, OUT])).toEqual([0]);
    expect(inst.memory.read(OUT, 8).readBigUInt64LE(0)).toBe(1n);
    expect(inst.call('fd_filestat_get', [fd, BUF])).toEqual([0]);
    const b = Buffer.alloc(56);
    b.writeBigUInt64LE(vfs.stat('f').ino, 8);
    b.writeUInt8(Filetype.REGULAR_FILE, 16);
    b.writeUInt32LE(1, 20);
    b.writeBigUInt64LE(6n, 24);
    expect(inst.memory.read(BUF, 56)).toEqual(b);
  });
});
