/**
 * The `env` imports of AOS 2 images (emscripten 3.1.5x-4 runtime, Asyncify, WeaveDrive), 32-
 * and 64-bit: what `wasm32-unknown-emscripten4`, `wasm64-unknown-emscripten-draft_2024_02_15`
 * and their `-metering` formats link. Environment variables are empty, as ao-loader's runtime
 * leaves them; the clock is the process clock (`Clock`).
 */
import type { WasmValue } from '../wasm';
import { breakDown, formatTime, makeTime, type Clock } from './clock';
import type { EmFS } from './fs';
import { ExitStatus, type Gas } from './gas';
import { LONGJMP, type Runtime } from './runtime';
import { syscalls } from './syscalls';
import type { WeaveDriveHooks } from './weavedrive';

type Fn = (...a: WasmValue[]) => WasmValue | undefined | void;

export function emscripten4Imports(rt: Runtime, fs: EmFS, clock: Clock, gas: Gas, drive: WeaveDriveHooks): Record<string, Fn> {
  const n = (v: WasmValue | undefined): number => Number(v ?? 0);
  const ret = (v: number): WasmValue => (rt.wide ? BigInt(Math.trunc(v)) : v);
  const asyncResult = (v: unknown): number => (typeof v === 'number' ? v | 0 : v === true ? 1 : 0);
  const writeTm = (p: number, seconds: number, local: boolean): void => {
    const t = breakDown(seconds);
    const b = Buffer.alloc(32);
    [t.sec, t.min, t.hour, t.mday, t.mon, t.year, t.wday, t.yday].forEach((v, i) => b.writeInt32LE(v, i * 4));
    rt.write(p, b);
    if (!local) return;
    rt.setI32(p + 32, 0); // tm_isdst, then tm_gmtoff (a long): UTC
    if (rt.wide) rt.setU64(p + 40, 0);
    else rt.setI32(p + 36, 0);
  };
  const time = (a: WasmValue[]): [number, number] =>
    rt.wide ? [Number(a[0]), n(a[1])] : [(n(a[0]) >>> 0) + n(a[1]) * 4294967296, n(a[2])];

  return {
    ...syscalls(rt, fs, { ioctlWrites: true }),
    invoke_vii: (i, a, b) => rt.invoke('vii', i!, [a!, b!]),
    invoke_vjj: (i, a, b) => rt.invoke('vjj', i!, [a!, b!]),
    _emscripten_throw_longjmp: () => {
      throw LONGJMP;
    },
    strftime: (s, maxsize, format, tm) => {
      const p = n(tm);
      const f = rt.bytes(p, 44);
      const zone = rt.wide ? Number(rt.bytes(p + 48, 8).readBigUInt64LE(0)) : f.readUInt32LE(40);
      const out = Buffer.from(
        formatTime(rt.cstr(n(format)), {
          sec: f.readInt32LE(0), min: f.readInt32LE(4), hour: f.readInt32LE(8), mday: f.readInt32LE(12), mon: f.readInt32LE(16),
          year: f.readInt32LE(20), wday: f.readInt32LE(24), yday: f.readInt32LE(28), isdst: f.readInt32LE(32),
          gmtoff: rt.wide ? Number(rt.bytes(p + 40, 8).readBigInt64LE(0)) : f.readInt32LE(36), zone: zone ? rt.cstr(zone) : '',
        }),
      );
      if (out.length + 1 > n(maxsize)) return ret(0);
      rt.write(n(s), Buffer.concat([out, Buffer.of(0)]));
      return ret(out.length);
    },
    exit: (code) => {
      throw new ExitStatus(n(code));
    },
    _abort_js: () => {
      throw new Error('Aborted(native code called abort())');
    },
    __asyncjs__weavedrive_open: (name, mode) => asyncResult(rt.handleAsync(() => drive.open(rt.cstr(n(name)), n(mode)))),
    __asyncjs__weavedrive_read: (fd, dst, length) => asyncResult(rt.handleAsync(() => drive.read(n(fd), n(dst), n(length)))),
    __asyncjs__weavedrive_close: (fd) => asyncResult(rt.handleAsync(() => drive.close(n(fd)))),
    metering_gasUsed: () => gas.sync() | 0,
    _emscripten_memcpy_js: (dest, src, num) => {
      rt.write(n(dest), rt.bytes(n(src), n(num)));
    },
    emscripten_date_now: () => clock.now(),
    _emscripten_get_now_is_monotonic: () => 1,
    environ_sizes_get: (count, size) => {
      rt.setPtr(n(count), 0);
      rt.setPtr(n(size), 0);
      return 0;
    },
    environ_get: () => 0,
    _emscripten_system: (command) => (n(command) ? -1 : 0), // no shell: a departure from ao-loader, which runs the command
    _tzset_js: (timezone, daylight, stdName, dstName) => {
      rt.setU32(n(timezone), 0);
      rt.setI32(n(daylight), 0);
      rt.writeString('UTC', n(dstName), 17);
      rt.writeString('UTC', n(stdName), 17);
    },
    emscripten_resize_heap: (size) => (rt.resizeHeap(n(size)) ? 1 : 0),
    _mktime_js: (tmPtr) => {
      const p = n(tmPtr);
      const f = rt.bytes(p, 36);
      const { seconds, tm } = makeTime({ sec: f.readInt32LE(0), min: f.readInt32LE(4), hour: f.readInt32LE(8), mday: f.readInt32LE(12), mon: f.readInt32LE(16), year: f.readInt32LE(20) });
      if (f.readInt32LE(32) < 0) rt.setI32(p + 32, 0);
      const b = Buffer.alloc(32);
      [tm.sec, tm.min, tm.hour, tm.mday, tm.mon, tm.year, tm.wday, tm.yday].forEach((v, i) => b.writeInt32LE(v, i * 4));
      rt.write(p, b);
      if (rt.wide) return BigInt(Math.trunc(seconds));
      const hi = Math.abs(seconds) >= 1 ? (seconds > 0 ? Math.floor(seconds / 4294967296) >>> 0 : ~~Math.ceil((seconds - (~~seconds >>> 0)) / 4294967296) >>> 0) : 0;
      rt.call('_emscripten_tempret_set', [hi | 0]);
      return seconds >>> 0 | 0;
    },
    _localtime_js: (...a) => {
      const [t, p] = time(a);
      writeTm(p, t, true);
    },
    _gmtime_js: (...a) => {
      const [t, p] = time(a);
      writeTm(p, t, false);
    },
  };
}
