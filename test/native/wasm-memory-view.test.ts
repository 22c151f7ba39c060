/** `instance.memory.view()`: the linear memory without a copy, never dangling. */
import { describe, expect, it } from 'vitest';
import { WasmInstance, WasmModule } from '../../src/index';
import { wat } from '../helpers/wat';

const TEXT = `(module
  (import "env" "peek" (func $peek (param i32) (result i32)))
  (memory (export "memory") 1 100)
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
  (func (export "poke") (param i32 i32) (i32.store8 (local.get 0) (local.get 1)))
  (func (export "growThenPeek") (result i32) (drop (memory.grow (i32.const 1))) (call $peek (i32.const 5))))`;

async function instance(peek: (p: number) => number = () => 0): Promise<WasmInstance> {
  return new WasmInstance(WasmModule.compile(await wat(TEXT), { cache: false }), { env: { peek: (p) => peek(Number(p)) } });
}

describe('WasmInstance memory.view()', () => {
  it('is the memory itself: guest writes show through, host writes reach the guest', async () => {
    const inst = await instance();
    const v = inst.memory.view();
    expect(v).toBeInstanceOf(ArrayBuffer);
    expect(v.byteLength).toBe(65536);
    expect(inst.memory.view()).toBe(v); // the same view while the memory is unchanged
    inst.call('poke', [5, 42]);
    expect(new Uint8Array(v)[5]).toBe(42);
    new Uint8Array(v)[6] = 7;
    expect(inst.memory.read(6, 1)[0]).toBe(7);
  });

  it('is detached when the memory grows (from the host or the guest) and on dispose; a restore shows through', async () => {
    const inst = await instance();
    const v1 = inst.memory.view();
    inst.memory.grow(1);
    expect(v1.byteLength).toBe(0);
    const v2 = inst.memory.view();
    expect(v2.byteLength).toBe(2 * 65536);
    inst.call('grow', [1]);
    expect(v2.byteLength).toBe(0);
    const snap = inst.snapshot();
    const v3 = inst.memory.view();
    inst.call('poke', [9, 99]);
    expect(new Uint8Array(v3)[9]).toBe(99);
    inst.restore(snap); // same size, same place: the view stays valid and shows the restored bytes
    expect(v3.byteLength).toBe(3 * 65536);
    expect(new Uint8Array(v3)[9]).toBe(0);
    const v4 = inst.memory.view();
    inst.dispose();
    expect(v4.byteLength).toBe(0);
    expect(() => new Uint8Array(v4)).toThrow(TypeError); // detached: nothing can reach freed memory
  });

  it('is detached before a host import runs after the guest grew memory in the same call', async () => {
    let seen = -1;
    let held: ArrayBuffer | undefined;
    const inst = await instance(() => {
      seen = held!.byteLength;
      return 0;
    });
    held = inst.memory.view();
    inst.call('growThenPeek');
    expect(seen).toBe(0);
    expect(inst.memory.view().byteLength).toBe(2 * 65536);
  });
});
