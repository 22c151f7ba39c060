/**
 * Incremental WASM snapshots (native/wasm_instance_snapshot.cc, native/wasm_write_tracker.cc):
 * `snapshot({ since })` and `restore(base, ...deltas)` give byte-identical state, across memory
 * growth and global changes; wrong chains are refused before anything is touched.
 */
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { SnapshotError, WasmInstance, WasmModule, snapshotId } from '../../src/index';
import { native } from '../../src/native';
import { Rng } from '../helpers/wasm-gen';
import { runChild } from '../helpers/child';
import { REPO_ROOT } from '../helpers/fixtures';
import { thrown } from '../helpers/thrown';
import { wat, watAll } from '../helpers/wat';

let mod: WasmModule;
let two: WasmModule;
const PAGE = 65536;

let mod0Bytes: Uint8Array;

beforeAll(async () => {
  // 32-bit memory of 16 pages that may grow to 64; a non-exported mutable global; guest stores and
  // bulk-memory ops, so that writes come from wasm code as well as from the host.
  mod0Bytes = await wat(`(module
      (memory (export "memory") 16 64)
      (global $g (mut i64) (i64.const 7))
      (data (i32.const 100) "initial data")
      (func (export "store") (param i32 i32) (i32.store8 (local.get 0) (local.get 1)))
      (func (export "fill") (param i32 i32 i32) (memory.fill (local.get 0) (local.get 1) (local.get 2)))
      (func (export "copy") (param i32 i32 i32) (memory.copy (local.get 0) (local.get 1) (local.get 2)))
      (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
      (func (export "setg") (param i64) (global.set $g (local.get 0)))
      (func (export "getg") (result i64) (global.get $g)))`);
  mod = WasmModule.compile(mod0Bytes);
  // Two memories, one of them 64-bit.
  two = WasmModule.compile(
    await watAll(`(module
      (memory $a (export "a") 2) (memory $b (export "b") i64 3)
      (func (export "sb") (param i64 i32) (i32.store8 $b (local.get 0) (local.get 1)))
      (func (export "growb") (param i64) (result i64) (memory.grow $b (local.get 0))))`),
  );
});

/** The blob with its trailing checksum recomputed (as an attacker would after changing bytes). */
function resealed(blob: Buffer): Buffer {
  const out = Buffer.from(blob);
  out.writeBigUInt64LE(native.checksum(out.subarray(0, out.length - 8)), out.length - 8);
  return out;
}

