/**
 * `instance.memory.copy()` and `memory.isCopy()`: copies independent of the memory, copy-on-write
 * where the system allows (WasmInstance.copyOnWrite), and a cheap proof that a copy still equals it.
 */
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { WasmInstance, WasmModule } from '../../src/index';
import { runChild } from '../helpers/child';
import { REPO_ROOT } from '../helpers/fixtures';
import { wat } from '../helpers/wat';

const PAGE = 65536;
const TEXT = `(module
  (memory (export "memory") 64 4096)
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
  (func (export "poke") (param i32 i32) (i32.store8 (local.get 0) (local.get 1)))
  (func (export "peek") (param i32) (result i32) (i32.load8_u (local.get 0)))
  (func (export "fill") (param i32 i32 i32) (memory.fill (local.get 0) (local.get 1) (local.get 2))))`;

let bytes: Uint8Array | undefined;
async function instance(): Promise<WasmInstance> {
  bytes ??= await wat(TEXT);
  return new WasmInstance(WasmModule.compile(bytes, { cache: false }), {}, { timeLimit: Infinity });
}
const cow = WasmInstance.copyOnWrite;

describe('WasmInstance memory.copy()', () => {
  it('holds the memory as it was: later writes on either side never show in the other', async () => {
    const inst = await instance();
    inst.call('poke', [5, 7]);
    const c1 = new Uint8Array(inst.memory.copy());
    expect(c1.byteLength).toBe(64 * PAGE);
    expect(c1[5]).toBe(7);
    inst.call('poke', [5, 9]);
    inst.call('poke', [3 * PAGE + 1, 3]);
    expect([c1[5], c1[3 * PAGE + 1]]).toEqual([7, 0]);
    const c2 = new Uint8Array(inst.memory.copy());
    expect([c2[5], c2[3 * PAGE + 1]]).toEqual([9, 3]);
    c2[100] = 1;
    c1[101] = 2;
    expect([inst.call('peek', [100]), inst.call('peek', [101])]).toEqual([[0], [0]]);
    expect([c1[100], c2[101]]).toEqual([0, 0]);
  });

  it('has the size of the memory after growth; a copy made before keeps its own size and bytes', async () => {
    const inst = await instance();
    inst.call('poke', [10, 1]);
    const before = new Uint8Array(inst.memory.copy());
    inst.call('grow', [4]);
    inst.call('poke', [66 * PAGE, 11]);
    inst.call('poke', [10, 2]);
    const after = new Uint8Array(inst.memory.copy());
    expect(before.byteLength).toBe(64 * PAGE);
    expect(after.byteLength).toBe(68 * PAGE);
    expect([before[10], after[10], after[66 * PAGE], after[68 * PAGE - 1]]).toEqual([1, 2, 11, 0]);
  });

  it('gives every copy its own bytes across many copies, rebases and growth (each equals memory.read at its time)', async () => {
    const inst = await instance();
    const copies: Array<[Uint8Array, Buffer]> = [];
    for (let i = 0; i < 40; i++) {
      // a stripe of 3 pages a step: past a sixteenth of the memory every few steps, which rebases
      inst.call('fill', [((i * 3) % 60) * PAGE, i + 1, 3 * PAGE]);
      if (i % 10 === 9) inst.call('grow', [1]);
      inst.call('poke', [i, 200 + (i % 50)]);
      const size = Number(inst.memory.size);
      copies.push([new Uint8Array(inst.memory.copy()), inst.memory.read(0, size)]);
    }
    for (const [c, expected] of copies) expect(Buffer.compare(Buffer.from(c.buffer, c.byteOffset, c.byteLength), expected)).toBe(0);
  });

  it('stays readable after the instance is disposed', async () => {
    const inst = await instance();
    inst.call('fill', [0, 0x5a, 2 * PAGE]);
    const c = new Uint8Array(inst.memory.copy());
    inst.dispose();
    expect([c[0], c[2 * PAGE - 1], c[2 * PAGE]]).toEqual([0x5a, 0x5a, 0]);
  });

  it('is unaffected by restore() and the snapshot deltas stay exact after copies', async () => {
    const a = await instance();
    const base = a.snapshot();
    a.call('poke', [1000, 1]);
    const c = new Uint8Array(a.memory.copy());
    a.call('poke', [2000, 2]);
    a.call('poke', [40 * PAGE, 3]);
    const d1 = a.snapshot({ since: base });
    a.memory.copy();
    a.call('poke', [3000, 4]);
    const d2 = a.snapshot({ since: d1 });
    const b = await instance();
    b.restore(base, d1, d2);
    expect(Buffer.compare(b.memory.read(0, 64 * PAGE), a.memory.read(0, 64 * PAGE))).toBe(0);
    a.restore(base);
    expect([c[1000], c[2000], a.call('peek', [1000])[0]]).toEqual([1, 0, 0]);
  });

  it.runIf(cow && WasmInstance.writeTracking)('lets write tracking resume after the copy that lays the memory over its file', async () => {
    bytes ??= await wat(TEXT);
    const a = new WasmInstance(WasmModule.compile(bytes, { cache: false }), {}, { trackWrites: true });
    const base = a.snapshot();
    a.memory.copy(); // the first copy remaps the memory: the next delta cannot vouch for any page
    a.call('poke', [1, 1]);
    const d1 = a.snapshot({ since: base });
    a.call('poke', [2, 2]);
    a.memory.copy(); // no rebase: the mapping is untouched
    const d2 = a.snapshot({ since: d1 });
    expect(d1.length).toBeGreaterThan(64 * PAGE);
    expect(d2.length).toBeLessThan(2 * 4096 + 1024); // one page written
    const b = await instance();
    b.restore(base, d1, d2);
    expect(Buffer.compare(b.memory.read(0, 64 * PAGE), a.memory.read(0, 64 * PAGE))).toBe(0);
  });

  it.runIf(cow)('shares pages with the memory: twenty copies of a full 64 MiB memory add little to RSS', async () => {
    const inst = await instance();
    inst.call('grow', [1024 - 64]);
    inst.call('fill', [0, 0x77, 1024 * PAGE]);
    const held: ArrayBuffer[] = [inst.memory.copy()];
    const rss0 = process.memoryUsage().rss;
    for (let i = 0; i < 20; i++) {
      inst.call('poke', [i * PAGE, i]);
      held.push(inst.memory.copy());
    }
    const grown = process.memoryUsage().rss - rss0;
    expect(grown).toBeLessThan(128 * 1024 * 1024); // plain copies: 20 × 64 MiB = 1.25 GiB
    expect(new Uint8Array(held[20])[19 * PAGE]).toBe(19);
    expect(new Uint8Array(held[20])[20 * PAGE - 1]).toBe(0x77);
  });
});

