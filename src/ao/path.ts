/**
 * Paths: splitting (`term_to_path_parts`), the per-process cache of normalised path keys, and the
 * singleton request syntax (`{path: "/a/b?k=v", x: 1}`, HyperBEAM §1.10) used by `ao.resolve`.
 */

import { AoError } from '../errors';
import { describe, isCacheId, isMessage, Message, normalizeKey, putKey } from './message';

/** Longest accepted path segment, as in HyperBEAM's singleton parser. */
export const MAX_SEGMENT_LENGTH = 512;
const MAX_PATH_NESTING = 32;
const PATH_CACHE_LIMIT = 4096;

function malformed(reason: string, extra: Record<string, unknown> = {}): AoError {
  return new AoError(`Malformed path: ${reason}`, { status: 400, code: 'ERR_BAD_REQUEST', ...extra });
}

function splitString(path: string, out: string[]): void {
  let start = 0;
  for (let i = 0; i <= path.length; i++) {
    if (i === path.length || path.charCodeAt(i) === 47 /* '/' */) {
      if (i > start) out.push(path.slice(start, i));
      start = i + 1;
    }
  }
}

function collectParts(path: unknown, out: string[], depth: number): void {
  if (typeof path === 'string') {
    splitString(path, out);
  } else if (typeof path === 'number') {
    if (!Number.isSafeInteger(path)) throw malformed(`${path} is not an integer or string segment`);
    out.push(String(path));
  } else if (typeof path === 'bigint') {
    out.push(path.toString());
  } else if (Array.isArray(path)) {
    if (depth >= MAX_PATH_NESTING) {
      throw malformed(`lists nested deeper than ${MAX_PATH_NESTING} levels (or a cycle)`);
    }
    for (const p of path) collectParts(p, out, depth + 1);
  } else {
    throw malformed(`segment of type ${describe(path)}; expected a string, an integer or a list of them`);
  }
}

/**
 * Split a path into its parts, HyperBEAM style: `"a/b/c"` → `["a","b","c"]`, empty segments
 * dropped (`"x//y"` → `["x","y"]`, `"/"` → `[]`), integers become strings, nested lists are
 * flattened (strings inside lists are split too). Parts keep their case. Anything else is a 400.
 */
export function pathParts(path: unknown): string[] {
  const out: string[] = [];
  collectParts(path, out, 0);
  return out;
}

const keyCache = new Map<string, readonly string[]>();

/**
 * The normalised keys of a path (lowercased except 43-character IDs), cached per path string.
 * The returned array is shared: never mutate it.
 */
export function pathKeys(path: unknown): readonly string[] {
  if (typeof path === 'string') {
    const hit = keyCache.get(path);
    if (hit !== undefined) return hit;
    const parts: string[] = [];
    splitString(path, parts);
    for (let i = 0; i < parts.length; i++) parts[i] = normalizeKey(parts[i]);
    if (keyCache.size >= PATH_CACHE_LIMIT) keyCache.clear();
    const frozen = Object.freeze(parts);
    keyCache.set(path, frozen);
    return frozen;
  }
  return pathParts(path).map(normalizeKey);
}

// ---------------------------------------------------------------------------------------------
// Singleton requests

/** A singleton step that swaps the current message's device (`key~device@1.0`) before resolving. */
export class AsStep {
  constructor(
    readonly device: string,
    readonly req: Message,
  ) {}
}

/** One element of a parsed singleton: a base (message or cache ID) or a step. */
export type SingletonElement = Message | string | AsStep;

function parseTyped(rawKey: string, value: unknown): [string, unknown] {
  const plus = rawKey.indexOf('+');
  if (plus < 0) return [rawKey, value];
  const key = rawKey.slice(0, plus);
  const type = rawKey.slice(plus + 1).toLowerCase();
  if (type === 'int' || type === 'integer') {
    const n = typeof value === 'string' ? Number(value) : value;
    if (typeof n !== 'number' || !Number.isSafeInteger(n)) {
      throw malformed(`'${rawKey}' expects an integer, got ${JSON.stringify(String(value))}`, { key });
    }
    return [key, n];
  }
  if (type === 'float') {
    const n = typeof value === 'string' ? Number(value) : value;
    if (typeof n !== 'number' || Number.isNaN(n)) {
      throw malformed(`'${rawKey}' expects a number, got ${JSON.stringify(String(value))}`, { key });
    }
    return [key, n];
  }
  if (type === 'bin' || type === 'binary') return [key, value];
  if (type === 'res' || type === 'resolve') {
    throw malformed(`sub-resolution '${rawKey}' is not supported`, { key });
  }
  throw malformed(`unknown type specifier '+${type}' in '${rawKey}'`, { key });
}

