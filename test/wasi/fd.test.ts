/** WASI preview1 calls on file descriptors (src/wasi/fd.ts), for both ABIs, through the conformance guest. */
import { beforeAll, describe, expect, it } from 'vitest';
import { Errno, Fdflags, Filetype, Oflags, Rights, RIGHTS_DIRECTORY, RIGHTS_FILE, RIGHTS_STDIO, Vfs } from '../../src/wasi';
import { ABIS, BUF, compileGuests, dirent, enc, filestat, IOV, MEM_END, OUT, OUT2, open, PATH, readFd, SENTINEL, setup, writeFd } from '../helpers/wasi-guest';

beforeAll(compileGuests);

describe.each(ABIS)('preview1 on %s', (abi) => {
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
});
