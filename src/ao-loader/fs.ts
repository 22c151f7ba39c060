/**
 * The in-memory file system that emscripten's JavaScript runtime gives AOS modules, as far as
 * their syscalls reach it: directories, regular files, the terminal on fds 0-2, /dev/null.
 * Behaviour follows emscripten's FS/MEMFS/TTY (errno values are WASI's, which emscripten uses);
 * every place where emscripten's runtime reads the clock (node creation, writes, unlink, rename)
 * reads `clock.now()` so that the guest sees the same times as under @permaweb/ao-loader.
 * Terminal output is dropped (ao-loader silences it too); terminal input is always at its end.
 */
import type { Clock } from './clock';

export const E = {
  ACCES: 2,
  BADF: 8,
  EXIST: 20,
  INVAL: 28,
  IO: 29,
  ISDIR: 31,
  NOENT: 44,
  NOTDIR: 54,
  NOTEMPTY: 55,
  NOTTY: 59,
  NXIO: 60,
  PERM: 63,
  SPIPE: 70,
  BUSY: 10,
  MFILE: 33,
  NOSPC: 51,
} as const;

/** Bounds on what a guest may keep in this file system (it lives in the Node process): ENOSPC past them. */
export const FS_MAX_BYTES = 512 * 1024 * 1024;
export const FS_MAX_NODES = 100_000;

export class FsError extends Error {
  constructor(readonly errno: number) {
    super(`errno ${errno}`);
  }
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFCHR = 0o020000;
const S_IFMT = 0o170000;

export interface FsNode {
  id: number;
  name: string;
  mode: number;
  parent: FsNode;
  timestamp: number;
  /** Directory entries, in insertion order. */
  entries?: Map<string, FsNode>;
  /** File contents (capacity may exceed size). */
  data?: Uint8Array;
  size: number;
  /** Character devices: 'tty' (fds 0-2, /dev/tty) or 'null'. */
  device?: 'tty' | 'null';
  /** A WeaveDrive file: its bytes are on Arweave, read through the drive, not here. */
  remote?: boolean;
}

export interface Stream {
  fd: number;
  node: FsNode;
  flags: number;
  position: number;
  path: string;
}

export class EmFS {
  readonly root: FsNode;
  readonly streams: (Stream | undefined)[] = [];
  #nextId = 1;
  #bytes = 0; // file capacity allocated
  #nodes = 0;

  constructor(readonly clock: Clock) {
    const root = { id: this.#nextId++, name: '/', mode: S_IFDIR | 0o777, timestamp: 0, entries: new Map(), size: 0 } as unknown as FsNode;
    root.parent = root;
    this.root = root;
    for (const d of ['tmp', 'home', 'home/web_user', 'dev', 'dev/shm', 'dev/shm/tmp', 'proc', 'proc/self', 'proc/self/fd']) this.#mk(d, S_IFDIR | 0o777);
    this.#mk('dev/null', S_IFCHR | 0o666).device = 'null';
    this.#mk('dev/tty', S_IFCHR | 0o666).device = 'tty';
    this.#mk('dev/tty1', S_IFCHR | 0o666).device = 'tty';
    for (const [fd, name, flags] of [[0, 'dev/stdin', 0], [1, 'dev/stdout', 1], [2, 'dev/stderr', 1]] as const) {
      const n = this.#mk(name, S_IFCHR | 0o666);
      n.device = 'tty';
      this.streams[fd] = { fd, node: n, flags, position: 0, path: '/' + name };
    }
  }

  /** A node made at start-up, without reading the clock. */
  #mk(path: string, mode: number): FsNode {
    const parts = path.split('/');
    const name = parts.pop()!;
    const parent = this.lookup('/' + parts.join('/'));
    const node: FsNode = { id: this.#nextId++, name, mode, parent, timestamp: 0, size: 0 };
    if ((mode & S_IFMT) === S_IFDIR) node.entries = new Map();
    parent.entries!.set(name, node);
    return node;
  }

  static isDir(n: FsNode): boolean {
    return (n.mode & S_IFMT) === S_IFDIR;
  }
  static isFile(n: FsNode): boolean {
    return (n.mode & S_IFMT) === S_IFREG;
  }

  /** Absolute normalised path of `p` relative to `/` (the cwd) or to directory fd `dirfd`. */
  resolvePath(dirfd: number, p: string, allowEmpty = false): string {
    if (p.startsWith('/')) return normalize(p);
    let dir = '/';
    if (dirfd !== -100) dir = this.stream(dirfd).path;
    if (p.length === 0) {
      if (!allowEmpty) throw new FsError(E.NOENT);
      return dir;
    }
    return normalize(dir + '/' + p);
  }

  lookup(path: string): FsNode {
    let node = this.root;
    for (const part of normalize(path).split('/')) {
      if (!part) continue;
      if (!EmFS.isDir(node)) throw new FsError(E.NOTDIR);
      if (part === '..') {
        node = node.parent;
        continue;
      }
      if (part === '.') continue;
      const next = node.entries!.get(part);
      if (!next) throw new FsError(E.NOENT);
      node = next;
    }
    return node;
  }

  #parentOf(path: string): { parent: FsNode; name: string } {
    const norm = normalize(path);
    const i = norm.lastIndexOf('/');
    const parent = this.lookup(norm.slice(0, i) || '/');
    return { parent, name: norm.slice(i + 1) };
  }