describe('snapshot({ since })', () => {
  it('holds only the pages written since, and restores byte-identical state', () => {
    const a = new WasmInstance(mod);
    const base = a.snapshot();
    a.call('store', [5 * PAGE + 17, 0xab]);
    a.memory.write(9 * PAGE + 3, Buffer.from('host write'));
    a.call('setg', [-5n]);
    const d = a.snapshot({ since: base });
    expect(d.subarray(0, 6).toString()).toBe('HBWASM');
    expect(d.readUInt32LE(12)).toBe(1); // flags: delta
    expect(d.readBigUInt64LE(56)).toBe(snapshotId(base)); // its parent
    const now = a.snapshot(); // the state at d (nothing ran in between)

    const b = new WasmInstance(mod);
    b.restore(base, d);
    expect(b.snapshot().equals(now)).toBe(true);
    expect(b.call('getg')).toEqual([-5n]);
    expect(b.memory.read(9 * PAGE + 3, 10).toString()).toBe('host write');
    expect(b.memory.read(100, 12).toString()).toBe('initial data');
  });

  it.skipIf(!WasmInstance.writeTracking)('costs what changed: two written pages of a 1 MiB memory give a delta of two pages', () => {
    const a = new WasmInstance(mod, {}, { trackWrites: true });
    const base = a.snapshot();
    expect(base.length).toBeGreaterThan(16 * PAGE);
    a.call('store', [3 * PAGE, 1]);
    a.call('store', [12 * PAGE + 4095, 2]);
    const d = a.snapshot({ since: base });
    // header 56 + parent 8 + counts + name + size + run count + 2 × (16 + 4096) + global + trailer
    expect(d.length).toBeLessThan(2 * 4096 + 200);
    const d2 = a.snapshot({ since: d }); // nothing written since d
    expect(d2.length).toBeLessThan(200);
    const b = new WasmInstance(mod);
    b.restore(base, d, d2);
    expect(b.memory.read(3 * PAGE, 1)[0]).toBe(1);
    expect(b.memory.read(12 * PAGE + 4095, 1)[0]).toBe(2);
  });

  it.skipIf(!WasmInstance.writeTracking)('by default, tracking starts with the first incremental snapshot, which holds every page', () => {
    const a = new WasmInstance(mod);
    const base = a.snapshot();
    a.call('store', [3 * PAGE, 1]);
    const d1 = a.snapshot({ since: base }); // nothing was tracked before: every page
    expect(d1.length).toBeGreaterThan(16 * PAGE);
    a.call('store', [4 * PAGE, 2]);
    const d2 = a.snapshot({ since: d1 }); // tracked from d1 on: one page
    expect(d2.length).toBeLessThan(4096 + 200);
    const b = new WasmInstance(mod);
    b.restore(base, d1, d2);
    expect(b.snapshot().equals(a.snapshot())).toBe(true);
  });

  it('follows growth between snapshots, and chains of many deltas (random writes, guest and host)', () => {
    const rng = new Rng(0x5eed);
    const a = new WasmInstance(mod, {}, { trackWrites: true });
    const base = a.snapshot();
    const deltas: Buffer[] = [];
    let pages = 16;
    for (let step = 0; step < 12; step++) {
      for (let i = rng.int(20); i > 0; i--) {
        const at = rng.int(pages * PAGE - 64);
        switch (rng.int(4)) {
          case 0: a.call('store', [at, rng.int(256)]); break;
          case 1: a.call('fill', [at, rng.int(256), rng.int(64)]); break;
          case 2: a.call('copy', [at, rng.int(pages * PAGE - 64), rng.int(64)]); break;
          default: a.memory.write(at, Buffer.from([rng.int(256), rng.int(256), rng.int(256)])); break;
        }
      }
      if (step % 4 === 1) {
        const by = 1 + rng.int(4);
        expect(a.call('grow', [by])).toEqual([pages]);
        pages += by;
        a.call('store', [pages * PAGE - 1, 0x77]); // the last byte of the grown memory
      }
      if (step % 3 === 0) a.call('setg', [BigInt(step * 1000 + 1)]);
      deltas.push(a.snapshot({ since: deltas.at(-1) ?? base }));
      if (step % 5 === 2) deltas.push(a.snapshot({ since: deltas.at(-1)! })); // nothing changed: an empty delta

      const b = new WasmInstance(mod);
      b.restore(base, ...deltas);
      expect(b.memory.size).toBe(pages * PAGE);
      expect(b.memory.read(0, pages * PAGE).equals(a.memory.read(0, pages * PAGE))).toBe(true);
      expect(b.call('getg')).toEqual(a.call('getg'));
      b.dispose();
    }
    // And byte for byte, as full snapshots.
    const b = new WasmInstance(mod);
    b.restore(base, ...deltas);
    expect(b.snapshot().equals(a.snapshot())).toBe(true);
  });

  it('covers every memory (32- and 64-bit), and growth of the 64-bit one', () => {
    const a = new WasmInstance(two);
    const base = a.snapshot();
    a.call('sb', [2n * BigInt(PAGE) + 5n, 9]);
    expect(a.call('growb', [2n])).toEqual([3n]);
    a.call('sb', [4n * BigInt(PAGE) + 1n, 8]);
    const d = a.snapshot({ since: base });
    const b = new WasmInstance(two);
    b.restore(base, d);
    expect(b.snapshot().equals(a.snapshot())).toBe(true);
  });

  it('continues on another instance: deltas taken after restore(base, ...deltas) follow the last one', () => {
    const a = new WasmInstance(mod, {}, { trackWrites: true });
    const base = a.snapshot();
    a.call('store', [1, 1]);
    const d1 = a.snapshot({ since: base });
    const b = new WasmInstance(mod, {}, { trackWrites: true });
    b.restore(base, d1);
    b.call('store', [2, 2]);
    const d2 = b.snapshot({ since: d1 });
    const c = new WasmInstance(mod);
    c.restore(base, d1, d2);
    expect([...c.memory.read(0, 3)]).toEqual([0, 1, 2]);
    expect(c.snapshot().equals(b.snapshot())).toBe(true);
  });

  it('with trackWrites: false, a delta holds every page and is still exact', () => {
    const a = new WasmInstance(mod, {}, { trackWrites: false });
    const base = a.snapshot();
    a.call('store', [7, 7]);
    const d = a.snapshot({ since: base });
    expect(d.length).toBeGreaterThan(16 * PAGE);
    const b = new WasmInstance(mod);
    b.restore(base, d);
    expect(b.snapshot().equals(a.snapshot())).toBe(true);
  });

  it('restores a base smaller than the instance by zeroing what lies past it', () => {
    const a = new WasmInstance(mod);
    const base = a.snapshot();
    a.call('grow', [4]);
    a.call('store', [18 * PAGE, 5]);
    const d = a.snapshot({ since: base });
    const b = new WasmInstance(mod);
    b.call('grow', [2]);
    b.call('store', [17 * PAGE, 99]); // inside the base's size? no: past it, below the delta's size
    b.restore(base, d);
    expect(b.memory.read(17 * PAGE, 1)[0]).toBe(0);
    expect(b.snapshot().equals(a.snapshot())).toBe(true);
  });
});

