import { beforeAll, describe, expect, it } from 'vitest';
import { AoError, LimitError, WasmError, WasmInstance, WasmModule, WasmTrap } from '../../src/index';
import { wat } from '../helpers/wat';
import { thrown } from '../helpers/thrown';

let fac: WasmModule;
let types: WasmModule;
let traps: WasmModule;
let mem64: WasmModule;
let mem32: WasmModule;
let loop: WasmModule;
let loopBytes: Uint8Array;
let reentrant: WasmModule;
let table: WasmModule;


beforeAll(async () => {
  fac = WasmModule.compile(
    await wat(`(module
      (func $fac (export "fac") (param f64) (result f64)
        local.get 0 f64.const 1 f64.lt
        if (result f64) f64.const 1
        else local.get 0 local.get 0 f64.const 1 f64.sub call $fac f64.mul end))`),
  );
  // One import per value type, and an export echoing all of them through the imports.
  types = WasmModule.compile(
    await wat(`(module
      (import "host" "i32" (func $i32 (param i32) (result i32)))
      (import "host" "i64" (func $i64 (param i64) (result i64)))
      (import "host" "f32" (func $f32 (param f32) (result f32)))
      (import "host" "f64" (func $f64 (param f64) (result f64)))
      (import "host" "pair" (func $pair (param i32 i64) (result i64 f64)))
      (func (export "roundtrip") (param i32 i64 f32 f64) (result i32 i64 f32 f64)
        (call $i32 (local.get 0)) (call $i64 (local.get 1)) (call $f32 (local.get 2)) (call $f64 (local.get 3)))
      (func (export "pair") (param i32 i64) (result i64 f64) (call $pair (local.get 0) (local.get 1))))`),
  );
  traps = WasmModule.compile(
    await wat(`(module
      (memory 1)
      (func $inner (export "unreachable") unreachable)
      (func $outer (export "nested") call $inner)
      (func (export "div") (param i32 i32) (result i32) (i32.div_s (local.get 0) (local.get 1)))
      (func (export "oob") (result i32) (i32.load (i32.const 70000)))
      (func $rec (export "recurse") (param i32) (result i32) (call $rec (i32.add (local.get 0) (i32.const 1)))))`),
  );
  mem64 = WasmModule.compile(
    await wat(`(module
      (memory (export "memory") i64 1)
      (func (export "load") (param i64) (result i64) (i64.load (local.get 0)))
      (func (export "store") (param i64 i64) (i64.store (local.get 0) (local.get 1)))
      (func (export "grow") (param i64) (result i64) (memory.grow (local.get 0))))`),
  );
  mem32 = WasmModule.compile(
    await wat(`(module (memory (export "memory") 1 4)
      (data (i32.const 16) "hello")
      (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))`),
  );
  loopBytes = await wat(`(module (func (export "spin") (loop $l (br $l))) (func (export "one") (result i32) i32.const 1))`);
  loop = WasmModule.compile(loopBytes);
  table = WasmModule.compile(
    await wat(`(module
      (table (export "t") 3 funcref)
      (elem (i32.const 0) $add $neg)
      (func $add (param i64 i64) (result i64) (i64.add (local.get 0) (local.get 1)))
      (func $neg (param f64) (result f64) (f64.neg (local.get 0))))`),
  );
  reentrant = WasmModule.compile(
    await wat(`(module
      (import "host" "cb" (func $cb (param i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "twice") (param i32) (result i32) (i32.mul (local.get 0) (i32.const 2)))
      (func (export "viaHost") (param i32) (result i32) (call $cb (local.get 0))))`),
  );
});

