/**
 * message@1.0: the identity device, and the default device of every message without a `device`.
 * Any key it does not implement reads the stored value.
 *
 * Keys:
 * - `<any key>` (default)
 *   - Assumes: nothing.
 *   - Generates: the stored value, matched exactly then case-insensitively; private keys
 *     (`priv…`) and absent keys are a not-found error (404).
 *   - Side-effects: none.
 * - `keys`
 *   - Assumes: nothing.
 *   - Generates: the list of public keys, lowercased (`"1".."n"` for a list).
 *   - Side-effects: none.
 * - `set`
 *   - Assumes: the request holds the keys to write; `set-mode: explicit` asks for shallow writes.
 *   - Generates: a new message: reserved keys (`id`, `commitments`, `committers`, `keys`, `path`,
 *     `set`, `remove`, `verify`), `set-mode`, `priv` and `undefined` values are ignored; `UNSET`
 *     deletes; nested messages are deep-merged through the nested message's own device (unless
 *     explicit); an existing key differing only in case is replaced, never duplicated. `priv` is
 *     kept as it was.
 *   - Side-effects: none (the base is not modified).
 * - `set-path` (also `set_path`)
 *   - Assumes: the request's `value`.
 *   - Generates: the message with `path` set to `value` (a reserved key `set` cannot write).
 *   - Side-effects: none.
 * - `remove`
 *   - Assumes: the request's `item` (one key) or `items` (a list of keys).
 *   - Generates: the message without those keys (case-insensitive). Neither given: error 400.
 *   - Side-effects: none.
 * - `id`
 *   - Assumes: nothing.
 *   - Generates: the message's 43-character ID (see docs/ao-core.md), private keys excluded.
 *   - Side-effects: none.
 */

import { AoError } from '../errors';
import { messageId } from '../ao/cache';
import {
  findKey,
  isMessage,
  listToMap,
  Message,
  normalizeKey,
  publicKeys,
  rawGet,
  UNSET,
  withChanges,
} from '../ao/message';
import type { Opts } from '../ao/opts';
import { defineDevice } from '../ao/device';
import { setMany } from '../ao/resolve';

export const MESSAGE_DEVICE = 'message@1.0';

/** Keys that `set` never writes. */
export const RESERVED_KEYS: ReadonlySet<string> = new Set([
  'id',
  'commitments',
  'committers',
  'keys',
  'path',
  'set',
  'remove',
  'verify',
  'set-mode',
  'priv',
]);

function asMap(base: Message | unknown[]): Message {
  return Array.isArray(base) ? listToMap(base) : base;
}

function badRequest(message: string, key: string): AoError {
  return new AoError(message, { status: 400, code: 'ERR_BAD_REQUEST', key, device: MESSAGE_DEVICE });
}

/** message@1.0 `set`: write the request's keys into the base (see the header). */
export function setKeys(base: Message | unknown[], req: Message, opts: Opts): Message {
  const m = asMap(base);
  const explicit = rawGet(req, 'set-mode') === 'explicit';
  const changes = new Map<string, unknown>();
  for (const k of Object.keys(req)) {
    const nk = normalizeKey(k);
    if (RESERVED_KEYS.has(nk)) continue;
    const v = req[k];
    if (v === undefined) continue;
    const existingKey = findKey(m, nk);
    if (v === UNSET) {
      if (existingKey !== undefined) changes.set(nk, UNSET);
      continue;
    }
    const cur = existingKey === undefined ? undefined : m[existingKey];
    if (!explicit && isMessage(v) && isMessage(cur)) {
      const merged = setMany(cur, v, opts);
      if (merged !== cur) changes.set(nk, merged);
      continue;
    }
    if (cur === v && existingKey === nk) continue;
    changes.set(nk, v);
  }
  return changes.size === 0 ? m : withChanges(m, changes);
}

export const messageDevice = defineDevice(MESSAGE_DEVICE, {
  keys(base: Message | unknown[]): string[] {
    return publicKeys(base);
  },

  set(base: Message | unknown[], req: Message, opts: Opts): Message {
    return setKeys(base, req, opts);
  },

  set_path(base: Message | unknown[], req: Message): Message {
    const value = isMessage(req) ? rawGet(req, 'value') : undefined;
    if (value === undefined) throw badRequest("set-path needs a 'value'", 'set-path');
    return withChanges(asMap(base), new Map([['path', value]]));
  },

  remove(base: Message | unknown[], req: Message): Message {
    const item = rawGet(req, 'item');
    const items = item !== undefined ? [item] : rawGet(req, 'items');
    if (!Array.isArray(items)) throw badRequest("remove needs an 'item' or a list of 'items'", 'remove');
    const m = asMap(base);
    const changes = new Map<string, unknown>();
    for (const k of items) {
      const nk = normalizeKey(k);
      if (findKey(m, nk) !== undefined) changes.set(nk, UNSET);
    }
    return changes.size === 0 ? m : withChanges(m, changes);
  },

  id(base: Message | unknown[]): string {
    return messageId(base);
  },
});
