/**
 * Differential test of the memory64 lowering (src/wasm-lower.ts): the original module (memory64
 * on Wasmtime) and the lowered one (32-bit memory) run the same calls and must give the same
 * results, the same trap codes and messages, and the same memory bytes.
 */
import { describe, expect, it } from 'vitest';
import { WasmInstance, WasmModule } from '../src/index';
import { markMemory64Lowered } from '../src/wasm';
import { lowerMemory64, MAX_LOWERED_PAGES } from '../src/wasm-lower';
import { wat, watAll } from './helpers/wat';

const PAGE = 65536n;
const U64 = (n: bigint): bigint => BigInt.asUintN(64, n);

/** Loads: [opcode, how its result becomes an i64]. */
const LOADS: Array<[string, string]> = [
  ['i32.load', 'i64.extend_i32_u'],
  ['i32.load8_s', 'i64.extend_i32_s'],
  ['i32.load8_u', 'i64.extend_i32_u'],
  ['i32.load16_s', 'i64.extend_i32_s'],
  ['i32.load16_u', 'i64.extend_i32_u'],
  ['i64.load', ''],
  ['i64.load8_s', ''],
  ['i64.load8_u', ''],
  ['i64.load16_s', ''],
  ['i64.load16_u', ''],
  ['i64.load32_s', ''],
  ['i64.load32_u', ''],
  ['f32.load', 'i32.reinterpret_f32 i64.extend_i32_u'],
  ['f64.load', 'i64.reinterpret_f64'],
  ['v128.load', 'i64x2.extract_lane 1'],
  ['v128.load32_splat', 'i64x2.extract_lane 1'],
  ['v128.load32_zero', 'i64x2.extract_lane 0'],
];
/** Stores: [opcode, how an i64 parameter becomes the stored value]. */
const STORES: Array<[string, string]> = [
  ['i32.store', 'i32.wrap_i64'],
  ['i32.store8', 'i32.wrap_i64'],
  ['i32.store16', 'i32.wrap_i64'],
  ['i64.store', ''],
  ['i64.store8', ''],
  ['i64.store16', ''],
  ['i64.store32', ''],
  ['f32.store', 'i32.wrap_i64 f32.reinterpret_i32'],
  ['f64.store', 'f64.reinterpret_i64'],
  ['v128.store', 'i64x2.splat'],
];
const OFFSETS = [0n, 16n, PAGE - 1n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 63n];

/** The corpus module: every access kind as an export, memory64 of 1 page growing to `max`. */
function corpus(max: number | undefined): string {
  const fns: string[] = [];
  LOADS.forEach(([op, conv], i) => {
    OFFSETS.forEach((off, k) => {
      fns.push(`(func (export "L${i}_${k}") (param i64) (result i64) local.get 0 ${op} offset=${off} ${conv})`);
    });
  });
  STORES.forEach(([op, conv], i) => {
    OFFSETS.forEach((off, k) => {
      fns.push(`(func (export "S${i}_${k}") (param i64 i64) local.get 0 local.get 1 ${conv} ${op} offset=${off})`);
    });
  });
  return `(module
    (memory (export "mem") i64 1 ${max ?? ''})
    (data (i64.const 0) "\\01\\02\\03\\04\\05\\06\\07\\08\\f9\\fa\\fb\\fc\\fd\\fe\\ff\\80")
    (data (i64.const 65520) "\\81\\82\\83\\84\\85\\86\\87\\88\\89\\8a\\8b\\8c\\8d\\8e\\8f\\90")
    (data $p "0123456789abcdef")
    (func (export "lane_load") (param i64) (result i64) local.get 0 v128.const i64x2 7 9 v128.load32_lane offset=4 1 i64x2.extract_lane 0)
    (func (export "lane_store") (param i64) local.get 0 v128.const i64x2 0x1122334455667788 9 v128.store64_lane offset=8 0)
    (func (export "fill") (param i64 i32 i64) local.get 0 local.get 1 local.get 2 memory.fill)
    (func (export "copy") (param i64 i64 i64) local.get 0 local.get 1 local.get 2 memory.copy)
    (func (export "init") (param i64 i32 i32) local.get 0 local.get 1 local.get 2 memory.init $p)
    (func (export "size") (result i64) memory.size)
    (func (export "grow") (param i64) (result i64) local.get 0 memory.grow)
    ${fns.join('\n    ')})`;
}

