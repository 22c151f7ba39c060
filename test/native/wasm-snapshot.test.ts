/** WasmInstance snapshots (native/wasm_instance_snapshot.cc): format, validation, round trips. */
import { beforeAll, describe, expect, it } from 'vitest';
import { SnapshotError, WasmInstance, WasmModule } from '../../src/index';
import { native } from '../../src/native';
import { thrown } from '../helpers/thrown';
import { wat, watAll } from '../helpers/wat';

let counter: WasmModule;
let mem32: WasmModule;
let reentrant: WasmModule;

beforeAll(async () => {
  // A mutable global that the module does NOT export: snapshots must still capture it.
  counter = WasmModule.compile(
    await wat(`(module
      (memory (export "memory") 1)
      (global $n (mut i64) (i64.const 0))
      (func (export "inc") (result i64)
        (global.set $n (i64.add (global.get $n) (i64.const 1)))
        (i64.store (i32.const 8) (global.get $n))
        (global.get $n)))`),
  );
  mem32 = WasmModule.compile(
    await wat(`(module (memory (export "memory") 1 4)
      (data (i32.const 16) "hello")
      (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))`),
  );
  reentrant = WasmModule.compile(
    await wat(`(module
      (import "host" "cb" (func $cb (param i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "viaHost") (param i32) (result i32) (call $cb (local.get 0))))`),
  );
});

/** A version 1 blob (checksum in the header, over the payload only) with the same content as a v2 one. */
function toV1(v2: Buffer): Buffer {
  const payload = v2.subarray(56, v2.length - 8);
  const header = Buffer.alloc(64);
  v2.copy(header, 0, 0, 56);
  header.writeUInt32LE(1, 8);
  header.writeBigUInt64LE(native.checksum(payload), 56);
  return Buffer.concat([header, payload]);
}

/** The blob with its trailing checksum recomputed (as an attacker would after changing bytes). */
function resealed(blob: Buffer): Buffer {
  const out = Buffer.from(blob);
  out.writeBigUInt64LE(native.checksum(out.subarray(0, out.length - 8)), out.length - 8);
  return out;
}

describe('WasmInstance#snapshot()', () => {
  it('captures memory and non-exported mutable globals; restore into a fresh instance continues', () => {
    const a = new WasmInstance(counter);
    a.call('inc', []);
    a.call('inc', []);
    const snap = a.snapshot();
    expect(snap.subarray(0, 6).toString()).toBe('HBWASM');
    const b = new WasmInstance(counter);
    b.restore(snap);
    expect(b.call('inc', [])).toEqual([3n]);
    expect(b.memory.read(8, 1)).toEqual(Buffer.from([3]));
  });

  it('is canonical: snapshot, restore, snapshot gives identical bytes', () => {
    const a = new WasmInstance(counter);
    a.call('inc', []);
    const s1 = a.snapshot();
    const b = new WasmInstance(counter);
    b.restore(s1);
    expect(b.snapshot().equals(s1)).toBe(true);
  });

  it('grows a fresh instance to the snapshot size', () => {
    const a = new WasmInstance(mem32);
    a.memory.grow(2);
    a.memory.write(3 * 65536 - 3, Buffer.from('end'));
    const b = new WasmInstance(mem32);
    b.restore(a.snapshot());
    expect(b.memory.size).toBe(3 * 65536);
    expect(b.memory.read(3 * 65536 - 3, 3).toString()).toBe('end');
  });

  it('rejects damaged, truncated, foreign and other-image blobs without touching the instance', () => {
    const a = new WasmInstance(counter);
    a.call('inc', []);
    const good = a.snapshot();
    const b = new WasmInstance(counter);
    b.call('inc', []);
    b.call('inc', []);
    const before = b.snapshot();
    const flipped = Buffer.from(good);
    flipped[flipped.length - 20] ^= 0xff;
    const cases: Array<[Uint8Array, string]> = [
      [flipped, 'invalid WASM snapshot: checksum mismatch'],
      [good.subarray(0, good.length - 1), 'invalid WASM snapshot: truncated'],
      [good.subarray(0, 20), 'invalid WASM snapshot: truncated header'],
      [Buffer.from('HBLUA\0 this is lua'), 'invalid WASM snapshot: this is a Lua snapshot, not a WASM one'],
      [Buffer.from('something else entirely'), 'invalid WASM snapshot: bad magic (not an hb-runtimes WASM snapshot)'],
      [new WasmInstance(mem32).snapshot(), 'invalid WASM snapshot: it was taken from a different module image'],
    ];
    for (const [blob, message] of cases) {
      const e = thrown(() => b.restore(blob));
      expect(e).toBeInstanceOf(SnapshotError);
      expect(e).toMatchObject({ status: 400, code: 'ERR_SNAPSHOT', message });
      expect(b.snapshot().equals(before)).toBe(true);
    }
  });

  it('refuses to restore a smaller memory into a grown instance', () => {
    const small = new WasmInstance(mem32).snapshot();
    const big = new WasmInstance(mem32);
    big.memory.grow(1);
    expect(() => big.restore(small)).toThrow(
      "invalid WASM snapshot: memory 'memory' is 65536 bytes but the instance already has 131072 (restore into a fresh instance)",
    );
  });
});