describe('refusals', () => {
  it('checks options and ids', () => {
    expect((thrown(() => new WasmInstance(mod, {}, { trackWrites: 'yes' as unknown as boolean })) as { code?: string }).code).toBe('ERR_INVALID_ARG');
    const a = new WasmInstance(mod);
    expect(thrown(() => a.snapshot({ bogus: 1 } as never)).message).toBe("snapshot: unknown option 'bogus' (allowed: since)");
    expect(thrown(() => a.snapshot({ since: Buffer.from('not a snapshot at all, just some bytes long enough to pass a length check') }))).toBeInstanceOf(SnapshotError);
    expect(snapshotId(a.snapshot())).toBe(a.snapshot().readBigUInt64LE(a.snapshot().length - 8));
  });

  it('snapshot({ since }) needs this instance\'s latest snapshot', () => {
    const a = new WasmInstance(mod);
    const noBase = thrown(() => a.snapshot({ since: new WasmInstance(mod).snapshot() }));
    expect(noBase).toBeInstanceOf(SnapshotError);
    expect(noBase.message).toBe('cannot take an incremental snapshot: this instance has no snapshot yet (take or restore a full one first)');
    const s1 = a.snapshot();
    const s2 = a.snapshot({ since: s1 });
    const stale = thrown(() => a.snapshot({ since: s1 }));
    expect(stale).toBeInstanceOf(SnapshotError);
    expect(stale.message).toMatch(/`since` is not this instance's latest snapshot/);
    expect(a.snapshot({ since: s2 }).readUInt32LE(12)).toBe(1); // the chain is intact
  });

  it('a delta applied to the wrong base, out of order, or alone is a SnapshotError, and the instance is untouched', () => {
    const a = new WasmInstance(mod);
    const base = a.snapshot();
    a.call('store', [1, 1]);
    const d1 = a.snapshot({ since: base });
    a.call('store', [2, 2]);
    const d2 = a.snapshot({ since: d1 });
    const other = new WasmInstance(mod);
    other.call('store', [3, 3]);
    const otherBase = other.snapshot();

    const b = new WasmInstance(mod);
    b.call('store', [50, 50]);
    const before = b.memory.read(0, 16 * PAGE);
    for (const [chain, message] of [
      [[otherBase, d1], 'delta 1: it does not follow the snapshot before it (it was taken after a different snapshot)'],
      [[base, d2], 'delta 1: it does not follow the snapshot before it (it was taken after a different snapshot)'],
      [[base, d2, d1], 'delta 1: it does not follow the snapshot before it (it was taken after a different snapshot)'],
      [[d1], 'the first snapshot is incremental: restore its base first (restore(base, ...deltas))'],
      [[base, base], 'delta 1: a full snapshot where an incremental one was expected'],
    ] as Array<[Buffer[], string]>) {
      const e = thrown(() => b.restore(chain[0]!, ...chain.slice(1)));
      expect(e).toBeInstanceOf(SnapshotError);
      expect(e.message).toBe(`invalid WASM snapshot: ${message}`);
      expect(b.memory.read(0, 16 * PAGE).equals(before)).toBe(true);
    }
  });

  it('a damaged delta is a SnapshotError (checksum; runs out of bounds or out of order even when resealed)', () => {
    const a = new WasmInstance(mod, {}, { trackWrites: true });
    const base = a.snapshot();
    a.call('store', [5 * PAGE, 1]);
    a.call('store', [9 * PAGE, 2]);
    const d = a.snapshot({ since: base });
    const b = new WasmInstance(mod);
    const flipped = Buffer.from(d);
    flipped[100] ^= 1;
    expect(thrown(() => b.restore(base, flipped)).message).toBe('invalid WASM snapshot: delta 1: checksum mismatch');
    // The first run's offset (after header 56, parent 8, count 4, name 4+6, size 8, run count 8).
    const runAt = 56 + 8 + 4 + 4 + 'memory'.length + 8 + 8;
    const runs = d.readBigUInt64LE(runAt - 8);
    if (WasmInstance.writeTracking) expect(runs).toBe(2n);
    const outOfBounds = Buffer.from(d);
    outOfBounds.writeBigUInt64LE(BigInt(16 * PAGE), runAt);
    expect(thrown(() => b.restore(base, resealed(outOfBounds))).message).toBe(
      "invalid WASM snapshot: delta 1: a run of memory 'memory' is out of order or out of bounds",
    );
    const truncated = resealed(Buffer.concat([d.subarray(0, d.length - 12), Buffer.alloc(8)]));
    expect(thrown(() => b.restore(base, truncated))).toBeInstanceOf(SnapshotError);
    expect(b.memory.read(5 * PAGE, 1)[0]).toBe(0);
  });
});

describe('in worker threads', () => {
  it('tracks each instance on its own while several threads take deltas at once', async () => {
    const { Worker } = await import('node:worker_threads');
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const hb = require(workerData.lib);
      const mod = hb.WasmModule.compile(Buffer.from(workerData.image, 'base64'));
      const a = new hb.WasmInstance(mod, {}, { trackWrites: true });
      const base = a.snapshot();
      const deltas = [];
      for (let i = 0; i < 200; i++) {
        a.call('store', [(i * 7919 + workerData.seed) % (16 * 65536), i & 255]);
        deltas.push(a.snapshot({ since: deltas.at(-1) ?? base }));
      }
      const b = new hb.WasmInstance(mod);
      b.restore(base, ...deltas);
      parentPort.postMessage({ same: b.snapshot().equals(a.snapshot()), max: Math.max(...deltas.map((d) => d.length)) });
    `;
    const run = (seed: number) =>
      new Promise<{ same: boolean; max: number }>((resolve, reject) => {
        const w = new Worker(code, { eval: true, workerData: { lib: path.join(REPO_ROOT, 'lib', 'index.js'), image: Buffer.from(mod0Bytes).toString('base64'), seed } });
        w.once('message', resolve);
        w.once('error', reject);
      });
    const results = await Promise.all([run(1), run(2), run(3)]);
    for (const r of results) {
      expect(r.same).toBe(true);
      if (WasmInstance.writeTracking) expect(r.max).toBeLessThan(2 * 4096 + 200);
    }
  });
});

describe('without write tracking (HB_RUNTIMES_NO_WRITE_TRACKING=1, as on a kernel before 6.7)', () => {
  it('deltas hold every page and chains stay exact', () => {
    const r = runChild(`
        const hb = require(${JSON.stringify(path.join(REPO_ROOT, 'lib', 'index.js'))});
        const mod = hb.WasmModule.compile(Buffer.from(${JSON.stringify(Buffer.from(mod0Bytes).toString('base64'))}, 'base64'));
        const a = new hb.WasmInstance(mod, {}, { trackWrites: true });
        const base = a.snapshot();
        a.call('store', [70000, 1]);
        a.call('grow', [1]);
        a.call('store', [17 * 65536 - 1, 2]);
        const d1 = a.snapshot({ since: base });
        a.call('setg', [3n]);
        const d2 = a.snapshot({ since: d1 });
        const b = new hb.WasmInstance(mod);
        b.restore(base, d1, d2);
        console.log(JSON.stringify({ tracking: hb.WasmInstance.writeTracking, d1: d1.length, d2: d2.length, same: b.snapshot().equals(a.snapshot()) }));
      `, [], 120_000, { HB_RUNTIMES_NO_WRITE_TRACKING: '1' });
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout);
    expect(out.tracking).toBe(false);
    expect(out.d1).toBeGreaterThan(17 * PAGE);
    expect(out.d2).toBeGreaterThan(17 * PAGE);
    expect(out.same).toBe(true);
  });
});
