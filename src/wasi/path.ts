/**
 * WASI calls on paths: `path_open`, `path_create_directory`, `path_remove_directory`,
 * `path_rename`, `path_unlink_file`, `path_filestat_get`, `path_filestat_set_times`,
 * `path_readlink`, `path_link`, `path_symlink`. Paths are relative to a directory fd and never
 * climb above it; the VFS has no links.
 */
import { decodeUtf8Strict } from '../utf8';
import type { WasmValue } from '../wasm';
import { Errno, FDFLAGS_ALL, Filetype, Oflags, OFLAGS_ALL, Rights, RIGHTS_DIRECTORY, RIGHTS_FILE } from './errno';
import { filestat, setTimes } from './fd';
import { addr, fail, u32, u64, type Guest } from './guest';
import type { WasiCalls } from './signatures';
import type { CallContext, Fd } from './state';
import { checkRename, type VfsDir, type VfsNode } from './vfs';

/** Longest path a guest may pass (bytes). */
const PATH_MAX = 65536;

interface Resolved {
  /** Directory holding the last component. */
  dir: VfsDir;
  /** The last component, or null when the path ends in `.` or `..`. */
  name: string | null;
  /** What the path names, if it exists. */
  node: VfsNode | undefined;
  /** The path ended with `/`. */
  slash: boolean;
  /** The path's last component was `..` (otherwise `.` when `name` is null). */
  dotdot: boolean;
}

/** Reads a guest path: EFAULT out of memory, ENAMETOOLONG, EILSEQ (bad UTF-8), EINVAL (NUL). */
function guestPath(g: Guest, ptr: WasmValue, len: WasmValue): string {
  const p = addr(ptr);
  const n = addr(len);
  if (n > PATH_MAX) fail(Errno.ENAMETOOLONG);
  g.check(p, n);
  const raw = g.read(p, n);
  if (raw.includes(0)) fail(Errno.EINVAL);
  try {
    return decodeUtf8Strict(raw);
  } catch {
    fail(Errno.EILSEQ);
  }
}

/**
 * Resolves `path` under directory `start`. Paths are relative and may not climb above
 * `start` (absolute paths and escaping `..` give ENOTCAPABLE); intermediate components must be
 * directories (ENOENT / ENOTDIR).
 */
function resolvePath(start: VfsDir, path: string): Resolved {
  if (path === '') fail(Errno.ENOENT);
  if (path.startsWith('/')) fail(Errno.ENOTCAPABLE);
  const comps = path.split('/').filter((c) => c !== '');
  const slash = path.endsWith('/');
  const stack: VfsDir[] = [start];
  const last = comps.length - 1;
  for (let i = 0; i < last; i++) {
    const c = comps[i]!;
    if (c === '.') continue;
    if (c === '..') {
      if (stack.length === 1) fail(Errno.ENOTCAPABLE);
      stack.pop();
      continue;
    }
    const next = stack[stack.length - 1]!.get(c);
    if (!next) fail(Errno.ENOENT);
    if (next.kind !== 'dir') fail(Errno.ENOTDIR);
    stack.push(next);
  }
  const name = comps[last]!;
  if (name === '.') {
    const d = stack[stack.length - 1]!;
    return { dir: d, name: null, node: d, slash, dotdot: false };
  }
  if (name === '..') {
    if (stack.length === 1) fail(Errno.ENOTCAPABLE);
    stack.pop();
    const d = stack[stack.length - 1]!;
    return { dir: d, name: null, node: d, slash, dotdot: true };
  }
  const dir = stack[stack.length - 1]!;
  return { dir, name, node: dir.get(name), slash, dotdot: false };
}

/** An existing node named by a path (ENOENT; ENOTDIR for `file/`). */
function lookup(r: Resolved): VfsNode {
  if (!r.node) fail(Errno.ENOENT);
  if (r.slash && r.node.kind !== 'dir') fail(Errno.ENOTDIR);
  return r.node;
}

