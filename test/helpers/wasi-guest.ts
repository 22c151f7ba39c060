/**
 * The WASI conformance guest, shared by the test files of src/wasi/: a WAT module that imports
 * every preview1 function and re-exports a thin wrapper with the same signature, so each test
 * drives one import with chosen arguments and checks the errno and the exact bytes in memory.
 */
import { expect } from 'vitest';
import { WasmInstance, WasmModule } from '../../src/index';
import { Errno, RIGHTS_FILE, Vfs, WasiPreview1, wasiImportsFor, type WasiAbi, type WasiOptions } from '../../src/wasi';
import { wat } from './wat';

/**
 * Parameters of each preview1 function; `P` is pointer-sized (i32 or i64 by ABI). Written from the
 * witx, independently of the implementation.
 */
export const SIGNATURES: Record<string, string> = {
  args_get: 'P P',
  args_sizes_get: 'P P',
  environ_get: 'P P',
  environ_sizes_get: 'P P',
  clock_res_get: 'i32 P',
  clock_time_get: 'i32 i64 P',
  fd_advise: 'i32 i64 i64 i32',
  fd_allocate: 'i32 i64 i64',
  fd_close: 'i32',
  fd_datasync: 'i32',
  fd_fdstat_get: 'i32 P',
  fd_fdstat_set_flags: 'i32 i32',
  fd_fdstat_set_rights: 'i32 i64 i64',
  fd_filestat_get: 'i32 P',
  fd_filestat_set_size: 'i32 i64',
  fd_filestat_set_times: 'i32 i64 i64 i32',
  fd_pread: 'i32 P P i64 P',
  fd_prestat_get: 'i32 P',
  fd_prestat_dir_name: 'i32 P P',
  fd_pwrite: 'i32 P P i64 P',
  fd_read: 'i32 P P P',
  fd_readdir: 'i32 P P i64 P',
  fd_renumber: 'i32 i32',
  fd_seek: 'i32 i64 i32 P',
  fd_sync: 'i32',
  fd_tell: 'i32 P',
  fd_write: 'i32 P P P',
  path_create_directory: 'i32 P P',
  path_filestat_get: 'i32 i32 P P P',
  path_filestat_set_times: 'i32 i32 P P i64 i64 i32',
  path_link: 'i32 i32 P P i32 P P',
  path_open: 'i32 i32 P P i32 i64 i64 i32 P',
  path_readlink: 'i32 P P P P P',
  path_remove_directory: 'i32 P P',
  path_rename: 'i32 P P i32 P P',
  path_symlink: 'P P i32 P P',
  path_unlink_file: 'i32 P P',
  poll_oneoff: 'P P P P',
  proc_exit: 'i32',
  proc_raise: 'i32',
  sched_yield: '',
  random_get: 'P P',
  sock_accept: 'i32 i32 P',
  sock_recv: 'i32 P P i32 P P',
  sock_send: 'i32 P P i32 P',
  sock_shutdown: 'i32 i32',
};

export function params(name: string, abi: WasiAbi): string[] {
  const p = SIGNATURES[name]!;
  return p === '' ? [] : p.split(' ').map((t) => (t === 'P' ? (abi === 'wasm64' ? 'i64' : 'i32') : t));
}

/** A guest importing `names` from `module` and exporting same-signature wrappers, plus `memory` (2 pages). */
export function guestWat(abi: WasiAbi, names: string[] = Object.keys(SIGNATURES), module = 'wasi_snapshot_preview1'): string {
  const lines = ['(module'];
  for (const n of names) {
    const ps = params(n, abi).join(' ');
    const result = n === 'proc_exit' ? '' : '(result i32)';
    lines.push(`(import "${module}" "${n}" (func $${n} (param ${ps}) ${result}))`);
  }
  lines.push(`(memory (export "memory") ${abi === 'wasm64' ? 'i64 ' : ''}2)`);
  for (const n of names) {
    const ps = params(n, abi);
    const result = n === 'proc_exit' ? '' : '(result i32)';
    const body = ps.map((_, i) => `local.get ${i}`).join(' ');
    lines.push(`(func (export "${n}") (param ${ps.join(' ')}) ${result} ${body} call $${n})`);
  }
  lines.push(')');
  return lines.join('\n');
}

export const ABIS: WasiAbi[] = ['wasm32', 'wasm64'];
const modules = new Map<WasiAbi, WasmModule>();

/** Compiles the guest for both ABIs (call from `beforeAll`). */
export async function compileGuests(): Promise<void> {
  for (const abi of ABIS) if (!modules.has(abi)) modules.set(abi, WasmModule.compile(await wat(guestWat(abi))));
}

// Scratch addresses in guest memory (2 pages = 131072 bytes).
export const OUT = 0x100; // results
export const OUT2 = 0x180;
export const IOV = 0x200; // iovec arrays
export const PATH = 0x400; // path strings
export const PATH2 = 0x500;
export const BUF = 0x1000; // data buffers
export const MEM_END = 2 * 65536;
export const SENTINEL = Buffer.alloc(16, 0xee);