const ADDRESSES = [0n, 8n, PAGE - 16n, PAGE - 4n, PAGE - 1n, PAGE, 2n * PAGE - 8n, 2n ** 31n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 32n + 16n, 2n ** 63n, U64(-16n), U64(-1n)];
const LENGTHS = [0n, 1n, 16n, PAGE, 2n ** 32n, 2n ** 32n + 1n, U64(-1n)];

/** One call's outcome: its results, or the error's class, code, trap code and message. */
function outcome(i: WasmInstance, name: string, args: Array<number | bigint>): unknown {
  try {
    return { ok: i.call(name, args) };
  } catch (e: any) {
    return { err: e.constructor.name, code: e.code, trapCode: e.trapCode, message: e.message };
  }
}

/** Runs the whole sequence on one instance: every outcome, and the memory after each phase. */
function run(image: Uint8Array, deltas: bigint[], lowered = false): unknown[] {
  const m = WasmModule.compile(image);
  if (lowered) markMemory64Lowered(m); // as loadImage does
  const i = new WasmInstance(m, {});
  const out: unknown[] = [];
  const phase = (): void => {
    for (let l = 0; l < LOADS.length; l++) {
      for (let k = 0; k < OFFSETS.length; k++) for (const a of ADDRESSES) out.push(outcome(i, `L${l}_${k}`, [a]));
    }
    for (let s = 0; s < STORES.length; s++) {
      for (let k = 0; k < OFFSETS.length; k++) {
        for (const a of ADDRESSES) out.push(outcome(i, `S${s}_${k}`, [a, 0x0102030405060708n + BigInt(s * 16 + k) * 0x1111n]));
      }
    }
    for (const a of ADDRESSES) out.push(outcome(i, 'lane_load', [a]), outcome(i, 'lane_store', [a]));
    for (const d of ADDRESSES) {
      for (const n of LENGTHS) {
        out.push(outcome(i, 'fill', [d, 0xa5, n]));
        out.push(outcome(i, 'copy', [d, 8n, n]), outcome(i, 'copy', [16n, d, n]), outcome(i, 'copy', [d, d, n]));
      }
      for (const [off, n] of [[0, 0], [0, 16], [15, 1], [16, 0], [17, 0], [8, 9], [0, -1]] as const) out.push(outcome(i, 'init', [d, off, n]));
    }
    out.push(outcome(i, 'size', []), { size: i.memory.size, is64: i.memory.is64 });
    out.push({ memory: i.memory.read(0n, i.memory.size).toString('base64') });
    for (const ptr of [PAGE - 1n, PAGE, 2n ** 32n, U64(-1n)]) {
      out.push(hostOutcome(() => i.memory.read(ptr, 1n)), hostOutcome(() => i.memory.write(ptr, Buffer.from([1]))));
    }
  };
  phase();
  for (const d of deltas) {
    out.push(outcome(i, 'grow', [d]));
    phase();
  }
  i.dispose();
  return out;
}

/** The outcomes of the `grow` calls between phases (each phase has the same number of outcomes). */
function growResults(out: unknown[]): unknown[] {
  const per = (out.length - GROWS.length) / (GROWS.length + 1);
  return GROWS.map((_, k) => (out[(k + 1) * per + k] as { ok: unknown }).ok);
}

