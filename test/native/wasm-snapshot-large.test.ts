/**
 * A snapshot of a 5 GiB memory64 instance: past Node's Buffer maximum on Node 20 (4 GiB), so it
 * goes through a file. Distinct bytes near 0, around 4 GiB and at the end survive snapshotToFile →
 * restoreFromFile into a fresh instance; a damaged file is refused before anything is applied; an
 * incremental snapshot of the restored instance holds only what changed. 1.5 GiB of it is data
 * (across the 4 GiB line), the rest zeros, which the file keeps as holes. Sequential, in its own
 * file, and each big instance is disposed as soon as it is done with.
 */
import * as buffer from 'node:buffer';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SnapshotError, WasmInstance, WasmModule } from '../../src/index';
import { native } from '../../src/native';
import { thrown } from '../helpers/thrown';
import { wat } from '../helpers/wat';

const PAGE = 65536n;
const SIZE = 5n << 30n; // 5 GiB
const G4 = 1n << 32n;
const MARKS: Array<[bigint, number]> = [
  [0n, 0x01],
  [17n, 0x02],
  [G4 - 1n, 0x03],
  [G4, 0x04],
  [G4 + 1n, 0x05],
  [SIZE - 1n, 0x06],
  [SIZE - 4097n, 0x07],
];

const DENSE_FROM = (7n << 30n) / 2n; // 3.5 GiB
const DENSE_TO = SIZE - 65536n;
const PROBES = [0n, DENSE_FROM - (1n << 19n), G4 - (1n << 19n), SIZE - (1n << 20n)];

let mod: WasmModule;
let dir: string;
let file: string;

beforeAll(async () => {
  mod = WasmModule.compile(
    await wat(`(module
      (memory (export "memory") i64 1 90000)
      (func (export "grow") (param i64) (result i64) (memory.grow (local.get 0)))
      (func (export "store") (param i64 i32) (i32.store8 (local.get 0) (local.get 1)))
      (func (export "fill") (param i64 i32 i64) (memory.fill (local.get 0) (local.get 1) (local.get 2)))
      (func (export "load") (param i64) (result i32) (i32.load8_u (local.get 0))))`),
  );
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hb-snap5g-'));
  file = path.join(dir, 'big.snap');
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('a 5 GiB memory', { sequential: true, timeout: 600_000 }, () => {
  it('snapshots to a file and restores into a fresh instance, byte for byte where it was written', () => {
    const a = new WasmInstance(mod);
    expect(a.call('grow', [SIZE / PAGE - 1n])).toEqual([1n]);
    expect(a.memory.size).toBe(SIZE);
    // 1.5 GiB of data across the 4 GiB line (written to disk and read back in chunks), the rest
    // zeros (holes in the file).
    a.call('fill', [DENSE_FROM, 0x5a, DENSE_TO - DENSE_FROM]);
    for (const [at, v] of MARKS) a.call('store', [at, v]);
    const probes = PROBES.map((at) => native.checksum(a.memory.read(at, 1n << 20n)));
    if (Number(SIZE) + 200 > buffer.constants.MAX_LENGTH) {
      const e = thrown(() => a.snapshot());
      expect(e).toBeInstanceOf(SnapshotError);
      expect(e.message).toMatch(/larger than the largest Buffer .*: use snapshotToFile\(\)/);
    }
    const { bytes } = a.snapshotToFile(file);
    // header 56, memory count 4, name 4 + 6, size 8, the bytes, global count 4, trailer 8
    expect(bytes).toBe(Number(SIZE) + 56 + 4 + 10 + 8 + 4 + 8);
    const st = fs.statSync(file);
    expect(st.size).toBe(bytes);
    // Runs of zeros are holes (64 KiB blocks): the file reads the same but takes only the data's blocks.
    expect(st.blocks * 512).toBeLessThan(Number(DENSE_TO - DENSE_FROM) + (64 << 20));
    a.dispose();

    const b = new WasmInstance(mod, {}, { trackWrites: true });
    b.restoreFromFile(file);
    expect(b.memory.size).toBe(SIZE);
    for (const [at, v] of MARKS) expect(b.call('load', [at])).toEqual([v]);
    for (const at of [1n, SIZE - 2n, 3n << 30n, DENSE_FROM - 1n, DENSE_TO]) expect(b.call('load', [at])).toEqual([0]);
    for (const at of [DENSE_FROM, G4 - 2n, G4 + 2n, DENSE_TO - 1n]) expect(b.call('load', [at])).toEqual([0x5a]);
    expect([...b.memory.read(G4 - 2n, 4n)]).toEqual([0x5a, 3, 4, 5]);
    expect(PROBES.map((at) => native.checksum(b.memory.read(at, 1n << 20n)))).toEqual(probes);

    // Incremental on top of it: a delta holds one page, and applies after the file.
    b.call('store', [G4 + 100n, 0x99]);
    const d = b.snapshot({ since: file });
    if (WasmInstance.writeTracking) expect(d.length).toBeLessThan(4096 + 200);
    b.dispose();
    const c = new WasmInstance(mod);
    c.restoreFromFile(file, d);
    expect(c.call('load', [G4 + 100n])).toEqual([0x99]);
    expect(c.call('load', [SIZE - 1n])).toEqual([0x06]);
    c.dispose();
  });

  it('refuses a file damaged near its end before touching the instance', () => {
    const fd = fs.openSync(file, 'r+');
    const at = fs.fstatSync(fd).size - 8 - 4 - 3; // a byte of memory just before the end
    const byte = Buffer.alloc(1);
    fs.readSync(fd, byte, 0, 1, at);
    byte[0]! ^= 0x80;
    fs.writeSync(fd, byte, 0, 1, at);
    fs.closeSync(fd);
    const c = new WasmInstance(mod);
    c.call('store', [3n, 3]);
    const e = thrown(() => c.restoreFromFile(file));
    expect(e).toBeInstanceOf(SnapshotError);
    expect(e.message).toBe('invalid WASM snapshot: checksum mismatch');
    expect(c.memory.size).toBe(PAGE);
    expect(c.call('load', [3n])).toEqual([3]);
    c.dispose();
    fs.rmSync(file);
  });
});