export const enc = (s: string): Buffer => Buffer.from(s, 'utf8');

export interface Env {
  wasi: WasiPreview1;
  vfs: Vfs;
  inst: WasmInstance;
  abi: WasiAbi;
  word: number;
  /** Calls the wrapper of `name`; returns its i32 result. */
  call(name: string, ...args: Array<number | bigint>): number;
  read(ptr: number, len: number): Buffer;
  write(ptr: number, bytes: Uint8Array | string): void;
  u32(ptr: number): number;
  u64(ptr: number): bigint;
  /** A `size_t` (u32 or u64 by ABI) as a number. */
  size(ptr: number): number;
  /** Writes iovecs `[[ptr, len], …]` at IOV in the ABI's layout; returns their count. */
  iovs(list: Array<[number, number]>): number;
  /** Writes a path at `at`; returns its byte length. */
  path(s: string | Uint8Array, at?: number): number;
}

export function setup(abi: WasiAbi, opts: WasiOptions = {}): Env {
  const vfs = opts.vfs ?? new Vfs();
  const wasi = new WasiPreview1({ ...opts, vfs });
  const mod = modules.get(abi)!;
  let inst: WasmInstance | undefined;
  inst = new WasmInstance(mod, wasiImportsFor(mod, wasi, () => inst!));
  const i = inst;
  const env: Env = {
    wasi,
    vfs,
    inst: i,
    abi,
    word: abi === 'wasm64' ? 8 : 4,
    call: (name, ...args) => i.call(name, args)[0] as number,
    read: (ptr, len) => i.memory.read(ptr, len),
    write: (ptr, bytes) => i.memory.write(ptr, typeof bytes === 'string' ? enc(bytes) : bytes),
    u32: (ptr) => i.memory.read(ptr, 4).readUInt32LE(0),
    u64: (ptr) => i.memory.read(ptr, 8).readBigUInt64LE(0),
    size: (ptr) => (abi === 'wasm64' ? Number(i.memory.read(ptr, 8).readBigUInt64LE(0)) : i.memory.read(ptr, 4).readUInt32LE(0)),
    iovs: (list) => {
      const stride = abi === 'wasm64' ? 16 : 8;
      const b = Buffer.alloc(list.length * stride);
      list.forEach(([p, l], k) => {
        if (abi === 'wasm64') {
          b.writeBigUInt64LE(BigInt(p), k * 16);
          b.writeBigUInt64LE(BigInt(l), k * 16 + 8);
        } else {
          b.writeUInt32LE(p, k * 8);
          b.writeUInt32LE(l, k * 8 + 4);
        }
      });
      i.memory.write(IOV, b);
      return list.length;
    },
    path: (s, at = PATH) => {
      const b = typeof s === 'string' ? enc(s) : s;
      i.memory.write(at, b);
      return b.length;
    },
  };
  return env;
}

/** Opens `path` under the root preopen (fd 3); returns the new fd (asserting success). */
export function open(e: Env, path: string, oflags = 0, rights = RIGHTS_FILE, fdflags = 0): number {
  const n = e.path(path);
  expect(e.call('path_open', 3, 0, PATH, n, oflags, rights, 0n, fdflags, OUT)).toBe(Errno.SUCCESS);
  return e.u32(OUT);
}

/** Writes `text` through fd with one iovec; returns the errno. */
export function writeFd(e: Env, fd: number, text: string): number {
  e.write(BUF, text);
  const n = e.iovs([[BUF, Buffer.byteLength(text)]]);
  return e.call('fd_write', fd, IOV, n, OUT2);
}

/** Reads up to `len` bytes from fd with one iovec; returns the text. */
export function readFd(e: Env, fd: number, len: number): string {
  const n = e.iovs([[BUF, len]]);
  expect(e.call('fd_read', fd, IOV, n, OUT2)).toBe(Errno.SUCCESS);
  return e.read(BUF, e.size(OUT2)).toString('utf8');
}

export function filestat(dev: bigint, ino: bigint, type: number, nlink: bigint, size: bigint, atim: bigint, mtim: bigint, ctim: bigint): Buffer {
  const b = Buffer.alloc(64);
  b.writeBigUInt64LE(dev, 0);
  b.writeBigUInt64LE(ino, 8);
  b.writeUInt8(type, 16);
  b.writeBigUInt64LE(nlink, 24);
  b.writeBigUInt64LE(size, 32);
  b.writeBigUInt64LE(atim, 40);
  b.writeBigUInt64LE(mtim, 48);
  b.writeBigUInt64LE(ctim, 56);
  return b;
}

export function dirent(next: bigint, ino: bigint, name: string, type: number): Buffer {
  const nb = enc(name);
  const b = Buffer.alloc(24 + nb.length);
  b.writeBigUInt64LE(next, 0);
  b.writeBigUInt64LE(ino, 8);
  b.writeUInt32LE(nb.length, 16);
  b.writeUInt8(type, 20);
  nb.copy(b, 24);
  return b;
}
