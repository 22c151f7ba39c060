/**
 * The content-addressed cache. An ID is the 43-character base64url (no padding) SHA-256 of the
 * value's bytes: the raw bytes for a `Uint8Array`, the canonical encoding (codec.ts) for a message
 * or list, with private keys left out at every level. Stores hold one entry per ID: a kind byte
 * (0x00 raw bytes, 0x01 canonical encoding) followed by exactly the bytes that were hashed, so an
 * entry can always be checked against its name.
 *
 * `MemoryStore` keeps entries in a Map (one process-wide instance is the default store);
 * `DirectoryStore` keeps one file per entry and writes atomically (temp file, fsync, rename, fsync
 * of the directory): a crash mid-write leaves at worst an ignored temp file, never a bad entry.
 */

import { hash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomicAsync } from '../atomic-file';
import { AoError } from '../errors';
import { decode, encode } from './codec';
import { describe, isCacheId, isMessage, Message } from './message';
import { checkOpts, Opts } from './opts';

/** Where cache entries live. `readSync` lets synchronous `get` load ID bases. */
export interface Store {
  read(id: string): Promise<Uint8Array | undefined>;
  write(id: string, entry: Uint8Array): Promise<void>;
  readSync?(id: string): Uint8Array | undefined;
}

const KIND_RAW = 0x00;
const KIND_ENCODED = 0x01;

/** b64url(sha256(bytes)): the 43-character ID of a byte string. */
export function sha256Id(bytes: Uint8Array): string {
  return hash('sha256', bytes, 'base64url');
}

const idCache = new WeakMap<object, string>();

/**
 * The ID of a message or list (cached per object: messages are immutable). Live values such as
 * inline device functions get process-local tokens, so such IDs are stable only within a process.
 */
export function messageId(value: unknown): string {
  if (typeof value === 'object' && value !== null && !(value instanceof Uint8Array)) {
    const hit = idCache.get(value);
    if (hit !== undefined) return hit;
    const id = sha256Id(encode(value, true));
    idCache.set(value, id);
    return id;
  }
  if (value instanceof Uint8Array) return sha256Id(value);
  return sha256Id(encode(value, true));
}

/** An in-memory store. */
export class MemoryStore implements Store {
  private readonly entries = new Map<string, Uint8Array>();

  read(id: string): Promise<Uint8Array | undefined> {
    return Promise.resolve(this.entries.get(id));
  }

  readSync(id: string): Uint8Array | undefined {
    return this.entries.get(id);
  }

  write(id: string, entry: Uint8Array): Promise<void> {
    if (!this.entries.has(id)) this.entries.set(id, Uint8Array.from(entry));
    return Promise.resolve();
  }

  /** Number of entries held. */
  get size(): number {
    return this.entries.size;
  }
}

/**
 * A store keeping one file per entry under `dir`: `<dir>/<id[0..1]>/<id>`. Writes go to a
 * uniquely named `.<id>.<random>.tmp` file in the same directory, are fsynced, renamed over the
 * final name (atomic on POSIX) and the directory is fsynced. Readers only ever open final names,
 * so a leftover temp file from a crash is ignored (and may be deleted at any time).
 */
export class DirectoryStore implements Store {
  readonly dir: string;

  constructor(dir: string) {
    if (typeof dir !== 'string' || dir === '') {
      throw new AoError(`DirectoryStore needs a directory path, got ${describe(dir)}`, {
        status: 400,
        code: 'ERR_INVALID_ARG',
      });
    }
    this.dir = path.resolve(dir);
  }

  /** The file holding an entry. */
  entryPath(id: string): string {
    checkId(id);
    return path.join(this.dir, id.slice(0, 2), id);
  }

  async read(id: string): Promise<Uint8Array | undefined> {
    try {
      return await fs.promises.readFile(this.entryPath(id));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw ioError('read', id, e);
    }
  }

  readSync(id: string): Uint8Array | undefined {
    try {
      return fs.readFileSync(this.entryPath(id));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw ioError('read', id, e);
    }
  }

