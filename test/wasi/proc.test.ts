/** WASI preview1 process, scheduling and sockets (src/wasi/proc.ts), for both ABIs, through the conformance guest. */
import { beforeAll, describe, expect, it } from 'vitest';
import { WasmTrap } from '../../src/index';
import { Errno, Vfs, WasiExit, exitCodeOf } from '../../src/wasi';
import { ABIS, BUF, compileGuests, IOV, OUT, OUT2, PATH, PATH2, setup } from '../helpers/wasi-guest';

beforeAll(compileGuests);

describe.each(ABIS)('preview1 on %s', (abi) => {
  describe('process, scheduling, sockets and links', () => {
    it('proc_exit unwinds with a WasmTrap caused by WasiExit carrying the code', () => {
      const e = setup(abi);
      let err: unknown;
      try {
        e.call('proc_exit', 3);
      } catch (x) {
        err = x;
      }
      expect(err).toBeInstanceOf(WasmTrap);
      expect((err as WasmTrap).trapCode).toBe('host');
      expect((err as Error).cause).toBeInstanceOf(WasiExit);
      expect(((err as Error).cause as WasiExit).code).toBe(3);
      expect(exitCodeOf(err)).toBe(3);
      expect(e.wasi.exitCode).toBe(3);
      expect(exitCodeOf(new Error('x'))).toBeUndefined();
    });

    it('proc_raise gives ENOSYS and sched_yield succeeds', () => {
      const e = setup(abi);
      expect(e.call('proc_raise', 6)).toBe(Errno.ENOSYS);
      expect(e.call('sched_yield')).toBe(Errno.SUCCESS);
    });

    it('socket calls give ENOTSOCK on open fds and EBADF on closed ones', () => {
      const e = setup(abi);
      expect(e.call('sock_accept', 1, 0, OUT)).toBe(Errno.ENOTSOCK);
      expect(e.call('sock_recv', 0, IOV, 0, 0, OUT, OUT2)).toBe(Errno.ENOTSOCK);
      expect(e.call('sock_send', 1, IOV, 0, 0, OUT)).toBe(Errno.ENOTSOCK);
      expect(e.call('sock_shutdown', 3, 3)).toBe(Errno.ENOTSOCK);
      expect(e.call('sock_accept', 9, 0, OUT)).toBe(Errno.EBADF);
      expect(e.call('sock_recv', 9, IOV, 0, 0, OUT, OUT2)).toBe(Errno.EBADF);
      expect(e.call('sock_send', 9, IOV, 0, 0, OUT)).toBe(Errno.EBADF);
      expect(e.call('sock_shutdown', 9, 3)).toBe(Errno.EBADF);
    });

    it('links are not supported (ENOTSUP) and path_readlink finds no symbolic links', () => {
      const e = setup(abi, { vfs: Vfs.fromMessage({ 'f': 'x' }) });
      const n = e.path('f');
      const m = e.path('g', PATH2);
      expect(e.call('path_link', 3, 0, PATH, n, 3, PATH2, m)).toBe(Errno.ENOTSUP);
      expect(e.call('path_symlink', PATH, n, 3, PATH2, m)).toBe(Errno.ENOTSUP);
      expect(e.call('path_link', 9, 0, PATH, n, 3, PATH2, m)).toBe(Errno.EBADF);
      expect(e.call('path_readlink', 3, PATH, n, BUF, 100, OUT)).toBe(Errno.EINVAL);
      expect(e.call('path_readlink', 3, PATH2, m, BUF, 100, OUT)).toBe(Errno.ENOENT);
      expect(e.vfs.exists('g')).toBe(false);
    });
  });
});
