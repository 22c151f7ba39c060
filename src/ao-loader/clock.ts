/**
 * The deterministic clock and calendar of one loaded process, as @permaweb/ao-loader makes them
 * but without touching `Date.now` for the whole Node process: a millisecond counter that starts
 * at 10,000 (1970-01-01T00:00:10Z) and advances by one at every read, whether the guest reads it
 * or the emscripten runtime does (file timestamps). The calendar is UTC on every host (ao-loader
 * uses the host's time zone; on a UTC host the two agree).
 */

export class Clock {
  constructor(public ms: number) {}
  /** Reads the clock: the current value, then one millisecond later. */
  now(): number {
    return this.ms++;
  }
}

export interface Tm {
  sec: number;
  min: number;
  hour: number;
  mday: number;
  mon: number;
  year: number;
  wday: number;
  yday: number;
  isdst: number;
  gmtoff: number;
  zone: string;
}

const DAY_MS = 86_400_000;

/** `gmtime`/`localtime` (UTC) of `seconds` since the epoch. */
export function breakDown(seconds: number): Omit<Tm, 'zone' | 'isdst' | 'gmtoff'> {
  const d = new Date(seconds * 1000);
  const start = Date.UTC(d.getUTCFullYear(), 0, 1);
  return {
    sec: d.getUTCSeconds(),
    min: d.getUTCMinutes(),
    hour: d.getUTCHours(),
    mday: d.getUTCDate(),
    mon: d.getUTCMonth(),
    year: d.getUTCFullYear() - 1900,
    wday: d.getUTCDay(),
    yday: ((d.getTime() - start) / DAY_MS) | 0,
  };
}

/** `mktime` (UTC): normalises the fields; returns seconds since the epoch or -1. */
export function makeTime(t: { sec: number; min: number; hour: number; mday: number; mon: number; year: number }): { seconds: number; tm: ReturnType<typeof breakDown> } {
  const ms = Date.UTC(t.year + 1900, t.mon, t.mday, t.hour, t.min, t.sec, 0);
  // Date.UTC maps years 0-99 to 1900-1999, as `new Date(y, …)` does in ao-loader's runtime.
  if (Number.isNaN(ms)) return { seconds: -1, tm: breakDown(0) };
  return { seconds: ms / 1000, tm: breakDown(ms / 1000) };
}

const WEEKDAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
const ALIASES: Record<string, string> = {
  c: '%a %b %d %H:%M:%S %Y',
  D: '%m/%d/%y',
  F: '%Y-%m-%d',
  h: '%b',
  r: '%I:%M:%S %p',
  R: '%H:%M',
  T: '%H:%M:%S',
  x: '%m/%d/%y',
  X: '%H:%M:%S',
};

const pad = (v: number | string, n: number, c = '0'): string => String(v).padStart(n, c);
const isLeap = (y: number): boolean => y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);

function isoWeek(t: Tm): number {
  let val = Math.floor((t.yday + 7 - ((t.wday + 6) % 7)) / 7);
  if ((t.wday + 371 - t.yday - 2) % 7 <= 2) val++;
  if (!val) {
    val = 52;
    const dec31 = (t.wday + 7 - t.yday - 1) % 7;
    if (dec31 === 4 || (dec31 === 5 && isLeap((t.year % 400) - 1))) val++;
  } else if (val === 53) {
    const jan1 = (t.wday + 371 - t.yday) % 7;
    if (jan1 !== 4 && (jan1 !== 3 || !isLeap(t.year))) val = 1;
  }
  return val;
}

function isoYear(t: Tm): number {
  const y = t.year + 1900;
  const w = isoWeek(t);
  if (t.mon === 0 && w >= 52) return y - 1;
  if (t.mon === 11 && w === 1) return y + 1;
  return y;
}

function field(c: string, t: Tm): string | undefined {
  switch (c) {
    case 'a': return WEEKDAYS[t.wday]?.slice(0, 3) ?? '';
    case 'A': return WEEKDAYS[t.wday] ?? '';
    case 'b': return MONTHS[t.mon]?.slice(0, 3) ?? '';
    case 'B': return MONTHS[t.mon] ?? '';
    case 'C': return pad(((t.year + 1900) / 100) | 0, 2);
    case 'd': return pad(t.mday, 2);
    case 'e': return pad(t.mday, 2, ' ');
    case 'g': return String(isoYear(t)).slice(2);
    case 'G': return String(isoYear(t));
    case 'H': return pad(t.hour, 2);
    case 'I': return pad(t.hour === 0 ? 12 : t.hour > 12 ? t.hour - 12 : t.hour, 2);
    case 'j': return pad(t.yday + 1, 3);
    case 'm': return pad(t.mon + 1, 2);
    case 'M': return pad(t.min, 2);
    case 'n': return '\n';
    case 'p': return t.hour >= 0 && t.hour < 12 ? 'AM' : 'PM';
    case 'S': return pad(t.sec, 2);
    case 't': return '\t';
    case 'u': return String(t.wday || 7);
    case 'U': return pad(Math.floor((t.yday + 7 - t.wday) / 7), 2);
    case 'V': return pad(isoWeek(t), 2);
    case 'w': return String(t.wday);
    case 'W': return pad(Math.floor((t.yday + 7 - ((t.wday + 6) % 7)) / 7), 2);
    case 'y': return String(t.year + 1900).slice(2);
    case 'Y': return String(t.year + 1900);
    case 'z': {
      const ahead = t.gmtoff >= 0;
      let off = Math.abs(t.gmtoff) / 60;
      off = (off / 60) * 100 + (off % 60);
      return (ahead ? '+' : '-') + String('0000' + off).slice(-4);
    }
    case 'Z': return t.zone;
    case '%': return '%';
    default: return undefined;
  }
}

/** C `strftime` over a broken-down time, as emscripten's runtime formats it. */
export function formatTime(pattern: string, t: Tm): string {
  return pattern.replace(/%[EO]?(.)/g, (all, c: string) => {
    const alias = ALIASES[c];
    if (alias) return formatTime(alias, t);
    return field(c, t) ?? all;
  });
}
