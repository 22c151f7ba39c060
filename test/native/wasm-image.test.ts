/** Loading AOS images: legacy exceptions translated once, then run through the native handles. */
import { expect, it } from 'vitest';
import { WasmInstance, type WasmImports, type WasmModule } from '../../src/index';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { imageHash } from '../../src/wasm';
import { loadImage } from '../../src/wasm-image';
import { LOWER_VERSION } from '../../src/wasm-lower';
import { describeShared, sharedFixture } from '../helpers/fixtures';

/** Every import returns zero (the AOS handle() path under test makes no WASI call that matters). */
function zeroImports(m: WasmModule): WasmImports {
  const imports: WasmImports = {};
  for (const imp of m.imports) {
    const r = imp.type?.results[0];
    (imports[imp.module!] ??= {})[imp.name] = () => (r === 'i64' ? 0n : r ? 0 : undefined);
  }
  return imports;
}

const ENV = JSON.stringify({
  Process: { Id: 'AOS', Owner: 'FOOBAR', Tags: [{ name: 'Name', value: 'Thomas' }, { name: 'Authority', value: 'FOOBAR' }] },
});
function evalMsg(code: string, id = '1'): string {
  return JSON.stringify({
    From: 'FOOBAR', 'Block-Height': '1', Target: 'AOS', Owner: 'FOOBAR', Id: id, Module: 'W',
    Tags: [{ name: 'Action', value: 'Eval' }], Data: code,
  });
}
function handle(i: WasmInstance, msg: string): any {
  const [out] = i.call('handle', [i.writeString(msg), i.writeString(ENV)]);
  return JSON.parse(i.readString(out!).toString());
}

describeShared('loadImage() on aos-2-pure-xs.wasm (legacy exception opcodes)', () => {
  it('translates to standard exceptions once and evaluates `return 1 + 1` to "2"', async () => {
    const image = sharedFixture('aos-2-pure-xs.wasm');
    const m = await loadImage(image);
    expect(await loadImage(Buffer.from(image))).toBe(m);
    const i = new WasmInstance(m, zeroImports(m));
    expect(i.memory.size).toBe(192n * 65536n);
    const r = handle(i, evalMsg('return 1 + 1'));
    expect(r.ok).toBe(true);
    expect(r.response.Output.data).toBe('2');
  });

  it('keeps state across a snapshot restored into a fresh instance: X = 42 then return X', async () => {
    const m = await loadImage(sharedFixture('aos-2-pure-xs.wasm'));
    const a = new WasmInstance(m, zeroImports(m));
    expect(handle(a, evalMsg('X = 42', '1')).ok).toBe(true);
    const snap = a.snapshot();
    const b = new WasmInstance(m, zeroImports(m));
    b.restore(snap);
    expect(handle(b, evalMsg('return X', '2')).response.Output.data).toBe('42');
  });
});

