/**
 * The private part of a message (hb_private): live state such as WASM instances, Lua VMs and
 * read/write closures, kept under the key `priv`. Private keys (any top-level key whose lowercase
 * form starts with `priv`) are invisible to `get`/`keys`, cannot be resolved publicly and are
 * never hashed, serialised or cached. Values here may be anything, including functions.
 */

import { AoError } from '../errors';
import { describe, findKey, isMessage, isPrivateKey, Message, putKey, UNSET, withChanges } from './message';
import { checkOpts, Opts } from './opts';
import { pathKeys } from './path';
import { get, internalOpts } from './resolve';

const EMPTY: Message = Object.freeze({}) as Message;

/** The `priv` part of a message (`{}` when it has none). */
export function privateOf(msg: unknown): Message {
  if (!isMessage(msg)) return EMPTY;
  const p = msg.priv;
  return isMessage(p) ? p : EMPTY;
}

/** Path keys with a leading private specifier (`priv/...`) removed. */
function privKeys(path: string | number | readonly unknown[]): readonly string[] {
  const ks = pathKeys(path);
  return ks.length > 0 && isPrivateKey(ks[0]) ? ks.slice(1) : ks;
}

/**
 * Read `path` (a leading `priv/` is optional) from the private part of `msg`, resolving through
 * devices as `get` does, hashpaths ignored. Undefined when absent.
 */
export function getPriv(path: string | number | readonly unknown[], msg: unknown, opts?: Opts): any {
  const ks = privKeys(path);
  const priv = privateOf(msg);
  if (ks.length === 0) return priv;
  return get(ks as string[], priv, internalOpts(checkOpts(opts)));
}

function badPriv(message: string): AoError {
  return new AoError(message, { status: 400, code: 'ERR_BAD_REQUEST' });
}

/** Plain deep set on private data: creates levels as needed, UNSET deletes. */
function plainDeepSet(m: Message, ks: readonly string[], from: number, value: unknown): Message {
  const key = ks[from];
  if (from === ks.length - 1) {
    if (value === UNSET && findKey(m, key) === undefined) return m;
    return withChanges(m, new Map([[key, value]]));
  }
  const existingKey = findKey(m, key);
  const sub = existingKey === undefined ? undefined : m[existingKey];
  if (!isMessage(sub) && value === UNSET) return m;
  const next = plainDeepSet(isMessage(sub) ? sub : {}, ks, from + 1, value);
  return next === sub ? m : withChanges(m, new Map([[key, next]]));
}

/** Plain deep merge of `update` into `m` (nested messages merged, UNSET deletes). */
function plainDeepMerge(m: Message, update: Message, seen: object[]): Message {
  if (seen.includes(update)) throw badPriv('setPriv(): the update contains a cycle');
  seen.push(update);
  const changes = new Map<string, unknown>();
  for (const k of Object.keys(update)) {
    const v = update[k];
    if (v === undefined) continue;
    const existingKey = findKey(m, k);
    const cur = existingKey === undefined ? undefined : m[existingKey];
    const nk = existingKey ?? k;
    if (v === UNSET) {
      if (existingKey !== undefined) changes.set(nk, UNSET);
    } else if (isMessage(v) && isMessage(cur)) {
      const merged = plainDeepMerge(cur, v, seen);
      if (merged !== cur) changes.set(nk, merged);
    } else if (cur !== v) {
      changes.set(nk, v);
    }
  }
  seen.pop();
  return changes.size === 0 ? m : withChanges(m, changes);
}

/** `msg` with its private part replaced; an empty part is not added to a message without one. */
function withPriv(msg: Message, priv: Message): Message {
  if (priv === msg.priv) return msg;
  if (Object.keys(priv).length === 0 && msg.priv === undefined) return msg;
  return { ...msg, priv };
}

/**
 * Set private values: `setPriv(msg, 'a/b', value)` (a leading `priv/` is optional) or
 * `setPriv(msg, {a: 1, b: {c: 2}})` (deep-merged). `UNSET` deletes. Returns a new message.
 */
export function setPriv(msg: Message, pathOrMap: string | number | readonly unknown[] | Message, value?: unknown): Message {
  if (!isMessage(msg)) throw badPriv(`setPriv(): expected a message, got ${describe(msg)}`);
  const priv = privateOf(msg);
  if (isMessage(pathOrMap)) return withPriv(msg, plainDeepMerge(priv, pathOrMap, []));
  const ks = privKeys(pathOrMap);
  if (ks.length === 0) throw badPriv('setPriv(): empty path');
  if (value === undefined) return msg;
  return withPriv(msg, plainDeepSet(priv, ks, 0, value));
}

const MAX_RESET_DEPTH = 1000;

function resetValue(v: unknown, seen: object[]): unknown {
  if (Array.isArray(v)) {
    if (seen.includes(v)) throw badPriv('resetPriv(): the message contains a cycle');
    if (seen.length >= MAX_RESET_DEPTH) throw badPriv(`resetPriv(): nesting deeper than ${MAX_RESET_DEPTH} levels`);
    seen.push(v);
    let changed = false;
    const out = v.map((x) => {
      const y = resetValue(x, seen);
      if (y !== x) changed = true;
      return y;
    });
    seen.pop();
    return changed ? out : v;
  }
  if (!isMessage(v)) return v;
  if (seen.includes(v)) throw badPriv('resetPriv(): the message contains a cycle');
  if (seen.length >= MAX_RESET_DEPTH) throw badPriv(`resetPriv(): nesting deeper than ${MAX_RESET_DEPTH} levels`);
  seen.push(v);
  let changed = false;
  const out: Message = {};
  for (const k of Object.keys(v)) {
    if (isPrivateKey(k)) {
      changed = true;
      continue;
    }
    const x = v[k];
    const y = resetValue(x, seen);
    if (y !== x) changed = true;
    putKey(out, k, y);
  }
  seen.pop();
  return changed ? out : v;
}

/** Remove every private key, at every level (hb_private:reset). Returns `msg` itself if it has none. */
export function resetPriv<T>(msg: T): T {
  return resetValue(msg, []) as T;
}
