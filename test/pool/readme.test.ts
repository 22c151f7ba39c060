/** The README's worker-pool example, as written, on the shared fixtures. */
import { expect, it } from 'vitest';
import { createPool } from '../../src/index';
import { describeShared, sharedFixture } from '../helpers/fixtures';

describeShared('README pool example', () => {
  it('runs as written', async () => {
    const pool = createPool({ workers: 2 });
    try {
      const def = { id: 'P'.repeat(43), kind: 'wasm' as const, module: 'M'.repeat(43), moduleBytes: sharedFixture('aos-2-pure-xs.wasm'), owner: 'O'.repeat(43), tags: [{ name: 'Type', value: 'Process' }] };
      const proc = await pool.process(def);
      const at = (slot: number, Id: string, Data: string, Tags: Array<{ name: string; value: string }>) => ({
        slot,
        timestamp: 1700000000000 + slot,
        'block-height': slot,
        message: { Id, Owner: def.owner, From: def.owner, Target: def.id, Data, Tags },
      });
      const evalAt = (slot: number, code: string) => at(slot, `m${slot}`.padEnd(43, 'x'), code, [{ name: 'Action', value: 'Eval' }]);
      await proc.compute(at(0, def.id, '', def.tags));
      expect(((await proc.compute(evalAt(1, 'X = 41; return X + 1'))).Output as { data: string }).data).toBe('42');
      expect((await proc.compute(evalAt(2, 'while true do end'))).Error).toBe('call ran out of fuel (budget 10000000000)');
      expect(((await proc.compute(evalAt(3, 'return X'))).Output as { data: string }).data).toBe('41');
      expect(pool.stats()).toMatchObject({ workers: 2, processes: 1, restarts: 0 });
    } finally {
      await pool.close();
    }
  }, 60_000);
});