function parseInline(spec: string, target: Message): void {
  for (const pair of spec.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const [k, v] = eq < 0 ? [pair, true] : [pair.slice(0, eq), pair.slice(eq + 1)];
    const [key, value] = parseTyped(k, v);
    putKey(target, normalizeKey(key), value);
  }
}

/** Parse one singleton path segment: `key`, `key&k=v`, `key~device&k=v`, `~device&k=v`. */
function parseSegment(seg: string): Message | AsStep {
  if (seg.startsWith('(')) throw malformed(`sub-resolution '${seg}' is not supported`);
  const tilde = seg.indexOf('~');
  const amp = seg.indexOf('&');
  const keyEnd = Math.min(tilde < 0 ? seg.length : tilde, amp < 0 ? seg.length : amp);
  const key = seg.slice(0, keyEnd);
  const msg: Message = key === '' ? {} : { path: key };
  if (tilde >= 0 && (amp < 0 || tilde < amp)) {
    const devEnd = seg.indexOf('&', tilde);
    const device = seg.slice(tilde + 1, devEnd < 0 ? seg.length : devEnd);
    if (device === '') throw malformed(`empty device specifier in '${seg}'`);
    if (devEnd >= 0) parseInline(seg.slice(devEnd + 1), msg);
    return new AsStep(device, msg);
  }
  if (amp >= 0) parseInline(seg.slice(amp + 1), msg);
  return msg;
}

function decode(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw malformed(`bad percent-encoding in '${raw}'`);
  }
}

/**
 * Parse a singleton request into `[base, ...steps]` (HyperBEAM's `hb_singleton:from`, without
 * `(...)` sub-resolutions). The base is the cache ID in the first segment, the device of a leading
 * `~device@1.0` segment, or `{}`. The request's other keys and its query string are applied to
 * every element (base included); `N.key` applies to step N only and `key+int` types a value.
 * An element's own keys win over applied ones.
 */
export function parseSingleton(req: Message | string): SingletonElement[] {
  const msg: Message = typeof req === 'string' ? { path: req } : req;
  if (!isMessage(msg)) throw malformed(`singleton request must be a message or a string, got ${describe(req)}`);
  const rawPath = msg.path ?? msg.Path ?? '';
  if (typeof rawPath !== 'string') throw malformed(`singleton path must be a string, got ${describe(rawPath)}`);
  const q = rawPath.indexOf('?');
  const pathStr = q < 0 ? rawPath : rawPath.slice(0, q);
  const extra: Array<[string, unknown]> = [];
  for (const k of Object.keys(msg)) {
    if (k.toLowerCase() !== 'path') extra.push([k, msg[k]]);
  }
  if (q >= 0) {
    // Split by hand: URLSearchParams would turn the `+` of `key+int` into a space.
    for (const pair of rawPath.slice(q + 1).split('&')) {
      if (pair === '') continue;
      const eq = pair.indexOf('=');
      extra.push(eq < 0 ? [decode(pair), true] : [decode(pair.slice(0, eq)), decode(pair.slice(eq + 1))]);
    }
  }

  const segments: string[] = [];
  splitString(pathStr, segments);
  const elements: SingletonElement[] = [];
  segments.forEach((raw, i) => {
    const seg = decode(raw);
    if (seg.length > MAX_SEGMENT_LENGTH) throw malformed(`segment longer than ${MAX_SEGMENT_LENGTH} characters`);
    if (i === 0 && isCacheId(seg)) {
      elements.push(seg);
      return;
    }
    elements.push(parseSegment(seg));
  });
  // The base: an ID, a leading `~device` segment without a key, or an empty message.
  const first = elements[0];
  if (first instanceof AsStep && first.req.path === undefined) {
    elements[0] = { ...first.req, device: first.device };
  } else if (typeof first !== 'string') {
    elements.unshift({});
  }

  // Typed, scoped extra keys: global ones apply everywhere, `N.key` to element N (0 = base).
  const global: Message = {};
  const scoped = new Map<number, Message>();
  for (const [rawKey, value] of extra) {
    const dot = rawKey.indexOf('.');
    let target = global;
    let keyPart = rawKey;
    if (dot > 0 && /^\d+$/.test(rawKey.slice(0, dot))) {
      const n = Number(rawKey.slice(0, dot));
      keyPart = rawKey.slice(dot + 1);
      target = scoped.get(n) ?? {};
      scoped.set(n, target);
    }
    const [key, typed] = parseTyped(keyPart, value);
    putKey(target, normalizeKey(key), typed);
  }
  return elements.map((el, i) => {
    if (typeof el === 'string') return el;
    const add = { ...global, ...(scoped.get(i) ?? {}) };
    if (el instanceof AsStep) return new AsStep(el.device, { ...add, ...el.req });
    return { ...add, ...el };
  });
}
