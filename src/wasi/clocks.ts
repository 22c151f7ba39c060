/**
 * WASI calls for time: `clock_res_get`, `clock_time_get`, and `poll_oneoff` (clock
 * subscriptions sleep; fd subscriptions are ready at once). Deterministic by default: a clock
 * read advances time by `clockStep`, a sleep jumps to its deadline (see preview1.ts).
 */
import { Clockid, Errno, Eventtype, Rights, Subclockflags } from './errno';
import { addr, u32, type Guest } from './guest';
import type { WasiCalls } from './signatures';
import type { CallContext, WasiState } from './state';

let sleepCell: Int32Array | undefined;
function sleepNs(ns: bigint): void {
  if (ns <= 0n) return;
  sleepCell ??= new Int32Array(new SharedArrayBuffer(4));
  Atomics.wait(sleepCell, 0, 0, Number(ns) / 1e6);
}

function poll(st: WasiState, g: Guest, inPtr: number, outPtr: number, nsubs: number, neventsPtr: number, unstable: boolean): number {
  if (nsubs === 0) return Errno.EINVAL;
  const stride = unstable ? 56 : 48;
  g.check(inPtr, nsubs * stride);
  g.check(outPtr, nsubs * 32);
  g.check(neventsPtr, g.word);
  const subs = g.read(inPtr, nsubs * stride);
  interface Ev {
    userdata: bigint;
    error: number;
    type: number;
    nbytes: bigint;
  }
  const ready: Ev[] = [];
  const clocks: Array<{ userdata: bigint; remaining: bigint }> = [];
  for (let i = 0; i < nsubs; i++) {
    const o = i * stride;
    const userdata = subs.readBigUInt64LE(o);
    const type = subs.readUInt8(o + 8);
    if (type === Eventtype.CLOCK) {
      const c = unstable ? o + 24 : o + 16; // snapshot 0 has a u64 `identifier` first
      const id = subs.readUInt32LE(c);
      const timeout = subs.readBigUInt64LE(c + 8);
      const flags = subs.readUInt16LE(c + 24);
      const now = st.clockNow(id);
      if (now === undefined) {
        ready.push({ userdata, error: Errno.EINVAL, type, nbytes: 0n });
        continue;
      }
      const remaining = flags & Subclockflags.ABSTIME ? timeout - now : timeout;
      clocks.push({ userdata, remaining });
    } else if (type === Eventtype.FD_READ || type === Eventtype.FD_WRITE) {
      const e = st.fds.get(subs.readUInt32LE(o + 16));
      if (!e || e.kind === 'dir') {
        ready.push({ userdata, error: Errno.EBADF, type, nbytes: 0n });
        continue;
      }
      const right = type === Eventtype.FD_READ ? Rights.FD_READ : Rights.FD_WRITE;
      if (!(e.base & right)) {
        ready.push({ userdata, error: Errno.EBADF, type, nbytes: 0n });
        continue;
      }
      const nbytes = type === Eventtype.FD_READ ? BigInt(Math.max(0, e.node.size - e.pos)) : 0n;
      ready.push({ userdata, error: Errno.SUCCESS, type, nbytes });
    } else {
      return Errno.EINVAL;
    }
  }
  if (clocks.length > 0) {
    let wait = ready.length > 0 ? 0n : clocks.reduce((m, c) => (c.remaining < m ? c.remaining : m), clocks[0]!.remaining);
    if (wait < 0n) wait = 0n;
    if (wait > 0n) {
      if (st.wallClock) sleepNs(wait);
      else st.elapsed += wait;
    }
    for (const c of clocks) {
      if (c.remaining <= wait) ready.push({ userdata: c.userdata, error: Errno.SUCCESS, type: Eventtype.CLOCK, nbytes: 0n });
    }
  }
  const b = Buffer.alloc(ready.length * 32);
  ready.forEach((ev, i) => {
    const o = i * 32;
    b.writeBigUInt64LE(ev.userdata, o);
    b.writeUInt16LE(ev.error, o + 8);
    b.writeUInt8(ev.type, o + 10);
    b.writeBigUInt64LE(ev.nbytes, o + 16);
  });
  g.write(outPtr, b);
  g.size(neventsPtr, ready.length);
  return Errno.SUCCESS;
}

export function clockCalls({ st, guest, unstable }: CallContext): WasiCalls {
  return {
    clock_res_get: (id, out) => {
      const g = guest();
      const c = u32(id);
      if (c > Clockid.THREAD_CPUTIME_ID) return Errno.EINVAL;
      const p = addr(out);
      g.check(p, 8);
      let res: bigint;
      if (!st.wallClock) res = st.step > 0n ? st.step : 1n;
      else res = c === Clockid.REALTIME || c === Clockid.MONOTONIC ? 1n : 1000n;
      g.u64(p, res);
      return Errno.SUCCESS;
    },
    clock_time_get: (id, _precision, out) => {
      const g = guest();
      const v = st.clockNow(u32(id));
      if (v === undefined) return Errno.EINVAL;
      const p = addr(out);
      g.check(p, 8);
      g.u64(p, BigInt.asUintN(64, v));
      if (!st.wallClock) st.elapsed += st.step;
      return Errno.SUCCESS;
    },
    poll_oneoff: (inPtr, outPtr, nsubs, nevents) => poll(st, guest(), addr(inPtr), addr(outPtr), addr(nsubs), addr(nevents), unstable),
  };
}
