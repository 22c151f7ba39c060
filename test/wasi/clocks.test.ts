/** WASI preview1 clocks and poll_oneoff (src/wasi/clocks.ts), for both ABIs, through the conformance guest. */
import { beforeAll, describe, expect, it } from 'vitest';
import { Errno } from '../../src/wasi';
import { ABIS, BUF, compileGuests, MEM_END, OUT, SENTINEL, setup } from '../helpers/wasi-guest';

beforeAll(compileGuests);

describe.each(ABIS)('preview1 on %s', (abi) => {
  describe('clocks', () => {
    const START = 1_700_000_000_000_000_000n;

    it('the deterministic clock starts at startTime and advances by clockStep per read', () => {
      const e = setup(abi, { startTime: START, clockStep: 5n });
      expect(e.call('clock_time_get', 0, 0n, OUT)).toBe(Errno.SUCCESS);
      expect(e.u64(OUT)).toBe(START);
      expect(e.call('clock_time_get', 0, 1000n, OUT)).toBe(Errno.SUCCESS);
      expect(e.u64(OUT)).toBe(START + 5n);
      expect(e.call('clock_time_get', 1, 0n, OUT)).toBe(Errno.SUCCESS);
      expect(e.u64(OUT)).toBe(10n); // monotonic: elapsed time only
      expect(e.wasi.counters.elapsedNs).toBe(15n);
    });

    it('two runs with the same options read the same times', () => {
      const times = [0, 1].map(() => {
        const e = setup(abi, { startTime: START });
        e.call('clock_time_get', 0, 0n, OUT);
        e.call('clock_time_get', 0, 0n, OUT + 8);
        return e.read(OUT, 16);
      });
      expect(times[0]).toEqual(times[1]);
    });

    it('clockStep 0n freezes time, and clock_res_get reports the step (at least 1 ns)', () => {
      const e = setup(abi, { startTime: 42n, clockStep: 0n });
      e.call('clock_time_get', 0, 0n, OUT);
      e.call('clock_time_get', 0, 0n, OUT + 8);
      expect([e.u64(OUT), e.u64(OUT + 8)]).toEqual([42n, 42n]);
      expect(e.call('clock_res_get', 0, OUT)).toBe(Errno.SUCCESS);
      expect(e.u64(OUT)).toBe(1n);
      const f = setup(abi, { clockStep: 250n });
      expect(f.call('clock_res_get', 1, OUT)).toBe(Errno.SUCCESS);
      expect(f.u64(OUT)).toBe(250n);
    });

    it('an unknown clock id gives EINVAL and writes nothing', () => {
      const e = setup(abi);
      e.write(OUT, SENTINEL);
      expect(e.call('clock_time_get', 4, 0n, OUT)).toBe(Errno.EINVAL);
      expect(e.call('clock_res_get', 99, OUT)).toBe(Errno.EINVAL);
      expect(e.read(OUT, 16)).toEqual(SENTINEL);
    });

    it('counters.elapsedNs resumes the deterministic clock', () => {
      const e = setup(abi, { startTime: START, counters: { elapsedNs: 7n } });
      e.call('clock_time_get', 0, 0n, OUT);
      expect(e.u64(OUT)).toBe(START + 7n);
    });

    it("clock 'wall' reads the host's realtime clock", () => {
      const e = setup(abi, { clock: 'wall' });
      const before = BigInt(Date.now()) * 1_000_000n;
      expect(e.call('clock_time_get', 0, 0n, OUT)).toBe(Errno.SUCCESS);
      expect(e.u64(OUT) >= before - 1_000_000_000n).toBe(true);
      expect(e.call('clock_time_get', 1, 0n, OUT)).toBe(Errno.SUCCESS);
      expect(e.u64(OUT) > 0n).toBe(true);
    });

    it('a clock result pointer past the end of memory gives EFAULT', () => {
      const e = setup(abi);
      expect(e.call('clock_time_get', 0, 0n, MEM_END - 4)).toBe(Errno.EFAULT);
      expect(e.call('clock_res_get', 0, MEM_END)).toBe(Errno.EFAULT);
    });
  });

  describe('poll_oneoff', () => {
    const SUB = 0x800;
    const subscription = (userdata: bigint, type: number, fields: (b: Buffer) => void): Buffer => {
      const b = Buffer.alloc(48);
      b.writeBigUInt64LE(userdata, 0);
      b.writeUInt8(type, 8);
      fields(b);
      return b;
    };
    const clockSub = (userdata: bigint, id: number, timeout: bigint, flags = 0) =>
      subscription(userdata, 0, (b) => {
        b.writeUInt32LE(id, 16);
        b.writeBigUInt64LE(timeout, 24);
        b.writeUInt16LE(flags, 40);
      });
    const fdSub = (userdata: bigint, type: number, fd: number) => subscription(userdata, type, (b) => b.writeUInt32LE(fd, 16));
    const event = (userdata: bigint, error: number, type: number, nbytes = 0n) => {
      const b = Buffer.alloc(32);
      b.writeBigUInt64LE(userdata, 0);
      b.writeUInt16LE(error, 8);
      b.writeUInt8(type, 10);
      b.writeBigUInt64LE(nbytes, 16);
      return b;
    };

    it('a relative clock subscription fires and advances the deterministic clock by its timeout', () => {
      const e = setup(abi);
      e.write(SUB, clockSub(42n, 1, 1_000_000_000n));
      expect(e.call('poll_oneoff', SUB, BUF, 1, OUT)).toBe(Errno.SUCCESS);
      expect(e.size(OUT)).toBe(1);
      expect(e.read(BUF, 32)).toEqual(event(42n, 0, 0));
      e.call('clock_time_get', 1, 0n, OUT);
      expect(e.u64(OUT)).toBe(1_000_000_000n);
    });

    it('an absolute realtime deadline advances the clock to the deadline; the earliest of two fires', () => {
      const e = setup(abi, { startTime: 5_000n });
      e.write(SUB, Buffer.concat([clockSub(1n, 0, 9_000n, 1), clockSub(2n, 0, 10_000n)]));
      expect(e.call('poll_oneoff', SUB, BUF, 2, OUT)).toBe(Errno.SUCCESS);
      expect(e.size(OUT)).toBe(1);
      expect(e.read(BUF, 32)).toEqual(event(1n, 0, 0));
      e.call('clock_time_get', 0, 0n, OUT);
      expect(e.u64(OUT)).toBe(9_000n);
    });

    it('a ready fd subscription returns at once without sleeping', () => {
      const e = setup(abi, { stdin: 'abc' });
      e.write(SUB, Buffer.concat([fdSub(7n, 1, 0), clockSub(8n, 1, 1_000_000n), fdSub(9n, 2, 1)]));
      expect(e.call('poll_oneoff', SUB, BUF, 3, OUT)).toBe(Errno.SUCCESS);
      expect(e.size(OUT)).toBe(2);
      expect(e.read(BUF, 64)).toEqual(Buffer.concat([event(7n, 0, 1, 3n), event(9n, 0, 2)]));
      e.call('clock_time_get', 1, 0n, OUT);
      expect(e.u64(OUT)).toBe(0n);
    });

    it('reports EBADF inside the event for a bad fd, EINVAL for no subscriptions or an unknown type', () => {
      const e = setup(abi);
      e.write(SUB, fdSub(5n, 1, 9));
      expect(e.call('poll_oneoff', SUB, BUF, 1, OUT)).toBe(Errno.SUCCESS);
      expect(e.read(BUF, 32)).toEqual(event(5n, Errno.EBADF, 1));
      expect(e.call('poll_oneoff', SUB, BUF, 0, OUT)).toBe(Errno.EINVAL);
      e.write(SUB, fdSub(5n, 3, 0));
      expect(e.call('poll_oneoff', SUB, BUF, 1, OUT)).toBe(Errno.EINVAL);
      expect(e.call('poll_oneoff', SUB, MEM_END - 16, 1, OUT)).toBe(Errno.EFAULT);
    });
  });
});
