/**
 * WASM snapshots to and from files (native/wasm_instance_snapshot_file.cc): the same bytes as the
 * blob form, verified before anything is applied. The 5 GiB case is in wasm-snapshot-large.test.ts.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
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

  it('keeps zeros as holes, and restores them as zeros over an instance that has data there', () => {
    const a = sample();
    const file = path.join(dir, 'holes.snap');
    a.snapshotToFile(file);
    const blob = a.snapshot();
    expect(fs.statSync(file).blocks * 512).toBeLessThan(3 * PAGE); // two 64 KiB blocks of 7 have data
    const b = new WasmInstance(mod);
    b.call('grow', [5n]); // 9 pages: more than the snapshot's 7
    b.memory.write(0, Buffer.alloc(9 * PAGE, 0xff));
    b.call('grow', [0n]);
    const e = thrown(() => b.restoreFromFile(file));
    expect(e.message).toBe('invalid WASM snapshot: memory \'memory\' is 458752 bytes but the instance already has 589824 (restore into a fresh instance)');
    const c = new WasmInstance(mod);
    c.call('grow', [2n]); // 6 pages of 0xff, the snapshot has 7
    c.memory.write(0, Buffer.alloc(6 * PAGE, 0xff));
    c.restoreFromFile(file);
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

describe('a file that changes while it is restored', () => {
  it('gives a whole state, a SnapshotError with the instance untouched, or a disposed instance: never a half-restored one in use', async () => {
    const a = sample();
    a.call('grow', [1000n - 7n]); // 1000 pages: each pass reads ~64 MiB
    const file = path.join(dir, 'racy.snap');
    a.snapshotToFile(file);
    const good = a.snapshot();
    const at = good.length - 8 - 4 - 4 - 1 - 4 - 4 - 1000; // a byte of memory near its end
    const flipped = Buffer.from(good);
    flipped[at] ^= 0xff;
    // A worker toggles that byte in the file as fast as it can while the main thread restores.
    const stop = new Int32Array(new SharedArrayBuffer(8)); // [0]: stop, [1]: toggles so far
    const w = new Worker(
      `const { workerData } = require('node:worker_threads'); const fs = require('node:fs');
       const fd = fs.openSync(workerData.file, 'r+'); const b = Buffer.alloc(1); let v = workerData.v;
       while (Atomics.load(workerData.stop, 0) === 0) { b[0] = v ^= 0xff; fs.writeSync(fd, b, 0, 1, workerData.at); Atomics.add(workerData.stop, 1, 1); }
       fs.closeSync(fd);`,
      { eval: true, workerData: { file, at, v: good[at]!, stop } },
    );
    const outcomes = { whole: 0, refused: 0, disposed: 0 };
    try {
      while (Atomics.load(stop, 1) < 100) await new Promise((r) => setTimeout(r, 5)); // the worker is toggling
      for (let i = 0; i < 12; i++) {
        const b = new WasmInstance(mod);
        b.call('store', [1n, 1]);
        const before = b.snapshot();
        let e: unknown;
        try {
          b.restoreFromFile(file);
        } catch (err) {
          e = err;
        }
        if (e === undefined) {
          const s = b.snapshot();
          expect(s.equals(good) || s.equals(flipped)).toBe(true);
          outcomes.whole++;
        } else {
          expect(e).toBeInstanceOf(SnapshotError);
          if ((e as { disposed?: boolean }).disposed) {
            expect((e as Error).message).toMatch(/the file changed while it was being restored .*was disposed/);
            expect(b.disposed).toBe(true);
            expect(() => b.call('getg')).toThrow(TypeError);
            outcomes.disposed++;
          } else {
            expect((e as Error).message).toBe('invalid WASM snapshot: checksum mismatch');
            expect(b.snapshot().equals(before)).toBe(true);
            outcomes.refused++;
          }
        }
        b.dispose();
      }
    } finally {
      Atomics.store(stop, 0, 1);
      await new Promise((r) => w.once('exit', r));
    }
    expect(outcomes.whole + outcomes.refused + outcomes.disposed).toBe(12);
  });
});
