/**
 * The `env` and `metering` imports of AOS 1 images (emscripten 3.1.2x runtime):
 * `wasm32-unknown-emscripten2`. The runtime of that generation reports a wall clock of 0 and a
 * monotonic clock of NaN under ao-loader (its `process.hrtime` is replaced by a number); both
 * are kept. `usegas` is the metering import built into these images.
 */
import type { WasmValue } from '../wasm';
import { breakDown, formatTime, makeTime } from './clock';
import type { EmFS } from './fs';
import { ExitStatus, type Gas } from './gas';
import { LONGJMP, type Runtime } from './runtime';
import { syscalls } from './syscalls';

type Fn = (...a: WasmValue[]) => WasmValue | undefined | void;

/** emscripten's environment strings of this generation; `_` is the program name. */
export function environment(programName: string): string[] {
  return ['USER=web_user', 'LOGNAME=web_user', 'PATH=/', 'PWD=/', 'HOME=/home/web_user', 'LANG=C.UTF-8', `_=${programName}`];
}

export function emscripten2Imports(rt: Runtime, fs: EmFS, gas: Gas, programName: string): { env: Record<string, Fn>; metering: Record<string, Fn> } {
  const n = (v: WasmValue | undefined): number => Number(v ?? 0);
  let tempRet0 = 0;
  let tzsetCalled = false;
  const env = environment(programName);
  const writeTm = (p: number, seconds: number, local: boolean): void => {
    const t = breakDown(seconds);
    const b = Buffer.alloc(32);
    [t.sec, t.min, t.hour, t.mday, t.mon, t.year, t.wday, t.yday].forEach((v, i) => b.writeInt32LE(v, i * 4));
    rt.write(p, b);
    if (local) {
      rt.setI32(p + 36, 0);
      rt.setI32(p + 32, 0);
    }
  };
  const allocString = (s: string): number => {
    const bytes = Buffer.byteLength(s) + 1;
    const p = rt.malloc(bytes);
    rt.writeString(s, p, bytes);
    return p;
  };

  return {
    env: {
      ...syscalls(rt, fs, { ioctlWrites: false }),
      invoke_vii: (i, a, b) => rt.invoke('vii', i!, [a!, b!]),
      _emscripten_throw_longjmp: () => {
        throw LONGJMP;
      },
      abort: () => {
        throw new Error('Aborted(native code called abort())');
      },
      getTempRet0: () => tempRet0,
      setTempRet0: (v) => {
        tempRet0 = n(v) | 0;
      },
      strftime: (s, maxsize, format, tm) => {
        const p = n(tm);
        const f = rt.bytes(p, 44);
        const zone = f.readUInt32LE(40);
        const out = Buffer.from(
          formatTime(rt.cstr(n(format)), {
            sec: f.readInt32LE(0), min: f.readInt32LE(4), hour: f.readInt32LE(8), mday: f.readInt32LE(12), mon: f.readInt32LE(16),
            year: f.readInt32LE(20), wday: f.readInt32LE(24), yday: f.readInt32LE(28), isdst: f.readInt32LE(32), gmtoff: f.readInt32LE(36),
            zone: zone ? rt.cstr(zone) : '',
          }),
        );
        if (out.length + 1 > n(maxsize)) return 0;
        rt.write(n(s), Buffer.concat([out, Buffer.of(0)]));
        return out.length;
      },
      system: (command) => {
        if (!n(command)) return 0;
        rt.setI32(Number(rt.call('__errno_location')), 52);
        return -1;
      },
      exit: (code) => {
        throw new ExitStatus(n(code));
      },
      emscripten_memcpy_big: (dest, src, num) => {
        rt.write(n(dest), rt.bytes(n(src), n(num)));
      },
      _tzset_js: (timezone, daylight, tzname) => {
        if (tzsetCalled) return;
        tzsetCalled = true;
        rt.setI32(n(timezone), 0);
        rt.setI32(n(daylight), 0);
        const winter = allocString('Coordinated Universal Time');
        const summer = allocString('Coordinated Universal Time');
        rt.setU32(n(tzname), summer);
        rt.setU32(n(tzname) + 4, winter);
      },
      _mktime_js: (tmPtr) => {
        const p = n(tmPtr);
        const f = rt.bytes(p, 36);
        const { seconds, tm } = makeTime({ sec: f.readInt32LE(0), min: f.readInt32LE(4), hour: f.readInt32LE(8), mday: f.readInt32LE(12), mon: f.readInt32LE(16), year: f.readInt32LE(20) });
        if (f.readInt32LE(32) < 0) rt.setI32(p + 32, 0);
        const b = Buffer.alloc(20);
        [tm.sec, tm.min, tm.hour, tm.mday, tm.mon].forEach((v, i) => b.writeInt32LE(v, i * 4));
        rt.write(p, b);
        rt.setI32(p + 24, tm.wday);
        rt.setI32(p + 28, tm.yday);
        return seconds | 0;
      },
      _localtime_js: (time, tmPtr) => writeTm(n(tmPtr), rt.i32(n(time)), true),
      _gmtime_js: (time, tmPtr) => writeTm(n(tmPtr), rt.i32(n(time)), false),
      _emscripten_date_now: () => 0,
      _emscripten_get_now_is_monotonic: () => 1,
      emscripten_get_now: () => NaN,
      environ_sizes_get: (count, size) => {
        rt.setU32(n(count), env.length);
        rt.setU32(n(size), env.reduce((s, e) => s + e.length + 1, 0));
        return 0;
      },
      environ_get: (environ, buf) => {
        let off = 0;
        env.forEach((s, i) => {
          rt.setU32(n(environ) + i * 4, n(buf) + off);
          rt.write(n(buf) + off, Buffer.from(s + '\0', 'latin1'));
          off += s.length + 1;
        });
        return 0;
      },
      emscripten_resize_heap: (size) => (rt.resizeHeap(n(size) >>> 0) ? 1 : 0),
    },
    metering: {
      usegas: (amount) => {
        gas.use(n(amount));
      },
    },
  };
}
