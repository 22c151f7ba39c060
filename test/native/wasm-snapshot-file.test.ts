/**
 * WASM snapshots to and from files (native/wasm_instance_snapshot_file.cc): the same bytes as the
 * blob form, verified before anything is applied. The 5 GiB case is in wasm-snapshot-large.test.ts.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SnapshotError, WasmInstance, WasmModule, snapshotId } from '../../src/index';
import { native } from '../../src/native';
import { thrown } from '../helpers/thrown';
import { wat } from '../helpers/wat';

let mod: WasmModule;
let dir: string;
const PAGE = 65536;

beforeAll(async () => {
  mod = WasmModule.compile(
    await wat(`(module
      (memory (export "memory") i64 4 64)
      (global $g (mut i32) (i32.const 1))
      (func (export "store") (param i64 i32) (i32.store8 (local.get 0) (local.get 1)))
      (func (export "grow") (param i64) (result i64) (memory.grow (local.get 0)))
      (func (export "setg") (param i32) (global.set $g (local.get 0)))
      (func (export "getg") (result i32) (global.get $g)))`),
  );
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hb-snapfile-'));
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function sample(): WasmInstance {
  const a = new WasmInstance(mod);
  a.call('grow', [3n]);
  a.call('store', [5n, 0x11]);
  a.call('store', [BigInt(7 * PAGE - 1), 0x22]);
  a.call('setg', [42]);
  return a;
}

describe('snapshotToFile / restoreFromFile', () => {
  it('writes the same bytes as snapshot(), and either form restores', () => {
    const a = sample();
    const file = path.join(dir, 'a.snap');
    const { bytes, id } = a.snapshotToFile(file);
    const blob = a.snapshot();
    const onDisk = fs.readFileSync(file);
    expect(onDisk.equals(blob)).toBe(true);
    expect(bytes).toBe(blob.length);
    expect(id).toBe(snapshotId(blob));
    expect(snapshotId(file)).toBe(id);
    expect(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]); // renamed into place

    const b = new WasmInstance(mod);
    b.restoreFromFile(file);
    expect(b.snapshot().equals(blob)).toBe(true);
    expect(b.call('getg')).toEqual([42]);
    fs.writeFileSync(path.join(dir, 'blob.snap'), blob); // a blob written by anyone is a snapshot file too
    const c = new WasmInstance(mod);
    c.restoreFromFile(path.join(dir, 'blob.snap'));
    expect(c.snapshot().equals(blob)).toBe(true);
  });

  it('restores a file then deltas; a file can be the `since` of a delta', () => {
    const a = sample();
    const file = path.join(dir, 'base.snap');
    a.snapshotToFile(file, { fsync: true });
    a.call('store', [9n, 9]);
    const d = a.snapshot({ since: file });
    const b = new WasmInstance(mod);
    b.restoreFromFile(file, d);
    expect(b.snapshot().equals(a.snapshot())).toBe(true);
  });

  it('a damaged or truncated file is a SnapshotError and leaves the instance untouched', () => {
    const a = sample();
    const file = path.join(dir, 'bad.snap');
    a.snapshotToFile(file);
    const good = fs.readFileSync(file);
    const b = new WasmInstance(mod);
    b.call('store', [100n, 100]);
    const before = b.snapshot();
    const cases: Array<[Buffer, string]> = [
      [Buffer.concat([good.subarray(0, 3 * PAGE)]), 'truncated'],
      [Buffer.concat([good, Buffer.from([0])]), 'trailing bytes after the payload'],
      [Buffer.from('HBLUA\0\0\0'), 'this is a Lua snapshot, not a WASM one'],
      [Buffer.alloc(0), 'bad magic (not an hb-runtimes WASM snapshot)'],
    ];
    const flipped = Buffer.from(good);
    flipped[4 * PAGE + 77] ^= 0x40; // inside the memory's bytes
    cases.push([flipped, 'checksum mismatch']);
    const resealed = Buffer.from(good);
    resealed.writeUInt32LE(7, 56 + 4 + 4 + 'memory'.length); // the memory's size, low word
    resealed.writeBigUInt64LE(native.checksum(resealed.subarray(0, resealed.length - 8)), resealed.length - 8);
    cases.push([resealed, 'memory size is not a whole number of pages']);
    for (const [bytes, message] of cases) {
      fs.writeFileSync(file, bytes);
      const e = thrown(() => b.restoreFromFile(file));
      expect(e).toBeInstanceOf(SnapshotError);
      expect(e.message).toBe(`invalid WASM snapshot: ${message}`);
      expect(b.disposed).toBe(false);
      expect(b.snapshot().equals(before)).toBe(true);
    }
    // A delta is not a base.
    fs.writeFileSync(file, b.snapshot({ since: b.snapshot() }));
    expect(thrown(() => b.restoreFromFile(file)).message).toBe(
      'invalid WASM snapshot: this is an incremental snapshot: restore it after its base (restore(base, ...deltas))',
    );
  });

  it('a missing file or directory is the file system error; no temporary file is left behind', () => {
    const a = sample();
    expect((thrown(() => a.restoreFromFile(path.join(dir, 'nope.snap'))) as NodeJS.ErrnoException).code).toBe('ENOENT');
    expect((thrown(() => a.snapshotToFile(path.join(dir, 'no-such-dir', 'x.snap'))) as NodeJS.ErrnoException).code).toBe('ENOENT');
    expect(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});
