/** wasi@1.0 in a stack with wasm-64@1.0, through resolve (SPEC §4, §10.3). */
import { beforeAll, describe, expect, it } from 'vitest';
import { resolve } from '../../src/ao';
import { cacheWrite } from '../../src/ao/cache';
import { stdout } from '../../src/devices/wasi';
import { wasm } from '../../src/devices/wasm-64';
import { describeShared, sharedFixture } from '../helpers/fixtures';
import { wat } from '../helpers/wat';

function stack(image: Uint8Array | string, extra: Record<string, unknown> = {}) {
  return { device: 'stack@1.0', 'device-stack': ['wasi@1.0', 'wasm-64@1.0'], 'stack-keys': ['init', 'compute'], image, ...extra };
}

// echo: reads up to 64 bytes of stdin (fd 0) and writes them to stdout (fd 1), 32-bit ABI.
let echo: Uint8Array;
// exits with status 3.
let exiter: Uint8Array;
// clock: writes two realtime readings (ns) at 0 and 8 and returns nothing.
let clock: Uint8Array;
beforeAll(async () => {
  echo = await wat(`(module
    (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (func (export "echo") (result i32)
      (i32.store (i32.const 0) (i32.const 64)) (i32.store (i32.const 4) (i32.const 64))
      (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)))
      (i32.store (i32.const 4) (i32.load (i32.const 16)))
      (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 20))))`);
  exiter = await wat(`(module
    (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
    (memory (export "memory") 1)
    (func (export "run") (call $exit (i32.const 3))))`);
  clock = await wat(`(module
    (import "wasi_snapshot_preview1" "clock_time_get" (func $t (param i32 i64 i32) (result i32)))
    (memory (export "memory") 1)
    (func (export "now") (result i64)
      (drop (call $t (i32.const 0) (i64.const 1) (i32.const 0)))
      (i64.load (i32.const 0))))`);
});

describe('wasi@1.0 + wasm-64@1.0', () => {
  it('gives the guest the files placed in vfs and keeps what it writes', async () => {
    const p = await resolve(stack(echo, { vfs: { dev: { stdin: 'ping from the vfs' } } }), 'init');
    const r = await resolve({ ...p, function: 'echo' }, 'compute');
    expect(await resolve(r, 'results/output')).toEqual([0]);
    expect(Buffer.from(await resolve(r, 'vfs/dev/stdout')).toString()).toBe('ping from the vfs');
    expect(stdout(r)).toBe('ping from the vfs');
    expect(await resolve({ ...r, device: 'wasi@1.0' }, 'stdout')).toBe('ping from the vfs');
  });

  it('reports proc_exit as an error result with the exit code', async () => {
    const p = await resolve(stack(exiter), 'init');
    const r = await resolve({ ...p, function: 'run' }, 'compute');
    expect(await resolve(r, 'results/type')).toBe('error');
    expect(await resolve(r, 'results/output')).toBe('the guest exited with proc_exit(3)');
  });

  it('derives a deterministic clock from the block timestamp', async () => {
    const p = await resolve(stack(clock), 'init');
    const a = await resolve(p, { path: 'compute', function: 'now', 'block-timestamp': 1700000000000 });
    const b = await resolve(p, { path: 'compute', function: 'now', 'block-timestamp': 1700000000000 });
    // The first reading is the block timestamp; the same message computed twice reads the same.
    expect(await resolve(a, 'results/output')).toEqual([1700000000000n * 1000000n]);
    expect(await resolve(b, 'results/output')).toEqual([1700000000000n * 1000000n]);
    // The state carries the clock on: the next compute on the result reads 1 ms later.
    const c = await resolve(a, { path: 'compute', function: 'now' });
    expect(await resolve(c, 'results/output')).toEqual([1700000000001n * 1000000n]);
  });
});

describeShared('wasi@1.0 on the shared fixtures', () => {
  it('test-print: hello() leaves "Hello, World!\\nHowdy!\\n" (and the NUL its second iovec covers) in vfs/dev/stdout', async () => {
    const image = await cacheWrite(sharedFixture('test-print.wasm'));
    const p = await resolve(stack(image), 'init');
    const r = await resolve({ ...p, function: 'hello' }, 'compute');
    // The second iovec is {80, 8} over the 7 bytes "Howdy!\n": the 8th is the string's NUL.
    expect(Buffer.from(await resolve(r, 'vfs/dev/stdout')).toString()).toBe('Hello, World!\nHowdy!\n\0');
    expect(await resolve(r, 'results/output')).toEqual([22]);
  });

  it('test-calling: print_args(a, b) writes through the 64-bit fd_write layout', async () => {
    const image = await cacheWrite(sharedFixture('test-calling.wasm'));
    const p = await resolve(stack(image), 'init');
    const inst = wasm.instance(p)!;
    const args = [inst.writeString('1'), inst.writeString('2')];
    const r = await resolve({ ...p, function: 'print_args', parameters: args }, 'compute');
    expect(await resolve(r, 'results/type')).toBe('ok');
    // print_args prints its two strings in reverse order.
    expect(stdout(r)).toBe("ARGS: '2' '1'\n");
  });
});
