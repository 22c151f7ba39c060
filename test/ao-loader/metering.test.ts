/**
 * Gas: the `-metering` formats and AOS 1's built-in metering count gas inside the module (no JS
 * call per block), and GasUsed equals @permaweb/ao-loader's for the same messages; the limit
 * holds at exactly the same point (computeLimit = GasUsed passes, one less is out of gas).
 */
import { setFlagsFromString } from 'node:v8';
import { expect, it } from 'vitest';
import AoLoader from '../../src/ao-loader/index';
import { describeShared, sharedFixture } from '../helpers/fixtures';
import { rejected } from '../helpers/thrown';
import { itVsOracle } from '../helpers/ao-loader-oracle';

setFlagsFromString('--experimental-wasm-memory64');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const Ref = require('@permaweb/ao-loader') as (b: unknown, o: unknown) => Promise<(m: unknown, msg: unknown, env: unknown) => Promise<any>>;

const env = { Process: { Id: 'PROCESS', Owner: 'OWNER', Tags: [{ name: 'Name', value: 'test' }] } };
let n = 0;
const msg = (data: string) => ({
  Id: `M${++n}`, Owner: 'OWNER', Target: 'PROCESS', From: 'OWNER', Tags: [{ name: 'Action', value: 'Eval' }], Data: data,
  Module: 'MODULE', 'Block-Height': '100', Timestamp: '1700000000000',
});

const CASES = [
  ['aos2-wasm32-emscripten4.wasm', 'wasm32-unknown-emscripten-metering'],
  ['aos2-wasm64-emscripten.wasm', 'wasm64-unknown-emscripten-draft_2024_10_16-metering'],
  ['aos1-wasm32-emscripten2.wasm', 'wasm32-unknown-emscripten2'],
] as const;

for (const [file, format] of CASES) {
  describeShared(`gas on ${format} (${file})`, () => {
    itVsOracle(format)('GasUsed equals ao-loader\'s over a message sequence', async () => {
      const binary = sharedFixture(`ao-loader/${file}`);
      const ref = await Ref(binary, { format });
      const ours = await AoLoader(binary, { format, argv: process.argv.slice(1) });
      let mr: unknown = null;
      let mo: unknown = null;
      const used: number[] = [];
      for (const m of [msg('return 1'), msg('local s = 0 for i = 1, 20000 do s = s + i % 7 end return s'), msg('return string.rep("ab", 1000):upper():sub(1, 10)')]) {
        const a = await ref(mr, m, env);
        const b = await ours(mo as Uint8Array | null, m, env);
        expect(b.GasUsed).toBe(a.GasUsed);
        expect(b.Output).toEqual(a.Output);
        used.push(b.GasUsed);
        mr = a.Memory;
        mo = b.Memory;
      }
      expect(used.every((g) => g > 1_000_000)).toBe(true);
      expect(used[1]).toBeGreaterThan(used[0]! / 10); // the loop costs gas of its own
    });

    itVsOracle(format)('computeLimit holds exactly where ao-loader\'s does, with Error(\'out of gas!\')', async () => {
      const binary = sharedFixture(`ao-loader/${file}`);
      // AOS 1 runs main() at start-up under the same budget (6.2e9 gas): its message must cost more
      const loops = format === 'wasm32-unknown-emscripten2' ? 600_000 : 5000;
      const m = msg(`local s = 0 for i = 1, ${loops} do s = s + i end return s`);
      const { GasUsed: need } = await (await AoLoader(binary, { format, argv: process.argv.slice(1) }))(null, m, env);
      const atLimit = await (await AoLoader(binary, { format, computeLimit: need, argv: process.argv.slice(1) }))(null, m, env);
      expect(atLimit.GasUsed).toBe(need);
      const ours = await rejected(AoLoader(binary, { format, computeLimit: need - 1, argv: process.argv.slice(1) }).then((h) => h(null, m, env)));
      const ref = await rejected(Ref(binary, { format, computeLimit: need - 1 }).then((h) => h(null, m, env)));
      expect(ours).toBeInstanceOf(Error);
      expect((ours as Error).message).toBe('out of gas!');
      expect((ref as Error).message).toBe('out of gas!');
      // and ao-loader passes at the same limit
      const refAt = await (await Ref(binary, { format, computeLimit: need }))(null, m, env);
      expect(refAt.GasUsed).toBe(need);
    });
  });
}
