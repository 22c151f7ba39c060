/** AosProcess in this thread: a failed message answers Error and the state is the one before it. */
import { afterEach, expect, it } from 'vitest';
import { AosProcess } from '../../src/pool/aos';
import { aosDef, dataOf, evalAt, spawnOf } from '../helpers/aos';
import { describeShared } from '../helpers/fixtures';

const open: AosProcess[] = [];
afterEach(() => {
  for (const p of open.splice(0)) p.dispose();
});

async function run(p: AosProcess, def: ReturnType<typeof aosDef>, codes: string[]) {
  const out = [];
  for (const [i, code] of codes.entries()) out.push((await p.compute(evalAt(def, i + 1, code))).outcome);
  return out;
}

describeShared('AosProcess rollback', () => {
  for (const kind of ['wasm', 'lua'] as const) {
    it(`${kind}: a limit, a trap-like failure and an error leave the state of before the message`, async () => {
      const def = aosDef(kind, 1, { computeLimit: kind === 'wasm' ? 300_000_000 : 5_000_000 });
      const p = await AosProcess.open(def, { checkpointEvery: 2 });
      open.push(p);
      expect((await p.compute(spawnOf(def))).outcome.failure).toBeUndefined();
      const outs = await run(p, def, ['x = 1', 'x = x + 1', 'x = 100; while true do end', 'return x', 'x = 200; error("after")', 'return x', 'x = x + 1', 'return x']);
      expect(outs.map((o) => dataOf(o.result))[3]).toBe('2');
      // The loop ends by the deterministic limit: fuel (WASM) or steps (Lua), never flagged.
      const loop = outs[2];
      expect(loop.failure).toMatchObject({ limit: kind === 'wasm' ? 'fuel' : 'steps', deterministic: true });
      expect(loop.result).toMatchObject({ Limit: kind === 'wasm' ? 'fuel' : 'steps' });
      expect(loop.result.Error).toMatch(kind === 'wasm' ? /fuel/ : /instruction limit/);
      expect(loop.result.Nondeterministic).toBeUndefined();
      expect(outs[4].failure).toBeDefined();
      // hyper-aos cannot handle an Eval error (it fails in its own code); AOS reports it.
      expect(outs[4].result.Error).toMatch(kind === 'wasm' ? /after/ : /compute failed at slot 4/);
      expect(dataOf(outs[5].result)).toBe('2');
      expect(dataOf(outs[7].result)).toBe('3');
    });
  }

  it('wasm: the wall-clock deadline fails the message flagged Nondeterministic, and the state rolls back', async () => {
    const def = aosDef('wasm', 2, { computeLimit: 1e15, timeLimit: 150 });
    const p = await AosProcess.open(def);
    open.push(p);
    await p.compute(spawnOf(def));
    const [set, loop, after] = await run(p, def, ['x = 7', 'x = 8; while true do end', 'return x']);
    expect(set.failure).toBeUndefined();
    expect(loop.failure).toMatchObject({ limit: 'time', deterministic: false });
    expect(loop.result).toMatchObject({ Limit: 'time', Nondeterministic: true, Messages: [], Spawns: [], Assignments: [] });
    expect(dataOf(after.result)).toBe('7');
  });

  it('takes the Compute-Limit tag of the process over the host default', async () => {
    const def = aosDef('lua', 3, { computeLimit: 1e12 }, [{ name: 'Compute-Limit', value: '3000000' }]);
    const p = await AosProcess.open(def);
    open.push(p);
    await p.compute(spawnOf(def));
    const [loop] = await run(p, def, ['while true do end']);
    expect(loop.result.Error).toBe('instruction limit of 3000000 exceeded');
  });

  it('opens from a checkpoint with a log replayed, with the same results as the process it came from', async () => {
    const def = aosDef('wasm', 4);
    const a = await AosProcess.open(def, { checkpointEvery: 100 });
    open.push(a);
    await a.compute(spawnOf(def));
    await run(a, def, ['x = 10']);
    const checkpoint = a.snapshot();
    const log = [evalAt(def, 2, 'x = x * 3'), evalAt(def, 3, 'y = x + 1')];
    for (const m of log) await a.compute(m);
    const b = await AosProcess.open(def, { checkpoint, log });
    open.push(b);
    const next = evalAt(def, 4, 'return x .. "/" .. y');
    expect(dataOf((await b.compute(next)).outcome.result)).toBe('30/31');
    expect(dataOf((await a.compute(next)).outcome.result)).toBe('30/31');
  });
});
