/**
 * Limits of WasmInstance: the wall-clock deadline (instantiation, calls, host imports, nested
 * calls), fuel on start functions, memory and table caps, and the compile bound.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import {
  AoError,
  DEFAULT_COMPILE_LIMITS,
  DEFAULT_MAX_MEMORY_BYTES,
  DEFAULT_MAX_TABLE_ELEMENTS,
  DEFAULT_TIME_LIMIT_MS,
  LimitError,
  WasmError,
  WasmInstance,
  WasmModule,
  WasmTrap,
} from '../../src/index';
import { uleb } from '../../src/wasm-binary';
import { thrown } from '../helpers/thrown';
import { wat } from '../helpers/wat';

const SPIN = `(func $spin (export "spin") (loop $l (br $l)))`;
let loop: WasmModule;
let loopBytes: Uint8Array;
let startLoopBytes: Uint8Array;
let slowHost: WasmModule;
let nested: WasmModule;
let grow: WasmModule;
let tables: WasmModule;

/** Busy-waits `ms` milliseconds (a host import that takes time). */
function busy(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end);
}

beforeAll(async () => {
  loopBytes = await wat(`(module ${SPIN} (func (export "one") (result i32) i32.const 1)
    (func (export "count") (param i32) (result i32) (local i32)
      (loop $l (local.set 1 (i32.add (local.get 1) (i32.const 1))) (br_if $l (i32.lt_u (local.get 1) (local.get 0))))
      (local.get 1)))`);
  loop = WasmModule.compile(loopBytes);
  startLoopBytes = await wat(`(module (func $s (loop $l (br $l))) (start $s) (func (export "one") (result i32) i32.const 1))`);
  slowHost = WasmModule.compile(
    await wat(`(module (import "h" "slow" (func $slow))
      (global $after (mut i32) (i32.const 0))
      (func (export "run") (loop $l (call $slow) (global.set $after (i32.add (global.get $after) (i32.const 1))) (br $l)))
      (func (export "after") (result i32) (global.get $after)))`),
  );
  nested = WasmModule.compile(
    await wat(`(module (import "h" "cb" (func $cb)) ${SPIN}
      (func (export "outer") (call $cb)) (func (export "one") (result i32) i32.const 1))`),
  );
  grow = WasmModule.compile(
    await wat(`(module (memory (export "memory") 1)
      (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
      (func (export "growOrTrap") (param i32) (result i32)
        (if (i32.eq (memory.grow (local.get 0)) (i32.const -1)) (then unreachable)) (memory.size))
      (func (export "trap") unreachable))`),
  );
  tables = WasmModule.compile(
    await wat(`(module (table $t 0 funcref)
      (func (export "grow") (param i32) (result i32) (table.grow $t (ref.null func) (local.get 0)))
      (func (export "fill") (param i32) (result i32)
        (loop $l (br_if $l (i32.ne (table.grow $t (ref.null func) (local.get 0)) (i32.const -1))))
        (table.size $t))
      (func (export "growOrTrap") (param i32)
        (if (i32.eq (table.grow $t (ref.null func) (local.get 0)) (i32.const -1)) (then unreachable))))`),
  );
});

function expectTimeLimit(e: unknown, message: string): void {
  expect(e).toBeInstanceOf(LimitError);
  expect(e).toMatchObject({ status: 500, code: 'ERR_LIMIT_TIME', limit: 'time', trapCode: 'interrupt', message });
}