function hostOutcome(f: () => unknown): unknown {
  try {
    const r = f();
    return { ok: r instanceof Buffer ? r.toString('hex') : r };
  } catch (e: any) {
    return { err: e.constructor.name, code: e.code, status: e.status, message: e.message };
  }
}

const GROWS = [0n, 1n, 2n ** 32n, 2n ** 32n + 1n, 2n ** 63n, U64(-1n), 1000n, 70000n];

describe('lowerMemory64: differential corpus (original memory64 vs lowered, on Wasmtime)', () => {
  for (const max of [4, 32768, MAX_LOWERED_PAGES]) {
    it(`max ${max} pages: identical results, trap codes, messages and memory over ${'loads, stores, lanes, fill/copy/init, size, grow'}`, async () => {
      const image = await wat(corpus(max));
      const lowered = lowerMemory64(image);
      expect(lowered.reason).toBeUndefined();
      expect(lowered.lowered).toBe(true);
      const a = run(image, GROWS);
      const b = run(lowered.bytes, GROWS, true);
      expect(b.length).toBe(a.length);
      for (let k = 0; k < a.length; k++) expect(b[k], `outcome ${k}`).toEqual(a[k]);
      // The corpus exercises both sides: values and out-of-bounds traps, successful and failed grows.
      const traps = a.filter((o: any) => o.trapCode === 'memory_out_of_bounds');
      expect(traps.length).toBeGreaterThan(1000);
      expect(a.filter((o: any) => 'ok' in o).length).toBeGreaterThan(1000);
      // Every trap is the out-of-bounds trap, with one text; the host API reports its own error.
      const errors = a.filter((o: any) => o.err);
      expect(new Set(errors.map((o: any) => `${o.err} ${o.code} ${o.trapCode ?? o.status}`))).toEqual(
        new Set(['WasmTrap ERR_WASM_TRAP memory_out_of_bounds', 'AoError ERR_OUT_OF_BOUNDS 400']),
      );
      for (const o of errors as any[]) if (o.err === 'WasmTrap') expect(o.message).toBe('call trapped: wasm trap: out of bounds memory access');
      expect(errors.length).toBeGreaterThan(1000);
      expect(a.filter((o: any) => 'ok' in o).length).toBeGreaterThan(1000);
      // memory.grow: deltas of 2^32 pages and more fail (-1) instead of wrapping to small deltas.
      expect(growResults(b)).toEqual(growResults(a));
      expect(growResults(a)).toEqual([[1n], [1n], [-1n], [-1n], [-1n], [-1n], max >= 1002 ? [2n] : [-1n], [-1n]]);
    });
  }
});

/** Guarded addresses are reused within straight-line code: each export rebinds `p` and reads it again. */
const REUSE = `(module
  (memory (export "mem") i64 1 4)
  (data (i64.const 0) "\\01\\02\\03\\04\\05\\06\\07\\08")
  (func (export "set") (param $p i64) (param $q i64) (result i64)
    local.get $p i64.load local.get $q local.set $p local.get $p i64.load i64.add)
  (func (export "tee") (param $p i64) (param $q i64) (result i64)
    local.get $p i64.load local.get $q local.tee $p drop local.get $p i64.load i64.add)
  (func (export "store") (param $p i64) (param $q i64) (result i64)
    local.get $p local.get $q i64.store local.get $q local.set $p local.get $p local.get $q i64.store local.get $p i64.load)
  (func (export "join") (param $p i64) (param $q i64) (param $c i32) (result i64)
    local.get $p i64.load drop
    block local.get $c br_if 0 local.get $q local.set $p end
    local.get $p i64.load)
  (func (export "if") (param $p i64) (param $q i64) (param $c i32) (result i64)
    local.get $p i64.load drop
    local.get $c if local.get $q local.set $p end
    local.get $p i64.load)
  (func (export "loop") (param $p i64) (param $q i64) (result i64) (local $n i32) (local $s i64)
    loop
      local.get $p i64.load local.get $s i64.add local.set $s
      local.get $q local.set $p
      local.get $n i32.const 1 i32.add local.tee $n i32.const 2 i32.lt_u br_if 0
    end
    local.get $s))`;