  async write(id: string, entry: Uint8Array): Promise<void> {
    const final = this.entryPath(id);
    try {
      await fs.promises.access(final);
      return; // content-addressed: an existing entry already holds these bytes
    } catch {
      // absent: write it
    }
    try {
      await writeFileAtomicAsync(final, entry);
    } catch (e) {
      throw ioError('write', id, e);
    }
  }
}

function ioError(op: string, id: string, cause: unknown): AoError {
  if (cause instanceof AoError) return cause;
  return new AoError(`Cache ${op} of '${id}' failed: ${(cause as Error)?.message ?? String(cause)}`, {
    status: 500,
    code: 'ERR_CACHE_IO',
    cause,
    key: id,
  });
}

function checkId(id: unknown): asserts id is string {
  if (!isCacheId(id)) {
    throw new AoError(`Invalid cache ID ${JSON.stringify(String(id))}: expected 43 base64url characters`, {
      status: 400,
      code: 'ERR_INVALID_ARG',
    });
  }
}

let processStore: Store | undefined;

/** The process-wide default store (a MemoryStore). */
export function defaultStore(): Store {
  processStore ??= new MemoryStore();
  return processStore;
}

function storeOf(opts: Opts): Store {
  return opts.store ?? defaultStore();
}

/** Build an entry and its ID for a value. */
function entryFor(value: Message | unknown[] | Uint8Array): { id: string; entry: Uint8Array } {
  let kind: number;
  let payload: Uint8Array;
  if (value instanceof Uint8Array) {
    kind = KIND_RAW;
    payload = value;
  } else if (isMessage(value) || Array.isArray(value)) {
    kind = KIND_ENCODED;
    payload = encode(value);
  } else {
    throw new AoError(`cacheWrite() takes a message, a list or a Uint8Array, got ${describe(value)}`, {
      status: 400,
      code: 'ERR_INVALID_ARG',
    });
  }
  const entry = new Uint8Array(payload.length + 1);
  entry[0] = kind;
  entry.set(payload, 1);
  return { id: sha256Id(payload), entry };
}

/** Check an entry against its ID and turn it back into a value. */
function fromEntry(id: string, entry: Uint8Array): Message | Uint8Array {
  const payload = entry.subarray(1);
  if (entry.length < 1 || (entry[0] !== KIND_RAW && entry[0] !== KIND_ENCODED) || sha256Id(payload) !== id) {
    throw new AoError(`Cache entry '${id}' is corrupt (its bytes do not hash to its ID)`, {
      status: 500,
      code: 'ERR_CACHE_CORRUPT',
      key: id,
    });
  }
  return entry[0] === KIND_RAW ? new Uint8Array(payload) : (decode(payload) as Message);
}

function missing(id: string): AoError {
  return new AoError(`Cache entry '${id}' not found`, { status: 404, code: 'ERR_NOT_FOUND', key: id });
}

/** Store a message (private keys stripped) or raw bytes; resolves with its 43-character ID. */
export async function cacheWrite(value: Message | unknown[] | Uint8Array, opts?: Opts): Promise<string> {
  const o = checkOpts(opts);
  const { id, entry } = entryFor(value);
  await storeOf(o).write(id, entry);
  return id;
}

/** Read a cached message or byte string by ID; rejects with a 404 AoError when absent. */
export async function cacheRead(id: string, opts?: Opts): Promise<Message | Uint8Array> {
  const o = checkOpts(opts);
  checkId(id);
  const entry = await storeOf(o).read(id);
  if (entry === undefined) throw missing(id);
  return fromEntry(id, entry);
}

/**
 * Load an ID for use as a resolution base: synchronously when the store can (`readSync`), else
 * a promise. Throws (or rejects) with a 404 AoError when absent.
 */
export function loadForResolve(id: string, opts: Opts): Message | Uint8Array | Promise<Message | Uint8Array> {
  const store = storeOf(opts);
  if (store.readSync !== undefined) {
    const entry = store.readSync(id);
    if (entry === undefined) throw missing(id);
    return fromEntry(id, entry);
  }
  return store.read(id).then((entry) => {
    if (entry === undefined) throw missing(id);
    return fromEntry(id, entry);
  });
}
