/** The emscripten-like file system of hb-runtimes/ao-loader: behaviour, errno values, clock reads, bounds. */
import { describe, expect, it } from 'vitest';
import { Clock } from '../../src/ao-loader/clock';
import { E, EmFS, FS_MAX_BYTES, FsError } from '../../src/ao-loader/fs';

const errno = (f: () => unknown): number => {
  try {
    f();
  } catch (e) {
    if (e instanceof FsError) return e.errno;
    throw e;
  }
  return 0;
};

describe('EmFS', () => {
  it('creates, writes, seeks, reads, renames and unlinks files, reading the clock where emscripten does', () => {
    const clock = new Clock(10_000);
    const fs = new EmFS(clock);
    const s = fs.open('/tmp/a.txt', 64 | 2); // O_CREAT | O_RDWR
    expect(s.fd).toBe(3);
    expect(clock.ms).toBe(10_001); // node creation
    expect(fs.write(s, Buffer.from('hello world'))).toBe(11);
    expect(clock.ms).toBe(10_002); // write
    expect(fs.llseek(s, 6, 0)).toBe(6);
    const out = new Uint8Array(10);
    expect(fs.read(s, out)).toBe(5);
    expect(Buffer.from(out.subarray(0, 5)).toString()).toBe('world');
    expect(fs.llseek(s, 0, 2)).toBe(11);
    fs.rename('/tmp/a.txt', '/tmp/b.txt');
    expect(errno(() => fs.lookup('/tmp/a.txt'))).toBe(E.NOENT);
    expect(fs.lookup('/tmp/b.txt').size).toBe(11);
    fs.close(s.fd);
    fs.unlink('/tmp/b.txt');
    expect(errno(() => fs.open('/tmp/b.txt', 0))).toBe(E.NOENT);
  });

  it('gives emscripten\'s errno values', () => {
    const fs = new EmFS(new Clock(0));
    expect(errno(() => fs.open('/nope/x', 64))).toBe(E.NOENT);
    fs.open('/tmp/f', 64 | 1);
    expect(errno(() => fs.open('/tmp/f', 64 | 128))).toBe(E.EXIST); // O_EXCL
    expect(errno(() => fs.open('/tmp/f', 65536))).toBe(E.NOTDIR); // O_DIRECTORY
    expect(errno(() => fs.open('/tmp', 1))).toBe(E.ISDIR);
    expect(errno(() => fs.stream(99))).toBe(E.BADF);
    fs.mkdir('/tmp/d');
    fs.open('/tmp/d/x', 64);
    expect(errno(() => fs.rmdir('/tmp/d'))).toBe(E.NOTEMPTY);
    expect(errno(() => fs.llseek(fs.stream(1), 0, 0))).toBe(E.SPIPE); // the terminal
    expect(errno(() => fs.readlink('/tmp/f'))).toBe(E.INVAL);
  });

  it('bounds what a guest can keep in it: ENOSPC past the byte cap', () => {
    const fs = new EmFS(new Clock(0));
    const s = fs.open('/tmp/big', 64 | 1);
    const chunk = new Uint8Array(64 * 1024 * 1024);
    let written = 0;
    const e = errno(() => {
      for (;;) written += fs.write(s, chunk);
    });
    expect(e).toBe(E.NOSPC);
    expect(written).toBeLessThanOrEqual(FS_MAX_BYTES);
    expect(written).toBeGreaterThanOrEqual(FS_MAX_BYTES - 2 * chunk.length);
    fs.close(s.fd);
    fs.unlink('/tmp/big'); // and the space comes back
    const t = fs.open('/tmp/again', 64 | 1);
    expect(fs.write(t, chunk)).toBe(chunk.length);
  });
});