describe('WasmInstance memory.isCopy()', () => {
  it.runIf(cow)('is true for the last copy while neither side changed, whatever view of it is passed', async () => {
    const inst = await instance();
    inst.memory.copy(); // the first copy lays the memory over a file: nothing of its own yet
    inst.call('poke', [5, 7]);
    const ab = inst.memory.copy(); // page 0 is the memory's own, and so the copy's
    expect(inst.memory.isCopy(ab)).toBe(true);
    expect(inst.memory.isCopy(new Uint8Array(ab))).toBe(true);
    expect(inst.memory.isCopy(Buffer.from(ab))).toBe(true);
    new Uint8Array(ab)[7] = new Uint8Array(ab)[7]!; // rewriting a byte with its value changes nothing
    expect(inst.memory.isCopy(ab)).toBe(true);
  });

  it('is false once the guest, the host or the holder of the copy writes, and for anything but the last copy', async () => {
    const inst = await instance();
    inst.call('poke', [5, 7]);
    const first = inst.memory.copy();
    const ab = inst.memory.copy();
    expect(inst.memory.isCopy(first)).toBe(false); // not the last copy
    expect(inst.memory.isCopy(inst.memory.read(0, 64 * PAGE))).toBe(false); // same bytes, not a copy
    expect(inst.memory.isCopy(new Uint8Array(ab, 0, PAGE))).toBe(false); // part of it
    inst.call('poke', [5, 8]);
    expect(inst.memory.isCopy(ab)).toBe(false); // the guest wrote (a page of the file)
    const ab2 = inst.memory.copy();
    inst.call('poke', [30 * PAGE, 1]);
    expect(inst.memory.isCopy(ab2)).toBe(false); // the guest wrote another page of the file
    const ab3 = inst.memory.copy();
    new Uint8Array(ab3)[50 * PAGE] = 1;
    expect(inst.memory.isCopy(ab3)).toBe(false); // the holder wrote a page of the file
    const ab4 = inst.memory.copy();
    new Uint8Array(ab4)[5] = 9;
    expect(inst.memory.isCopy(ab4)).toBe(false); // the holder wrote a page of its own
    const ab5 = inst.memory.copy();
    new Uint8Array(inst.memory.view())[6] = 1;
    expect(inst.memory.isCopy(ab5)).toBe(false); // the host wrote through the view
    const ab6 = inst.memory.copy();
    inst.memory.grow(1);
    expect(inst.memory.isCopy(ab6)).toBe(false); // sizes differ
    expect(inst.memory.isCopy(new ArrayBuffer(8))).toBe(false);
  });
});

describe('without copy-on-write (HB_RUNTIMES_NO_COW=1, as before Linux 6.7)', () => {
  it('copies the bytes, and isCopy is always false', async () => {
    bytes ??= await wat(TEXT);
    const r = runChild(
      `
        const hb = require(${JSON.stringify(path.join(REPO_ROOT, 'lib', 'index.js'))});
        const mod = hb.WasmModule.compile(Buffer.from(${JSON.stringify(Buffer.from(bytes).toString('base64'))}, 'base64'));
        const a = new hb.WasmInstance(mod, {});
        a.call('poke', [5, 7]);
        const c = new Uint8Array(a.memory.copy());
        a.call('poke', [5, 9]);
        console.log(JSON.stringify([hb.WasmInstance.copyOnWrite, c.byteLength, c[5], a.memory.isCopy(c)]));
      `,
      [],
      120_000,
      { HB_RUNTIMES_NO_COW: '1' },
    );
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual([false, 64 * PAGE, 7, false]);
  });
});
