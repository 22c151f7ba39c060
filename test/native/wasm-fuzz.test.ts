/**
 * Fuzz-style tests of the WASM handles in child processes, which must never die by a signal:
 * generated modules (every value type in imports, exports, globals and signatures; odd sections;
 * truncated and bit-flipped copies) through compile, instantiate, call and snapshot; and bit flips
 * over snapshots, with the checksum recomputed or not. Every failure must be a typed AoError.
 * Seeded (HB_FUZZ_SEED overrides the seed; HB_FUZZ_MODULES the count, 1200 by default, so a long
 * run is `HB_FUZZ_MODULES=100000 npx vitest run test/native/wasm-fuzz.test.ts`): a failure reproduces.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runChild, type ChildResult } from '../helpers/child';
import { REPO_ROOT } from '../helpers/fixtures';
import { Rng, genModule, mutate } from '../helpers/wasm-gen';
import { watAll } from '../helpers/wat';

const SEED = Number(process.env.HB_FUZZ_SEED ?? 20261202);
const MODULES = Number(process.env.HB_FUZZ_MODULES ?? 1200);
const LIB = JSON.stringify(path.join(REPO_ROOT, 'lib', 'index.js'));

/** Writes `blobs` length-prefixed to a temporary file; returns its path. */
function blobFile(blobs: Uint8Array[]): string {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'hb-fuzz-')), 'blobs.bin');
  const parts: Buffer[] = [];
  for (const b of blobs) {
    const len = Buffer.alloc(4);
    len.writeUInt32LE(b.length);
    parts.push(len, Buffer.from(b));
  }
  fs.writeFileSync(file, Buffer.concat(parts));
  return file;
}

/** The child's tally of outcomes, after checking it lived, said nothing on stderr and met only typed errors. */
function outcomes(r: ChildResult): Record<string, number> {
  expect(r.signal).toBeNull();
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  const { tally, untyped } = JSON.parse(r.stdout);
  expect(untyped).toEqual([]);
  return tally;
}

// The child's side: reads the blobs, runs everything, tallies outcomes by error code, and lists
// every failure that is not an AoError.
const CHILD_PRELUDE = `
  const hb = require(${LIB});
  const fs = require('node:fs');
  function readBlobs(file) {
    const all = fs.readFileSync(file); const out = [];
    for (let p = 0; p < all.length; ) { const n = all.readUInt32LE(p); out.push(all.subarray(p + 4, p + 4 + n)); p += 4 + n; }
    return out;
  }
  const tally = {}; const untyped = [];
  const count = (k) => { tally[k] = (tally[k] || 0) + 1; };
  function attempt(what, fn) {
    try { const r = fn(); count(what + ':ok'); return r; }
    catch (e) {
      if (e instanceof hb.AoError) count(what + ':' + e.code);
      else untyped.push({ what, name: e && e.name, message: String(e && e.message).slice(0, 200) });
      return undefined;
    }
  }
  const DEFAULTS = { i32: 7, i64: 7n, f32: 1.5, f64: -2.25 };
  const valueOf = (t) => (t in DEFAULTS ? DEFAULTS[t] : null);
`;

