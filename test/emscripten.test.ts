/** Emscripten's JS-side exception and longjmp protocol (invoke_*, setThrew, __cxa_*). */
import { beforeAll, describe, expect, it } from 'vitest';
import { emscriptenImports } from '../src/emscripten';
import { WasiPreview1, WasmInstance, WasmModule, exitCodeOf, wasiImportsFor } from '../src/index';
import { describeShared, sharedFixture } from './helpers/fixtures';
import { thrown } from './helpers/thrown';
import { wat } from './helpers/wat';

let protocol: WasmModule;
beforeAll(async () => {
  // $threw is what setThrew sets; the stack pointer is saved and restored around each invoke.
  protocol = WasmModule.compile(
    await wat(`(module
      (import "env" "invoke_v" (func $invoke_v (param i32)))
      (import "env" "invoke_ii" (func $invoke_ii (param i32 i32) (result i32)))
      (import "env" "_emscripten_throw_longjmp" (func $longjmp))
      (memory (export "memory") 1)
      (global $threw (mut i32) (i32.const 0))
      (global $sp (mut i32) (i32.const 1000))
      (table (export "__indirect_function_table") 2 funcref)
      (elem (i32.const 0) $thrower $adder)
      (func $thrower (global.set $sp (i32.const 7)) (call $longjmp))
      (func $adder (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))
      (func (export "setThrew") (param i32 i32) (global.set $threw (local.get 0)))
      (func (export "emscripten_stack_get_current") (result i32) (global.get $sp))
      (func (export "_emscripten_stack_restore") (param i32) (global.set $sp (local.get 0)))
      (func (export "jump") (result i32 i32) (call $invoke_v (i32.const 0)) (global.get $threw) (global.get $sp))
      (func (export "add") (param i32) (result i32) (call $invoke_ii (i32.const 1) (local.get 0))))`),
  );
});

function instantiate(m: WasmModule): WasmInstance {
  let inst: WasmInstance;
  const env = emscriptenImports(m.imports.map((i) => i.name), () => inst);
  inst = new WasmInstance(m, { env });
  return inst;
}

describe('invoke_* trampolines', () => {
  it('catch a longjmp: the stack pointer is restored and setThrew(1, 0) called', () => {
    expect(instantiate(protocol).call('jump', [])).toEqual([1, 1000]);
  });

  it('pass the callee result back (HyperBEAM dropped it)', () => {
    expect(instantiate(protocol).call('add', [41])).toEqual([42]);
  });
});

describeShared('C++ exceptions in test-ex.wasm', () => {
  it('are thrown, matched and caught through __cxa_* and invoke_*', () => {
    const m = WasmModule.compile(sharedFixture('test-ex.wasm'));
    const wasi = new WasiPreview1({ args: ['test-ex'] });
    let inst: WasmInstance;
    const env = emscriptenImports(m.imports.filter((i) => i.module === 'env').map((i) => i.name), () => inst);
    inst = new WasmInstance(m, { ...wasiImportsFor(m, wasi, () => inst), env });
    inst.call('emscripten_stack_init', []);
    const e = thrown(() => inst.call('_start', []));
    expect(exitCodeOf(e)).toBe(0);
    expect(Buffer.from(wasi.stdout).toString()).toBe('enter main\nenter try\ncatching runtime_error\nexit main\n');
  });
});
