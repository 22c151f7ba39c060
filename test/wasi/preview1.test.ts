/**
 * WASI preview1 conformance, function by function, for both ABIs. The guest is a WAT module that
 * imports every preview1 function and re-exports a thin wrapper with the same signature, so each
 * test drives one import with chosen arguments and checks the errno and the exact bytes in memory.
 */
import { createHash } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { WasmError, WasmInstance, WasmModule, WasmTrap } from '../../src/index';
import {
  Errno,
  Fdflags,
  Filetype,
  Oflags,
  Rights,
  RIGHTS_DIRECTORY,
  RIGHTS_FILE,
  RIGHTS_STDIO,
  Vfs,
  WasiExit,
  WasiPreview1,
  exitCodeOf,
  wasiImportsFor,
  type WasiAbi,
  type WasiOptions,
} from '../../src/wasi';
import { wat } from '../helpers/wat';

/**
 * Parameters of each preview1 function; `P` is pointer-sized (i32 or i64 by ABI). Written from the
 * witx, independently of the implementation.
 */
const SIGNATURES: Record<string, string> = {
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

function params(name: string, abi: WasiAbi): string[] {
  const p = SIGNATURES[name]!;
  return p === '' ? [] : p.split(' ').map((t) => (t === 'P' ? (abi === 'wasm64' ? 'i64' : 'i32') : t));
}

/** A guest importing `names` from `module` and exporting same-signature wrappers, plus `memory` (2 pages). */
function guestWat(abi: WasiAbi, names: string[] = Object.keys(SIGNATURES), module = 'wasi_snapshot_preview1'): string {
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

const ABIS: WasiAbi[] = ['wasm32', 'wasm64'];
const modules = new Map<WasiAbi, WasmModule>();

beforeAll(async () => {
  for (const abi of ABIS) modules.set(abi, WasmModule.compile(await wat(guestWat(abi))));
});

// Scratch addresses in guest memory (2 pages = 131072 bytes).
const OUT = 0x100; // results
const OUT2 = 0x180;
const IOV = 0x200; // iovec arrays
const PATH = 0x400; // path strings
const PATH2 = 0x500;
const BUF = 0x1000; // data buffers
const MEM_END = 2 * 65536;
const SENTINEL = Buffer.alloc(16, 0xee);

const enc = (s: string): Buffer => Buffer.from(s, 'utf8');

interface Env {
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

function setup(abi: WasiAbi, opts: WasiOptions = {}): Env {
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
function open(e: Env, path: string, oflags = 0, rights = RIGHTS_FILE, fdflags = 0): number {
  const n = e.path(path);
  expect(e.call('path_open', 3, 0, PATH, n, oflags, rights, 0n, fdflags, OUT)).toBe(Errno.SUCCESS);
  return e.u32(OUT);
}

/** Writes `text` through fd with one iovec; returns the errno. */
function writeFd(e: Env, fd: number, text: string): number {
  e.write(BUF, text);
  const n = e.iovs([[BUF, Buffer.byteLength(text)]]);
  return e.call('fd_write', fd, IOV, n, OUT2);
}

/** Reads up to `len` bytes from fd with one iovec; returns the text. */
function readFd(e: Env, fd: number, len: number): string {
  const n = e.iovs([[BUF, len]]);
  expect(e.call('fd_read', fd, IOV, n, OUT2)).toBe(Errno.SUCCESS);
  return e.read(BUF, e.size(OUT2)).toString('utf8');
}

function filestat(dev: bigint, ino: bigint, type: number, nlink: bigint, size: bigint, atim: bigint, mtim: bigint, ctim: bigint): Buffer {
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

function dirent(next: bigint, ino: bigint, name: string, type: number): Buffer {
  const nb = enc(name);
  const b = Buffer.alloc(24 + nb.length);
  b.writeBigUInt64LE(next, 0);
  b.writeBigUInt64LE(ino, 8);
  b.writeUInt32LE(nb.length, 16);
  b.writeUInt8(type, 20);
  nb.copy(b, 24);
  return b;
}

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

describe.each(ABIS)('preview1 on %s', (abi) => {
  describe('args and environment', () => {
    it('args_sizes_get and args_get write the count, the buffer size, the pointers and NUL-terminated strings', () => {
      const e = setup(abi, { args: ['prog', 'a b'] });
      expect(e.call('args_sizes_get', OUT, OUT2)).toBe(Errno.SUCCESS);
      expect(e.size(OUT)).toBe(2);
      expect(e.size(OUT2)).toBe(9);
      expect(e.call('args_get', OUT, BUF)).toBe(Errno.SUCCESS);
      expect([e.size(OUT), e.size(OUT + e.word)]).toEqual([BUF, BUF + 5]);
      expect(e.read(BUF, 9)).toEqual(enc('prog\0a b\0'));
    });

    it('environ_get writes KEY=VALUE strings in sorted key order', () => {
      const e = setup(abi, { env: { B: '2', A: 'é' } });
      expect(e.call('environ_sizes_get', OUT, OUT2)).toBe(Errno.SUCCESS);
      expect([e.size(OUT), e.size(OUT2)]).toEqual([2, 9]);
      expect(e.call('environ_get', OUT, BUF)).toBe(Errno.SUCCESS);
      expect([e.size(OUT), e.size(OUT + e.word)]).toEqual([BUF, BUF + 5]);
      expect(e.read(BUF, 9)).toEqual(enc('A=é\0B=2\0'));
    });

    it('empty args and env report zero sizes', () => {
      const e = setup(abi);
      e.write(OUT, SENTINEL);
      expect(e.call('args_sizes_get', OUT, OUT + 8)).toBe(Errno.SUCCESS);
      expect([e.size(OUT), e.size(OUT + 8)]).toEqual([0, 0]);
      expect(e.call('environ_sizes_get', OUT, OUT + 8)).toBe(Errno.SUCCESS);
      expect([e.size(OUT), e.size(OUT + 8)]).toEqual([0, 0]);
    });

    it('args_get with a buffer past the end of memory gives EFAULT and writes nothing', () => {
      const e = setup(abi, { args: ['prog'] });
      e.write(OUT, SENTINEL);
      expect(e.call('args_get', OUT, MEM_END - 2)).toBe(Errno.EFAULT);
      expect(e.read(OUT, 16)).toEqual(SENTINEL);
    });
  });

  describe('clocks', () => {
    const START = 1_700_000_000_000_000_000n;

    it('the deterministic clock starts at startTime and advances by clockStep per read', () => {
      const e = setup(abi, { startTime: START, clockStep: 5n });
      expect(e.call('clock_time_get', 0, 0n, OUT)).toBe(Errno.SUCCESS);
      expect(e.u64(OUT)).toBe(START);
      expect(e.call('clock_time_get', 0, 1000n, OUT)).toBe(Errno.SUCCESS);
      expect(e.u64(OUT)).toBe(START + 5n);
      expect(e.call('clock_time_get', 1, 0n, OUT)).toBe(Errno.SUCCESS);
      expect(e.u64(OUT)).toBe(10n); // monotonic: elapsed time only
      expect(e.wasi.counters.elapsedNs).toBe(15n);
    });

    it('two runs with the same options read the same times', () => {
      const times = [0, 1].map(() => {
        const e = setup(abi, { startTime: START });
        e.call('clock_time_get', 0, 0n, OUT);
        e.call('clock_time_get', 0, 0n, OUT + 8);
        return e.read(OUT, 16);
      });
      expect(times[0]).toEqual(times[1]);
    });

    it('clockStep 0n freezes time, and clock_res_get reports the step (at least 1 ns)', () => {
      const e = setup(abi, { startTime: 42n, clockStep: 0n });
      e.call('clock_time_get', 0, 0n, OUT);
      e.call('clock_time_get', 0, 0n, OUT + 8);
      expect([e.u64(OUT), e.u64(OUT + 8)]).toEqual([42n, 42n]);
      expect(e.call('clock_res_get', 0, OUT)).toBe(Errno.SUCCESS);
      expect(e.u64(OUT)).toBe(1n);
      const f = setup(abi, { clockStep: 250n });
      expect(f.call('clock_res_get', 1, OUT)).toBe(Errno.SUCCESS);
      expect(f.u64(OUT)).toBe(250n);
    });

    it('an unknown clock id gives EINVAL and writes nothing', () => {
      const e = setup(abi);
      e.write(OUT, SENTINEL);
      expect(e.call('clock_time_get', 4, 0n, OUT)).toBe(Errno.EINVAL);
      expect(e.call('clock_res_get', 99, OUT)).toBe(Errno.EINVAL);
      expect(e.read(OUT, 16)).toEqual(SENTINEL);
    });

    it('counters.elapsedNs resumes the deterministic clock', () => {
      const e = setup(abi, { startTime: START, counters: { elapsedNs: 7n } });
      e.call('clock_time_get', 0, 0n, OUT);
      expect(e.u64(OUT)).toBe(START + 7n);
    });

    it("clock 'wall' reads the host's realtime clock", () => {
      const e = setup(abi, { clock: 'wall' });
      const before = BigInt(Date.now()) * 1_000_000n;
      expect(e.call('clock_time_get', 0, 0n, OUT)).toBe(Errno.SUCCESS);
      expect(e.u64(OUT) >= before - 1_000_000_000n).toBe(true);
      expect(e.call('clock_time_get', 1, 0n, OUT)).toBe(Errno.SUCCESS);
      expect(e.u64(OUT) > 0n).toBe(true);
    });

    it('a clock result pointer past the end of memory gives EFAULT', () => {
      const e = setup(abi);
      expect(e.call('clock_time_get', 0, 0n, MEM_END - 4)).toBe(Errno.EFAULT);
      expect(e.call('clock_res_get', 0, MEM_END)).toBe(Errno.EFAULT);
    });
  });

  describe('random_get', () => {
    it('is a SHA-256 counter-mode stream keyed by the seed', () => {
      const e = setup(abi, { seed: 'process-1' });
      expect(e.call('random_get', BUF, 40)).toBe(Errno.SUCCESS);
      const key = createHash('sha256').update('hb-runtimes/wasi/random/v1\0').update('process-1').digest();
      const block = (i: number) => createHash('sha256').update(key).update(Buffer.from([i, 0, 0, 0, 0, 0, 0, 0])).digest();
      expect(e.read(BUF, 40)).toEqual(Buffer.concat([block(0), block(1)]).subarray(0, 40));
    });

    it('gives the same bytes for the same seed and different bytes for another seed', () => {
      const draw = (seed: string) => {
        const e = setup(abi, { seed });
        e.call('random_get', BUF, 64);
        return e.read(BUF, 64);
      };
      expect(draw('a')).toEqual(draw('a'));
      expect(draw('a')).not.toEqual(draw('b'));
    });

    it('continues the stream across calls, and counters.randomBytes resumes it', () => {
      const whole = setup(abi, { seed: 7n });
      whole.call('random_get', BUF, 64);
      const parts = setup(abi, { seed: 7n });
      parts.call('random_get', BUF, 20);
      parts.call('random_get', BUF + 20, 44);
      expect(parts.read(BUF, 64)).toEqual(whole.read(BUF, 64));
      expect(parts.wasi.counters.randomBytes).toBe(64);
      const resumed = setup(abi, { seed: 7n, counters: { randomBytes: 20 } });
      resumed.call('random_get', BUF, 44);
      expect(resumed.read(BUF, 44)).toEqual(whole.read(BUF + 20, 44));
    });

    it("random 'os' gives different bytes in two runs", () => {
      const draw = () => {
        const e = setup(abi, { random: 'os' });
        expect(e.call('random_get', BUF, 32)).toBe(Errno.SUCCESS);
        return e.read(BUF, 32);
      };
      expect(draw()).not.toEqual(draw());
    });

    it('a buffer reaching past the end of memory gives EFAULT; length 0 succeeds', () => {
      const e = setup(abi);
      expect(e.call('random_get', MEM_END - 8, 9)).toBe(Errno.EFAULT);
      expect(e.wasi.counters.randomBytes).toBe(0);
      expect(e.call('random_get', BUF, 0)).toBe(Errno.SUCCESS);
    });
  });

  describe('fd_write', () => {
    it('writes every iovec to stdout in order and stores the total in nwritten', () => {
      const e = setup(abi);
      e.write(BUF, 'Hello, World!\n');
      e.write(BUF + 100, 'Howdy!\n');
      const n = e.iovs([
        [BUF, 14],
        [BUF + 100, 7],
      ]);
      expect(e.call('fd_write', 1, IOV, n, OUT)).toBe(Errno.SUCCESS);
      expect(e.size(OUT)).toBe(21);
      expect(Buffer.from(e.wasi.stdout)).toEqual(enc('Hello, World!\nHowdy!\n'));
      expect(e.vfs.toMessage()['dev/stdout']).toEqual(new Uint8Array(enc('Hello, World!\nHowdy!\n')));
    });

    it('gathers iovecs in order whether they are adjacent, far apart, repeated or out of order', () => {
      const e = setup(abi);
      e.write(BUF, 'abcdef');
      e.write(BUF + 1000, 'XY');
      const n = e.iovs([
        [BUF + 3, 3],
        [BUF, 3],
        [BUF, 3],
        [BUF + 3, 0],
        [BUF + 4, 2],
        [BUF + 1000, 2],
      ]);
      expect(e.call('fd_write', 1, IOV, n, OUT)).toBe(Errno.SUCCESS);
      expect(e.size(OUT)).toBe(13);
      expect(Buffer.from(e.wasi.stdout).toString()).toBe('defabcabcefXY');
    });

    it('appends successive writes and keeps stderr separate', () => {
      const e = setup(abi);
      expect(writeFd(e, 1, 'a')).toBe(Errno.SUCCESS);
      expect(writeFd(e, 2, 'err')).toBe(Errno.SUCCESS);
      expect(writeFd(e, 1, 'b')).toBe(Errno.SUCCESS);
      expect(Buffer.from(e.wasi.stdout).toString()).toBe('ab');
      expect(Buffer.from(e.wasi.stderr).toString()).toBe('err');
    });

    it('zero iovecs and empty iovecs write nothing and report 0', () => {
      const e = setup(abi);
      e.write(OUT, SENTINEL);
      expect(e.call('fd_write', 1, IOV, 0, OUT)).toBe(Errno.SUCCESS);
      expect(e.size(OUT)).toBe(0);
      const n = e.iovs([[BUF, 0]]);
      expect(e.call('fd_write', 1, IOV, n, OUT)).toBe(Errno.SUCCESS);
      expect(e.size(OUT)).toBe(0);
      expect(e.wasi.stdout).toHaveLength(0);
    });

    it('gives EBADF for a closed fd, for stdin and for a directory', () => {
      const e = setup(abi);
      expect(writeFd(e, 9, 'x')).toBe(Errno.EBADF);
      expect(writeFd(e, 0, 'x')).toBe(Errno.EBADF);
      expect(writeFd(e, 3, 'x')).toBe(Errno.EBADF);
      expect(Buffer.from(e.vfs.readFile('/dev/stdin')).toString()).toBe('');
    });

    it('an iovec buffer outside memory gives EFAULT, writes nothing and leaves nwritten alone', () => {
      const e = setup(abi);
      e.write(OUT, SENTINEL);
      const n = e.iovs([
        [BUF, 4],
        [MEM_END - 2, 4],
      ]);
      expect(e.call('fd_write', 1, IOV, n, OUT)).toBe(Errno.EFAULT);
      expect(e.wasi.stdout).toHaveLength(0);
      expect(e.read(OUT, 16)).toEqual(SENTINEL);
    });

    it('an iovec array or nwritten pointer outside memory gives EFAULT and writes nothing', () => {
      const e = setup(abi);
      e.iovs([[BUF, 4]]);
      expect(e.call('fd_write', 1, MEM_END - 4, 1, OUT)).toBe(Errno.EFAULT);
      expect(e.call('fd_write', 1, IOV, 1, MEM_END - 2)).toBe(Errno.EFAULT);
      expect(e.call('fd_write', 1, IOV, 100_000, OUT)).toBe(Errno.EFAULT);
      expect(e.wasi.stdout).toHaveLength(0);
    });

    it('a pointer with the top bit set is an address, not a negative number', () => {
      const e = setup(abi);
      e.iovs([[BUF, 4]]);
      const high = abi === 'wasm64' ? 0x8000_0000_0000_0000n : 0x8000_0000 | 0; // i32 arrives signed
      expect(e.call('fd_write', 1, IOV, 1, high)).toBe(Errno.EFAULT);
      expect(e.wasi.stdout).toHaveLength(0);
    });
  });

  describe('files through path_open, fd_read and fd_write', () => {
    it('a file placed in the VFS is readable by the guest', () => {
      const e = setup(abi, { vfs: Vfs.fromMessage({ 'data/x.txt': 'hello world' }) });
      const fd = open(e, 'data/x.txt', 0, Rights.FD_READ);
      expect(fd).toBe(4);
      const n = e.iovs([
        [BUF, 5],
        [BUF + 100, 100],
      ]);
      expect(e.call('fd_read', fd, IOV, n, OUT)).toBe(Errno.SUCCESS);
      expect(e.size(OUT)).toBe(11);
      expect(e.read(BUF, 5).toString()).toBe('hello');
      expect(e.read(BUF + 100, 6).toString()).toBe(' world');
      expect(e.call('fd_read', fd, IOV, n, OUT)).toBe(Errno.SUCCESS);
      expect(e.size(OUT)).toBe(0); // end of file
    });

    it('a file written by the guest is visible in toMessage()', () => {
      const e = setup(abi);
      e.path('out');
      expect(e.call('path_create_directory', 3, PATH, 3)).toBe(Errno.SUCCESS);
      const fd = open(e, 'out/new.txt', Oflags.CREAT | Oflags.TRUNC, Rights.FD_WRITE);
      expect(writeFd(e, fd, 'data')).toBe(Errno.SUCCESS);
      expect(e.size(OUT2)).toBe(4);
      const m = e.vfs.toMessage();
      expect(Buffer.from(m['out/new.txt'] as Uint8Array).toString()).toBe('data');
      expect(Object.keys(m)).toEqual(['dev/stderr', 'dev/stdin', 'dev/stdout', 'out/new.txt']);
    });

    it('fd_read on stdin consumes the stdin option', () => {
      const e = setup(abi, { stdin: 'abc' });
      expect(readFd(e, 0, 2)).toBe('ab');
      expect(readFd(e, 0, 2)).toBe('c');
      expect(readFd(e, 0, 2)).toBe('');
    });

    it('fd_read gives EBADF without the read right or on stdout, and EISDIR on a directory', () => {
      const e = setup(abi, { vfs: Vfs.fromMessage({ 'x.txt': 'x' }) });
      const fd = open(e, 'x.txt', 0, Rights.FD_WRITE);
      const n = e.iovs([[BUF, 4]]);
      expect(e.call('fd_read', fd, IOV, n, OUT)).toBe(Errno.EBADF);
      expect(e.call('fd_read', 1, IOV, n, OUT)).toBe(Errno.EBADF);
      expect(e.call('fd_read', 3, IOV, n, OUT)).toBe(Errno.EISDIR);
    });

    it('writes overwrite at the offset and the append flag always writes at the end', () => {
      const e = setup(abi, { vfs: Vfs.fromMessage({ 'f.txt': 'abcdef' }) });
      const fd = open(e, 'f.txt', 0, Rights.FD_WRITE | Rights.FD_SEEK);
      expect(writeFd(e, fd, 'XY')).toBe(Errno.SUCCESS);
      expect(e.vfs.readText('f.txt')).toBe('XYcdef');
      const ap = open(e, 'f.txt', 0, Rights.FD_WRITE | Rights.FD_SEEK, Fdflags.APPEND);
      expect(e.call('fd_seek', ap, 0n, 0, OUT)).toBe(Errno.SUCCESS);
      expect(writeFd(e, ap, 'Z')).toBe(Errno.SUCCESS);
      expect(e.vfs.readText('f.txt')).toBe('XYcdefZ');
      expect(e.call('fd_tell', ap, OUT)).toBe(Errno.SUCCESS);
      expect(e.u64(OUT)).toBe(7n);
    });

    it('a write past the VFS file size limit gives EFBIG', () => {
      const e = setup(abi, { vfs: new Vfs({ maxFileSize: 4 }) });
      const fd = open(e, 'f', Oflags.CREAT, Rights.FD_WRITE);
      expect(writeFd(e, fd, 'abcd')).toBe(Errno.SUCCESS);
      expect(writeFd(e, fd, 'e')).toBe(Errno.EFBIG);
      expect(e.vfs.readText('f')).toBe('abcd');
    });
  });

  describe('fd_seek, fd_tell, fd_pread, fd_pwrite', () => {
    it('fd_seek moves relative to the start, the current offset and the end', () => {
      const e = setup(abi, { vfs: Vfs.fromMessage({ 'f.txt': 'abcdef' }) });
      const fd = open(e, 'f.txt', 0, Rights.FD_READ | Rights.FD_WRITE | Rights.FD_SEEK | Rights.FD_TELL);
      expect(e.call('fd_seek', fd, 2n, 0, OUT)).toBe(Errno.SUCCESS);
      expect(e.u64(OUT)).toBe(2n);
      expect(readFd(e, fd, 2)).toBe('cd');
      expect(e.call('fd_tell', fd, OUT)).toBe(Errno.SUCCESS);
      expect(e.u64(OUT)).toBe(4n);
      expect(e.call('fd_seek', fd, -1n, 1, OUT)).toBe(Errno.SUCCESS);
      expect(e.u64(OUT)).toBe(3n);
      expect(e.call('fd_seek', fd, -2n, 2, OUT)).toBe(Errno.SUCCESS);
      expect(e.u64(OUT)).toBe(4n);
      expect(readFd(e, fd, 10)).toBe('ef');
    });

    it('fd_seek to a negative offset or with an unknown whence gives EINVAL and keeps the offset', () => {
      const e = setup(abi, { vfs: Vfs.fromMessage({ 'f.txt': 'abcdef' }) });
      const fd = open(e, 'f.txt', 0, Rights.FD_READ | Rights.FD_SEEK);
      e.call('fd_seek', fd, 3n, 0, OUT);
      expect(e.call('fd_seek', fd, -4n, 1, OUT)).toBe(Errno.EINVAL);
      expect(e.call('fd_seek', fd, 0n, 3, OUT)).toBe(Errno.EINVAL);
      expect(e.call('fd_tell', fd, OUT)).toBe(Errno.SUCCESS);
      expect(e.u64(OUT)).toBe(3n);
    });

    it('a write after seeking past the end zero-fills the gap', () => {
      const e = setup(abi, { vfs: Vfs.fromMessage({ 'f.txt': 'ab' }) });
      const fd = open(e, 'f.txt', 0, Rights.FD_WRITE | Rights.FD_SEEK);
      expect(e.call('fd_seek', fd, 4n, 0, OUT)).toBe(Errno.SUCCESS);
      expect(writeFd(e, fd, 'Z')).toBe(Errno.SUCCESS);
      expect(Buffer.from(e.vfs.readFile('f.txt'))).toEqual(Buffer.from('ab\0\0Z', 'latin1'));
    });

    it('stdio streams are not seekable (ESPIPE) and closed fds give EBADF', () => {
      const e = setup(abi);
      expect(e.call('fd_seek', 1, 0n, 0, OUT)).toBe(Errno.ESPIPE);
      expect(e.call('fd_tell', 0, OUT)).toBe(Errno.ESPIPE);
      expect(e.call('fd_seek', 9, 0n, 0, OUT)).toBe(Errno.EBADF);
      expect(e.call('fd_tell', 9, OUT)).toBe(Errno.EBADF);
    });

    it('fd_pread and fd_pwrite use the given offset and leave the fd offset alone', () => {
      const e = setup(abi, { vfs: Vfs.fromMessage({ 'f.txt': 'abcdef' }) });
      const fd = open(e, 'f.txt', 0, Rights.FD_READ | Rights.FD_WRITE | Rights.FD_SEEK | Rights.FD_TELL);
      let n = e.iovs([[BUF, 10]]);
      expect(e.call('fd_pread', fd, IOV, n, 3n, OUT)).toBe(Errno.SUCCESS);
      expect(e.size(OUT)).toBe(3);
      expect(e.read(BUF, 3).toString()).toBe('def');
      e.write(BUF, 'XY');
      n = e.iovs([[BUF, 2]]);
      expect(e.call('fd_pwrite', fd, IOV, n, 1n, OUT)).toBe(Errno.SUCCESS);
      expect(e.size(OUT)).toBe(2);
      expect(e.vfs.readText('f.txt')).toBe('aXYdef');
      expect(e.call('fd_pread', fd, IOV, n, 100n, OUT)).toBe(Errno.SUCCESS);
      expect(e.size(OUT)).toBe(0);
      expect(e.call('fd_tell', fd, OUT)).toBe(Errno.SUCCESS);
      expect(e.u64(OUT)).toBe(0n);
      expect(e.call('fd_pwrite', 1, IOV, n, 0n, OUT)).toBe(Errno.ESPIPE);
      expect(e.call('fd_pread', 3, IOV, n, 0n, OUT)).toBe(Errno.EISDIR);
    });
  });

  describe('path_open', () => {
    const vfs = () => Vfs.fromMessage({ 'data/x.txt': 'hello', 'data/sub/': '' });

    it('gives ENOENT for a missing file without CREAT and EEXIST with CREAT|EXCL on an existing one', () => {
      const e = setup(abi, { vfs: vfs() });
      const n = e.path('data/nope.txt');
      expect(e.call('path_open', 3, 0, PATH, n, 0, RIGHTS_FILE, 0n, 0, OUT)).toBe(Errno.ENOENT);
      const m = e.path('data/x.txt');
      expect(e.call('path_open', 3, 0, PATH, m, Oflags.CREAT | Oflags.EXCL, RIGHTS_FILE, 0n, 0, OUT)).toBe(Errno.EEXIST);
      const p = e.path('nodir/x.txt');
      expect(e.call('path_open', 3, 0, PATH, p, Oflags.CREAT, RIGHTS_FILE, 0n, 0, OUT)).toBe(Errno.ENOENT);
    });

    it('gives ENOTDIR for O_DIRECTORY or a trailing slash on a file, and for a file as the dir fd', () => {
      const e = setup(abi, { vfs: vfs() });
      let n = e.path('data/x.txt');
      expect(e.call('path_open', 3, 0, PATH, n, Oflags.DIRECTORY, 0n, 0n, 0, OUT)).toBe(Errno.ENOTDIR);
      n = e.path('data/x.txt/');
      expect(e.call('path_open', 3, 0, PATH, n, 0, RIGHTS_FILE, 0n, 0, OUT)).toBe(Errno.ENOTDIR);
      n = e.path('data/x.txt/y');
      expect(e.call('path_open', 3, 0, PATH, n, 0, RIGHTS_FILE, 0n, 0, OUT)).toBe(Errno.ENOTDIR);
      n = e.path('x');
      expect(e.call('path_open', 1, 0, PATH, n, 0, RIGHTS_FILE, 0n, 0, OUT)).toBe(Errno.ENOTDIR);
      expect(e.call('path_open', 9, 0, PATH, n, 0, RIGHTS_FILE, 0n, 0, OUT)).toBe(Errno.EBADF);
    });

    it('refuses to leave the directory: absolute paths and escaping .. give ENOTCAPABLE', () => {
      const e = setup(abi, { vfs: vfs() });
      for (const p of ['/data/x.txt', '..', '../data/x.txt', 'data/../../x']) {
        const n = e.path(p);
        expect(e.call('path_open', 3, 0, PATH, n, 0, RIGHTS_FILE, 0n, 0, OUT)).toBe(Errno.ENOTCAPABLE);
      }
    });

    it('resolves . and .. inside the directory', () => {
      const e = setup(abi, { vfs: vfs() });
      for (const p of ['data/./x.txt', 'data/sub/../x.txt', './data//x.txt']) {
        const fd = open(e, p, 0, Rights.FD_READ);
        expect(readFd(e, fd, 10)).toBe('hello');
      }
    });

    it('opens directories, but not for writing (EISDIR), and rejects CREAT|DIRECTORY (EINVAL)', () => {
      const e = setup(abi, { vfs: vfs() });
      const fd = open(e, 'data', Oflags.DIRECTORY, Rights.FD_READDIR);
      expect(e.call('fd_fdstat_get', fd, OUT)).toBe(Errno.SUCCESS);
      expect(e.read(OUT, 1)[0]).toBe(Filetype.DIRECTORY);
      const n = e.path('data');
      expect(e.call('path_open', 3, 0, PATH, n, 0, Rights.FD_WRITE, 0n, 0, OUT)).toBe(Errno.EISDIR);
      expect(e.call('path_open', 3, 0, PATH, n, Oflags.CREAT | Oflags.DIRECTORY, 0n, 0n, 0, OUT)).toBe(Errno.EINVAL);
      expect(e.call('path_open', 3, 0, PATH, n, 0x10, 0n, 0n, 0, OUT)).toBe(Errno.EINVAL);
    });

    it('TRUNC empties an existing file', () => {
      const e = setup(abi, { vfs: vfs() });
      open(e, 'data/x.txt', Oflags.TRUNC, Rights.FD_WRITE);
      expect(e.vfs.readFile('data/x.txt')).toHaveLength(0);
    });

    it('bad path bytes: NUL gives EINVAL, invalid UTF-8 EILSEQ, out of memory EFAULT, empty ENOENT', () => {
      const e = setup(abi, { vfs: vfs() });
      let n = e.path(Buffer.from('data\0x', 'latin1'));
      expect(e.call('path_open', 3, 0, PATH, n, Oflags.CREAT, RIGHTS_FILE, 0n, 0, OUT)).toBe(Errno.EINVAL);
      n = e.path(Buffer.from([0x66, 0xff]));
      expect(e.call('path_open', 3, 0, PATH, n, Oflags.CREAT, RIGHTS_FILE, 0n, 0, OUT)).toBe(Errno.EILSEQ);
      expect(e.call('path_open', 3, 0, MEM_END - 2, 4, Oflags.CREAT, RIGHTS_FILE, 0n, 0, OUT)).toBe(Errno.EFAULT);
      expect(e.call('path_open', 3, 0, PATH, 0, Oflags.CREAT, RIGHTS_FILE, 0n, 0, OUT)).toBe(Errno.ENOENT);
      expect(Object.keys(e.vfs.toMessage())).toEqual(['data/sub/', 'data/x.txt', 'dev/stderr', 'dev/stdin', 'dev/stdout']);
    });

    it('an out-of-memory result pointer gives EFAULT without creating the file', () => {
      const e = setup(abi, { vfs: vfs() });
      const n = e.path('new.txt');
      expect(e.call('path_open', 3, 0, PATH, n, Oflags.CREAT, RIGHTS_FILE, 0n, 0, MEM_END - 2)).toBe(Errno.EFAULT);
      expect(e.vfs.exists('new.txt')).toBe(false);
    });

    it('hands out the lowest free fd', () => {
      const e = setup(abi, { vfs: vfs() });
      expect(open(e, 'data/x.txt', 0, Rights.FD_READ)).toBe(4);
      expect(open(e, 'data/x.txt', 0, Rights.FD_READ)).toBe(5);
      expect(e.call('fd_close', 4)).toBe(Errno.SUCCESS);
      expect(open(e, 'data/x.txt', 0, Rights.FD_READ)).toBe(4);
    });
  });

  describe('fd_readdir', () => {
    const tree = () => Vfs.fromMessage({ 'd/b.txt': '12', 'd/a/': '' });

    it('lists ., .. and the entries in name order as dirent records', () => {
      const e = setup(abi, { vfs: tree() });
      const fd = open(e, 'd', Oflags.DIRECTORY, Rights.FD_READDIR);
      expect(e.call('fd_readdir', fd, BUF, 1024, 0n, OUT)).toBe(Errno.SUCCESS);
      const ino = (p: string) => e.vfs.stat(p).ino;
      const expected = Buffer.concat([
        dirent(1n, ino('/d'), '.', Filetype.DIRECTORY),
        dirent(2n, ino('/'), '..', Filetype.DIRECTORY),
        dirent(3n, ino('/d/a'), 'a', Filetype.DIRECTORY),
        dirent(4n, ino('/d/b.txt'), 'b.txt', Filetype.REGULAR_FILE),
      ]);
      expect(e.size(OUT)).toBe(105);
      expect(e.read(BUF, 105)).toEqual(expected);
    });

    it('fills a small buffer completely, truncating the last record, and resumes from a cookie', () => {
      const e = setup(abi, { vfs: tree() });
      const fd = open(e, 'd', Oflags.DIRECTORY, Rights.FD_READDIR);
      e.write(BUF, Buffer.alloc(64, 0xee));
      expect(e.call('fd_readdir', fd, BUF, 30, 0n, OUT)).toBe(Errno.SUCCESS);
      expect(e.size(OUT)).toBe(30);
      const ino = (p: string) => e.vfs.stat(p).ino;
      const first = Buffer.concat([dirent(1n, ino('/d'), '.', 3), dirent(2n, ino('/'), '..', 3)]);
      expect(e.read(BUF, 31)).toEqual(Buffer.concat([first.subarray(0, 30), Buffer.from([0xee])]));
      expect(e.call('fd_readdir', fd, BUF, 1024, 3n, OUT)).toBe(Errno.SUCCESS);
      expect(e.size(OUT)).toBe(29);
      expect(e.read(BUF, 29)).toEqual(dirent(4n, ino('/d/b.txt'), 'b.txt', 4));
      expect(e.call('fd_readdir', fd, BUF, 1024, 10n, OUT)).toBe(Errno.SUCCESS);
      expect(e.size(OUT)).toBe(0);
    });

    it('gives ENOTDIR on a file and EBADF on a closed fd', () => {
      const e = setup(abi, { vfs: tree() });
      const fd = open(e, 'd/b.txt', 0, Rights.FD_READ);
      expect(e.call('fd_readdir', fd, BUF, 100, 0n, OUT)).toBe(Errno.ENOTDIR);
      expect(e.call('fd_readdir', 9, BUF, 100, 0n, OUT)).toBe(Errno.EBADF);
    });
  });

  describe('directories, rename and unlink', () => {
    const tree = () => Vfs.fromMessage({ 'a/f.txt': 'F', 'a/g.txt': 'G', 'b/': '', 'c/sub/h.txt': 'H' });

    it('path_create_directory creates, and reports EEXIST, ENOENT and ENOTDIR', () => {
      const e = setup(abi, { vfs: tree() });
      let n = e.path('a/new');
      expect(e.call('path_create_directory', 3, PATH, n)).toBe(Errno.SUCCESS);
      expect(e.vfs.stat('a/new').kind).toBe('dir');
      expect(e.call('path_create_directory', 3, PATH, n)).toBe(Errno.EEXIST);
      n = e.path('a/f.txt');
      expect(e.call('path_create_directory', 3, PATH, n)).toBe(Errno.EEXIST);
      n = e.path('zz/new');
      expect(e.call('path_create_directory', 3, PATH, n)).toBe(Errno.ENOENT);
      n = e.path('a/f.txt/new');
      expect(e.call('path_create_directory', 3, PATH, n)).toBe(Errno.ENOTDIR);
      expect(e.vfs.toMessage()['a/new/']).toBe('');
    });

    it('path_remove_directory removes empty directories only', () => {
      const e = setup(abi, { vfs: tree() });
      let n = e.path('a');
      expect(e.call('path_remove_directory', 3, PATH, n)).toBe(Errno.ENOTEMPTY);
      n = e.path('a/f.txt');
      expect(e.call('path_remove_directory', 3, PATH, n)).toBe(Errno.ENOTDIR);
      n = e.path('nope');
      expect(e.call('path_remove_directory', 3, PATH, n)).toBe(Errno.ENOENT);
      n = e.path('.');
      expect(e.call('path_remove_directory', 3, PATH, n)).toBe(Errno.EINVAL);
      n = e.path('b');
      expect(e.call('path_remove_directory', 3, PATH, n)).toBe(Errno.SUCCESS);
      expect(e.vfs.exists('b')).toBe(false);
    });

    it('path_unlink_file removes files and reports EISDIR and ENOENT', () => {
      const e = setup(abi, { vfs: tree() });
      let n = e.path('a/f.txt');
      expect(e.call('path_unlink_file', 3, PATH, n)).toBe(Errno.SUCCESS);
      expect(e.vfs.readdir('a')).toEqual(['g.txt']);
      expect(e.call('path_unlink_file', 3, PATH, n)).toBe(Errno.ENOENT);
      n = e.path('b');
      expect(e.call('path_unlink_file', 3, PATH, n)).toBe(Errno.EISDIR);
    });

    it('an open file survives unlinking', () => {
      const e = setup(abi, { vfs: tree() });
      const fd = open(e, 'a/f.txt', 0, Rights.FD_READ);
      const n = e.path('a/f.txt');
      expect(e.call('path_unlink_file', 3, PATH, n)).toBe(Errno.SUCCESS);
      expect(readFd(e, fd, 10)).toBe('F');
    });

    it('path_rename moves files and directories and replaces an existing file', () => {
      const e = setup(abi, { vfs: tree() });
      const rename = (from: string, to: string) => {
        const n = e.path(from);
        const m = e.path(to, PATH2);
        return e.call('path_rename', 3, PATH, n, 3, PATH2, m);
      };
      expect(rename('a/f.txt', 'b/f2.txt')).toBe(Errno.SUCCESS);
      expect(rename('a/g.txt', 'b/f2.txt')).toBe(Errno.SUCCESS);
      expect(rename('c', 'b/c')).toBe(Errno.SUCCESS);
      expect(e.vfs.toMessage()).toEqual({
        'a/': '',
        'b/c/sub/h.txt': new Uint8Array(enc('H')),
        'b/f2.txt': new Uint8Array(enc('G')),
        'dev/stderr': new Uint8Array(),
        'dev/stdin': new Uint8Array(),
        'dev/stdout': new Uint8Array(),
      });
    });

    it('path_rename reports ENOENT, EISDIR, ENOTDIR, ENOTEMPTY and EINVAL like POSIX rename', () => {
      const e = setup(abi, { vfs: tree() });
      const rename = (from: string, to: string) => {
        const n = e.path(from);
        const m = e.path(to, PATH2);
        return e.call('path_rename', 3, PATH, n, 3, PATH2, m);
      };
      expect(rename('nope', 'x')).toBe(Errno.ENOENT);
      expect(rename('a/f.txt', 'b')).toBe(Errno.EISDIR);
      expect(rename('b', 'a/f.txt')).toBe(Errno.ENOTDIR);
      expect(rename('b', 'c')).toBe(Errno.ENOTEMPTY);
      expect(rename('c', 'c/sub/c2')).toBe(Errno.EINVAL);
      expect(rename('a/f.txt', 'zz/f.txt')).toBe(Errno.ENOENT);
      expect(rename('a/f.txt', 'a/f.txt')).toBe(Errno.SUCCESS);
      expect(rename('b', 'a/b')).toBe(Errno.SUCCESS); // an empty directory moves
    });
  });

  describe('stat calls', () => {
    const START = 1_000_000_000n;

    it('path_filestat_get writes the 64-byte filestat of a file and of a directory', () => {
      const e = setup(abi, { vfs: Vfs.fromMessage({ 'data/x.txt': 'hello world' }), startTime: START });
      const n = e.path('data/x.txt');
      expect(e.call('path_filestat_get', 3, 0, PATH, n, OUT)).toBe(Errno.SUCCESS);
      const ino = e.vfs.stat('data/x.txt').ino;
      expect(e.read(OUT, 64)).toEqual(filestat(0n, ino, Filetype.REGULAR_FILE, 1n, 11n, 0n, 0n, 0n));
      const m = e.path('data');
      expect(e.call('path_filestat_get', 3, 0, PATH, m, OUT)).toBe(Errno.SUCCESS);
      expect(e.read(OUT, 64)).toEqual(filestat(0n, e.vfs.stat('data').ino, Filetype.DIRECTORY, 1n, 0n, 0n, 0n, 0n));
      const k = e.path('data/nope');
      expect(e.call('path_filestat_get', 3, 0, PATH, k, OUT)).toBe(Errno.ENOENT);
    });

    it('a file written by the guest carries the deterministic clock time', () => {
      const e = setup(abi, { startTime: START });
      const fd = open(e, 'new.txt', Oflags.CREAT, Rights.FD_WRITE);
      e.call('clock_time_get', 0, 0n, OUT2); // advances the clock by 1 ms
      writeFd(e, fd, 'abc');
      expect(e.call('fd_filestat_get', fd, OUT)).toBe(Errno.SUCCESS);
      const ino = e.vfs.stat('new.txt').ino;
      expect(e.read(OUT, 64)).toEqual(filestat(0n, ino, Filetype.REGULAR_FILE, 1n, 3n, START, START + 1_000_000n, START + 1_000_000n));
    });

    it('fd_filestat_get reports stdio as character devices', () => {
      const e = setup(abi);
      expect(e.call('fd_filestat_get', 1, OUT)).toBe(Errno.SUCCESS);
      expect(e.read(OUT + 16, 1)[0]).toBe(Filetype.CHARACTER_DEVICE);
      expect(e.call('fd_filestat_get', 9, OUT)).toBe(Errno.EBADF);
      expect(e.call('fd_filestat_get', 1, MEM_END - 8)).toBe(Errno.EFAULT);
    });

    it('fd_filestat_set_size grows with zeros and truncates', () => {
      const e = setup(abi, { vfs: Vfs.fromMessage({ 'f': 'abc' }) });
      const fd = open(e, 'f', 0, Rights.FD_WRITE | Rights.FD_READ);
      expect(e.call('fd_filestat_set_size', fd, 5n)).toBe(Errno.SUCCESS);
      expect(Buffer.from(e.vfs.readFile('f'))).toEqual(Buffer.from('abc\0\0', 'latin1'));
      expect(e.call('fd_filestat_set_size', fd, 1n)).toBe(Errno.SUCCESS);
      expect(e.call('fd_filestat_set_size', fd, 3n)).toBe(Errno.SUCCESS);
      expect(Buffer.from(e.vfs.readFile('f'))).toEqual(Buffer.from('a\0\0', 'latin1'));
      expect(e.call('fd_filestat_set_size', 1, 0n)).toBe(Errno.EINVAL);
      const ro = open(e, 'f', 0, Rights.FD_READ);
      expect(e.call('fd_filestat_set_size', ro, 0n)).toBe(Errno.EBADF);
    });

    it('fd_filestat_set_times and path_filestat_set_times set explicit times or now', () => {
      const e = setup(abi, { vfs: Vfs.fromMessage({ 'f': 'abc' }), startTime: START, clockStep: 0n });
      const fd = open(e, 'f', 0, Rights.FD_READ);
      expect(e.call('fd_filestat_set_times', fd, 11n, 22n, 1 | 4)).toBe(Errno.SUCCESS);
      expect([e.vfs.stat('f').atim, e.vfs.stat('f').mtim]).toEqual([11n, 22n]);
      const n = e.path('f');
      expect(e.call('path_filestat_set_times', 3, 0, PATH, n, 0n, 0n, 8)).toBe(Errno.SUCCESS);
      expect([e.vfs.stat('f').atim, e.vfs.stat('f').mtim]).toEqual([11n, START]);
      expect(e.call('fd_filestat_set_times', fd, 0n, 0n, 1 | 2)).toBe(Errno.EINVAL);
      expect(e.call('path_filestat_set_times', 3, 0, PATH, n, 0n, 0n, 4 | 8)).toBe(Errno.EINVAL);
      expect(e.call('fd_filestat_set_times', fd, 0n, 0n, 16)).toBe(Errno.EINVAL);
    });
  });

  describe('descriptor calls', () => {
    it('fd_fdstat_get writes type, flags and rights of stdio, a preopen and a file', () => {
      const e = setup(abi, { vfs: Vfs.fromMessage({ 'f': 'abc' }) });
      const fdstat = (type: number, flags: number, base: bigint, inheriting: bigint) => {
        const b = Buffer.alloc(24);
        b.writeUInt8(type, 0);
        b.writeUInt16LE(flags, 2);
        b.writeBigUInt64LE(base, 8);
        b.writeBigUInt64LE(inheriting, 16);
        return b;
      };
      expect(e.call('fd_fdstat_get', 0, OUT)).toBe(Errno.SUCCESS);
      expect(e.read(OUT, 24)).toEqual(fdstat(Filetype.CHARACTER_DEVICE, 0, RIGHTS_STDIO & ~Rights.FD_WRITE, 0n));
      expect(e.call('fd_fdstat_get', 1, OUT)).toBe(Errno.SUCCESS);
      expect(e.read(OUT, 24)).toEqual(fdstat(Filetype.CHARACTER_DEVICE, Fdflags.APPEND, RIGHTS_STDIO & ~Rights.FD_READ, 0n));
      expect(e.call('fd_fdstat_get', 3, OUT)).toBe(Errno.SUCCESS);
      expect(e.read(OUT, 24)).toEqual(fdstat(Filetype.DIRECTORY, 0, RIGHTS_DIRECTORY, RIGHTS_FILE | RIGHTS_DIRECTORY));
      const fd = open(e, 'f', 0, Rights.FD_READ | Rights.PATH_OPEN, 0);
      expect(e.call('fd_fdstat_get', fd, OUT)).toBe(Errno.SUCCESS);
      expect(e.read(OUT, 24)).toEqual(fdstat(Filetype.REGULAR_FILE, 0, Rights.FD_READ, 0n));
      expect(e.call('fd_fdstat_get', 9, OUT)).toBe(Errno.EBADF);
    });

    it('fd_fdstat_set_flags stores valid flags and rejects unknown bits', () => {
      const e = setup(abi, { vfs: Vfs.fromMessage({ 'f': 'abc' }) });
      const fd = open(e, 'f', 0, Rights.FD_WRITE);
      expect(e.call('fd_fdstat_set_flags', fd, Fdflags.APPEND)).toBe(Errno.SUCCESS);
      writeFd(e, fd, 'Z');
      expect(e.vfs.readText('f')).toBe('abcZ');
      expect(e.call('fd_fdstat_get', fd, OUT)).toBe(Errno.SUCCESS);
      expect(e.read(OUT + 2, 2).readUInt16LE(0)).toBe(Fdflags.APPEND);
      expect(e.call('fd_fdstat_set_flags', fd, 0x20)).toBe(Errno.EINVAL);
    });

    it('fd_fdstat_set_rights only removes rights (ENOTCAPABLE when adding)', () => {
      const e = setup(abi, { vfs: Vfs.fromMessage({ 'f': 'abc' }) });
      const fd = open(e, 'f', 0, Rights.FD_WRITE | Rights.FD_READ);
      expect(e.call('fd_fdstat_set_rights', fd, Rights.FD_READ, 0n)).toBe(Errno.SUCCESS);
      expect(writeFd(e, fd, 'x')).toBe(Errno.EBADF);
      expect(e.call('fd_fdstat_set_rights', fd, Rights.FD_READ | Rights.FD_WRITE, 0n)).toBe(Errno.ENOTCAPABLE);
    });

    it('fd_prestat_get and fd_prestat_dir_name describe the preopened directories', () => {
      const e = setup(abi, { preopens: ['/', '/data'] });
      expect(e.call('fd_prestat_get', 3, OUT)).toBe(Errno.SUCCESS);
      const prestat = (len: number) => {
        const b = Buffer.alloc(abi === 'wasm64' ? 16 : 8);
        if (abi === 'wasm64') b.writeBigUInt64LE(BigInt(len), 8);
        else b.writeUInt32LE(len, 4);
        return b;
      };
      expect(e.read(OUT, abi === 'wasm64' ? 16 : 8)).toEqual(prestat(1));
      expect(e.call('fd_prestat_dir_name', 3, BUF, 1)).toBe(Errno.SUCCESS);
      expect(e.read(BUF, 1).toString()).toBe('/');
      expect(e.call('fd_prestat_get', 4, OUT)).toBe(Errno.SUCCESS);
      expect(e.read(OUT, abi === 'wasm64' ? 16 : 8)).toEqual(prestat(5));
      expect(e.call('fd_prestat_dir_name', 4, BUF, 5)).toBe(Errno.SUCCESS);
      expect(e.read(BUF, 5).toString()).toBe('/data');
      expect(e.call('fd_prestat_dir_name', 4, BUF, 4)).toBe(Errno.ENAMETOOLONG);
      expect(e.call('fd_prestat_get', 5, OUT)).toBe(Errno.EBADF);
      expect(e.call('fd_prestat_get', 1, OUT)).toBe(Errno.EBADF);
      expect(e.vfs.stat('/data').kind).toBe('dir');
    });

    it('a directory opened by path_open is not a preopen', () => {
      const e = setup(abi, { vfs: Vfs.fromMessage({ 'd/': '' }) });
      const fd = open(e, 'd', Oflags.DIRECTORY, 0n);
      expect(e.call('fd_prestat_get', fd, OUT)).toBe(Errno.EBADF);
    });

    it('fd_close closes once; fd_renumber moves an open fd over another', () => {
      const e = setup(abi, { vfs: Vfs.fromMessage({ 'a': 'A', 'b': 'B' }) });
      const a = open(e, 'a', 0, Rights.FD_READ);
      const b = open(e, 'b', 0, Rights.FD_READ);
      expect(e.call('fd_renumber', a, 9)).toBe(Errno.EBADF);
      expect(e.call('fd_renumber', a, b)).toBe(Errno.SUCCESS);
      expect(readFd(e, b, 4)).toBe('A');
      expect(e.call('fd_close', a)).toBe(Errno.EBADF);
      expect(e.call('fd_close', b)).toBe(Errno.SUCCESS);
      expect(e.call('fd_close', b)).toBe(Errno.EBADF);
      expect(e.call('fd_renumber', 1, 1)).toBe(Errno.SUCCESS);
    });

    it('fd_advise, fd_allocate, fd_datasync and fd_sync', () => {
      const e = setup(abi, { vfs: Vfs.fromMessage({ 'f': 'abc' }) });
      const fd = open(e, 'f', 0, Rights.FD_WRITE);
      expect(e.call('fd_advise', fd, 0n, 10n, 1)).toBe(Errno.SUCCESS);
      expect(e.call('fd_advise', fd, 0n, 10n, 6)).toBe(Errno.EINVAL);
      expect(e.call('fd_advise', 1, 0n, 10n, 0)).toBe(Errno.ESPIPE);
      expect(e.call('fd_allocate', fd, 2n, 4n)).toBe(Errno.SUCCESS);
      expect(Buffer.from(e.vfs.readFile('f'))).toEqual(Buffer.from('abc\0\0\0', 'latin1'));
      expect(e.call('fd_allocate', fd, 0n, 2n)).toBe(Errno.SUCCESS);
      expect(e.vfs.readFile('f')).toHaveLength(6);
      expect(e.call('fd_allocate', fd, 0n, 0n)).toBe(Errno.EINVAL);
      expect(e.call('fd_datasync', fd)).toBe(Errno.SUCCESS);
      expect(e.call('fd_sync', 3)).toBe(Errno.SUCCESS);
      expect(e.call('fd_sync', 9)).toBe(Errno.EBADF);
    });
  });

  describe('poll_oneoff', () => {
    const SUB = 0x800;
    const subscription = (userdata: bigint, type: number, fields: (b: Buffer) => void): Buffer => {
      const b = Buffer.alloc(48);
      b.writeBigUInt64LE(userdata, 0);
      b.writeUInt8(type, 8);
      fields(b);
      return b;
    };
    const clockSub = (userdata: bigint, id: number, timeout: bigint, flags = 0) =>
      subscription(userdata, 0, (b) => {
        b.writeUInt32LE(id, 16);
        b.writeBigUInt64LE(timeout, 24);
        b.writeUInt16LE(flags, 40);
      });
    const fdSub = (userdata: bigint, type: number, fd: number) => subscription(userdata, type, (b) => b.writeUInt32LE(fd, 16));
    const event = (userdata: bigint, error: number, type: number, nbytes = 0n) => {
      const b = Buffer.alloc(32);
      b.writeBigUInt64LE(userdata, 0);
      b.writeUInt16LE(error, 8);
      b.writeUInt8(type, 10);
      b.writeBigUInt64LE(nbytes, 16);
      return b;
    };

    it('a relative clock subscription fires and advances the deterministic clock by its timeout', () => {
      const e = setup(abi);
      e.write(SUB, clockSub(42n, 1, 1_000_000_000n));
      expect(e.call('poll_oneoff', SUB, BUF, 1, OUT)).toBe(Errno.SUCCESS);
      expect(e.size(OUT)).toBe(1);
      expect(e.read(BUF, 32)).toEqual(event(42n, 0, 0));
      e.call('clock_time_get', 1, 0n, OUT);
      expect(e.u64(OUT)).toBe(1_000_000_000n);
    });

    it('an absolute realtime deadline advances the clock to the deadline; the earliest of two fires', () => {
      const e = setup(abi, { startTime: 5_000n });
      e.write(SUB, Buffer.concat([clockSub(1n, 0, 9_000n, 1), clockSub(2n, 0, 10_000n)]));
      expect(e.call('poll_oneoff', SUB, BUF, 2, OUT)).toBe(Errno.SUCCESS);
      expect(e.size(OUT)).toBe(1);
      expect(e.read(BUF, 32)).toEqual(event(1n, 0, 0));
      e.call('clock_time_get', 0, 0n, OUT);
      expect(e.u64(OUT)).toBe(9_000n);
    });

    it('a ready fd subscription returns at once without sleeping', () => {
      const e = setup(abi, { stdin: 'abc' });
      e.write(SUB, Buffer.concat([fdSub(7n, 1, 0), clockSub(8n, 1, 1_000_000n), fdSub(9n, 2, 1)]));
      expect(e.call('poll_oneoff', SUB, BUF, 3, OUT)).toBe(Errno.SUCCESS);
      expect(e.size(OUT)).toBe(2);
      expect(e.read(BUF, 64)).toEqual(Buffer.concat([event(7n, 0, 1, 3n), event(9n, 0, 2)]));
      e.call('clock_time_get', 1, 0n, OUT);
      expect(e.u64(OUT)).toBe(0n);
    });

    it('reports EBADF inside the event for a bad fd, EINVAL for no subscriptions or an unknown type', () => {
      const e = setup(abi);
      e.write(SUB, fdSub(5n, 1, 9));
      expect(e.call('poll_oneoff', SUB, BUF, 1, OUT)).toBe(Errno.SUCCESS);
      expect(e.read(BUF, 32)).toEqual(event(5n, Errno.EBADF, 1));
      expect(e.call('poll_oneoff', SUB, BUF, 0, OUT)).toBe(Errno.EINVAL);
      e.write(SUB, fdSub(5n, 3, 0));
      expect(e.call('poll_oneoff', SUB, BUF, 1, OUT)).toBe(Errno.EINVAL);
      expect(e.call('poll_oneoff', SUB, MEM_END - 16, 1, OUT)).toBe(Errno.EFAULT);
    });
  });

  describe('process, scheduling, sockets and links', () => {
    it('proc_exit unwinds with a WasmTrap caused by WasiExit carrying the code', () => {
      const e = setup(abi);
      let err: unknown;
      try {
        e.call('proc_exit', 3);
      } catch (x) {
        err = x;
      }
      expect(err).toBeInstanceOf(WasmTrap);
      expect((err as WasmTrap).trapCode).toBe('host');
      expect((err as Error).cause).toBeInstanceOf(WasiExit);
      expect(((err as Error).cause as WasiExit).code).toBe(3);
      expect(exitCodeOf(err)).toBe(3);
      expect(e.wasi.exitCode).toBe(3);
      expect(exitCodeOf(new Error('x'))).toBeUndefined();
    });

    it('proc_raise gives ENOSYS and sched_yield succeeds', () => {
      const e = setup(abi);
      expect(e.call('proc_raise', 6)).toBe(Errno.ENOSYS);
      expect(e.call('sched_yield')).toBe(Errno.SUCCESS);
    });

    it('socket calls give ENOTSOCK on open fds and EBADF on closed ones', () => {
      const e = setup(abi);
      expect(e.call('sock_accept', 1, 0, OUT)).toBe(Errno.ENOTSOCK);
      expect(e.call('sock_recv', 0, IOV, 0, 0, OUT, OUT2)).toBe(Errno.ENOTSOCK);
      expect(e.call('sock_send', 1, IOV, 0, 0, OUT)).toBe(Errno.ENOTSOCK);
      expect(e.call('sock_shutdown', 3, 3)).toBe(Errno.ENOTSOCK);
      expect(e.call('sock_accept', 9, 0, OUT)).toBe(Errno.EBADF);
      expect(e.call('sock_recv', 9, IOV, 0, 0, OUT, OUT2)).toBe(Errno.EBADF);
      expect(e.call('sock_send', 9, IOV, 0, 0, OUT)).toBe(Errno.EBADF);
      expect(e.call('sock_shutdown', 9, 3)).toBe(Errno.EBADF);
    });

    it('links are not supported (ENOTSUP) and path_readlink finds no symbolic links', () => {
      const e = setup(abi, { vfs: Vfs.fromMessage({ 'f': 'x' }) });
      const n = e.path('f');
      const m = e.path('g', PATH2);
      expect(e.call('path_link', 3, 0, PATH, n, 3, PATH2, m)).toBe(Errno.ENOTSUP);
      expect(e.call('path_symlink', PATH, n, 3, PATH2, m)).toBe(Errno.ENOTSUP);
      expect(e.call('path_link', 9, 0, PATH, n, 3, PATH2, m)).toBe(Errno.EBADF);
      expect(e.call('path_readlink', 3, PATH, n, BUF, 100, OUT)).toBe(Errno.EINVAL);
      expect(e.call('path_readlink', 3, PATH2, m, BUF, 100, OUT)).toBe(Errno.ENOENT);
      expect(e.vfs.exists('g')).toBe(false);
    });
  });
});

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