describe('WasmInstance time limit', () => {
  it('stops a runaway call with a LimitError naming the limit, and the instance stays usable', () => {
    const i = new WasmInstance(loop, {}, { timeLimit: 50 });
    const e = thrown(() => i.call('spin', []));
    expectTimeLimit(e, 'call exceeded its time limit of 50 ms');
    expect(e.frames).toEqual([expect.objectContaining({ funcIndex: 0, funcName: 'spin' })]);
    expect(i.call('one', [])).toEqual([1]);
    expect(i.call('count', [1_000_000])).toEqual([1_000_000]);
  });

  it('never ends a call before its time limit has passed', () => {
    const i = new WasmInstance(loop, {}, { timeLimit: Infinity });
    for (const limit of [1, 7, 20, 50]) {
      const t0 = performance.now();
      expectTimeLimit(thrown(() => i.call('spin', [], { timeLimit: limit })), `call exceeded its time limit of ${limit} ms`);
      expect(performance.now() - t0).toBeGreaterThanOrEqual(limit);
    }
  });

  it('stops a tree of calls without loops (the checks at function entries)', async () => {
    // $f0 calls $f1 ten times, ..., $f9 calls $f10: ten billion calls and no loop
    const fs = Array.from({ length: 10 }, (_, k) => `(func $f${k} ${`(call $f${k + 1}) `.repeat(10)})`).join(' ');
    const m = WasmModule.compile(await wat(`(module ${fs} (func $f10) (func (export "tree") (call $f0)))`));
    const i = new WasmInstance(m, {}, { timeLimit: 30 });
    expectTimeLimit(thrown(() => i.call('tree', [])), 'call exceeded its time limit of 30 ms');
  });

  it('takes a per-call timeLimit over the instance one, on call() and callTable()', async () => {
    const i = new WasmInstance(loop, {}, { timeLimit: Infinity });
    expectTimeLimit(thrown(() => i.call('spin', [], { timeLimit: 20 })), 'call exceeded its time limit of 20 ms');
    expect(i.call('one', [], { timeLimit: Infinity })).toEqual([1]);
    const t = new WasmInstance(WasmModule.compile(await wat(`(module (table (export "t") 1 funcref) (elem (i32.const 0) $spin) ${SPIN})`)));
    expectTimeLimit(thrown(() => t.callTable(0, [], { timeLimit: 20.5 })), 'callTable exceeded its time limit of 20.5 ms');
  });

  it('bounds instantiation: a start function that never returns', () => {
    const m = WasmModule.compile(startLoopBytes);
    expectTimeLimit(thrown(() => new WasmInstance(m, {}, { timeLimit: 50 })), 'instantiation exceeded its time limit of 50 ms');
  });

  it('counts time spent in host imports: the call ends when an import returns past the deadline', () => {
    let calls = 0;
    const i = new WasmInstance(slowHost, { h: { slow: () => (calls++, busy(40)) } }, { timeLimit: 30 });
    expectTimeLimit(thrown(() => i.call('run', [])), 'call exceeded its time limit of 30 ms');
    expect(calls).toBe(1);
    expect(i.call('after', [])).toEqual([0]); // the guest did not run on after the import
  });

  it('gives a nested call the outermost call’s deadline, and reports the outer call as timed out', () => {
    const seen: unknown[] = [];
    let inst: WasmInstance;
    inst = new WasmInstance(
      nested,
      {
        h: {
          cb: () => {
            try {
              inst.call('spin', [], { timeLimit: 1e9 });
            } catch (e) {
              seen.push(e);
            }
          },
        },
      },
      { timeLimit: 40 },
    );
    expectTimeLimit(thrown(() => inst.call('outer', [])), 'call exceeded its time limit of 40 ms');
    expect(seen).toHaveLength(1);
    expectTimeLimit(seen[0], 'call exceeded its time limit of 40 ms');
    expect(inst.call('one', [])).toEqual([1]);
  });

  it('ends the outer call whenever a nested call reached the deadline, at short limits too', () => {
    // The epoch reaches the deadline once the time has passed; the coarse clock the import check
    // reads can still be a few ms short of it then.
    let inst: WasmInstance;
    let caught = 0;
    inst = new WasmInstance(nested, {
      h: {
        cb: () => {
          try {
            inst.call('spin', []);
          } catch {
            caught++;
          }
        },
      },
    });
    for (let k = 0; k < 40; k++) {
      expectTimeLimit(thrown(() => inst.call('outer', [], { timeLimit: 10 })), 'call exceeded its time limit of 10 ms');
    }
    expect(caught).toBe(40);
  });

  it('stops a runaway call under the defaults', () => {
    expect(DEFAULT_TIME_LIMIT_MS).toBe(10_000);
    expectTimeLimit(thrown(() => new WasmInstance(loop).call('spin', [])), 'call exceeded its time limit of 10000 ms');
  }, 60_000);

  it('refuses timeLimit values that are not a positive number of milliseconds', () => {
    for (const bad of [0, -1, NaN, '10', null]) {
      const e = thrown(() => new WasmInstance(loop, {}, { timeLimit: bad as never }));
      expect(e).toBeInstanceOf(AoError);
      expect(e).toMatchObject({ status: 400, message: 'WasmInstance: timeLimit must be a positive number of milliseconds, or Infinity' });
    }
    const i = new WasmInstance(loop);
    expect(thrown(() => i.call('one', [], { timeLimit: 0 }))).toMatchObject({
      status: 400,
      message: 'call: timeLimit must be a positive number of milliseconds, or Infinity',
    });
    expect(thrown(() => i.call('one', [], { time: 5 } as never)).message).toBe("call: unknown option 'time' (allowed: timeLimit)");
  });

  it('is opted out of entirely with interruptible: false (no epoch checks compiled in)', () => {
    const m = WasmModule.compile(loopBytes, { interruptible: false });
    expect([m.interruptible, loop.interruptible]).toEqual([false, true]);
    const i = new WasmInstance(m);
    expect(i.call('count', [1000])).toEqual([1000]);
    expect(thrown(() => new WasmInstance(m, {}, { timeLimit: 50 }))).toMatchObject({
      status: 400,
      message: 'WasmInstance: a timeLimit needs a module compiled with interruptible: true (the default)',
    });
    expect(thrown(() => i.call('one', [], { timeLimit: 50 }))).toMatchObject({
      status: 400,
      message: 'a time limit needs a module compiled with interruptible: true (the default)',
    });
    expect(new WasmInstance(m, {}, { timeLimit: Infinity }).call('one', [], { timeLimit: Infinity })).toEqual([1]);
  });

  it('applies with fuel too: whichever limit comes first', () => {
    const i = new WasmInstance(WasmModule.compile(loopBytes, { fuel: true }), {}, { fuel: 2e9, timeLimit: 30 });
    expectTimeLimit(thrown(() => i.call('spin', [])), 'call exceeded its time limit of 30 ms');
    const small = new WasmInstance(WasmModule.compile(loopBytes, { fuel: true }), {}, { fuel: 1e6, timeLimit: 60_000 });
    expect(thrown(() => small.call('spin', []))).toMatchObject({ limit: 'fuel', message: 'call ran out of fuel (budget 1000000)' });
  });
});