  #create(path: string, mode: number): FsNode {
    const { parent, name } = this.#parentOf(path);
    if (!name || name === '.' || name === '..') throw new FsError(E.INVAL);
    if (!EmFS.isDir(parent)) throw new FsError(E.NOTDIR);
    if (parent.entries!.has(name)) throw new FsError(E.EXIST);
    if (this.#nodes >= FS_MAX_NODES) throw new FsError(E.NOSPC);
    this.#nodes++;
    const node: FsNode = { id: this.#nextId++, name, mode, parent, timestamp: this.clock.now(), size: 0 };
    if (EmFS.isDir(node)) node.entries = new Map();
    parent.entries!.set(name, node);
    parent.timestamp = node.timestamp;
    return node;
  }

  mkdir(path: string, mode = 0o777): FsNode {
    return this.#create(path, (mode & 0o1777) | S_IFDIR);
  }

  /** `FS.createPath(parent, path)`: every missing directory on the way. */
  createPath(parent: string, path: string): void {
    let current = parent;
    for (const part of path.split('/')) {
      if (!part) continue;
      current = normalize(current + '/' + part);
      try {
        this.mkdir(current);
      } catch {
        /* exists */
      }
    }
  }

  stream(fd: number): Stream {
    const s = this.streams[fd];
    if (!s) throw new FsError(E.BADF);
    return s;
  }

  #newStream(node: FsNode, flags: number, path: string, fd?: number): Stream {
    if (fd === undefined) {
      fd = 0;
      while (this.streams[fd]) fd++;
      if (fd >= 4096) throw new FsError(E.MFILE);
    }
    const s: Stream = { fd, node, flags, position: 0, path };
    this.streams[fd] = s;
    return s;
  }

  open(path: string, flags: number, mode = 0o666): Stream {
    if (path === '') throw new FsError(E.NOENT);
    path = normalize(path);
    let node: FsNode | undefined;
    try {
      node = this.lookup(path);
    } catch {
      node = undefined;
    }
    let created = false;
    if (flags & 64) {
      if (node) {
        if (flags & 128) throw new FsError(E.EXIST);
      } else {
        node = this.#create(path, (mode & 0o7777) | S_IFREG);
        created = true;
      }
    }
    if (!node) throw new FsError(E.NOENT);
    if ((node.mode & S_IFMT) === S_IFCHR) flags &= ~512;
    if (flags & 65536 && !EmFS.isDir(node)) throw new FsError(E.NOTDIR);
    if (!created && EmFS.isDir(node) && ((flags & 3) !== 0 || flags & 512)) throw new FsError(E.ISDIR);
    if (flags & 512 && !created) this.#truncate(node, 0);
    flags &= ~(128 | 512 | 131072);
    return this.#newStream(node, flags, path);
  }

  #truncate(node: FsNode, len: number): void {
    if (EmFS.isDir(node)) throw new FsError(E.ISDIR);
    if (!EmFS.isFile(node)) throw new FsError(E.INVAL);
    node.timestamp = this.clock.now();
    if (this.#bytes - (node.data?.length ?? 0) + len > FS_MAX_BYTES) throw new FsError(E.NOSPC);
    this.#bytes += len - (node.data?.length ?? 0);
    resize(node, len);
  }

  /** Creates (or reuses) the file `path` of `size` bytes held remotely, and opens it read-only. */
  openRemote(path: string, size: number): Stream {
    let node: FsNode;
    try {
      node = this.lookup(path);
    } catch {
      node = this.#create(path, 0o100444);
    }
    node.remote = true;
    node.size = size;
    return this.#newStream(node, 0, normalize(path));
  }

  close(fd: number): void {
    this.stream(fd);
    this.streams[fd] = undefined;
  }

  dup(fd: number, to?: number): Stream {
    const s = this.stream(fd);
    return this.#newStream(s.node, s.flags, s.path, to);
  }

  read(s: Stream, dst: Uint8Array, position?: number): number {
    if ((s.flags & 2097155) === 1) throw new FsError(E.BADF);
    if (EmFS.isDir(s.node)) throw new FsError(E.ISDIR);
    if (s.node.device) return 0; // the terminal is at end of input, /dev/null is empty
    if (s.node.remote) throw new FsError(E.IO); // WeaveDrive files are read through the drive
    const pos = position ?? s.position;
    const n = Math.max(0, Math.min(dst.length, s.node.size - pos));
    if (n > 0) dst.set(s.node.data!.subarray(pos, pos + n));
    if (position === undefined) s.position += n;
    return n;
  }