describe('WasmInstance#snapshot() format', () => {
  it('writes version 2: header, payload, then an XXH3-64 of every byte before it', () => {
    const a = new WasmInstance(counter);
    a.call('inc', []);
    const snap = a.snapshot();
    expect(snap.subarray(0, 8)).toEqual(Buffer.from('HBWASM\0\0', 'latin1'));
    expect(snap.readUInt32LE(8)).toBe(2);
    expect(snap.readUInt32LE(12)).toBe(0);
    expect(snap.subarray(16, 48)).toEqual(counter.hash);
    expect(snap.readBigUInt64LE(48)).toBe(BigInt(snap.length - 64));
    expect(snap.readBigUInt64LE(snap.length - 8)).toBe(native.checksum(snap.subarray(0, snap.length - 8)));
  });

  it('covers every byte: a change anywhere (header included) is refused and nothing is applied', () => {
    const a = new WasmInstance(counter);
    a.call('inc', []);
    const good = a.snapshot();
    const b = new WasmInstance(counter);
    const before = b.snapshot();
    const positions = [...Array(good.length).keys()].filter((i) => i < 128 || i >= good.length - 128 || i % 251 === 0);
    for (const i of positions) {
      for (const bit of [0x01, 0x80]) {
        const bad = Buffer.from(good);
        bad[i]! ^= bit;
        const e = thrown(() => b.restore(bad));
        expect(e).toBeInstanceOf(SnapshotError);
        expect(e.message).toMatch(/^invalid WASM snapshot: /);
      }
    }
    expect(b.snapshot().equals(before)).toBe(true);
    b.restore(good);
    expect(b.call('inc', [])).toEqual([2n]);
  });

  it('refuses header bytes 6-7 and unknown flags even with the checksum recomputed', () => {
    const good = new WasmInstance(counter).snapshot();
    const b = new WasmInstance(counter);
    for (const [at, value, message] of [
      [6, 1, 'bad magic (not an hb-runtimes WASM snapshot)'],
      [7, 1, 'bad magic (not an hb-runtimes WASM snapshot)'],
      [12, 2, 'unknown flags'],
      [15, 1, 'unknown flags'],
      // flags 1 marks an incremental snapshot, whose payload is laid out differently
      [12, 1, 'malformed payload'],
    ] as const) {
      const bad = Buffer.from(good);
      bad[at] = value;
      expect(thrown(() => b.restore(resealed(bad))).message).toBe(`invalid WASM snapshot: ${message}`);
    }
  });

  it('reads version 1 blobs, checking each header field for its exact value', () => {
    const a = new WasmInstance(counter);
    a.call('inc', []);
    a.call('inc', []);
    const v1 = toV1(a.snapshot());
    const b = new WasmInstance(counter);
    b.restore(v1);
    expect(b.call('inc', [])).toEqual([3n]);
    const cases: Array<[number, string]> = [
      [6, 'bad magic (not an hb-runtimes WASM snapshot)'],
      [13, 'unknown flags'],
      [20, 'it was taken from a different module image'],
      [50, 'truncated'],
      [60, 'checksum mismatch'],
      [100, 'checksum mismatch'],
    ];
    for (const [at, message] of cases) {
      const bad = Buffer.from(v1);
      bad[at]! ^= 0x04;
      expect(thrown(() => new WasmInstance(counter).restore(bad)).message).toBe(`invalid WASM snapshot: ${message}`);
    }
  });

  it('refuses other versions, naming the ones it reads', () => {
    const bad = Buffer.from(new WasmInstance(counter).snapshot());
    bad.writeUInt32LE(3, 8);
    expect(thrown(() => new WasmInstance(counter).restore(resealed(bad))).message).toBe(
      'invalid WASM snapshot: unsupported version 3 (this build reads versions 1 and 2)',
    );
  });

  it('captures v128 globals', async () => {
    const m = WasmModule.compile(
      await wat(`(module (global $v (mut v128) (v128.const i32x4 1 2 3 4))
        (func (export "bump") (global.set $v (i32x4.add (global.get $v) (v128.const i32x4 10 20 30 40))))
        (func (export "lane") (param i32) (result i32)
          (if (result i32) (i32.eqz (local.get 0)) (then (i32x4.extract_lane 0 (global.get $v))) (else (i32x4.extract_lane 3 (global.get $v))))))`),
    );
    const a = new WasmInstance(m);
    a.call('bump', []);
    const snap = a.snapshot();
    const b = new WasmInstance(m);
    b.restore(snap);
    expect([b.call('lane', [0]), b.call('lane', [1])]).toEqual([[11], [44]]);
    expect(b.snapshot().equals(snap)).toBe(true);
  });

  it('refuses to snapshot or restore an instance with a mutable reference global', async () => {
    const m = WasmModule.compile(await watAll(`(module (global $r (mut externref) (ref.null extern)) (func (export "f") (result i32) (i32.const 1)))`));
    const i = new WasmInstance(m);
    const message = "cannot snapshot(): global 'hb:global:0' is a mutable externref, and snapshots capture only numeric and v128 values";
    const e = thrown(() => i.snapshot());
    expect(e).toBeInstanceOf(SnapshotError);
    expect(e).toMatchObject({ status: 400, code: 'ERR_SNAPSHOT', message });
    expect(thrown(() => i.restore(Buffer.alloc(80))).message).toBe(message.replace('snapshot()', 'restore()'));
    expect(i.call('f', [])).toEqual([1]);
  });
});

describe('WasmInstance#snapshot() and #restore() inside a call', () => {
  it('refuses both from a host import with a busy TypeError; the call and the instance go on', () => {
    let inst: WasmInstance;
    let snap: Buffer | undefined;
    const seen: unknown[] = [];
    inst = new WasmInstance(reentrant, {
      host: {
        cb: (x: unknown) => {
          for (const op of [() => inst.snapshot(), () => inst.restore(snap!)]) {
            try {
              op();
            } catch (e) {
              seen.push(e);
            }
          }
          return (x as number) + 1;
        },
      },
    });
    snap = inst.snapshot();
    expect(inst.call('viaHost', [1])).toEqual([2]);
    expect(seen).toEqual([
      new TypeError('WasmInstance is busy: snapshot() cannot run inside a call (from a host import)'),
      new TypeError('WasmInstance is busy: restore() cannot run inside a call (from a host import)'),
    ]);
    expect(seen.every((e) => e instanceof TypeError)).toBe(true);
    inst.restore(snap);
    expect(inst.snapshot().equals(snap)).toBe(true);
  });
});
