/**
 * Messages and keys. A message is a plain object with string keys; values are strings, numbers,
 * bigints, booleans, null, `Uint8Array`s (leaf values), lists of values or nested messages.
 * Messages are never mutated: every operation returns a new object (sharing untouched parts).
 *
 * Keys are case-insensitive. They are normalised (lowercased, except 43-character IDs) when they
 * come from a path or are written by `set`; stored keys are not rewritten, so lookups try the exact
 * key first and fall back to a case-insensitive scan. Any top-level key whose lowercase form starts
 * with `priv` is private: invisible to `get`/`keys`, never hashed, serialised or cached.
 */

import { AoError } from '../errors';

/** A value a message may hold. `priv` parts may also hold live handles (functions, class instances). */
export type Value = string | number | bigint | boolean | null | Uint8Array | Value[] | Message;

/** A message: a plain object with string keys. */
export interface Message {
  [key: string]: any;
}

/** Marks a key for deletion in `set` (HyperBEAM's `unset` atom). */
export const UNSET: unique symbol = Symbol.for('hb-runtimes.ao.unset');

/** Keys reserved by AO-Core itself. */
export const AO_CORE_KEYS: readonly string[] = ['path', 'hashpath', 'priv'];

const hasOwn = Object.prototype.hasOwnProperty;
const objectProto = Object.prototype;

/** True for a plain object (a message): not an array, a byte array, null or a class instance. */
export function isMessage(v: unknown): v is Message {
  if (typeof v !== 'object' || v === null) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === objectProto || proto === null;
}

/** True for a message or a list: the two things keys can be resolved on. */
export function isMapLike(v: unknown): v is Message | unknown[] {
  return Array.isArray(v) || isMessage(v);
}

/** True when `key` names a private key (lowercase form starts with `priv`). */
export function isPrivateKey(key: string): boolean {
  if (key.length < 4) return false;
  const c = key.charCodeAt(0);
  if (c !== 112 && c !== 80) return false; // 'p' | 'P'
  return key.slice(0, 4).toLowerCase() === 'priv';
}

/**
 * IS_ID from HyperBEAM: a string of 32, 42 or 43 characters, or 32 raw bytes. Only 43-character
 * base64url strings can be cache IDs here (see `isCacheId`).
 */
export function isId(x: unknown): boolean {
  if (typeof x === 'string') return x.length === 43 || x.length === 42 || x.length === 32;
  return x instanceof Uint8Array && x.length === 32;
}

/** A 43-character base64url string (no padding): the shape of every cache ID. */
export function isCacheId(x: unknown): x is string {
  if (typeof x !== 'string' || x.length !== 43) return false;
  for (let i = 0; i < 43; i++) {
    const c = x.charCodeAt(i);
    const ok =
      (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 45 || c === 95;
    if (!ok) return false;
  }
  return true;
}

/** True when a string has an ASCII uppercase letter (the only case lowercasing changes often). */
function hasUpper(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if ((c >= 65 && c <= 90) || c > 127) return true;
  }
  return false;
}

/**
 * Normalise one key: strings are lowercased except 43-character IDs; integers become decimal
 * strings. Anything else is a 400.
 */
export function normalizeKey(key: unknown): string {
  if (typeof key === 'string') {
    if (key.length === 43 || !hasUpper(key)) return key;
    return key.toLowerCase();
  }
  if (typeof key === 'number' && Number.isSafeInteger(key)) return String(key);
  if (typeof key === 'bigint') return key.toString();
  throw new AoError(`Invalid key ${describe(key)}: expected a string or an integer`, {
    status: 400,
    code: 'ERR_BAD_REQUEST',
    key: String(key),
  });
}

/** A short human description of a value's type, for error messages. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (Array.isArray(v)) return 'a list';
  if (v instanceof Uint8Array) return 'a byte array';
  switch (typeof v) {
    case 'string':
      return 'a string';
    case 'number':
      return Number.isInteger(v) ? 'an integer' : 'a float';
    case 'bigint':
      return 'a bigint';
    case 'boolean':
      return 'a boolean';
    case 'function':
      return 'a function';
    case 'symbol':
      return 'a symbol';
    default:
      return isMessage(v) ? 'a message' : `an instance of ${(v as object).constructor?.name ?? 'object'}`;
  }
}

/**
 * Read a key exactly as stored, ignoring prototype properties. `undefined` when absent.
 * The fast path is one property read; `hasOwnProperty` runs only for function values and
 * `__proto__`, the only things a plain object inherits.
 */
export function ownGet(msg: Message, key: string): any {
  const v = msg[key];
  if (v === undefined) return undefined;
  if ((typeof v === 'function' || key === '__proto__') && !hasOwn.call(msg, key)) return undefined;
  return v;
}

/** The stored key of `msg` matching `key` case-insensitively, or undefined. Private keys never match. */
export function findKey(msg: Message, key: string): string | undefined {
  if (hasOwn.call(msg, key)) return key;
  const lower = key.toLowerCase();
  for (const k in msg) {
    if (k.length === lower.length && hasOwn.call(msg, k) && k.toLowerCase() === lower) return k;
  }
  return undefined;
}

