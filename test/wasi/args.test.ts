/** WASI preview1 args and environment (src/wasi/args.ts), for both ABIs, through the conformance guest. */
import { beforeAll, describe, expect, it } from 'vitest';
import { Errno } from '../../src/wasi';
import { ABIS, BUF, compileGuests, enc, MEM_END, OUT, OUT2, SENTINEL, setup } from '../helpers/wasi-guest';

beforeAll(compileGuests);

describe.each(ABIS)('preview1 on %s', (abi) => {
  describe('args and environment', () => {
    it('args_sizes_get and args_get write the count, the buffer size, the pointers and NUL-terminated strings', () => {
      const e = setup(abi, { args: ['prog', 'a b'] });
      expect(e.call('args_sizes_get', OUT, OUT2)).toBe(Errno.SUCCESS);
      expect(e.size(OUT)).toBe(2);
      expect(e.size(OUT2)).toBe(9);
      expect(e.call('args_get', OUT, BUF)).toBe(Errno.SUCCESS);
      expect([e.size(OUT), e.size(OUT + e.word)]).toEqual([BUF, BUF + 5]);
      expect(e.read(BUF, 9)).toEqual(enc('prog\0a b\0'));
    });

    it('environ_get writes KEY=VALUE strings in sorted key order', () => {
      const e = setup(abi, { env: { B: '2', A: 'é' } });
      expect(e.call('environ_sizes_get', OUT, OUT2)).toBe(Errno.SUCCESS);
      expect([e.size(OUT), e.size(OUT2)]).toEqual([2, 9]);
      expect(e.call('environ_get', OUT, BUF)).toBe(Errno.SUCCESS);
      expect([e.size(OUT), e.size(OUT + e.word)]).toEqual([BUF, BUF + 5]);
      expect(e.read(BUF, 9)).toEqual(enc('A=é\0B=2\0'));
    });

    it('empty args and env report zero sizes', () => {
      const e = setup(abi);
      e.write(OUT, SENTINEL);
      expect(e.call('args_sizes_get', OUT, OUT + 8)).toBe(Errno.SUCCESS);
      expect([e.size(OUT), e.size(OUT + 8)]).toEqual([0, 0]);
      expect(e.call('environ_sizes_get', OUT, OUT + 8)).toBe(Errno.SUCCESS);
      expect([e.size(OUT), e.size(OUT + 8)]).toEqual([0, 0]);
    });

    it('args_get with a buffer past the end of memory gives EFAULT and writes nothing', () => {
      const e = setup(abi, { args: ['prog'] });
      e.write(OUT, SENTINEL);
      expect(e.call('args_get', OUT, MEM_END - 2)).toBe(Errno.EFAULT);
      expect(e.read(OUT, 16)).toEqual(SENTINEL);
    });
  });
});
