/** WASI preview1 calls on paths (src/wasi/path.ts), for both ABIs, through the conformance guest. */
import { beforeAll, describe, expect, it } from 'vitest';
import { Errno, Filetype, Oflags, Rights, RIGHTS_FILE, Vfs } from '../../src/wasi';
import { ABIS, compileGuests, enc, MEM_END, OUT, open, PATH, PATH2, readFd, setup, type Env } from '../helpers/wasi-guest';

beforeAll(compileGuests);

/** path_rename under the root preopen (fd 3), paths written at PATH and PATH2; returns the errno. */
const renamer = (e: Env) => (from: string, to: string): number => e.call('path_rename', 3, PATH, e.path(from), 3, PATH2, e.path(to, PATH2));

describe.each(ABIS)('preview1 on %s', (abi) => {
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

    it('keeps a leading U+FEFF in a name, as the bytes the guest passed', () => {
      const e = setup(abi, { vfs: vfs() });
      const n = e.path('\uFEFFbom.txt');
      expect(e.call('path_open', 3, 0, PATH, n, Oflags.CREAT, RIGHTS_FILE, 0n, 0, OUT)).toBe(Errno.SUCCESS);
      expect(Object.keys(e.vfs.toMessage())).toContain('\uFEFFbom.txt');
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
      const rename = renamer(e);
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
      const rename = renamer(e);
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
});
