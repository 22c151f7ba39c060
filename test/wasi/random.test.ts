/** WASI preview1 random_get (src/wasi/random.ts), for both ABIs, through the conformance guest. */
import { createHash } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { Errno } from '../../src/wasi';
import { ABIS, BUF, compileGuests, MEM_END, setup } from '../helpers/wasi-guest';

beforeAll(compileGuests);

describe.each(ABIS)('preview1 on %s', (abi) => {
  describe('random_get', () => {
    it('is a SHA-256 counter-mode stream keyed by the seed', () => {
      const e = setup(abi, { seed: 'process-1' });
      expect(e.call('random_get', BUF, 40)).toBe(Errno.SUCCESS);
      const key = createHash('sha256').update('hb-runtimes/wasi/random/v1\0').update('process-1').digest();
      const block = (i: number) => createHash('sha256').update(key).update(Buffer.from([i, 0, 0, 0, 0, 0, 0, 0])).digest();
      expect(e.read(BUF, 40)).toEqual(Buffer.concat([block(0), block(1)]).subarray(0, 40));
    });

    it('gives the same bytes for the same seed and different bytes for another seed', () => {
      const draw = (seed: string) => {
        const e = setup(abi, { seed });
        e.call('random_get', BUF, 64);
        return e.read(BUF, 64);
      };
      expect(draw('a')).toEqual(draw('a'));
      expect(draw('a')).not.toEqual(draw('b'));
    });

    it('continues the stream across calls, and counters.randomBytes resumes it', () => {
      const whole = setup(abi, { seed: 7n });
      whole.call('random_get', BUF, 64);
      const parts = setup(abi, { seed: 7n });
      parts.call('random_get', BUF, 20);
      parts.call('random_get', BUF + 20, 44);
      expect(parts.read(BUF, 64)).toEqual(whole.read(BUF, 64));
      expect(parts.wasi.counters.randomBytes).toBe(64);
      const resumed = setup(abi, { seed: 7n, counters: { randomBytes: 20 } });
      resumed.call('random_get', BUF, 44);
      expect(resumed.read(BUF, 44)).toEqual(whole.read(BUF + 20, 44));
    });

    it("random 'os' gives different bytes in two runs", () => {
      const draw = () => {
        const e = setup(abi, { random: 'os' });
        expect(e.call('random_get', BUF, 32)).toBe(Errno.SUCCESS);
        return e.read(BUF, 32);
      };
      expect(draw()).not.toEqual(draw());
    });

    it('a buffer reaching past the end of memory gives EFAULT; length 0 succeeds', () => {
      const e = setup(abi);
      expect(e.call('random_get', MEM_END - 8, 9)).toBe(Errno.EFAULT);
      expect(e.wasi.counters.randomBytes).toBe(0);
      expect(e.call('random_get', BUF, 0)).toBe(Errno.SUCCESS);
    });
  });
});
