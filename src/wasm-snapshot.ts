/**
 * Snapshot helpers of `WasmInstance` (src/wasm.ts): options, snapshot ids, and the directory sync
 * of `snapshotToFile`. The format itself is native (native/wasm_snapshot_format.h, docs/wasm.md).
 */
import * as fs from 'node:fs';
import { SnapshotError, badArg } from './errors';

/** Options of `snapshot()`. */
export interface SnapshotOptions {
  /**
   * Take an incremental snapshot (a delta) holding only what changed since `since`, which must be
   * this instance's latest snapshot (taken or restored; a blob, or the path of a snapshot file).
   */
  since?: Uint8Array | string;
}
export const SNAPSHOT_OPTIONS = new Set(['since']);

/** Options of `snapshotToFile()`. */
export interface SnapshotFileOptions {
  /** fsync the file (and its directory) before returning (default false). */
  fsync?: boolean;
}
export const SNAPSHOT_FILE_OPTIONS = new Set(['fsync']);

/**
 * The id of a snapshot (full or incremental): the XXH3-64 checksum in its last 8 bytes (for a
 * version 1 blob, the one in its header). A blob, or the path of a snapshot file. Not verified.
 */
export function snapshotId(snapshot: Uint8Array | string): bigint {
  let tail: Buffer;
  if (typeof snapshot === 'string') {
    const fd = fs.openSync(snapshot, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      tail = Buffer.alloc(8);
      if (size < 64 || fs.readSync(fd, tail, 0, 8, size - 8) !== 8) throw new SnapshotError(`${snapshot} is not a WASM snapshot (too short)`);
    } finally {
      fs.closeSync(fd);
    }
    return tail.readBigUInt64LE(0);
  }
  if (!(snapshot instanceof Uint8Array)) throw badArg('snapshotId: expected a Uint8Array or a path');
  const b = Buffer.from(snapshot.buffer, snapshot.byteOffset, snapshot.byteLength);
  if (b.length < 64 || b.toString('latin1', 0, 6) !== 'HBWASM') throw new SnapshotError('not a WASM snapshot');
  return b.readUInt32LE(8) === 1 ? b.readBigUInt64LE(56) : b.readBigUInt64LE(b.length - 8);
}

/** fsyncs a directory, so that a rename in it is durable (not every platform allows it). */
export function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // directories cannot be opened or synced everywhere
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

