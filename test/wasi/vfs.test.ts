/** The in-memory VFS: message round trips and the host path API. */
import { describe, expect, it } from 'vitest';
import { Errno, Vfs, VfsError } from '../../src/wasi';

const bytes = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'utf8'));

function vfsError(fn: () => unknown): VfsError {
  try {
    fn();
  } catch (e) {
    if (e instanceof VfsError) return e;
    throw e;
  }
  throw new Error('expected a VfsError');
}

describe('Vfs.fromMessage() / toMessage()', () => {
  it('loads strings as UTF-8 and bytes as-is, and writes back sorted path → bytes', () => {
    const vfs = Vfs.fromMessage({ 'dev/stdout': '', 'data/x.txt': 'é', 'data/bin': new Uint8Array([0, 255]) });
    const m = vfs.toMessage();
    expect(Object.keys(m)).toEqual(['data/bin', 'data/x.txt', 'dev/stdout']);
    expect(m).toEqual({
      'data/bin': new Uint8Array([0, 255]),
      'data/x.txt': new Uint8Array([0xc3, 0xa9]),
      'dev/stdout': new Uint8Array(),
    });
  });

  it('round-trips: fromMessage(toMessage()) gives an equal message', () => {
    const m = Vfs.fromMessage({ 'a/b/c.txt': 'c', 'a/d.txt': 'd', 'e/': '', 'f.txt': '' }).toMessage();
    expect(Vfs.fromMessage(m).toMessage()).toEqual(m);
    expect(m['e/']).toBe('');
  });

  it("accepts HyperBEAM's nested shape and writes it with {nested: true}", () => {
    const nested = Vfs.fromMessage({ dev: { stdin: '', stdout: 'out' }, tmp: {} });
    expect(nested.toMessage()).toEqual({ 'dev/stdin': new Uint8Array(), 'dev/stdout': bytes('out'), 'tmp/': '' });
    expect(nested.toMessage({ nested: true })).toEqual({ dev: { stdin: new Uint8Array(), stdout: bytes('out') }, tmp: {} });
  });

  it('ignores a leading slash and implies parent directories', () => {
    const vfs = Vfs.fromMessage({ '/a/b/c.txt': 'c' });
    expect(vfs.stat('/a/b').kind).toBe('dir');
    expect(vfs.readText('a/b/c.txt')).toBe('c');
  });

  it('copies the content it is given (later changes to the input do not leak in)', () => {
    const input = new Uint8Array([1, 2, 3]);
    const vfs = Vfs.fromMessage({ f: input });
    input[0] = 9;
    expect(vfs.readFile('f')).toEqual(new Uint8Array([1, 2, 3]));
    const out = vfs.toMessage().f as Uint8Array;
    out[0] = 7;
    expect(vfs.readFile('f')).toEqual(new Uint8Array([1, 2, 3]));
  });

  it('rejects empty, . and .. segments and NUL with EINVAL', () => {
    for (const key of ['a//b', '../x', 'a/./b', 'a/..', 'nul\0']) {
      const e = vfsError(() => Vfs.fromMessage({ [key]: 'x' }));
      expect(e.errno).toBe(Errno.EINVAL);
      expect(e.code).toBe('ERR_VFS');
    }
  });

  it('rejects a path that is both a file and a directory', () => {
    expect(vfsError(() => Vfs.fromMessage({ a: 'x', 'a/b': 'y' })).errno).toBe(Errno.ENOTDIR);
    expect(vfsError(() => Vfs.fromMessage({ 'a/b': 'y', a: 'x' })).errno).toBe(Errno.EISDIR);
    expect(vfsError(() => Vfs.fromMessage({ 'a/': 'not empty' })).errno).toBe(Errno.EINVAL);
  });

  it('rejects values that are neither content nor directories', () => {
    expect(() => Vfs.fromMessage({ a: 5 } as never)).toThrow("'a' must be a string, a Uint8Array or an object");
    expect(() => Vfs.fromMessage([] as never)).toThrow('expected a plain object');
    expect(() => new Vfs({ maxSize: 1 } as never)).toThrow("unknown option 'maxSize'");
  });

  it('keeps a file named __proto__ as an ordinary key', () => {
    const vfs = new Vfs();
    vfs.writeFile('__proto__', 'p');
    vfs.writeFile('d/__proto__', 'q');
    const m = vfs.toMessage();
    expect(Object.keys(m)).toEqual(['__proto__', 'd/__proto__']);
    expect(Object.getPrototypeOf(m)).toBe(Object.prototype);
    expect(Vfs.fromMessage(m).readText('__proto__')).toBe('p');
    expect(Object.keys(vfs.toMessage({ nested: true }))).toEqual(['__proto__', 'd']);
  });

  it('numbers inodes deterministically for the same message', () => {
    const m = { 'x/y': 'a', z: 'b' };
    const a = Vfs.fromMessage(m);
    const b = Vfs.fromMessage(m);
    expect([a.stat('x').ino, a.stat('x/y').ino, a.stat('z').ino]).toEqual([b.stat('x').ino, b.stat('x/y').ino, b.stat('z').ino]);
  });
});

