/**
 * The directory store's files (dir-store.ts): an append-only log with group commit. A WAL is a
 * sequence of records `u32 length, u32 crc32, payload`; appends are batched, written with one
 * `write` + `fsync`, and only then acknowledged. Reading stops at the first incomplete or corrupt
 * record (a write torn by a crash, never acknowledged) and truncates the file there. Whole files
 * are written atomically (temp file, fsync, rename, fsync of the directory).
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { ensureDir, fsyncDir, writeFileAtomic, writeFileAtomicAsync } from '../atomic-file';

export { ensureDir, writeFileAtomic, writeFileAtomicAsync };

const HEADER = 8;

/** Reads every complete record of a WAL file, truncating a torn tail. */
export function readWal(file: string): Buffer[] {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: Buffer[] = [];
  let off = 0;
  while (off + HEADER <= buf.length) {
    const len = buf.readUInt32LE(off);
    const crc = buf.readUInt32LE(off + 4);
    if (off + HEADER + len > buf.length) break;
    const payload = buf.subarray(off + HEADER, off + HEADER + len);
    if (zlib.crc32(payload) !== crc) break;
    out.push(Buffer.from(payload));
    off += HEADER + len;
  }
  if (off < buf.length) fs.truncateSync(file, off);
  return out;
}

/** One WAL record: `u32 length, u32 crc32, payload`. */
export function walRecord(payload: Buffer): Buffer {
  const head = Buffer.allocUnsafe(HEADER);
  head.writeUInt32LE(payload.length, 0);
  head.writeUInt32LE(zlib.crc32(payload), 4);
  return Buffer.concat([head, payload]);
}

/**
 * An append-only log with group commit: `append` resolves once its record (and every record
 * appended before it) is written and, when `durable`, fsynced.
 */
export class Wal {
  private fd: number;
  private pending: Array<{ rec: Buffer; done: (e?: Error) => void }> = [];
  private flushing = false;
  private closed = false;

  constructor(
    readonly file: string,
    private readonly durable = true,
  ) {
    ensureDir(path.dirname(file));
    const existed = fs.existsSync(file);
    this.fd = fs.openSync(file, 'a');
    // A new file's directory entry must be durable too, or a power loss could drop the log.
    if (!existed) {
      fs.fsyncSync(this.fd);
      fsyncDir(path.dirname(file));
    }
  }

  append(payload: Buffer): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`WAL ${this.file} is closed`));
    return new Promise((resolve, reject) => {
      this.pending.push({ rec: walRecord(payload), done: (e) => (e ? reject(e) : resolve()) });
      if (!this.flushing) void this.flush();
    });
  }

  /** Writes everything pending, in order; appends arriving meanwhile form the next batch. */
  private async flush(): Promise<void> {
    this.flushing = true;
    while (this.pending.length > 0) {
      const batch = this.pending;
      this.pending = [];
      let err: Error | undefined;
      try {
        const data = Buffer.concat(batch.map((b) => b.rec));
        await new Promise<void>((res, rej) => fs.write(this.fd, data, 0, data.length, null, (e) => (e ? rej(e) : res())));
        if (this.durable) await new Promise<void>((res, rej) => fs.fdatasync(this.fd, (e) => (e ? rej(e) : res())));
      } catch (e) {
        err = e as Error;
      }
      for (const b of batch) b.done(err);
    }
    this.flushing = false;
  }

  /** Waits for pending appends, then closes the file. */
  async close(): Promise<void> {
    if (this.closed) return;
    while (this.flushing || this.pending.length > 0) await new Promise((r) => setTimeout(r, 1));
    this.closed = true;
    fs.closeSync(this.fd);
  }

  /** fsync now (used before a snapshot makes earlier results necessary). */
  sync(): Promise<void> {
    return new Promise((res, rej) => fs.fdatasync(this.fd, (e) => (e ? rej(e) : res())));
  }
}