describe('WasmInstance#call()', () => {
  it('returns results in an array and converts integers for f64 parameters', () => {
    const i = new WasmInstance(fac);
    expect(i.call('fac', [5])).toEqual([120]);
    expect(i.call('fac', [5.0])).toEqual([120]);
    expect(i.call('fac', [6n])).toEqual([720]);
  });

  it('throws AoError 400 on wrong arity and wrong types', () => {
    const i = new WasmInstance(fac);
    expect(thrown(() => i.call('fac', []))).toMatchObject({ status: 400, code: 'ERR_INVALID_ARG', message: 'expected 1 argument, got 0' });
    expect(thrown(() => i.call('fac', ['5']))).toMatchObject({ status: 400, message: 'argument 0 must be an f64 (number)' });
    const t = new WasmInstance(types, allHostTypes());
    expect(thrown(() => t.call('roundtrip', [1.5, 1n, 1, 1]))).toMatchObject({
      status: 400,
      message: 'argument 0 must be an i32 (integer in [-2^31, 2^32))',
    });
    expect(thrown(() => t.call('roundtrip', [1, 2 ** 60, 1, 1]))).toMatchObject({
      message: 'argument 1 must be an i64 (bigint, or a safe integer number)',
    });
  });

  it('throws AoError 404 for a missing export', () => {
    const e = thrown(() => new WasmInstance(fac).call('nope', []));
    expect(e).toBeInstanceOf(AoError);
    expect(e).toMatchObject({ status: 404, code: 'ERR_NOT_FOUND', message: 'function not found: nope' });
  });
});

function allHostTypes(log: unknown[][] = []) {
  return {
    host: {
      i32: (x: unknown) => (log.push(['i32', x]), (x as number) + 1),
      i64: (x: unknown) => (log.push(['i64', x]), (x as bigint) * 2n),
      f32: (x: unknown) => (log.push(['f32', x]), (x as number) / 2),
      f64: (x: unknown) => (log.push(['f64', x]), -(x as number)),
      pair: (a: unknown, b: unknown) => [BigInt(a as number) + (b as bigint), 0.25],
    },
  };
}

describe('WasmInstance#callTable()', () => {
  it('calls table elements by index with their own signatures', () => {
    const i = new WasmInstance(table);
    expect(i.callTable(0, [40n, 2n])).toEqual([42n]);
    expect(i.callTable(1n, [1.5])).toEqual([-1.5]);
  });

  it('traps on a null element and on an index past the table', () => {
    const i = new WasmInstance(table);
    expect(thrown(() => i.callTable(2, []))).toMatchObject({
      trapCode: 'indirect_call_to_null',
      message: 'callTable: element 2 is not a function',
    });
    expect(thrown(() => i.callTable(3, []))).toMatchObject({ trapCode: 'table_out_of_bounds' });
    expect(thrown(() => i.callTable(0, [1n]))).toMatchObject({ status: 400, message: 'expected 2 arguments, got 1' });
  });
});