  write(s: Stream, src: Uint8Array, position?: number): number {
    if ((s.flags & 2097155) === 0) throw new FsError(E.BADF);
    if (EmFS.isDir(s.node)) throw new FsError(E.ISDIR);
    if (s.node.device === 'tty') {
      if (src.length) s.node.timestamp = this.clock.now();
      return src.length;
    }
    if (s.node.device === 'null') return src.length;
    if (s.flags & 1024) s.position = s.node.size;
    const pos = position ?? s.position;
    if (!src.length) return 0;
    const node = s.node;
    node.timestamp = this.clock.now();
    if (pos + src.length > node.size) {
      const cap = node.data?.length ?? 0;
      if (cap < pos + src.length) {
        const want = Math.max(pos + src.length, Math.min(cap * 2, pos + src.length + (1 << 20)), 256);
        if (this.#bytes - cap + want > FS_MAX_BYTES) throw new FsError(E.NOSPC);
        this.#bytes += want - cap;
        const grown = new Uint8Array(want);
        if (node.data) grown.set(node.data.subarray(0, node.size));
        node.data = grown;
      }
      node.size = pos + src.length;
    }
    node.data!.set(src, pos);
    if (position === undefined) s.position = pos + src.length;
    return src.length;
  }

  llseek(s: Stream, offset: number, whence: number): number {
    if (s.node.device === 'tty') throw new FsError(E.SPIPE);
    let pos = offset;
    if (whence === 1) pos += s.position;
    else if (whence === 2) pos += EmFS.isFile(s.node) ? s.node.size : 0;
    else if (whence !== 0) throw new FsError(E.INVAL);
    if (pos < 0) throw new FsError(E.INVAL);
    s.position = pos;
    return pos;
  }

  unlink(path: string): void {
    const { parent, name } = this.#parentOf(path);
    const node = parent.entries!.get(name);
    if (!node) throw new FsError(E.NOENT);
    if (EmFS.isDir(node)) throw new FsError(E.ISDIR);
    if (this.#busy(node)) throw new FsError(E.BUSY);
    parent.entries!.delete(name);
    parent.timestamp = this.clock.now();
    this.#bytes -= node.data?.length ?? 0;
    this.#nodes--;
  }

  rmdir(path: string): void {
    const { parent, name } = this.#parentOf(path);
    const node = parent.entries!.get(name);
    if (!node) throw new FsError(E.NOENT);
    if (!EmFS.isDir(node)) throw new FsError(E.NOTDIR);
    if (node === this.root || node.id <= 12) throw new FsError(E.BUSY);
    if (node.entries!.size) throw new FsError(E.NOTEMPTY);
    parent.entries!.delete(name);
    parent.timestamp = this.clock.now();
    this.#nodes--;
  }

  rename(from: string, to: string): void {
    const a = this.#parentOf(from);
    const b = this.#parentOf(to);
    const node = a.parent.entries!.get(a.name);
    if (!node) throw new FsError(E.NOENT);
    if (!EmFS.isDir(b.parent)) throw new FsError(E.NOTDIR);
    if (node === b.parent || isAncestor(node, b.parent)) throw new FsError(E.INVAL);
    const existing = b.parent.entries!.get(b.name);
    if (existing === node) return;
    if (existing) {
      if (EmFS.isDir(node) !== EmFS.isDir(existing)) throw new FsError(EmFS.isDir(node) ? E.NOTDIR : E.ISDIR);
      if (EmFS.isDir(existing) && existing.entries!.size) throw new FsError(E.NOTEMPTY);
    }
    a.parent.entries!.delete(a.name);
    a.parent.timestamp = this.clock.now();
    node.name = b.name;
    b.parent.entries!.set(b.name, node);
    b.parent.timestamp = a.parent.timestamp;
    node.parent = b.parent;
  }

  /** `readlink`: nothing here is a link. */
  readlink(path: string): never {
    this.lookup(path);
    throw new FsError(E.INVAL);
  }

  #busy(node: FsNode): boolean {
    return this.streams.some((s) => s?.node === node && s.fd < 3);
  }
}

function resize(node: FsNode, len: number): void {
  if (len === 0) {
    node.data = undefined;
    node.size = 0;
    return;
  }
  const data = new Uint8Array(len);
  if (node.data) data.set(node.data.subarray(0, Math.min(len, node.size)));
  node.data = data;
  node.size = len;
}

function isAncestor(a: FsNode, b: FsNode): boolean {
  for (let n = b; n.parent !== n; n = n.parent) if (n === a) return true;
  return false;
}

/** emscripten's PATH.normalize for absolute paths. */
export function normalize(p: string): string {
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (!part || part === '.') continue;
    if (part === '..') out.pop();
    else out.push(part);
  }
  return '/' + out.join('/');
}
