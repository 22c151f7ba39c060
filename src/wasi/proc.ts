/**
 * WASI calls for the process, scheduling and sockets: `proc_exit` (unwinds the guest with
 * `WasiExit`), `proc_raise` (no signals: ENOSYS), `sched_yield`, and the `sock_*` calls (this
 * host has no sockets, so an open fd is ENOTSOCK).
 */
import { Errno } from './errno';
import { u32 } from './guest';
import type { WasiCalls } from './signatures';
import type { CallContext } from './state';

/** Thrown by `proc_exit`: a clean exit with `code`, not a fault. */
export class WasiExit extends Error {
  /** The exit status (u32). */
  readonly code: number;
  constructor(code: number) {
    super(`the guest called proc_exit(${code})`);
    this.code = code;
  }
  override get name(): string {
    return 'WasiExit';
  }
}

/** The exit code when `err` is a `WasiExit` or a trap caused by one; otherwise undefined. */
export function exitCodeOf(err: unknown): number | undefined {
  for (let e: unknown = err, depth = 0; e !== null && typeof e === 'object' && depth < 4; depth++) {
    if (e instanceof WasiExit) return e.code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

export function procCalls({ st }: CallContext): WasiCalls {
  return {
    proc_exit: (code) => {
      st.exitCode = u32(code);
      throw new WasiExit(st.exitCode);
    },
    proc_raise: () => Errno.ENOSYS, // no signal delivery in a sandbox
    sched_yield: () => Errno.SUCCESS,
    // -- sockets: this host has none, so any open descriptor is not a socket --
    sock_accept: (fd) => (st.fd(fd), Errno.ENOTSOCK),
    sock_recv: (fd) => (st.fd(fd), Errno.ENOTSOCK),
    sock_send: (fd) => (st.fd(fd), Errno.ENOTSOCK),
    sock_shutdown: (fd) => (st.fd(fd), Errno.ENOTSOCK),
  };
}