describe('WasmInstance fuel on start functions', () => {
  it('meters the start function with the instance budget', () => {
    const m = WasmModule.compile(startLoopBytes, { fuel: true });
    const e = thrown(() => new WasmInstance(m, {}, { fuel: 10_000 }));
    expect(e).toBeInstanceOf(LimitError);
    expect(e).toMatchObject({ code: 'ERR_LIMIT_FUEL', limit: 'fuel', trapCode: 'out_of_fuel', message: 'instantiation ran out of fuel (budget 10000)' });
  });

  it('reports the fuel a start function used', async () => {
    const m = WasmModule.compile(
      await wat(`(module (global $n (mut i32) (i32.const 0)) (func $s (global.set $n (i32.const 5))) (start $s) (func (export "n") (result i32) global.get $n))`),
      { fuel: true },
    );
    const i = new WasmInstance(m, {}, { fuel: 1000 });
    const used = i.fuelConsumed;
    expect(used).toBeGreaterThan(0n);
    expect(used).toBeLessThan(1000n);
    expect(i.call('n', [])).toEqual([5]);
  });
});

describe('WasmInstance memory cap', () => {
  it('caps a memory64 with no declared maximum at 4 GiB by default', async () => {
    expect(DEFAULT_MAX_MEMORY_BYTES).toBe(4 * 2 ** 30);
    const m = WasmModule.compile(await wat(`(module (memory i64 1) (func (export "grow") (param i64) (result i64) (memory.grow (local.get 0))))`));
    const i = new WasmInstance(m);
    expect(i.call('grow', [65536n])).toEqual([-1n]); // to 4 GiB + 64 KiB
    expect(i.call('grow', [65535n])).toEqual([1n]); // to exactly 4 GiB
  });

  it('honours a declared maximum above 4 GiB by default', async () => {
    const m = WasmModule.compile(await wat(`(module (memory i64 1 131072) (func (export "grow") (param i64) (result i64) (memory.grow (local.get 0))))`));
    expect(new WasmInstance(m).call('grow', [65536n])).toEqual([1n]);
  });

  it('returns -1 to the guest at maxMemoryBytes; a call that then traps is a memory LimitError', () => {
    const i = new WasmInstance(grow, {}, { maxMemoryBytes: 2 * 65536 });
    expect(i.call('grow', [2])).toEqual([-1]);
    expect(i.call('grow', [1])).toEqual([1]);
    const e = thrown(() => i.call('growOrTrap', [1]));
    expect(e).toBeInstanceOf(LimitError);
    expect(e).toMatchObject({
      code: 'ERR_LIMIT_MEMORY',
      limit: 'memory',
      trapCode: 'unreachable',
      message: 'call trapped: wasm trap: wasm `unreachable` instruction executed (a memory of 196608 bytes was refused at the cap of 131072 bytes)',
    });
    // A later trap with no refused growth in its call is an ordinary trap again.
    const t = thrown(() => i.call('trap', []));
    expect(t).toBeInstanceOf(WasmTrap);
    expect(t).toMatchObject({ code: 'ERR_WASM_TRAP', trapCode: 'unreachable' });
    expect(i.call('grow', [0])).toEqual([2]);
    // 32-bit memories without a maximum stop at 4 GiB, as the index type does.
    expect(thrown(() => new WasmInstance(grow).call('growOrTrap', [70000]))).toMatchObject({ limit: 'memory' });
  });

  it('refuses an instantiation that needs more memory than the cap', async () => {
    const m = WasmModule.compile(await wat(`(module (memory 4))`));
    const e = thrown(() => new WasmInstance(m, {}, { maxMemoryBytes: 3 * 65536 }));
    expect(e).toBeInstanceOf(LimitError);
    expect(e).toMatchObject({
      code: 'ERR_LIMIT_MEMORY',
      message:
        'instantiation failed: memory minimum size of 4 pages exceeds memory limits (a memory of 262144 bytes was refused at the cap of 196608 bytes)',
    });
    expect(new WasmInstance(m, {}, { maxMemoryBytes: 4 * 65536 }).memory).toBeDefined();
  });

  it('makes a refused host-side memory.grow a LimitError', () => {
    const i = new WasmInstance(grow, {}, { maxMemoryBytes: 65536 });
    const e = thrown(() => i.memory.grow(1));
    expect(e).toBeInstanceOf(LimitError);
    expect(e).toMatchObject({ limit: 'memory', message: 'memory.grow(1) failed: failed to grow memory by `1` (a memory of 131072 bytes was refused at the cap of 65536 bytes)' });
  });

  it('refuses maxMemoryBytes and maxTableElements values that are not integers', () => {
    for (const [opts, message] of [
      [{ maxMemoryBytes: 0 }, 'maxMemoryBytes must be a positive integer or Infinity'],
      [{ maxMemoryBytes: 1.5 }, 'maxMemoryBytes must be a positive integer or Infinity'],
      [{ maxTableElements: -1 }, 'maxTableElements must be a non-negative integer or Infinity'],
    ] as const) {
      expect(thrown(() => new WasmInstance(grow, {}, opts as never))).toMatchObject({ status: 400, message: `WasmInstance: ${message}` });
    }
  });
});