describe('WASM fuzz (child process)', () => {
  it('compiles, instantiates, calls and snapshots generated and damaged modules without dying', () => {
    const rng = new Rng(SEED);
    const modules: Uint8Array[] = [];
    for (let i = 0; i < MODULES; i++) {
      const m = genModule(rng);
      modules.push(rng.chance(0.25) ? mutate(rng, m) : m);
    }
    const file = blobFile(modules);
    const r = runChild(`${CHILD_PRELUDE}
      readBlobs(${JSON.stringify(file)}).forEach((bytes, i) => {
        const fuel = i % 3 === 0;
        const mod = attempt('compile', () => hb.WasmModule.compile(bytes, { cache: false, fuel }));
        if (!mod) return;
        attempt('describe', () => JSON.stringify([mod.imports, mod.exports], (k, v) => (typeof v === 'bigint' ? String(v) : v)));
        const imports = {};
        for (const imp of mod.imports) {
          if (imp.kind !== 'func' || i % 5 === 0) continue; // some left to missingImports: 'trap'
          const results = imp.type.results.map(valueOf);
          (imports[imp.module] ??= {})[imp.name] = () => (results.length === 1 ? results[0] : results);
        }
        const opts = { missingImports: 'trap', timeLimit: 20, maxMemoryBytes: 1 << 26, maxTableElements: 1000 };
        if (fuel) opts.fuel = 100000 + i * 1000;
        const inst = attempt('instantiate', () => new hb.WasmInstance(mod, imports, opts));
        if (!inst) return;
        for (const e of mod.exports) {
          if (e.kind !== 'func') continue;
          attempt('call', () => inst.call(e.name, e.type.params.map(valueOf), { timeLimit: 20 }));
        }
        if (inst.module.exports.some((e) => e.kind === 'memory')) {
          attempt('memory', () => { inst.memory.write(0, Buffer.from('fuzz')); return inst.memory.read(0, 4); });
        }
        const snap = attempt('snapshot', () => inst.snapshot());
        if (snap) {
          const fresh = attempt('instantiate', () => new hb.WasmInstance(mod, imports, opts));
          if (fresh) attempt('restore', () => fresh.restore(snap));
        }
        inst.dispose();
      });
      console.log(JSON.stringify({ tally, untyped }));`, [], 60_000 + MODULES * 50);
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
    const tally = outcomes(r);
    // The run was not vacuous: every stage succeeded often and failed in the typed ways expected.
    for (const k of ['compile:ok', 'compile:ERR_WASM_COMPILE', 'instantiate:ok', 'instantiate:ERR_WASM_LINK', 'call:ok', 'call:ERR_WASM_TYPE', 'call:ERR_WASM_TRAP', 'call:ERR_LIMIT_TIME', 'snapshot:ok', 'restore:ok']) {
      expect(tally[k] ?? 0, k).toBeGreaterThan(0);
    }
    expect(tally['compile:ok']).toBeGreaterThan(MODULES / 3);
  }, 60_000 + MODULES * 50);

  it('restores bit-flipped snapshots (checksum recomputed or not) as a SnapshotError or a whole state, never a crash', async () => {
    const image = await watAll(`(module
      (memory $a (export "a") 1 4) (memory $b (export "b") i64 2)
      (global $g (export "g32") (mut i32) (i32.const 1)) (global (mut i64) (i64.const 2))
      (global (mut f32) (f32.const 3)) (global (mut f64) (f64.const 4)) (global (mut v128) (v128.const i64x2 5 6))
      (data (memory $a) (i32.const 0) "hello") (data (memory $b) (i64.const 70000) "world")
      (func (export "sum") (result i64) (i64.add (i64.load $b (i64.const 70000)) (i64.extend_i32_u (global.get $g)))))`);
    const file = blobFile([image]);
    const r = runChild(`${CHILD_PRELUDE}
      const { native } = require(${JSON.stringify(path.join(REPO_ROOT, 'lib', 'native.js'))});
      const [image] = readBlobs(${JSON.stringify(file)});
      const mod = hb.WasmModule.compile(image);
      const good = new hb.WasmInstance(mod).snapshot();
      const seal = (b) => { if (b.length >= 8) b.writeBigUInt64LE(native.checksum(b.subarray(0, b.length - 8)), b.length - 8); return b; };
      let s = ${SEED};
      const rand = (n) => { s ^= s << 13; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s % n; };
      for (let k = 0; k < 600; k++) {
        let bad = Buffer.from(good);
        const kind = rand(4);
        if (kind === 0) bad = bad.subarray(0, rand(bad.length));
        else if (kind === 1) bad = Buffer.concat([bad, Buffer.alloc(1 + rand(16), rand(256))]);
        else {
          // Flip bits; half of them in the first 200 bytes (header, names, sizes, counts).
          for (let f = 1 + rand(3); f > 0; f--) { const at = rand(2) ? rand(200) : rand(bad.length); bad[at] ^= 1 << rand(8); }
        }
        if (rand(2) && kind !== 0) seal(bad);
        const inst = new hb.WasmInstance(mod);
        attempt('restore', () => inst.restore(bad));
        attempt('after', () => inst.call('sum', []));
        attempt('resnapshot', () => inst.snapshot());
        inst.dispose();
      }
      console.log(JSON.stringify({ tally, untyped }));`);
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
    const tally = outcomes(r);
    expect(Object.keys(tally).filter((k) => k.startsWith('restore:')).sort()).toEqual(['restore:ERR_SNAPSHOT', 'restore:ok']);
    expect(tally['restore:ok']).toBeGreaterThan(10);
    expect(tally['restore:ERR_SNAPSHOT']).toBeGreaterThan(300);
    expect(tally['after:ok']).toBe(600);
  }, 120_000);
});
