/**
 * The pool computes a process exactly as this thread does: the same results, byte for byte
 * (their JSON), over generated message sequences of WASM AOS (aos-2-pure-xs) and hyper-aos,
 * failing messages included (errors, limits), with checkpoints at different points on each side.
 */
import * as fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { AosProcess } from '../../src/pool/aos';
import { createPool, type Pool } from '../../src/pool';
import { aosDef, evalAt, spawnOf } from '../helpers/aos';
import { describeShared } from '../helpers/fixtures';

/** Eval snippets: state changes, reads, outbox messages, failures after a change, limits. */
const SNIPPETS = [
  (n: number) => `x = (x or 0) + ${n}; return x`,
  (n: number) => `t = t or {}; table.insert(t, "s${n}"); return #t`,
  () => `return tostring(x) .. ":" .. tostring(t and #t)`,
  (n: number) => `Send({Target = "${'T'.repeat(43)}", Data = "d${n}"}); return ${n}`,
  (n: number) => `x = ${n * 1000}; error("e${n}")`,
  (n: number) => `x = -${n}; while true do end`,
  (n: number) => `local s = 0; for i = 1, ${n * 1000} do s = s + i end; return s`,
];

const sequence = fc.array(fc.tuple(fc.integer({ min: 0, max: SNIPPETS.length - 1 }), fc.integer({ min: 1, max: 9 })), { minLength: 3, maxLength: 10 });

describeShared('pool and in-thread computation agree', () => {
  let pool: Pool;
  beforeAll(() => {
    pool = createPool({ workers: 2, checkpointEvery: 2 });
  });
  afterAll(() => pool.close());

  let n = 0;
  for (const kind of ['wasm', 'lua'] as const) {
    it(`${kind}: same results for generated message sequences`, async () => {
      await fc.assert(
        fc.asyncProperty(sequence, async (seq) => {
          const def = aosDef(kind, ++n, { computeLimit: kind === 'wasm' ? 200_000_000 : 3_000_000 });
          const messages = [spawnOf(def), ...seq.map(([k, v], i) => evalAt(def, i + 1, SNIPPETS[k](v)))];
          const local = await AosProcess.open(def, { checkpointEvery: 3 });
          const pooled = await pool.process(def);
          try {
            const a: string[] = [];
            const b: string[] = [];
            for (const m of messages) {
              a.push(JSON.stringify((await local.compute(m)).outcome.result));
              b.push(JSON.stringify(await pooled.compute(m)));
            }
            expect(b).toEqual(a);
            // Not vacuous: the spawn computed, and the snippets' outputs are there.
            expect(JSON.parse(a[0]).Error).toBeUndefined();
            expect(a.length).toBe(messages.length);
            // A dry run sees the same state on both sides.
            const probe = evalAt(def, messages.length, SNIPPETS[2](0));
            expect(JSON.stringify(await pooled.dryRun(probe))).toBe(JSON.stringify(await local.dryRun(probe)));
          } finally {
            local.dispose();
            await pooled.close();
          }
        }),
        { numRuns: kind === 'wasm' ? 6 : 12 },
      );
    }, 240_000);
  }
});
