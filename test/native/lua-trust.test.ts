/**
 * Sealed Lua snapshots (src/lua-trust.ts, docs/lua-vm.md "Trust"): a node restores what it sealed,
 * on any of its threads and, with a configured key, after a restart; anything else needs
 * `trusted: true`.
 */
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SnapshotError } from '../../src/errors';
import { LuaVM } from '../../src/lua';
import { SEAL_BYTES } from '../../src/lua-trust';
import { runChild } from '../helpers/child';
import { REPO_ROOT } from '../helpers/fixtures';
import { thrown } from '../helpers/thrown';

const LIB = JSON.stringify(path.join(REPO_ROOT, 'lib', 'lua.js'));
const KEY = '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff';

/** Runs `code` in a child process with HB_RUNTIMES_SNAPSHOT_KEY set to `key` (or unset). */
function childWith(key: string | undefined, code: string) {
  return runChild(code, [], 120_000, { HB_RUNTIMES_SNAPSHOT_KEY: key });
}

describe('sealed Lua snapshots', () => {
  it('end with a 40-byte seal over the native snapshot, and restore on this node', () => {
    const vm = new LuaVM();
    vm.load('x = 42', 'm');
    const snap = vm.snapshot();
    expect(snap.subarray(snap.length - 8).toString()).toBe('hb-seal1');
    expect(SEAL_BYTES).toBe(40);
    expect(LuaVM.restore(snap).load('return x', 'm')).toEqual([42]);
  });

  it('refuses unsealed, altered and foreign seals unless trusted; trusted restores sealed or bare bytes', () => {
    const vm = new LuaVM();
    vm.load('x = 7', 'm');
    const snap = vm.snapshot();
    const bare = snap.subarray(0, snap.length - SEAL_BYTES);
    const forged = Buffer.from(snap);
    forged[snap.length - SEAL_BYTES + 3] ^= 0x10;
    for (const bad of [bare, forged]) {
      const e = thrown(() => LuaVM.restore(bad));
      expect(e).toBeInstanceOf(SnapshotError);
      expect(e).toMatchObject({ status: 403, code: 'ERR_SNAPSHOT_UNTRUSTED' });
      expect(e.message).toMatch(/^untrusted snapshot: /);
      expect(LuaVM.restore(bad, { trusted: true }).load('return x', 'm')).toEqual([7]);
    }
    expect(thrown(() => LuaVM.restore(snap, { trusted: 'yes' as never })).message).toBe('LuaVM.restore(): trusted must be a boolean');
  });

  it('uses the key set with setLuaSnapshotKey: earlier seals stop verifying (in a child: the key is process-wide)', () => {
    const r = childWith(
      undefined,
      `const { LuaVM } = require(${LIB});
      const { setLuaSnapshotKey } = require(${JSON.stringify(path.join(REPO_ROOT, 'lib', 'lua-trust.js'))});
      const vm = new LuaVM();
      const before = vm.snapshot();
      setLuaSnapshotKey(Buffer.from(${JSON.stringify(KEY)}, 'hex'));
      const out = [];
      try { LuaVM.restore(before); out.push('restored'); } catch (e) { out.push(e.code); }
      LuaVM.restore(vm.snapshot()); out.push('own');
      try { setLuaSnapshotKey(Buffer.alloc(8)); } catch (e) { out.push(e.message); }
      console.log(JSON.stringify(out));`,
    );
    expect(r).toMatchObject({ status: 0, signal: null, stderr: '' });
    expect(JSON.parse(r.stdout)).toEqual(['ERR_SNAPSHOT_UNTRUSTED', 'own', 'setLuaSnapshotKey(key): key must be a Uint8Array of at least 16 bytes']);
  });

  it('shares the key with worker threads: a snapshot sealed on one thread restores on another', () => {
    const r = childWith(
      undefined,
      `const { Worker } = require('node:worker_threads');
      const { LuaVM } = require(${LIB});
      const vm = new LuaVM(); vm.load('x = 42', 'm');
      const w = new Worker(\`
        const { parentPort } = require('node:worker_threads');
        const { LuaVM } = require(${LIB});
        parentPort.on('message', (snap) => {
          const r = LuaVM.restore(Buffer.from(snap)); r.load('y = x + 1', 'm'); parentPort.postMessage(r.snapshot());
        });\`, { eval: true });
      w.on('message', (snap) => { console.log(JSON.stringify(LuaVM.restore(Buffer.from(snap)).load('return x, y', 'm'))); w.terminate(); });
      w.postMessage(vm.snapshot());`,
    );
    expect(r).toMatchObject({ status: 0, signal: null, stderr: '' });
    expect(JSON.parse(r.stdout)).toEqual([42, 43]);
  });

  it('with HB_RUNTIMES_SNAPSHOT_KEY, restores after a restart (another process); without it, refuses', () => {
    const make = `const { LuaVM } = require(${LIB}); const vm = new LuaVM(); vm.load('z = "kept"', 'm'); console.log(vm.snapshot().toString('base64'));`;
    const sealed = childWith(KEY, make).stdout.trim();
    const restore = `const { LuaVM } = require(${LIB});
      try { console.log(JSON.stringify(LuaVM.restore(Buffer.from(${JSON.stringify(sealed)}, 'base64')).load('return z', 'm'))); }
      catch (e) { console.log(JSON.stringify(e.code)); }`;
    expect(JSON.parse(childWith(KEY, restore).stdout)).toEqual(['kept']);
    expect(JSON.parse(childWith(undefined, restore).stdout)).toBe('ERR_SNAPSHOT_UNTRUSTED');
    expect(childWith('abcd', make).stderr).toContain('HB_RUNTIMES_SNAPSHOT_KEY must be at least 16 bytes in hex');
  });
});