/**
 * message@1.0 lookup: private keys are hidden; exact key first, then a case-insensitive match.
 * Returns undefined when absent.
 */
export function rawGet(msg: Message, key: string): any {
  if (isPrivateKey(key)) return undefined;
  const v = ownGet(msg, key);
  if (v !== undefined) return v;
  const lower = key.length === 43 ? key : key.toLowerCase();
  for (const k in msg) {
    if (k.length === lower.length && k !== key && k.toLowerCase() === lower && hasOwn.call(msg, k)) {
      return msg[k];
    }
  }
  return undefined;
}

/** Like `rawGet` but also reads private keys (for internal bookkeeping such as `priv`). */
export function rawGetAny(msg: Message, key: string): any {
  const v = ownGet(msg, key);
  if (v !== undefined) return v;
  const k = findKey(msg, key);
  return k === undefined ? undefined : msg[k];
}

/** The `device` value of a message, matched case-insensitively. */
export function deviceOf(msg: Message): unknown {
  const d = msg.device;
  if (d !== undefined) return d;
  for (const k in msg) {
    if (k.length === 6 && k !== 'device' && k.toLowerCase() === 'device' && hasOwn.call(msg, k)) {
      return msg[k];
    }
  }
  return undefined;
}

/** Public keys of a message, normalised (lowercased), in insertion order. Lists give "1".."n". */
export function publicKeys(msg: Message | unknown[]): string[] {
  if (Array.isArray(msg)) return msg.map((_, i) => String(i + 1));
  const out: string[] = [];
  for (const k of Object.keys(msg)) {
    if (isPrivateKey(k) || msg[k] === undefined) continue;
    out.push(normalizeKey(k));
  }
  return out;
}

/** A list seen as a message keyed "1".."n". */
export function listToMap(list: readonly unknown[]): Message {
  const out: Message = {};
  for (let i = 0; i < list.length; i++) out[String(i + 1)] = list[i];
  return out;
}

/** The 1-based list index named by `key`, or -1 when `key` is not a positive decimal integer. */
export function listIndex(key: string, length: number): number {
  const n = key.length;
  if (n === 0 || n > 15) return -1;
  let v = 0;
  for (let i = 0; i < n; i++) {
    const c = key.charCodeAt(i);
    if (c < 48 || c > 57 || (i === 0 && c === 48)) return -1;
    v = v * 10 + (c - 48);
  }
  return v >= 1 && v <= length ? v - 1 : -1;
}

/**
 * A shallow copy of a message. Use it (not `{...msg, k: v}`) when keys are added afterwards:
 * V8 handles "spread, then add a property" very slowly for some object shapes.
 */
export function copyMessage(msg: Message): Message {
  const out: Message = {};
  for (const k in msg) {
    if (k === '__proto__') putKey(out, k, msg[k]);
    else out[k] = msg[k];
  }
  return out;
}

/** Define an own data property (safe for `__proto__`) on an object being built. */
export function putKey(obj: Message, key: string, value: unknown): void {
  if (key === '__proto__') {
    Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    obj[key] = value;
  }
}

/**
 * A copy of `msg` with `changes` applied. `changes` maps normalised keys to values; UNSET removes
 * the key. A stored key matching a change case-insensitively is replaced in place, never
 * duplicated; new keys are appended.
 */
export function withChanges(msg: Message, changes: ReadonlyMap<string, unknown>): Message {
  const out: Message = {};
  const done = new Set<string>();
  for (const k of Object.keys(msg)) {
    const nk = k.length === 43 || !hasUpper(k) ? k : k.toLowerCase();
    if (changes.has(nk)) {
      if (!done.has(nk)) {
        done.add(nk);
        const v = changes.get(nk);
        if (v !== UNSET) putKey(out, nk, v);
      }
      continue;
    }
    putKey(out, k, msg[k]);
  }
  for (const [k, v] of changes) {
    if (!done.has(k) && v !== UNSET) putKey(out, k, v);
  }
  return out;
}

/** A copy of `msg` without its private keys (top level only). */
export function withoutPrivate(msg: Message): Message {
  let found = false;
  for (const k in msg) {
    if (isPrivateKey(k)) {
      found = true;
      break;
    }
  }
  if (!found) return msg;
  const out: Message = {};
  for (const k of Object.keys(msg)) if (!isPrivateKey(k)) putKey(out, k, msg[k]);
  return out;
}

/**
 * Lowercase the top-level keys of a message (HyperBEAM's `normalize_keys`). Returns the same
 * object when nothing changes.
 */
export function normalizeKeys(msg: Message): Message {
  let needed = false;
  for (const k in msg) {
    if (k.length !== 43 && hasUpper(k)) {
      needed = true;
      break;
    }
  }
  if (!needed) return msg;
  const out: Message = {};
  for (const k of Object.keys(msg)) putKey(out, normalizeKey(k), msg[k]);
  return out;
}