describe('Vfs path API', () => {
  it('writeFile creates parents, readText decodes UTF-8, appendFile appends', () => {
    const vfs = new Vfs();
    vfs.writeFile('/a/b.txt', 'hé');
    vfs.appendFile('a/b.txt', '!');
    vfs.appendFile('a/new.txt', bytes('n'));
    expect(vfs.readText('a/b.txt')).toBe('hé!');
    expect(vfs.readdir('a')).toEqual(['b.txt', 'new.txt']);
    expect(vfs.stat('a/b.txt')).toMatchObject({ kind: 'file', size: 4 });
    expect(vfs.stat('a')).toMatchObject({ kind: 'dir', size: 0 });
  });

  it('writeFile with parents: false needs the directory (ENOENT)', () => {
    const vfs = new Vfs();
    const e = vfsError(() => vfs.writeFile('a/b', 'x', { parents: false }));
    expect(e.errno).toBe(Errno.ENOENT);
    expect(e.status).toBe(404);
    expect(e.message).toBe("no such file or directory: ENOENT 'a/b'");
  });

  it('readFile reports ENOENT, EISDIR and ENOTDIR', () => {
    const vfs = Vfs.fromMessage({ 'd/f': 'x' });
    expect(vfsError(() => vfs.readFile('nope')).errno).toBe(Errno.ENOENT);
    expect(vfsError(() => vfs.readFile('d')).errno).toBe(Errno.EISDIR);
    expect(vfsError(() => vfs.readFile('d/f/g')).errno).toBe(Errno.ENOTDIR);
    expect(vfs.lookup('d/f/g')).toBeUndefined();
    expect(vfs.exists('d/f')).toBe(true);
  });

  it('mkdir fails on an existing path unless recursive', () => {
    const vfs = new Vfs();
    vfs.mkdir('a');
    expect(vfsError(() => vfs.mkdir('a')).errno).toBe(Errno.EEXIST);
    vfs.mkdir('a/b/c', { recursive: true });
    vfs.mkdir('a/b/c', { recursive: true });
    expect(vfs.toMessage()).toEqual({ 'a/b/c/': '' });
  });

  it('remove deletes files and empty directories, non-empty ones only when recursive', () => {
    const vfs = Vfs.fromMessage({ 'a/b': 'x', c: 'y' });
    expect(vfsError(() => vfs.remove('a')).errno).toBe(Errno.ENOTEMPTY);
    vfs.remove('c');
    vfs.remove('a', { recursive: true });
    expect(vfs.toMessage()).toEqual({});
    expect(vfsError(() => vfs.remove('a')).errno).toBe(Errno.ENOENT);
  });

  it('rename moves a subtree and refuses to move a directory into itself', () => {
    const vfs = Vfs.fromMessage({ 'a/b/c': 'x', 'd/': '' });
    vfs.rename('a/b', 'd/b');
    expect(vfs.toMessage()).toEqual({ 'a/': '', 'd/b/c': bytes('x') });
    expect(vfsError(() => vfs.rename('d', 'd/b/d')).errno).toBe(Errno.EINVAL);
    expect(vfsError(() => vfs.rename('d/b', 'a/x/y')).errno).toBe(Errno.ENOENT);
  });

  it('maxFileSize bounds writes with EFBIG', () => {
    const vfs = new Vfs({ maxFileSize: 3 });
    vfs.writeFile('f', 'abc');
    expect(vfsError(() => vfs.appendFile('f', 'd')).errno).toBe(Errno.EFBIG);
    expect(vfsError(() => vfs.writeFile('g', 'abcd')).errno).toBe(Errno.EFBIG);
    expect(vfs.readText('f')).toBe('abc');
  });

  it('timestamps come from the clock option', () => {
    let t = 100n;
    const vfs = new Vfs({ clock: () => t });
    vfs.writeFile('f', 'x');
    t = 200n;
    vfs.appendFile('f', 'y');
    expect(vfs.stat('f')).toMatchObject({ atim: 100n, mtim: 200n, ctim: 200n });
  });
});

describe('VfsFile', () => {
  it('keeps bytes past the size zeroed when it shrinks and grows again', () => {
    const vfs = Vfs.fromMessage({ f: 'abcdef' });
    const f = vfs.lookup('f');
    if (f?.kind !== 'file') throw new Error('expected a file');
    f.resize(2, 0n);
    f.write(4, [bytes('Z')], 0n);
    expect(f.bytes()).toEqual(new Uint8Array([97, 98, 0, 0, 90]));
  });

  it('grows across many appends without losing data', () => {
    const vfs = new Vfs();
    for (let i = 0; i < 1000; i++) vfs.appendFile('log', `${i}\n`);
    const text = vfs.readText('log');
    expect(text.split('\n')).toHaveLength(1001);
    expect(text.startsWith('0\n1\n2\n')).toBe(true);
    expect(text.endsWith('998\n999\n')).toBe(true);
  });
});
