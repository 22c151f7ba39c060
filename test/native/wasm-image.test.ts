/** Loading AOS images: legacy exceptions translated once, then run through the native handles. */
import { expect, it } from 'vitest';
import { WasmInstance, type WasmImports, type WasmModule } from '../../src/index';
import { loadImage } from '../../src/wasm-image';
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