describe('WasmInstance host imports', () => {
  it('calls JS imports with values of every type converted per signature (i64 as bigint)', () => {
    const log: unknown[][] = [];
    const i = new WasmInstance(types, allHostTypes(log));
    expect(i.call('roundtrip', [41, 2n ** 62n, 3, 1.5])).toEqual([42, 2n ** 63n * -1n, 1.5, -1.5]);
    expect(log).toEqual([
      ['i32', 41],
      ['i64', 2n ** 62n],
      ['f32', 3],
      ['f64', 1.5],
    ]);
    expect(i.call('pair', [-1, 10n])).toEqual([9n, 0.25]);
  });

  it('turns a JS exception in an import into a WasmTrap carrying the original error', () => {
    const original = new RangeError('host says no');
    const i = new WasmInstance(types, { host: { ...allHostTypes().host, i32: () => { throw original; } } });
    const e = thrown(() => i.call('roundtrip', [1, 1n, 1, 1]));
    expect(e).toBeInstanceOf(WasmTrap);
    expect(e).toMatchObject({ status: 500, code: 'ERR_WASM_TRAP', trapCode: 'host' });
    expect(e.message).toBe('call trapped: import host.i32 threw: host says no');
    expect(e.cause).toBe(original);
    // The instance keeps working.
    const ok = new WasmInstance(types, allHostTypes());
    expect(ok.call('roundtrip', [1, 1n, 1, 1])).toEqual([2, 2n, 0.5, -1]);
  });

  it('traps when an import returns a value of the wrong type', () => {
    const i = new WasmInstance(types, { host: { ...allHostTypes().host, i64: () => 'x' } });
    const e = thrown(() => i.call('roundtrip', [1, 1n, 1, 1]));
    expect(e).toBeInstanceOf(WasmTrap);
    expect(e.message).toBe('call trapped: import host.i64 returned an invalid value: expected an i64 (bigint or number)');
  });

  it('refuses to instantiate when an import is missing', () => {
    const e = thrown(() => new WasmInstance(types, { host: {} }));
    expect(e).toBeInstanceOf(WasmError);
    expect(e).toMatchObject({ code: 'ERR_WASM_LINK', message: 'unknown import: host.i32 has not been defined' });
  });

  it("links missing imports as trapping stubs with missingImports: 'trap'", () => {
    const i = new WasmInstance(types, { host: { ...allHostTypes().host, i64: undefined as never } }, { missingImports: 'trap' });
    const e = thrown(() => i.call('roundtrip', [1, 1n, 1, 1]));
    expect(e).toBeInstanceOf(WasmTrap);
    expect(e.message).toBe('call trapped: import host.i64 threw: import host.i64 was called but not provided');
    expect(i.call('pair', [1, 2n])).toEqual([3n, 0.25]);
  });

  it('refuses an import that is not a function', () => {
    const e = thrown(() => new WasmInstance(types, { host: { ...allHostTypes().host, f32: 42 as never } }));
    expect(e).toBeInstanceOf(AoError);
    expect(e).toMatchObject({ status: 400, message: 'WasmInstance: import host.f32 must be a function' });
  });

  it('lets an import call back into the same instance', () => {
    let inst: WasmInstance;
    inst = new WasmInstance(reentrant, { host: { cb: (x: unknown) => inst.call('twice', [x])[0] } });
    expect(inst.call('viaHost', [21])).toEqual([42]);
  });

  it('defers dispose() from inside an import until the call returns', () => {
    let inst: WasmInstance;
    inst = new WasmInstance(reentrant, {
      host: {
        cb: (x: unknown) => {
          inst.dispose();
          return x;
        },
      },
    });
    expect(inst.call('viaHost', [7])).toEqual([7]);
    expect(() => inst.call('twice', [1])).toThrow(new TypeError('WasmInstance is closed'));
  });
});

describe('WasmInstance traps', () => {
  it('reports unreachable with trap code and wasm frames, innermost first', () => {
    const e = thrown(() => new WasmInstance(traps).call('nested', []));
    expect(e).toBeInstanceOf(WasmTrap);
    expect(e).toMatchObject({ status: 500, code: 'ERR_WASM_TRAP', trapCode: 'unreachable' });
    expect(e.message).toMatch(/^call trapped: wasm trap: wasm `unreachable` instruction executed/);
    expect(e.frames.map((f: { funcName: string }) => f.funcName)).toEqual(['inner', 'outer']);
    expect(e.frames[0]).toMatchObject({ funcIndex: 0 });
    expect(typeof e.frames[0].moduleOffset).toBe('number');
  });

  it('names division by zero, out-of-bounds loads and stack overflow', () => {
    const i = new WasmInstance(traps);
    expect(thrown(() => i.call('div', [1, 0]))).toMatchObject({ trapCode: 'integer_division_by_zero' });
    expect(thrown(() => i.call('oob', []))).toMatchObject({ trapCode: 'memory_out_of_bounds' });
    expect(thrown(() => i.call('recurse', [0]))).toMatchObject({ trapCode: 'stack_overflow' });
    expect(i.call('div', [7, 2])).toEqual([3]);
  });

  it('stops a runaway call at its fuel budget with a LimitError, and the instance stays usable', () => {
    const i = new WasmInstance(WasmModule.compile(loopBytes, { fuel: true }), {}, { fuel: 100_000 });
    const e = thrown(() => i.call('spin', []));
    expect(e).toBeInstanceOf(LimitError);
    expect(e).toMatchObject({ status: 500, code: 'ERR_LIMIT_FUEL', limit: 'fuel', trapCode: 'out_of_fuel' });
    expect(e.message).toBe('call ran out of fuel (budget 100000)');
    expect(i.call('one', [])).toEqual([1]);
    expect(i.fuelConsumed).toBeGreaterThan(0n);
  });

  it('refuses a fuel budget for a module compiled without metering', () => {
    expect(thrown(() => new WasmInstance(loop, {}, { fuel: 10 }))).toMatchObject({
      status: 400,
      message: 'a fuel budget needs a module compiled with fuel metering (compile option fuel: true)',
    });
  });

  it('runs the same code in every engine profile', () => {
    for (const opts of [{}, { fuel: true }, { spectreMitigation: false }, { fuel: true, spectreMitigation: false }]) {
      const m = WasmModule.compile(loopBytes, opts);
      expect(m.metered).toBe(Boolean((opts as { fuel?: boolean }).fuel));
      expect(new WasmInstance(m).call('one', [])).toEqual([1]);
      expect(new WasmInstance(WasmModule.deserialize(m.serialize())).call('one', [])).toEqual([1]);
    }
  });
});