describeShared('loadImage() memory64 lowering on aos-2-pure-xs.wasm (on vs lowerMemory64: false)', () => {
  const MESSAGES = [
    'return 1 + 1',
    'X = 42',
    'return X',
    'local t = {} for i = 1, 20000 do t[#t + 1] = tostring(i) end return #table.concat(t, ",")',
    'error("boom")',
    'Big = string.rep("ab", 4 * 1024 * 1024) return #Big',
    'return string.format("%q %d %s", "a\\0b", #Big, tostring(1/0))',
    'local ok, e = pcall(function() local x = nil; return x.y end) return tostring(ok) .. " " .. e',
    'return #Inbox',
  ];

  it('lowers (memory64Lowered, memory still 64-bit to hosts) and gives the same outputs and memory bytes per message', async () => {
    const image = sharedFixture('aos-2-pure-xs.wasm');
    const on = await loadImage(image);
    const off = await loadImage(image, { lowerMemory64: false });
    expect(on.memory64Lowered).toBe(true);
    expect(off.memory64Lowered).toBe(false);
    expect(await loadImage(image, { lowerMemory64: false })).toBe(off);
    const a = new WasmInstance(off, zeroImports(off));
    const b = new WasmInstance(on, zeroImports(on));
    expect(b.memory.is64).toBe(true);
    expect(b.memory.size).toBe(a.memory.size);
    MESSAGES.forEach((code, k) => {
      const ra = handle(a, evalMsg(code, String(k + 1)));
      const rb = handle(b, evalMsg(code, String(k + 1)));
      expect(rb, code).toEqual(ra);
      expect(b.memory.size).toBe(a.memory.size);
      expect(b.memory.read(0n, b.memory.size).equals(a.memory.read(0n, a.memory.size)), `memory after ${code}`).toBe(true);
    });
    expect(handle(b, evalMsg('return X', '99')).response.Output.data).toBe('42');
    expect(a.memory.size).toBeGreaterThan(192n * 65536n); // Big grew the memory
  });

  it('snapshots move between lowered and unlowered instances (same module hash, same state)', async () => {
    const image = sharedFixture('aos-2-pure-xs.wasm');
    const on = await loadImage(image);
    const off = await loadImage(image, { lowerMemory64: false });
    expect(on.hash.equals(off.hash)).toBe(true);
    const a = new WasmInstance(on, zeroImports(on));
    expect(handle(a, evalMsg('Y = "lowered"', '1')).ok).toBe(true);
    const b = new WasmInstance(off, zeroImports(off));
    b.restore(a.snapshot());
    expect(handle(b, evalMsg('Y = Y .. "+unlowered" return Y', '2')).response.Output.data).toBe('lowered+unlowered');
    const c = new WasmInstance(on, zeroImports(on));
    c.restore(b.snapshot());
    expect(handle(c, evalMsg('return Y', '3')).response.Output.data).toBe('lowered+unlowered');
  });

  it('keeps memory64 with fuel (the guards would change fuel counts), and caches the lowered image on disk', async () => {
    const image = sharedFixture('aos-2-pure-xs.wasm');
    expect((await loadImage(image, { fuel: true })).memory64Lowered).toBe(false);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hb-lower-'));
    try {
      const m = await loadImage(image, { cacheDir: dir, interruptible: false });
      expect(m.memory64Lowered).toBe(true);
      const files = fs.readdirSync(dir);
      const hex = imageHash(image).toString('hex');
      expect(files).toContain(`${hex}.lower${LOWER_VERSION}.bin`);
      expect(files).toContain(`${hex}.exnref.wasm`);
      // The compiled code is named by the user's image alone (profile 4: interruptible false), and
      // stored once: not also under the lowered image's hash.
      const code = `${hex}-L${LOWER_VERSION}-4.wasmtime-48.0.8.cwasm`;
      expect(files.sort()).toEqual([code, `${hex}.exnref.wasm`, `${hex}.lower${LOWER_VERSION}.bin`].sort());
      // A later load maps that code and reads only the module hash from the .bin: its lowered
      // bytes, damaged here, are neither read nor rewritten.
      const bin = path.join(dir, `${hex}.lower${LOWER_VERSION}.bin`);
      const damaged = Buffer.concat([fs.readFileSync(bin).subarray(0, 32), Buffer.from('not a module')]);
      fs.writeFileSync(bin, damaged);
      m.dispose();
      const again = await loadImage(image, { cacheDir: dir, interruptible: false });
      expect(again).not.toBe(m);
      expect(again.memory64Lowered).toBe(true);
      expect(again.hash).toEqual(m.hash);
      const inst = new WasmInstance(again, zeroImports(again));
      expect(handle(inst, evalMsg('return 6 * 7', '1')).response.Output.data).toBe('42');
      expect(fs.readFileSync(bin)).toEqual(damaged);
      // Damaged compiled code is not trusted: compiled again (from the lowering) and replaced.
      fs.writeFileSync(path.join(dir, `${code}.new`), 'junk'); // by rename, as the cache does
      fs.renameSync(path.join(dir, `${code}.new`), path.join(dir, code));
      fs.writeFileSync(bin, 'junk');
      again.dispose();
      const third = await loadImage(image, { cacheDir: dir, interruptible: false });
      expect(third.memory64Lowered).toBe(true);
      expect(third.hash).toEqual(m.hash);
      expect(handle(new WasmInstance(third, zeroImports(third)), evalMsg('return 6 * 7', '1')).response.Output.data).toBe('42');
      expect(fs.readFileSync(path.join(dir, code)).subarray(0, 4)).toEqual(Buffer.from('\x7fELF', 'latin1'));
      expect(fs.readFileSync(bin).subarray(0, 32)).toEqual(m.hash);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
