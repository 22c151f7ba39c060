/**
 * Workers that die or get stuck: the message in flight answers an Error result flagged
 * Nondeterministic, the worker is replaced, and its processes continue from their state before
 * that message (the pool's checkpoint + log); processes waiting on a busy worker move.
 */
import { afterEach, expect, it } from 'vitest';
import { AosProcess, createPool, type Pool } from '../../src/pool';
import { aosDef, dataOf, evalAt, spawnOf } from '../helpers/aos';
import { describeShared } from '../helpers/fixtures';

let pool: Pool | undefined;
afterEach(async () => {
  await pool?.close();
  pool = undefined;
});

describeShared('pool workers', () => {
  for (const how of ['exit', 'throw'] as const) {
    it(`a worker that dies inside a message (${how}) costs that message only`, async () => {
      pool = createPool({ workers: 1, checkpointEvery: 2 });
      const a = aosDef('wasm', 1);
      const b = aosDef('lua', 2);
      const pa = await pool.process(a);
      const pb = await pool.process(b);
      await pa.compute(spawnOf(a));
      await pb.compute(spawnOf(b));
      for (const [i, code] of ['x = 1', 'x = x + 1', 'x = x + 1'].entries()) {
        await pa.compute(evalAt(a, i + 1, code));
        await pb.compute(evalAt(b, i + 1, code));
      }
      pool.crashWorkerOf(a.id, how);
      const lost = await pa.compute(evalAt(a, 4, 'x = 100'));
      expect(lost.Error).toMatch(how === 'exit' ? /exited \(code 3\)/ : /crashed: hb-runtimes pool worker: crash requested/);
      expect(lost.Nondeterministic).toBe(true);
      expect(lost.Limit).toBeUndefined();
      expect(pool.stats().restarts).toBe(1);
      // Both processes on that worker come back with every acknowledged message.
      expect(dataOf(await pa.compute(evalAt(a, 5, 'return x')))).toBe('3');
      expect(dataOf(await pb.compute(evalAt(b, 4, 'return x')))).toBe('3');
    }, 60_000);
  }

  it('a snapshot cut short by the death of its worker is taken again on the new one', async () => {
    pool = createPool({ workers: 1, checkpointEvery: 2 });
    const def = aosDef('wasm', 4);
    const p = await pool.process(def);
    await p.compute(spawnOf(def));
    for (const [i, code] of ['x = 10', 'x = x * 2', 'x = x + 1'].entries()) await p.compute(evalAt(def, i + 1, code));
    pool.crashWorkerOf(def.id, 'exit');
    const snap = await p.snapshot();
    expect(pool.stats().restarts).toBe(1);
    const copy = await AosProcess.open(def, { checkpoint: snap });
    try {
      expect(dataOf((await copy.compute(evalAt(def, 4, 'return x'))).outcome.result)).toBe('21');
    } finally {
      copy.dispose();
    }
  }, 60_000);

  it('the watchdog stops a worker stuck past the deadline + grace', async () => {
    pool = createPool({ workers: 1, grace: 200, limits: { timeLimit: 200 } });
    const def = aosDef('lua', 3);
    const p = await pool.process(def);
    await p.compute(spawnOf(def));
    await p.compute(evalAt(def, 1, 'x = 5'));
    // The guest's own deadline cannot fire: the worker hangs outside any guest code.
    pool.crashWorkerOf(def.id, 'hang');
    const t = Date.now();
    const stuck = await p.compute(evalAt(def, 2, 'x = 6'));
    expect(Date.now() - t).toBeLessThan(3_000);
    expect(stuck).toMatchObject({ Limit: 'time', Nondeterministic: true });
    expect(stuck.Error).toMatch(/^time limit: the worker computing it was stopped after \d+ ms \(deadline 200 ms \+ 200 ms grace\)$/);
    expect(pool.stats()).toMatchObject({ stopped: 1, restarts: 1 });
    expect(dataOf(await p.compute(evalAt(def, 3, 'return x')))).toBe('5');
  }, 60_000);

  it('a Lua loop past its time limit ends by the VM deadline, flagged, the worker kept', async () => {
    pool = createPool({ workers: 1, limits: { timeLimit: 300 } });
    const def = aosDef('lua', 5, undefined, [{ name: 'Compute-Limit', value: '100000000000' }]);
    const p = await pool.process(def);
    await p.compute(spawnOf(def));
    await p.compute(evalAt(def, 1, 'x = 5'));
    const stuck = await p.compute(evalAt(def, 2, 'x = 6; while true do end'));
    expect(stuck).toMatchObject({ Limit: 'time', Nondeterministic: true });
    expect(pool.stats()).toMatchObject({ stopped: 0, restarts: 0 });
    expect(dataOf(await p.compute(evalAt(def, 3, 'return x')))).toBe('5');
  }, 60_000);

  it('a process waiting on a busy worker moves to another one', async () => {
    pool = createPool({ workers: 2 });
    const defs = [1, 2, 3].map((i) => aosDef('lua', 10 + i, { computeLimit: 400_000_000 }));
    const procs = await Promise.all(defs.map((d) => pool!.process(d)));
    for (const [i, p] of procs.entries()) await p.compute(spawnOf(defs[i]));
    // Two of the three share a worker.
    const w = defs.map((d) => pool!.workerOf(d.id));
    const i = w.findIndex((x, k) => w.indexOf(x) !== k);
    const first = w.indexOf(w[i]);
    const [busy, waiting] = [procs[first], procs[i]];
    await waiting.compute(evalAt(defs[i], 1, 'y = 40'));
    const loop = busy.compute(evalAt(defs[first], 1, 'while true do end'));
    await new Promise((r) => setTimeout(r, 20));
    const t = Date.now();
    const r = await waiting.compute(evalAt(defs[i], 2, 'return y + 2'));
    const waited = Date.now() - t;
    expect(dataOf(r)).toBe('42');
    expect(waited).toBeLessThan(1_500); // without moving, it waits for the loop: seconds
    expect(pool.stats().migrations).toBeGreaterThanOrEqual(1);
    expect(pool.workerOf(defs[i].id)).not.toBe(w[i]);
    // The loop still ends by its deterministic limit, not flagged.
    expect(await loop).toMatchObject({ Limit: 'steps' });
    expect((await loop).Nondeterministic).toBeUndefined();
  }, 60_000);
});