describe('lowerMemory64: guarded addresses reused in straight-line code only', () => {
  it('rebinding the address local (set, tee, block and if joins, loop back edges) is guarded again', async () => {
    const image = await wat(REUSE);
    const lowered = lowerMemory64(image);
    expect(lowered.lowered).toBe(true);
    const [a, b] = [image, lowered.bytes].map((bytes) => new WasmInstance(WasmModule.compile(bytes), {}));
    const pairs = [[0n, 2n ** 32n], [2n ** 32n, 0n], [0n, 8n], [0n, U64(-1n)], [2n ** 32n + 8n, 2n ** 32n + 8n]];
    let traps = 0;
    for (const [p, q] of pairs) {
      for (const [name, extra] of [['set', []], ['tee', []], ['store', []], ['join', [0]], ['join', [1]], ['if', [0]], ['if', [1]], ['loop', []]] as const) {
        const x = outcome(a!, name, [p!, q!, ...extra]);
        expect(outcome(b!, name, [p!, q!, ...extra]), `${name}(${p}, ${q}, ${extra})`).toEqual(x);
        if ((x as any).trapCode) traps++;
      }
      expect(b!.memory.read(0n, 65536n).equals(a!.memory.read(0n, 65536n))).toBe(true);
    }
    expect(traps).toBeGreaterThan(20);
  });
});

describe('lowerMemory64: the harness catches a wrapping lowering', () => {
  it("Binaryen's memory64-lowering reads address 0 at 2^32 where the original traps", async () => {
    const { default: binaryen } = (await import('binaryen')) as { default: any };
    const image = await wat(corpus(4));
    const mod = binaryen.readBinary(image);
    mod.setFeatures(binaryen.Features.All);
    mod.runPasses(['memory64-lowering']);
    const wrapped = mod.emitBinary();
    mod.dispose();
    const a = run(image, []);
    const b = run(wrapped, [], true);
    const load = 5 * OFFSETS.length * ADDRESSES.length + ADDRESSES.indexOf(2n ** 32n); // i64.load offset=0
    expect(a[load]).toMatchObject({ trapCode: 'memory_out_of_bounds' });
    expect(b[load]).toEqual({ ok: [0x0807060504030201n] }); // the bytes at address 0
  });
});

describe('lowerMemory64: what it leaves alone', () => {
  const cases: Array<[string, string, string]> = [
    ['a maximum of 4 GiB', '(memory i64 1 65536)', 'declared maximum 65536 pages is not below 4 GiB'],
    ['no maximum', '(memory i64 1)', 'memory64 without a maximum, shared or with custom pages'],
    ['a 32-bit memory', '(memory 1 2)', 'not a memory64'],
    ['an imported memory', '(import "env" "m" (memory i64 1 2))', 'imported memory'],
    ['no memory', '', 'no memory64'],
  ];
  for (const [what, decl, reason] of cases) {
    it(`${what}: unchanged, with the reason`, async () => {
      const image = await wat(`(module ${decl} (func (export "f") (result i32) i32.const 1))`);
      const r = lowerMemory64(image);
      expect(r).toEqual({ bytes: image, lowered: false, reason });
    });
  }
  it('two memories: unchanged, with the reason', async () => {
    const image = await watAll('(module (memory $a i64 1 2) (memory $b i64 1 2))');
    expect(lowerMemory64(image)).toMatchObject({ lowered: false, reason: 'not exactly one memory' });
  });
  it('a data segment at 2^32 or above: unchanged (it fails to instantiate as it did)', async () => {
    const image = await wat('(module (memory i64 1 2) (data (i64.const 4294967296) "x"))');
    expect(lowerMemory64(image)).toMatchObject({ lowered: false, reason: 'data segment offset ≥ 2^32' });
  });
});