export function pathCalls({ st, guest, unstable }: CallContext): WasiCalls {
  return {
    path_create_directory: (fd, path, pathLen) => {
      const g = guest();
      const d = st.dir(fd);
      const r = resolvePath(d.node, guestPath(g, path, pathLen));
      if (r.node) return Errno.EEXIST;
      const t = st.now();
      r.dir.set(r.name!, st.vfs.newDir(r.dir, t), t);
      return Errno.SUCCESS;
    },
    path_filestat_get: (fd, _flags, path, pathLen, out) => {
      const g = guest();
      const d = st.dir(fd);
      const node = lookup(resolvePath(d.node, guestPath(g, path, pathLen)));
      filestat(g, addr(out), node, node.kind === 'dir' ? Filetype.DIRECTORY : Filetype.REGULAR_FILE, unstable);
      return Errno.SUCCESS;
    },
    path_filestat_set_times: (fd, _flags, path, pathLen, atim, mtim, flags) => {
      const g = guest();
      const d = st.dir(fd);
      const node = lookup(resolvePath(d.node, guestPath(g, path, pathLen)));
      return setTimes(st, node, atim, mtim, flags);
    },
    path_link: (oldFd, _flags, _oldPath, _oldLen, newFd) => {
      st.dir(oldFd);
      st.dir(newFd);
      return Errno.ENOTSUP;
    },
    path_open: (fd, _dirflags, path, pathLen, oflags, rightsBase, rightsInheriting, fdflags, out) => {
      const g = guest();
      const d = st.dir(fd);
      const o = u32(oflags);
      const ff = u32(fdflags);
      if (o & ~OFLAGS_ALL || ff & ~FDFLAGS_ALL) return Errno.EINVAL;
      if (o & Oflags.CREAT && o & Oflags.DIRECTORY) return Errno.EINVAL;
      const r = resolvePath(d.node, guestPath(g, path, pathLen));
      const p = addr(out);
      g.check(p, 4);
      if (!st.hasFreeFd()) return Errno.EMFILE;
      const base = u64(rightsBase) & d.inheriting;
      const inheriting = u64(rightsInheriting) & d.inheriting;
      let node = r.node;
      const t = st.now();
      if (!node) {
        if (!(o & Oflags.CREAT)) return Errno.ENOENT;
        if (r.slash) return Errno.EISDIR;
        node = st.vfs.newFile(t);
        r.dir.set(r.name!, node, t);
      } else {
        if (o & Oflags.CREAT && o & Oflags.EXCL) return Errno.EEXIST;
        if (node.kind === 'file' && (r.slash || o & Oflags.DIRECTORY)) return Errno.ENOTDIR;
        if (node.kind === 'dir' && (o & Oflags.TRUNC || base & Rights.FD_WRITE)) return Errno.EISDIR;
        if (node.kind === 'file' && o & Oflags.TRUNC) node.resize(0, t);
      }
      const entry: Fd =
        node.kind === 'dir'
          ? { kind: 'dir', node, flags: ff, base: base & RIGHTS_DIRECTORY, inheriting }
          : { kind: 'file', node, stream: false, pos: 0, flags: ff, base: base & RIGHTS_FILE, inheriting: inheriting & RIGHTS_FILE };
      g.u32(p, st.newFd(entry));
      return Errno.SUCCESS;
    },
    path_readlink: (fd, path, pathLen, _buf, _bufLen, _out) => {
      const g = guest();
      const d = st.dir(fd);
      lookup(resolvePath(d.node, guestPath(g, path, pathLen)));
      return Errno.EINVAL; // exists, and nothing in this VFS is a symbolic link
    },
    path_remove_directory: (fd, path, pathLen) => {
      const g = guest();
      const d = st.dir(fd);
      const r = resolvePath(d.node, guestPath(g, path, pathLen));
      if (r.name === null) return r.dotdot ? Errno.ENOTEMPTY : Errno.EINVAL;
      if (!r.node) return Errno.ENOENT;
      if (r.node.kind !== 'dir') return Errno.ENOTDIR;
      if (r.node.size > 0) return Errno.ENOTEMPTY;
      r.dir.delete(r.name, st.now());
      return Errno.SUCCESS;
    },
    path_rename: (fd, oldPath, oldLen, newFd, newPath, newLen) => {
      const g = guest();
      const sd = st.dir(fd);
      const dd = st.dir(newFd);
      const src = resolvePath(sd.node, guestPath(g, oldPath, oldLen));
      const dst = resolvePath(dd.node, guestPath(g, newPath, newLen));
      if (src.name === null || dst.name === null) return Errno.EBUSY;
      const node = src.node;
      if (!node) return Errno.ENOENT;
      if (node.kind === 'file' && (src.slash || dst.slash)) return Errno.ENOTDIR;
      const errno = checkRename(node, dst.dir, dst.node);
      if (errno !== Errno.SUCCESS || dst.node === node) return errno;
      const t = st.now();
      src.dir.delete(src.name, t);
      dst.dir.set(dst.name, node, t);
      return Errno.SUCCESS;
    },
    path_symlink: (_oldPath, _oldLen, fd) => {
      st.dir(fd);
      return Errno.ENOTSUP;
    },
    path_unlink_file: (fd, path, pathLen) => {
      const g = guest();
      const d = st.dir(fd);
      const r = resolvePath(d.node, guestPath(g, path, pathLen));
      if (r.name === null) return Errno.EISDIR;
      if (!r.node) return Errno.ENOENT;
      if (r.node.kind === 'dir') return Errno.EISDIR;
      if (r.slash) return Errno.ENOTDIR;
      r.dir.delete(r.name, st.now());
      return Errno.SUCCESS;
    },
  };
}
