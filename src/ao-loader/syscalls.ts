/**
 * The file syscalls and WASI fd functions that AOS images import, over `EmFS`, written as
 * emscripten's runtime writes them: syscalls return -errno, WASI functions return errno, and
 * the results land in memory at the same places. Pointers arrive as numbers or bigints (wasm64)
 * and are read through `Runtime`.
 */
import type { WasmValue } from '../wasm';
import { E, EmFS, FsError, type Stream } from './fs';
import type { Runtime } from './runtime';

type Fn = (...a: WasmValue[]) => WasmValue | undefined | void;

const TERMIOS = { iflag: 25856, oflag: 5, cflag: 191, lflag: 35387, cc: [3, 28, 127, 21, 4, 0, 1, 0, 17, 19, 26, 0, 18, 15, 23, 22] };

function sys(f: () => number): number {
  try {
    return f();
  } catch (e) {
    if (e instanceof FsError) return -e.errno;
    throw e;
  }
}
function wasi(f: () => number): number {
  try {
    return f();
  } catch (e) {
    if (e instanceof FsError) return e.errno;
    throw e;
  }
}

export function syscalls(rt: Runtime, fs: EmFS, opts: { ioctlWrites: boolean }): Record<string, Fn> {
  const n = (v: WasmValue | undefined): number => Number(v ?? 0);
  const ptrSize = rt.wide ? 8 : 4;
  const iovs = (iov: number, cnt: number): Array<[number, number]> => {
    const out: Array<[number, number]> = [];
    const raw = rt.bytes(iov, cnt * ptrSize * 2);
    for (let i = 0; i < cnt; i++) {
      const at = i * ptrSize * 2;
      out.push(rt.wide ? [Number(raw.readBigUInt64LE(at)), Number(raw.readBigUInt64LE(at + 8))] : [raw.readUInt32LE(at), raw.readUInt32LE(at + 4)]);
    }
    return out;
  };
  const varargI = (p: number): number => rt.i32(p);
  const varargP = (p: number): number => rt.uptr(p);
  const isTty = (s: Stream): boolean => s.node.device === 'tty';

  return {
    __syscall_openat: (dirfd, path, flags, varargs) =>
      sys(() => {
        const p = fs.resolvePath(n(dirfd), rt.cstr(n(path)));
        const mode = n(varargs) ? varargI(n(varargs)) : 0;
        return fs.open(p, n(flags), mode).fd;
      }),
    __syscall_fcntl64: (fd, cmd, varargs) =>
      sys(() => {
        const s = fs.stream(n(fd));
        switch (n(cmd)) {
          case 0: {
            let arg = varargI(n(varargs));
            if (arg < 0) return -E.INVAL;
            while (fs.streams[arg]) arg++;
            return fs.dup(s.fd, arg).fd;
          }
          case 1:
          case 2:
            return 0;
          case 3:
            return s.flags;
          case 4:
            s.flags |= varargI(n(varargs));
            return 0;
          case 12:
            rt.setI16(varargP(n(varargs)), 2);
            return 0;
          case 13:
          case 14:
            return 0;
          default:
            return -E.INVAL;
        }
      }),
    __syscall_ioctl: (fd, op, varargs) =>
      sys(() => {
        const s = fs.stream(n(fd));
        const o = n(op);
        switch (o) {
          case 21509:
          case 21510:
          case 21511:
          case 21512:
          case 21506:
          case 21507:
          case 21508:
          case 21524:
          case 21515:
            return isTty(s) ? 0 : -E.NOTTY;
          case 21505: {
            if (!isTty(s)) return -E.NOTTY;
            if (opts.ioctlWrites) {
              const p = varargP(n(varargs));
              const b = Buffer.alloc(17 + 32);
              b.writeInt32LE(TERMIOS.iflag, 0);
              b.writeInt32LE(TERMIOS.oflag, 4);
              b.writeInt32LE(TERMIOS.cflag, 8);
              b.writeInt32LE(TERMIOS.lflag, 12);
              rt.write(p, b.subarray(0, 16));
              const cc = Buffer.alloc(32);
              TERMIOS.cc.forEach((v, i) => (cc[i] = v));
              rt.write(p + 17, cc);
            }
            return 0;
          }
          case 21519:
            if (!isTty(s)) return -E.NOTTY;
            rt.setI32(varargP(n(varargs)), 0);
            return 0;
          case 21520:
            return isTty(s) ? -E.INVAL : -E.NOTTY;
          case 21531:
            return -E.NOTTY;
          case 21523: {
            if (!isTty(s)) return -E.NOTTY;
            if (opts.ioctlWrites) {
              const p = varargP(n(varargs));
              rt.setI16(p, 24);
              rt.setI16(p + 2, 80);
            }
            return 0;
          }
          default:
            return -E.INVAL;
        }
      }),
    __syscall_dup3: (fd, newfd, flags) =>
      sys(() => {
        const old = fs.stream(n(fd));
        if (n(flags)) return -E.INVAL;
        if (old.fd === n(newfd)) return -E.INVAL;
        if (fs.streams[n(newfd)]) fs.close(n(newfd));
        return fs.dup(old.fd, n(newfd)).fd;
      }),
    __syscall_unlinkat: (dirfd, path, flags) =>
      sys(() => {
        const p = fs.resolvePath(n(dirfd), rt.cstr(n(path)));
        if (n(flags) === 0) fs.unlink(p);
        else if (n(flags) === 512) fs.rmdir(p);
        else return -E.INVAL;
        return 0;
      }),
    __syscall_rmdir: (path) =>
      sys(() => {
        fs.rmdir(fs.resolvePath(-100, rt.cstr(n(path))));
        return 0;
      }),
    __syscall_renameat: (olddirfd, oldpath, newdirfd, newpath) =>
      sys(() => {
        fs.rename(fs.resolvePath(n(olddirfd), rt.cstr(n(oldpath))), fs.resolvePath(n(newdirfd), rt.cstr(n(newpath))));
        return 0;
      }),
    __syscall_readlinkat: (dirfd, path, _buf, bufsize) =>
      sys(() => {
        const p = fs.resolvePath(n(dirfd), rt.cstr(n(path)));
        if (n(bufsize) <= 0) return -E.INVAL;
        fs.readlink(p);
      }),
    __syscall_lstat64: (path, buf) =>
      sys(() => {
        const node = fs.lookup(fs.resolvePath(-100, rt.cstr(n(path))));
        const b = Buffer.alloc(96);
        const size = EmFS.isDir(node) ? 4096 : EmFS.isFile(node) ? node.size : 0;
        b.writeInt32LE(node.device ? node.id : 1, 0);
        b.writeInt32LE(node.mode, 4);
        b.writeUInt32LE(1, 8);
        b.writeInt32LE(size, 24);
        b.writeInt32LE(4096, 32);
        b.writeInt32LE(Math.ceil(size / 4096), 36);
        const t = node.timestamp;
        for (const at of [40, 56, 72]) {
          b.writeUInt32LE(Math.floor(t / 1000) >>> 0, at);
          b.writeUInt32LE((t % 1000) * 1000, at + 8);
        }
        b.writeUInt32LE(node.id, 88);
        rt.write(n(buf), b);
        return 0;
      }),
    fd_write: (fd, iov, iovcnt, pnum) =>
      wasi(() => {
        const s = fs.stream(n(fd));
        let total = 0;
        for (const [p, len] of iovs(n(iov), n(iovcnt))) total += fs.write(s, rt.bytes(p, len));
        rt.setPtr(n(pnum), total);
        return 0;
      }),
    fd_read: (fd, iov, iovcnt, pnum) =>
      wasi(() => {
        const s = fs.stream(n(fd));
        let total = 0;
        for (const [p, len] of iovs(n(iov), n(iovcnt))) {
          const dst = new Uint8Array(len);
          const got = fs.read(s, dst);
          if (got) rt.write(p, dst.subarray(0, got));
          total += got;
          if (got < len) break;
        }
        rt.setPtr(n(pnum), total);
        return 0;
      }),
    fd_close: (fd) =>
      wasi(() => {
        fs.close(n(fd));
        return 0;
      }),
    ...(rt.wide
      ? {
          fd_seek: (fd, offset, whence, newOffset) =>
            wasi(() => {
              const s = fs.stream(n(fd));
              fs.llseek(s, Number(offset), n(whence));
              rt.setU64(n(newOffset), s.position);
              return 0;
            }),
        }
      : {
          fd_seek: (fd, lo, hi, whence, newOffset) =>
            wasi(() => {
              const l = n(lo);
              const h = n(hi);
              const ok = h + 0x200000 >>> 0 < 0x400001 - Number(!!l);
              if (!ok) return 61;
              const s = fs.stream(n(fd));
              fs.llseek(s, (l >>> 0) + h * 4294967296, n(whence));
              rt.setI53(n(newOffset), s.position);
              return 0;
            }),
        }),
  };
}