describe('WasmInstance table cap', () => {
  it('bounds tables at 10 million elements by default: growing to exhaustion stops there', () => {
    expect(DEFAULT_MAX_TABLE_ELEMENTS).toBe(10_000_000);
    expect(new WasmInstance(tables).call('fill', [1_000_000])).toEqual([10_000_000]);
  });

  it('returns -1 at maxTableElements; a call that then traps is a memory LimitError', () => {
    const i = new WasmInstance(tables, {}, { maxTableElements: 10 });
    expect(i.call('grow', [11])).toEqual([-1]);
    expect(i.call('grow', [10])).toEqual([0]);
    expect(thrown(() => i.call('growOrTrap', [1]))).toMatchObject({
      code: 'ERR_LIMIT_MEMORY',
      limit: 'memory',
      message: 'call trapped: wasm trap: wasm `unreachable` instruction executed (a table of 11 elements was refused at the cap of 10 elements)',
    });
  });

  it('refuses an instantiation whose table is larger than the cap', async () => {
    const m = WasmModule.compile(await wat(`(module (table 100 funcref))`));
    expect(thrown(() => new WasmInstance(m, {}, { maxTableElements: 99 }))).toMatchObject({
      code: 'ERR_LIMIT_MEMORY',
      message: 'instantiation failed: table minimum size of 100 elements exceeds table limits (a table of 100 elements was refused at the cap of 99 elements)',
    });
  });
});

