/**
 * Bit-flip fuzz over Lua snapshots in a child process, which must never die by a signal (issue #14):
 * flipped bits (checksum recomputed or not), truncations, trailing bytes, damaged seals and
 * another node's snapshots. Lua cannot verify the bytecode a snapshot carries, so the defence is the
 * seal (docs/lua-vm.md, "Trust"): none of these may restore without `trusted: true`, and each is
 * refused with a typed SnapshotError. Seeded (HB_FUZZ_SEED overrides the seed).
 */
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LuaVM } from '../../src/lua';
import { runChild } from '../helpers/child';
import { REPO_ROOT } from '../helpers/fixtures';

const SEED = Number(process.env.HB_FUZZ_SEED ?? 20261202);
const ROUNDS = 1500;

/** Runs `code` in a child whose node key is `keyHex`. */
function childWithKey(keyHex: string, code: string) {
  return runChild(code, [], 120_000, { HB_RUNTIMES_SNAPSHOT_KEY: keyHex });
}

describe('Lua snapshot fuzz (child process)', () => {
  it('refuses every damaged or foreign snapshot with a typed SnapshotError, never a crash', () => {
    const foreign = new LuaVM();
    foreign.load('function f() return "foreign" end', 'm');
    const foreignSnap = foreign.snapshot(); // sealed under this process's key, not the child's
    const r = childWithKey(
      randomBytes(32).toString('hex'),
      `const hb = require(${JSON.stringify(path.join(REPO_ROOT, 'lib', 'index.js'))});
      const { native } = require(${JSON.stringify(path.join(REPO_ROOT, 'lib', 'native.js'))});
      const { SEAL_BYTES } = require(${JSON.stringify(path.join(REPO_ROOT, 'lib', 'lua-trust.js'))});
      const tally = {}; const untyped = [];
      const count = (k) => { tally[k] = (tally[k] || 0) + 1; };
      function attempt(what, fn) {
        try { const r = fn(); count(what + ':ok'); return r; }
        catch (e) {
          if (e instanceof hb.SnapshotError || (what === 'after' && e instanceof hb.AoError)) count(what + ':' + e.code);
          else untyped.push({ what, name: e && e.name, message: String(e && e.message).slice(0, 200) });
          return undefined;
        }
      }
      const vm = new hb.LuaVM();
      vm.load(\`
        t = {1, 2.5, "s", x = {y = {z = "deep"}}, [{}] = 3}
        local up = 10
        function f(a) up = up + a return up, #t, t.x.y.z end
        co = coroutine.create(function(a) local b = coroutine.yield(a + 1) return b * 2 end) coroutine.resume(co, 1)
        w = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end) w()
        words = string.gmatch("a b c", "%a") words()
        setmetatable(t, {__index = function(_, k) return k end})
      \`, 'm');
      const good = vm.snapshot();
      const n = good.length - SEAL_BYTES; // the native snapshot ends here
      const fixChecksum = (b) => { b.writeBigUInt64LE(native.checksum(b.subarray(28, n)), 20); return b; };
      attempt('control', () => hb.LuaVM.restore(good).call('f', [1]));
      attempt('foreign', () => hb.LuaVM.restore(Buffer.from(${JSON.stringify(foreignSnap.toString('base64'))}, 'base64')));
      attempt('unsealed', () => hb.LuaVM.restore(good.subarray(0, n)));
      let s = ${SEED};
      const rand = (k) => { s ^= s << 13; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s % k; };
      for (let k = 0; k < ${ROUNDS}; k++) {
        let bad = Buffer.from(good);
        const kind = rand(5);
        if (kind === 0) bad = bad.subarray(0, rand(bad.length));
        else if (kind === 1) bad = Buffer.concat([bad, Buffer.alloc(1 + rand(16), rand(256))]);
        else if (kind === 2) { for (let f = 1 + rand(3); f > 0; f--) bad[n + rand(SEAL_BYTES)] ^= 1 << rand(8); }
        else {
          // Flip bits of the native snapshot (a third in the first 200 bytes: header, names, counts),
          // with the checksum recomputed for kind 4.
          for (let f = 1 + rand(3); f > 0; f--) { const at = rand(3) === 0 ? rand(200) : rand(n); bad[at] ^= 1 << rand(8); }
          if (kind === 4) fixChecksum(bad);
        }
        if (bad.equals(good)) continue; // flips that cancelled out
        const restored = attempt('restore', () => hb.LuaVM.restore(bad));
        if (restored) attempt('after', () => restored.call('f', [1]));
      }
      console.log(JSON.stringify({ tally, untyped }));`,
    );
    expect(r.signal).toBeNull();
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const { tally, untyped } = JSON.parse(r.stdout);
    expect(untyped).toEqual([]);
    expect(tally['control:ok']).toBe(1);
    expect(tally['foreign:ERR_SNAPSHOT_UNTRUSTED']).toBe(1);
    expect(tally['unsealed:ERR_SNAPSHOT_UNTRUSTED']).toBe(1);
    // Nothing damaged restored: each was refused by the format's checks or by the seal.
    expect(tally['restore:ok']).toBeUndefined();
    expect(Object.keys(tally).filter((k) => k.startsWith('restore:')).sort()).toEqual(['restore:ERR_SNAPSHOT', 'restore:ERR_SNAPSHOT_UNTRUSTED']);
    expect(tally['restore:ERR_SNAPSHOT_UNTRUSTED']).toBeGreaterThan(ROUNDS / 8);
    expect(tally['restore:ERR_SNAPSHOT']).toBeGreaterThan(ROUNDS / 4);
  }, 120_000);
});
