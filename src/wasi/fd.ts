/**
 * WASI calls on file descriptors: `fd_*` (read, write, seek, stat, readdir, prestat, rights,
 * flags, renumber, close, ...). Stdio fds are streams (writes append, no seeking); directory
 * fds answer EBADF/EISDIR to data calls.
 */
import type { WasmValue } from '../wasm';
import { ADVICE_MAX, Errno, Fdflags, FDFLAGS_ALL, Filetype, Fstflags, FSTFLAGS_ALL, Preopentype, Rights, Whence, WHENCE_UNSTABLE } from './errno';
import { addr, fail, MAX_SAFE, MAX_SAFE_BIG, putSize, s64, u32, u64, U32_MAX, type Guest } from './guest';
import type { WasiCalls } from './signatures';
import type { CallContext, WasiState } from './state';
import type { VfsFile, VfsNode } from './vfs';

/** Largest gap between two iovec buffers still fetched with a single memory read. */
const GATHER_GAP = 256;

/** Writes a filestat (64 bytes; 56 in snapshot 0) of `node` at `ptr`. */
export function filestat(g: Guest, ptr: number, node: VfsNode, filetype: number, unstable: boolean): void {
  const size = unstable ? 56 : 64;
  g.check(ptr, size);
  const b = Buffer.alloc(size);
  b.writeBigUInt64LE(node.ino, 8);
  b.writeUInt8(filetype, 16);
  const bytes = BigInt(node.kind === 'file' ? node.size : 0);
  if (unstable) {
    b.writeUInt32LE(1, 20);
    b.writeBigUInt64LE(bytes, 24);
    b.writeBigUInt64LE(node.atim, 32);
    b.writeBigUInt64LE(node.mtim, 40);
    b.writeBigUInt64LE(node.ctim, 48);
  } else {
    b.writeBigUInt64LE(1n, 24);
    b.writeBigUInt64LE(bytes, 32);
    b.writeBigUInt64LE(node.atim, 40);
    b.writeBigUInt64LE(node.mtim, 48);
    b.writeBigUInt64LE(node.ctim, 56);
  }
  g.write(ptr, b);
}

/** `fd_filestat_set_times` / `path_filestat_set_times` on a node. */
export function setTimes(st: WasiState, node: VfsNode, atim: WasmValue, mtim: WasmValue, flags: WasmValue): number {
  const f = u32(flags);
  if (f & ~FSTFLAGS_ALL) return Errno.EINVAL;
  if ((f & Fstflags.ATIM && f & Fstflags.ATIM_NOW) || (f & Fstflags.MTIM && f & Fstflags.MTIM_NOW)) return Errno.EINVAL;
  const now = st.now();
  if (f & Fstflags.ATIM) node.atim = u64(atim);
  if (f & Fstflags.ATIM_NOW) node.atim = now;
  if (f & Fstflags.MTIM) node.mtim = u64(mtim);
  if (f & Fstflags.MTIM_NOW) node.mtim = now;
  node.ctim = now;
  return Errno.SUCCESS;
}

/** EFBIG when a write of `total` bytes at `pos` would pass the VFS file size limit. */
function checkGrowth(st: WasiState, pos: number, total: number): void {
  if (pos + total > st.vfs.maxFileSize) fail(Errno.EFBIG);
}

function readInto(g: Guest, iovs: number[], node: VfsFile, pos: number): number {
  let at = pos;
  for (let i = 0; i < iovs.length && at < node.size; i += 2) {
    const chunk = node.view(at, at + iovs[i + 1]!);
    g.write(iovs[i]!, chunk);
    at += chunk.length;
  }
  return at - pos;
}

/** Total length of a write: EINVAL when it cannot be reported in a `size`. */
function totalOf(g: Guest, iovs: number[]): number {
  let total = 0;
  for (let i = 1; i < iovs.length; i += 2) total += iovs[i]!;
  if (total > (g.wide ? MAX_SAFE : U32_MAX)) fail(Errno.EINVAL);
  return total;
}

/**
 * Copies the iovec buffers out of guest memory. Each memory read is a native call, so iovecs
 * that follow each other closely (gaps up to GATHER_GAP bytes, as in `{66,14},{80,8}`) are
 * fetched with one read and sliced.
 */
function gather(g: Guest, iovs: number[]): Buffer[] {
  const chunks: Buffer[] = [];
  for (let i = 0; i < iovs.length; ) {
    const start = iovs[i]!;
    let end = start + iovs[i + 1]!;
    let j = i + 2;
    for (; j < iovs.length; j += 2) {
      const b = iovs[j]!;
      if (b < end || b - end > GATHER_GAP) break;
      end = b + iovs[j + 1]!;
    }
    if (end > start) {
      const span = g.read(start, end - start);
      for (let k = i; k < j; k += 2) {
        const len = iovs[k + 1]!;
        if (len) chunks.push(span.subarray(iovs[k]! - start, iovs[k]! - start + len));
      }
    }
    i = j;
  }
  return chunks;
}

