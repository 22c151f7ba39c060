/**
 * An in-memory virtual filesystem for WASI guests: a tree of directories and regular files
 * (no links, no devices), kept in a message as a plain map from paths to contents.
 *
 * Message shape (`toMessage()` / `Vfs.fromMessage()`), paths relative to `/`:
 * ```
 * { 'dev/stdin': '', 'dev/stdout': <bytes>, 'data/x.txt': 'text', 'tmp/': '' }
 * ```
 * A string value is UTF-8 file content, a `Uint8Array` is raw content, a key ending in `/` is an
 * (empty) directory, and a nested plain object is a directory whose keys are relative to it (so
 * HyperBEAM's nested `{dev: {stdin: ''}}` loads too; `toMessage({nested: true})` writes it).
 * Parent directories are implied. Output keys come in tree order with the names of each
 * directory sorted, so equal trees give equal messages.
 *
 * Two layers: nodes (`VfsFile`, `VfsDir`) that the WASI implementation drives directly with
 * explicit timestamps, and a path API (`readFile`, `writeFile`, `mkdir`, …) for host code, which
 * throws `VfsError` carrying the WASI errno. Timestamps are not part of the message.
 */
import { AoError } from '../errors';
import { Errno, errnoName } from './errno';

/** A VFS as stored in a message. */
export interface VfsMessage {
  [path: string]: Uint8Array | string | VfsMessage;
}

/** A filesystem operation failed; `errno` is the WASI errno a guest would see. */
export class VfsError extends AoError {
  declare readonly errno: number;
  declare readonly path: string;
  constructor(message: string, errno: number, path: string) {
    super(`${message}: ${errnoName(errno)} '${path}'`, {
      status: errno === Errno.ENOENT ? 404 : 400,
      code: 'ERR_VFS',
      errno,
      path,
    });
  }
}

/** Metadata of a node, as `Vfs#stat()` returns it. */
export interface VfsStat {
  kind: 'file' | 'dir';
  ino: bigint;
  /** Content length of a file; 0 for a directory. */
  size: number;
  atim: bigint;
  mtim: bigint;
  ctim: bigint;
}

const EMPTY = new Uint8Array(0);
const utf8 = new TextEncoder();

/** A regular file. Content grows in place (amortised doubling); bytes past `size` are always 0. */
export class VfsFile {
  readonly kind = 'file' as const;
  readonly ino: bigint;
  atim: bigint;
  mtim: bigint;
  ctim: bigint;
  #buf: Uint8Array;
  #size: number;

  constructor(ino: bigint, time: bigint, content: Uint8Array = EMPTY) {
    this.ino = ino;
    this.atim = this.mtim = this.ctim = time;
    this.#buf = content.length ? Uint8Array.from(content) : EMPTY;
    this.#size = content.length;
  }

  get size(): number {
    return this.#size;
  }

  /** A copy of the content. */
  bytes(): Uint8Array {
    return this.#buf.slice(0, this.#size);
  }