describe('WasmModule.compile() limits', () => {
  /** A module of one `() -> ()` function per body (bodies without their locals and final end). */
  function module(...bodies: number[][]): Uint8Array {
    const code = bodies.map((b) => {
      const body = [0, ...b, 0x0b];
      return [...uleb(body.length), ...body];
    });
    const codeSection = [...uleb(bodies.length), ...code.flat()];
    return Buffer.concat([
      Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 4, 1, 0x60, 0, 0, 3, ...uleb(bodies.length + 1), ...uleb(bodies.length), ...bodies.map(() => 0)]),
      Buffer.from([10, ...uleb(codeSection.length), ...codeSection]),
    ]);
  }
  const nops = (n: number): number[] => Array(n).fill(0x01);
  const loops = (n: number, nested = false): number[] =>
    nested ? [...Array(n).fill([0x03, 0x40]).flat(), ...Array(n).fill(0x0b)] : Array(n).fill([0x03, 0x40, 0x0b]).flat();
  const blocks = (n: number): number[] => [...Array(n).fill([0x02, 0x40]).flat(), ...Array(n).fill(0x0b)];

  function expectTooLarge(image: Uint8Array, opts: object, message: string): void {
    const e = thrown(() => WasmModule.compile(image, { cache: false, ...opts }));
    expect(e).toBeInstanceOf(WasmError);
    expect(e).toMatchObject({ status: 400, code: 'ERR_WASM_TOO_LARGE', message });
  }

  it('has defaults: 1 MiB per function, 10,000 nested blocks, 16 million loops squared, 160 million branches squared', () => {
    expect(DEFAULT_COMPILE_LIMITS).toEqual({
      maxFunctionBytes: 1 << 20,
      maxNestingDepth: 10_000,
      maxLoopsSquared: 16_000_000,
      maxBranchesSquared: 160_000_000,
    });
  });

  it('refuses a function body over maxFunctionBytes, and takes it when allowed', () => {
    const image = module(nops(DEFAULT_COMPILE_LIMITS.maxFunctionBytes));
    expectTooLarge(image, {}, 'function 0 has a body of 1048578 bytes, over the compile limit of 1048576 (compile option maxFunctionBytes)');
    expect(WasmModule.compile(image, { cache: false, maxFunctionBytes: Infinity }).exports).toEqual([]);
    expect(WasmModule.compile(module(nops(1000)), { cache: false, maxFunctionBytes: 1002 }).exports).toEqual([]);
    expectTooLarge(module(nops(1000)), { maxFunctionBytes: 1001 }, 'function 0 has a body of 1002 bytes, over the compile limit of 1001 (compile option maxFunctionBytes)');
  });

  it('refuses blocks nested deeper than maxNestingDepth', () => {
    expectTooLarge(module(nops(1), blocks(10_001)), {}, 'function 1 nests 10001 blocks, over the compile limit of 10000 (compile option maxNestingDepth)');
    expect(WasmModule.compile(module(blocks(10_000)), { cache: false }).exports).toEqual([]);
    expectTooLarge(module(loops(50, true)), { maxNestingDepth: 49 }, 'function 0 nests 50 blocks, over the compile limit of 49 (compile option maxNestingDepth)');
  });

  it('bounds loops by the sum over functions of their count squared', () => {
    expectTooLarge(module(loops(4_001)), {}, 'the sum over functions of their loops squared is 16008001, over the compile limit of 16000000 (compile option maxLoopsSquared)');
    expectTooLarge(module(loops(30), loops(40)), { maxLoopsSquared: 2_499 }, 'the sum over functions of their loops squared is 2500, over the compile limit of 2499 (compile option maxLoopsSquared)');
    expect(WasmModule.compile(module(loops(30), loops(40)), { cache: false, maxLoopsSquared: 2_500 }).exports).toEqual([]);
  });

  it('bounds conditional branches by the sum of their count squared, for fuel-metered modules only', () => {
    const brIfs = (n: number): number[] => Array(n).fill([0x41, 0x00, 0x0d, 0x00]).flat();
    const image = module(brIfs(12_650));
    expectTooLarge(image, { fuel: true }, 'the sum over functions of their branches squared is 160022500, over the compile limit of 160000000 (compile option maxBranchesSquared)');
    expect(WasmModule.compile(image, { cache: false }).exports).toEqual([]);
    expectTooLarge(module(brIfs(10), loops(10)), { fuel: true, maxBranchesSquared: 199 }, 'the sum over functions of their branches squared is 200, over the compile limit of 199 (compile option maxBranchesSquared)');
  });

  it('validates the limit options even when the module is cached', () => {
    const image = module(nops(10));
    WasmModule.compile(image);
    expect(thrown(() => WasmModule.compile(image, { maxNestingDepth: -1 }))).toMatchObject({
      status: 400,
      message: 'WasmModule.compile: maxNestingDepth must be a non-negative integer or Infinity',
    });
  });

  it('leaves truncated images to the engine', () => {
    const image = module(nops(100));
    expect(thrown(() => WasmModule.compile(image.subarray(0, image.length - 10)))).toMatchObject({ code: 'ERR_WASM_COMPILE' });
  });
});
