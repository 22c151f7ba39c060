/** Pool API: bad modules, duplicate IDs, closed processes and pools, options. */
import { afterEach, expect, it } from 'vitest';
import { AosProcess, createPool, type Pool } from '../../src/pool';
import { aosDef, dataOf, evalAt, spawnOf } from '../helpers/aos';
import { describeShared } from '../helpers/fixtures';
import { rejection } from '../helpers/thrown';

let pool: Pool | undefined;
afterEach(async () => {
  await pool?.close();
  pool = undefined;
});

describeShared('pool API', () => {
  it('rejects a module that cannot run, and keeps serving', async () => {
    pool = createPool({ workers: 1 });
    const bad = { ...aosDef('wasm', 1), moduleBytes: new Uint8Array([0, 97, 115, 109, 9, 9, 9, 9]) };
    // The error of opening it in this thread, same class, status, code and message.
    for (const def of [bad, { ...aosDef('lua', 2), moduleBytes: Buffer.from('function (') }]) {
      const here = await rejection(AosProcess.open(def));
      const there = await rejection(pool.process(def));
      expect({ name: there.name, status: there.status, code: there.code, message: there.message }).toEqual({ name: here.name, status: here.status, code: here.code, message: here.message });
      expect(there.status).toBeGreaterThanOrEqual(400);
    }
    const good = aosDef('lua', 3);
    const p = await pool.process(good);
    await p.compute(spawnOf(good));
    expect(dataOf(await p.compute(evalAt(good, 1, 'return 6 * 7')))).toBe('42');
    expect(pool.stats()).toMatchObject({ processes: 1, restarts: 0 });
  }, 60_000);

  it('refuses a second process with the same ID, and operations after close', async () => {
    pool = createPool({ workers: 2 });
    const def = aosDef('lua', 4);
    const p = await pool.process(def);
    expect(await rejection(pool.process(def))).toMatchObject({ status: 409, code: 'ERR_CONFLICT' });
    await p.close();
    expect(await rejection(p.compute(spawnOf(def)))).toMatchObject({ code: 'ERR_CLOSED' });
    // The ID is free again once closed.
    const again = await pool.process(def);
    await again.compute(spawnOf(def));
    await pool.close();
    expect(await rejection(again.compute(evalAt(def, 1, 'return 1')))).toMatchObject({ code: 'ERR_CLOSED' });
    expect(await rejection(pool.process(aosDef('lua', 5)))).toMatchObject({ code: 'ERR_CLOSED' });
  }, 60_000);

  it('checks its options and the limits of a process', async () => {
    expect(() => createPool({ workers: 0 })).toThrow('createPool: workers must be a positive integer');
    pool = createPool({ workers: 1 });
    const e = await rejection(pool.process(aosDef('lua', 6, undefined, [{ name: 'Memory-Limit', value: 'lots' }])));
    expect(e).toMatchObject({ status: 400, code: 'ERR_INVALID_ARG' });
    expect(e.message).toBe("Memory-Limit: 'lots' is not a size (bytes, or e.g. '512-mb', '1-gb')");
  });

  it('spreads processes over the workers', async () => {
    pool = createPool({ workers: 2 });
    const defs = [7, 8, 9, 10].map((i) => aosDef('lua', i));
    await Promise.all(defs.map((d) => pool!.process(d)));
    const counts = [0, 0];
    for (const d of defs) counts[pool.workerOf(d.id)]++;
    expect(counts).toEqual([2, 2]);
  });
});