describe('WasmInstance#memory', () => {
  it('reads and writes a 64-bit memory above the 4 GiB offset', () => {
    const i = new WasmInstance(mem64, {}, { maxMemoryBytes: 8 * 2 ** 30 }); // past the default cap of 4 GiB
    expect(i.memory.is64).toBe(true);
    expect(i.memory.size).toBe(65536n);
    expect(i.call('grow', [65536n])).toEqual([1n]);
    expect(i.memory.size).toBe(65537n * 65536n);
    const high = 2n ** 32n + 8n;
    i.call('store', [high, 0x1122334455667788n]);
    expect(i.memory.read(high, 8)).toEqual(Buffer.from([0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]));
    i.memory.write(high + 16n, Buffer.from([1, 0, 0, 0, 0, 0, 0, 0x80]));
    expect(i.call('load', [high + 16n])).toEqual([-(2n ** 63n) + 1n]);
    expect(() => i.memory.read(65537n * 65536n - 4n, 8)).toThrow(
      'read of 8 bytes at 4295032828 is out of bounds (memory size 4295032832)',
    );
  });

  it('bounds-checks against the current size, which changes after grow', () => {
    const i = new WasmInstance(mem32);
    expect(i.memory.size).toBe(65536);
    expect(i.memory.read(16, 5).toString()).toBe('hello');
    const e = thrown(() => i.memory.read(65536, 1));
    expect(e).toBeInstanceOf(AoError);
    expect(e).toMatchObject({ status: 400, code: 'ERR_OUT_OF_BOUNDS' });
    expect(() => i.memory.write(65535, Buffer.from('ab'))).toThrow('write of 2 bytes at 65535 is out of bounds (memory size 65536)');
    expect(i.memory.grow(1)).toBe(1);
    i.memory.write(65536, Buffer.from('ok'));
    expect(i.memory.read(65536, 2).toString()).toBe('ok');
    expect(() => i.memory.read(-1, 1)).toThrow('ptr must be a non-negative integer');
  });

  it('caps memory growth at maxMemoryBytes', () => {
    const i = new WasmInstance(mem32, {}, { maxMemoryBytes: 2 * 65536 });
    expect(i.call('grow', [1])).toEqual([1]);
    expect(i.call('grow', [1])).toEqual([-1]);
    expect(i.memory.size).toBe(2 * 65536);
  });
});

describe('WasmInstance#dispose()', () => {
  it('is idempotent; every method afterwards throws TypeError', () => {
    const i = new WasmInstance(mem32);
    i.dispose();
    i.dispose();
    expect(() => i.call('grow', [1])).toThrow(new TypeError('WasmInstance is closed'));
    expect(() => i.memory.read(0, 1)).toThrow(new TypeError('WasmInstance is closed'));
    expect(() => i.snapshot()).toThrow(new TypeError('WasmInstance is closed'));
  });

  it('leaves other instances of the same module working', () => {
    const a = new WasmInstance(fac);
    const b = new WasmInstance(fac);
    a.dispose();
    expect(b.call('fac', [4])).toEqual([24]);
  });
});