  /** A view (no copy) of `[start, end)` clamped to the content; valid until the next mutation. */
  view(start: number, end: number): Uint8Array {
    const e = Math.min(end, this.#size);
    return start >= e ? EMPTY : this.#buf.subarray(start, e);
  }

  /** Sets the size, zero-filling growth. */
  resize(size: number, time: bigint): void {
    if (size < this.#size) this.#buf.fill(0, size, this.#size);
    else this.#reserve(size);
    this.#size = size;
    this.mtim = this.ctim = time;
  }

  /** Writes `chunks` back to back from `pos` (zero-filling any gap); returns the bytes written. */
  write(pos: number, chunks: readonly Uint8Array[], time: bigint): number {
    let total = 0;
    for (const c of chunks) total += c.length;
    if (total === 0) return 0;
    this.#reserve(pos + total);
    let at = pos;
    for (const c of chunks) {
      this.#buf.set(c, at);
      at += c.length;
    }
    if (at > this.#size) this.#size = at;
    this.mtim = this.ctim = time;
    return total;
  }

  /** Replaces the whole content. */
  replace(content: Uint8Array, time: bigint): void {
    this.#buf = content.length ? Uint8Array.from(content) : EMPTY;
    this.#size = content.length;
    this.mtim = this.ctim = time;
  }

  #reserve(n: number): void {
    if (n <= this.#buf.length) return;
    const next = new Uint8Array(Math.max(n, Math.min(this.#buf.length * 2, n + (64 << 20)), 64));
    next.set(this.#buf.subarray(0, this.#size));
    this.#buf = next;
  }
}

/** A directory: named entries, listed in sorted order (stable across message round trips). */
export class VfsDir {
  readonly kind = 'dir' as const;
  readonly ino: bigint;
  /** The containing directory; `null` for the root and for removed directories. */
  parent: VfsDir | null;
  atim: bigint;
  mtim: bigint;
  ctim: bigint;
  readonly #entries = new Map<string, VfsNode>();
  #sorted: string[] | undefined;

  constructor(ino: bigint, parent: VfsDir | null, time: bigint) {
    this.ino = ino;
    this.parent = parent;
    this.atim = this.mtim = this.ctim = time;
  }

  get size(): number {
    return this.#entries.size;
  }

  get(name: string): VfsNode | undefined {
    return this.#entries.get(name);
  }

  /** Entry names in code-unit order. The array is shared: do not mutate it. */
  names(): readonly string[] {
    this.#sorted ??= [...this.#entries.keys()].sort();
    return this.#sorted;
  }

  /** Adds or replaces an entry, re-parenting a directory. */
  set(name: string, node: VfsNode, time: bigint): void {
    this.#entries.set(name, node);
    if (node.kind === 'dir') node.parent = this;
    this.#sorted = undefined;
    this.mtim = this.ctim = time;
  }

  /** Removes an entry (a removed directory loses its parent). */
  delete(name: string, time: bigint): void {
    const node = this.#entries.get(name);
    if (!node) return;
    this.#entries.delete(name);
    if (node.kind === 'dir' && node.parent === this) node.parent = null;
    this.#sorted = undefined;
    this.mtim = this.ctim = time;
  }

  /** Whether `this` is `other` or one of its ancestors. */
  contains(other: VfsDir): boolean {
    for (let d: VfsDir | null = other; d; d = d.parent) if (d === this) return true;
    return false;
  }
}

export type VfsNode = VfsFile | VfsDir;

export interface VfsOptions {
  /** Largest file a write may produce, in bytes (default 1 GiB); beyond it guests get EFBIG. */
  maxFileSize?: number;
  /** Timestamp source for the path API, in ns (default: always 0). */
  clock?: () => bigint;
}
const VFS_OPTIONS = new Set(['maxFileSize', 'clock']);

export interface ToMessageOptions {
  /** Nested directories as nested objects (HyperBEAM's shape) instead of flat `a/b` keys. */
  nested?: boolean;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object') return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

/** Sets an own enumerable property, even for names like `__proto__` (a guest may create such files). */
function put(obj: VfsMessage, key: string, value: VfsMessage[string]): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function toBytes(v: Uint8Array | string): Uint8Array {
  return typeof v === 'string' ? utf8.encode(v) : v;
}

/** The in-memory filesystem. */
export class Vfs {
  readonly root: VfsDir;
  readonly maxFileSize: number;
  readonly clock: () => bigint;
  #nextIno = 1n;

  constructor(opts: VfsOptions = {}) {
    if (opts === null || typeof opts !== 'object') throw new TypeError('Vfs: options must be an object');
    for (const k of Object.keys(opts)) {
      if (!VFS_OPTIONS.has(k)) throw new TypeError(`Vfs: unknown option '${k}' (allowed: ${[...VFS_OPTIONS].join(', ')})`);
    }
    const max = opts.maxFileSize ?? 1 << 30;
    if (!Number.isSafeInteger(max) || max < 0) throw new TypeError('Vfs: maxFileSize must be a non-negative integer');
    this.maxFileSize = max;
    this.clock = opts.clock ?? (() => 0n);
    this.root = new VfsDir(this.#ino(), null, this.clock());
  }

  /**
   * Builds a VFS from its message form (see the module header); content is copied. Throws
   * `VfsError` with EINVAL for keys with empty, `.` or `..` segments or NUL bytes (or a non-empty
   * value under a `dir/` key), and with ENOTDIR / EISDIR when a path is both a file and a
   * directory.
   */
  static fromMessage(m: VfsMessage, opts?: VfsOptions): Vfs {
    if (!isPlainObject(m)) throw new TypeError('Vfs.fromMessage: expected a plain object of path → content');
    const vfs = new Vfs(opts);
    vfs.#load(m, '');
    return vfs;
  }

  #load(m: Record<string, unknown>, prefix: string): void {
    for (const [key, value] of Object.entries(m)) {
      const path = prefix + key;
      if (isPlainObject(value)) {
        this.#mkdirp(Vfs.split(path, path), path);
        this.#load(value, path.endsWith('/') ? path : `${path}/`);
      } else if (typeof value === 'string' || value instanceof Uint8Array) {
        const parts = Vfs.split(path, path);
        if (path.endsWith('/')) {
          if (toBytes(value).length !== 0) {
            throw new VfsError('a directory key (ending in /) must have an empty value', Errno.EINVAL, path);
          }
          this.#mkdirp(parts, path);
        } else {
          if (parts.length === 0) throw new VfsError('the root cannot be a file', Errno.EISDIR, path);
          this.#put(parts, toBytes(value), path, true);
        }
      } else {
        throw new TypeError(`Vfs.fromMessage: '${path}' must be a string, a Uint8Array or an object`);
      }
    }
  }

  /** The message form: flat `path → bytes` copies (or nested with `{nested: true}`). */
  toMessage(opts: ToMessageOptions = {}): VfsMessage {
    if (opts.nested) return Vfs.#nested(this.root);
    const out: VfsMessage = {};
    const walk = (dir: VfsDir, prefix: string): void => {
      if (dir.size === 0 && prefix !== '') put(out, prefix, '');
      for (const name of dir.names()) {
        const node = dir.get(name)!;
        if (node.kind === 'file') put(out, prefix + name, node.bytes());
        else walk(node, `${prefix}${name}/`);
      }
    };
    walk(this.root, '');
    return out;
  }

  static #nested(dir: VfsDir): VfsMessage {
    const out: VfsMessage = {};
    for (const name of dir.names()) {
      const node = dir.get(name)!;
      put(out, name, node.kind === 'file' ? node.bytes() : Vfs.#nested(node));
    }
    return out;
  }

  /**
   * Splits a host path into names. Leading/trailing `/` are ignored; empty, `.` and `..`
   * segments and NUL bytes are rejected (host paths are canonical).
   */
  static split(path: string, shown: string = path): string[] {
    if (typeof path !== 'string') throw new TypeError('Vfs: a path must be a string');
    const trimmed = path.replace(/^\/+/, '').replace(/\/+$/, '');
    if (trimmed === '') return [];
    const parts = trimmed.split('/');
    for (const p of parts) {
      if (p === '' || p === '.' || p === '..' || p.includes('\0')) {
        throw new VfsError('invalid path (empty, "." or ".." segment, or NUL)', Errno.EINVAL, shown);
      }
    }
    return parts;
  }

  /** A fresh inode number (sequential, so deterministic for a given history). */
  #ino(): bigint {
    return this.#nextIno++;
  }

  /** Creates a detached file node. */
  newFile(time: bigint, content?: Uint8Array): VfsFile {
    return new VfsFile(this.#ino(), time, content);
  }

  /** Creates a directory node inside `parent` (not yet linked). */
  newDir(parent: VfsDir, time: bigint): VfsDir {
    return new VfsDir(this.#ino(), parent, time);
  }

  #mkdirp(parts: readonly string[], shown: string): VfsDir {
    let dir = this.root;
    for (const name of parts) {
      const next = dir.get(name);
      if (next === undefined) {
        const d = this.newDir(dir, this.clock());
        dir.set(name, d, this.clock());
        dir = d;
      } else if (next.kind === 'dir') {
        dir = next;
      } else {
        throw new VfsError('not a directory', Errno.ENOTDIR, shown);
      }
    }
    return dir;
  }

  #put(parts: readonly string[], content: Uint8Array, shown: string, parents: boolean): VfsFile {
    if (content.length > this.maxFileSize) throw new VfsError('file too large', Errno.EFBIG, shown);
    const name = parts[parts.length - 1]!;
    const dir = parents ? this.#mkdirp(parts.slice(0, -1), shown) : this.#dirOf(parts, shown);
    const existing = dir.get(name);
    const t = this.clock();
    if (existing?.kind === 'dir') throw new VfsError('is a directory', Errno.EISDIR, shown);
    if (existing) {
      existing.replace(content, t);
      return existing;
    }
    const f = this.newFile(t, content);
    dir.set(name, f, t);
    return f;
  }

  #dirOf(parts: readonly string[], shown: string): VfsDir {
    const parent = this.#walk(parts.slice(0, -1), shown);
    if (parent.kind !== 'dir') throw new VfsError('not a directory', Errno.ENOTDIR, shown);
    return parent;
  }

  #walk(parts: readonly string[], shown: string): VfsNode {
    let node: VfsNode = this.root;
    for (const name of parts) {
      if (node.kind !== 'dir') throw new VfsError('not a directory', Errno.ENOTDIR, shown);
      const next: VfsNode | undefined = node.get(name);
      if (!next) throw new VfsError('no such file or directory', Errno.ENOENT, shown);
      node = next;
    }
    return node;
  }

  /** The node at `path`, or undefined. */
  lookup(path: string): VfsNode | undefined {
    let node: VfsNode = this.root;
    for (const name of Vfs.split(path)) {
      if (node.kind !== 'dir') return undefined;
      const next: VfsNode | undefined = node.get(name);
      if (!next) return undefined;
      node = next;
    }
    return node;
  }

  exists(path: string): boolean {
    return this.lookup(path) !== undefined;
  }

  stat(path: string): VfsStat {
    const n = this.#walk(Vfs.split(path), path);
    return { kind: n.kind, ino: n.ino, size: n.kind === 'file' ? n.size : 0, atim: n.atim, mtim: n.mtim, ctim: n.ctim };
  }

  /** A copy of a file's content. */
  readFile(path: string): Uint8Array {
    const n = this.#walk(Vfs.split(path), path);
    if (n.kind !== 'file') throw new VfsError('is a directory', Errno.EISDIR, path);
    return n.bytes();
  }

  /** A file's content decoded as UTF-8. */
  readText(path: string): string {
    return Buffer.from(this.readFile(path)).toString('utf8');
  }

  /** Creates or replaces a file; missing parent directories are created unless `parents: false`. */
  writeFile(path: string, content: Uint8Array | string, opts: { parents?: boolean } = {}): void {
    const parts = Vfs.split(path);
    if (parts.length === 0) throw new VfsError('is a directory', Errno.EISDIR, path);
    this.#put(parts, toBytes(content), path, opts.parents !== false);
  }

  /** Appends to a file, creating it (and its parents) when missing. */
  appendFile(path: string, content: Uint8Array | string): void {
    const bytes = toBytes(content);
    const node = this.lookup(path);
    if (node === undefined) return this.writeFile(path, bytes);
    if (node.kind !== 'file') throw new VfsError('is a directory', Errno.EISDIR, path);
    if (node.size + bytes.length > this.maxFileSize) throw new VfsError('file too large', Errno.EFBIG, path);
    node.write(node.size, [bytes], this.clock());
  }

  /** Creates a directory (`recursive`: with its parents, and no error if it exists). */
  mkdir(path: string, opts: { recursive?: boolean } = {}): void {
    const parts = Vfs.split(path);
    if (opts.recursive) {
      this.#mkdirp(parts, path);
      return;
    }
    if (parts.length === 0) throw new VfsError('file exists', Errno.EEXIST, path);
    const dir = this.#dirOf(parts, path);
    const name = parts[parts.length - 1]!;
    if (dir.get(name)) throw new VfsError('file exists', Errno.EEXIST, path);
    const t = this.clock();
    dir.set(name, this.newDir(dir, t), t);
  }

  /** Entry names of a directory, sorted. */
  readdir(path: string): string[] {
    const n = this.#walk(Vfs.split(path), path);
    if (n.kind !== 'dir') throw new VfsError('not a directory', Errno.ENOTDIR, path);
    return [...n.names()];
  }

  /** Removes a file, or a directory (non-empty ones only with `recursive`). */
  remove(path: string, opts: { recursive?: boolean } = {}): void {
    const parts = Vfs.split(path);
    if (parts.length === 0) throw new VfsError('cannot remove the root', Errno.EBUSY, path);
    const dir = this.#dirOf(parts, path);
    const name = parts[parts.length - 1]!;
    const node = dir.get(name);
    if (!node) throw new VfsError('no such file or directory', Errno.ENOENT, path);
    if (node.kind === 'dir' && node.size > 0 && !opts.recursive) {
      throw new VfsError('directory not empty', Errno.ENOTEMPTY, path);
    }
    dir.delete(name, this.clock());
  }

  /** Moves a file or directory; an existing target file (or empty directory) is replaced. */
  rename(from: string, to: string): void {
    const src = Vfs.split(from);
    const dst = Vfs.split(to);
    if (src.length === 0 || dst.length === 0) throw new VfsError('cannot rename the root', Errno.EBUSY, from);
    const sdir = this.#dirOf(src, from);
    const sname = src[src.length - 1]!;
    const node = sdir.get(sname);
    if (!node) throw new VfsError('no such file or directory', Errno.ENOENT, from);
    const ddir = this.#dirOf(dst, to);
    const dname = dst[dst.length - 1]!;
    const errno = checkRename(node, ddir, ddir.get(dname));
    if (errno !== Errno.SUCCESS) throw new VfsError('cannot rename', errno, to);
    if (ddir.get(dname) === node) return;
    const t = this.clock();
    sdir.delete(sname, t);
    ddir.set(dname, node, t);
  }
}

/**
 * The errno for moving `node` into `dir` over `target` (POSIX `rename` rules), or SUCCESS.
 * Shared by the path API and `path_rename`.
 */
export function checkRename(node: VfsNode, dir: VfsDir, target: VfsNode | undefined): number {
  if (target === node) return Errno.SUCCESS;
  if (node.kind === 'dir' && node.contains(dir)) return Errno.EINVAL;
  if (target) {
    if (node.kind === 'file' && target.kind === 'dir') return Errno.EISDIR;
    if (node.kind === 'dir' && target.kind === 'file') return Errno.ENOTDIR;
    if (target.kind === 'dir' && target.size > 0) return Errno.ENOTEMPTY;
  }
  return Errno.SUCCESS;
}