export function fdCalls({ st, guest, unstable }: CallContext): WasiCalls {
  return {
    fd_advise: (fd, _offset, _len, advice) => {
      const e = st.fd(fd);
      if (u32(advice) > ADVICE_MAX) return Errno.EINVAL;
      if (e.kind === 'dir') return Errno.EBADF;
      if (e.stream) return Errno.ESPIPE;
      return Errno.SUCCESS;
    },
    fd_allocate: (fd, offset, len) => {
      const e = st.fd(fd);
      if (e.kind === 'dir') return Errno.EBADF;
      if (e.stream) return Errno.ESPIPE;
      if (!(e.base & Rights.FD_WRITE)) return Errno.EBADF;
      if (u64(len) === 0n) return Errno.EINVAL;
      const end = u64(offset) + u64(len);
      if (end > BigInt(st.vfs.maxFileSize)) return Errno.EFBIG;
      if (Number(end) > e.node.size) e.node.resize(Number(end), st.now());
      return Errno.SUCCESS;
    },
    fd_close: (fd) => {
      const n = u32(fd);
      if (!st.fds.delete(n)) return Errno.EBADF;
      return Errno.SUCCESS;
    },
    fd_datasync: (fd) => (st.fd(fd), Errno.SUCCESS),
    fd_sync: (fd) => (st.fd(fd), Errno.SUCCESS),
    fd_fdstat_get: (fd, out) => {
      const g = guest();
      const e = st.fd(fd);
      const p = addr(out);
      g.check(p, 24);
      const b = Buffer.alloc(24);
      b.writeUInt8(e.kind === 'dir' ? Filetype.DIRECTORY : e.stream ? Filetype.CHARACTER_DEVICE : Filetype.REGULAR_FILE, 0);
      b.writeUInt16LE(e.flags, 2);
      b.writeBigUInt64LE(e.base, 8);
      b.writeBigUInt64LE(e.inheriting, 16);
      g.write(p, b);
      return Errno.SUCCESS;
    },
    fd_fdstat_set_flags: (fd, flags) => {
      const e = st.fd(fd);
      const f = u32(flags);
      if (f & ~FDFLAGS_ALL) return Errno.EINVAL;
      e.flags = f;
      return Errno.SUCCESS;
    },
    fd_fdstat_set_rights: (fd, base, inheriting) => {
      const e = st.fd(fd);
      const b = u64(base);
      const i = u64(inheriting);
      if (b & ~e.base || i & ~e.inheriting) return Errno.ENOTCAPABLE;
      e.base = b;
      e.inheriting = i;
      return Errno.SUCCESS;
    },
    fd_filestat_get: (fd, out) => {
      const g = guest();
      const e = st.fd(fd);
      const type = e.kind === 'dir' ? Filetype.DIRECTORY : e.stream ? Filetype.CHARACTER_DEVICE : Filetype.REGULAR_FILE;
      filestat(g, addr(out), e.node, type, unstable);
      return Errno.SUCCESS;
    },
    fd_filestat_set_size: (fd, size) => {
      const e = st.fd(fd);
      if (e.kind === 'dir' || e.stream) return Errno.EINVAL;
      if (!(e.base & Rights.FD_WRITE)) return Errno.EBADF;
      const s = u64(size);
      if (s > BigInt(st.vfs.maxFileSize)) return Errno.EFBIG;
      e.node.resize(Number(s), st.now());
      return Errno.SUCCESS;
    },
    fd_filestat_set_times: (fd, atim, mtim, flags) => setTimes(st, st.fd(fd).node, atim, mtim, flags),
    fd_pread: (fd, iovsPtr, iovsLen, offset, out) => {
      const g = guest();
      const e = st.fd(fd);
      if (e.kind === 'dir') return Errno.EISDIR;
      if (e.stream) return Errno.ESPIPE;
      if (!(e.base & Rights.FD_READ)) return Errno.EBADF;
      const p = addr(out);
      g.check(p, g.word);
      const iovs = g.iovecs(addr(iovsPtr), addr(iovsLen));
      const off = u64(offset);
      const n = off >= BigInt(e.node.size) ? 0 : readInto(g, iovs, e.node, Number(off));
      g.size(p, n);
      return Errno.SUCCESS;
    },
    fd_pwrite: (fd, iovsPtr, iovsLen, offset, out) => {
      const g = guest();
      const e = st.fd(fd);
      if (e.kind === 'dir') return Errno.EBADF;
      if (e.stream) return Errno.ESPIPE;
      if (!(e.base & Rights.FD_WRITE)) return Errno.EBADF;
      const p = addr(out);
      g.check(p, g.word);
      const iovs = g.iovecs(addr(iovsPtr), addr(iovsLen));
      const total = totalOf(g, iovs);
      const off = u64(offset);
      if (off > BigInt(st.vfs.maxFileSize)) return Errno.EFBIG;
      checkGrowth(st, Number(off), total);
      e.node.write(Number(off), gather(g, iovs), st.now());
      g.size(p, total);
      return Errno.SUCCESS;
    },
    fd_read: (fd, iovsPtr, iovsLen, out) => {
      const g = guest();
      const e = st.fd(fd);
      if (e.kind === 'dir') return Errno.EISDIR;
      if (!(e.base & Rights.FD_READ)) return Errno.EBADF;
      const p = addr(out);
      g.check(p, g.word);
      const iovs = g.iovecs(addr(iovsPtr), addr(iovsLen));
      const n = readInto(g, iovs, e.node, e.pos);
      e.pos += n;
      g.size(p, n);
      return Errno.SUCCESS;
    },
    fd_write: (fd, iovsPtr, iovsLen, out) => {
      const g = guest();
      const e = st.fd(fd);
      if (e.kind === 'dir' || !(e.base & Rights.FD_WRITE)) return Errno.EBADF;
      const p = addr(out);
      g.check(p, g.word);
      const iovs = g.iovecs(addr(iovsPtr), addr(iovsLen));
      const total = totalOf(g, iovs);
      const pos = e.stream || e.flags & Fdflags.APPEND ? e.node.size : e.pos;
      checkGrowth(st, pos, total);
      e.node.write(pos, gather(g, iovs), st.now());
      if (!e.stream) e.pos = pos + total;
      g.size(p, total);
      return Errno.SUCCESS;
    },
    fd_prestat_get: (fd, out) => {
      const g = guest();
      const e = st.fds.get(u32(fd));
      if (!e || e.kind !== 'dir' || !e.preopen) return Errno.EBADF;
      const p = addr(out);
      const b = Buffer.alloc(g.wide ? 16 : 8);
      g.check(p, b.length);
      b.writeUInt8(Preopentype.DIR, 0);
      putSize(b, g.wide ? 8 : 4, e.preopen.length, g.wide);
      g.write(p, b);
      return Errno.SUCCESS;
    },
    fd_prestat_dir_name: (fd, path, pathLen) => {
      const g = guest();
      const e = st.fds.get(u32(fd));
      if (!e || e.kind !== 'dir' || !e.preopen) return Errno.EBADF;
      const p = addr(path);
      if (addr(pathLen) < e.preopen.length) return Errno.ENAMETOOLONG;
      g.check(p, e.preopen.length);
      g.write(p, e.preopen);
      return Errno.SUCCESS;
    },
    fd_readdir: (fd, buf, bufLen, cookie, out) => {
      const g = guest();
      const e = st.dir(fd);
      const bp = addr(buf);
      const blen = addr(bufLen);
      const p = addr(out);
      g.check(p, g.word);
      g.check(bp, blen);
      const dir = e.node;
      const names = dir.names();
      const count = names.length + 2;
      const used = [] as Buffer[];
      let total = 0;
      for (let i = u64(cookie); i < BigInt(count) && total < blen; i++) {
        const idx = Number(i);
        let name: string;
        let node: VfsNode;
        if (idx === 0) [name, node] = ['.', dir];
        else if (idx === 1) [name, node] = ['..', dir.parent ?? dir];
        else [name, node] = [names[idx - 2]!, dir.get(names[idx - 2]!)!];
        const nb = Buffer.from(name, 'utf8');
        const ent = Buffer.alloc(24 + nb.length);
        ent.writeBigUInt64LE(BigInt(idx + 1), 0);
        ent.writeBigUInt64LE(node.ino, 8);
        ent.writeUInt32LE(nb.length, 16);
        ent.writeUInt8(node.kind === 'dir' ? Filetype.DIRECTORY : Filetype.REGULAR_FILE, 20);
        nb.copy(ent, 24);
        const take = Math.min(ent.length, blen - total);
        used.push(take === ent.length ? ent : ent.subarray(0, take));
        total += take;
      }
      g.write(bp, Buffer.concat(used, total));
      g.size(p, total);
      return Errno.SUCCESS;
    },
    fd_renumber: (from, to) => {
      const f = u32(from);
      const t = u32(to);
      const e = st.fds.get(f);
      if (!e || !st.fds.has(t)) return Errno.EBADF;
      if (f === t) return Errno.SUCCESS;
      st.fds.set(t, e);
      st.fds.delete(f);
      return Errno.SUCCESS;
    },
    fd_seek: (fd, offset, whence, out) => {
      const g = guest();
      const e = st.fd(fd);
      if (e.kind === 'dir') return Errno.EBADF;
      if (e.stream) return Errno.ESPIPE;
      const w = u32(whence);
      const W = unstable ? WHENCE_UNSTABLE : Whence;
      let base: bigint;
      if (w === W.SET) base = 0n;
      else if (w === W.CUR) base = BigInt(e.pos);
      else if (w === W.END) base = BigInt(e.node.size);
      else return Errno.EINVAL;
      const p = addr(out);
      g.check(p, 8);
      const next = base + s64(offset);
      if (next < 0n || next > MAX_SAFE_BIG) return Errno.EINVAL;
      e.pos = Number(next);
      g.u64(p, next);
      return Errno.SUCCESS;
    },
    fd_tell: (fd, out) => {
      const g = guest();
      const e = st.fd(fd);
      if (e.kind === 'dir') return Errno.EBADF;
      if (e.stream) return Errno.ESPIPE;
      const p = addr(out);
      g.check(p, 8);
      g.u64(p, BigInt(e.pos));
      return Errno.SUCCESS;
    },
  };
}
