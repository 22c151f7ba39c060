/**
 * multipass@1.0: asks a stack to run again until `passes` passes are done (HyperBEAM
 * dev_multipass). Used as the last device of a stack whose devices work in several passes (e.g.
 * json-iface@1.0 writes its inputs on pass 1 and reads the outputs on pass 2).
 *
 * Keys:
 * - each key listed in `multipass-keys` (default `["compute"]`)
 *   - Assumes: `pass` (default 1) and `passes` (default 1), integers or decimal strings.
 *   - Generates: the base unchanged, with status `pass` while `pass < passes`, else `ok`.
 *   - Side-effects: none.
 * - `snapshot`
 *   - Generates: not found (404): it holds no state, so a stack's snapshot holds nothing of it.
 * - any other key (except `keys` and `set`, which are message@1.0's)
 *   - Assumes: nothing.
 *   - Generates: the base unchanged (status ok): the stack does not re-run for it.
 *   - Side-effects: none.
 *
 * Unlike HyperBEAM, only the keys in `multipass-keys` trigger re-runs: re-running `init` or
 * `normalize` would, for instance, instantiate a WASM module twice.
 */

import { AoError } from '../errors';
import { defineDevice, HandlerFn } from '../ao/device';
import { isMessage, Message, normalizeKey, rawGet } from '../ao/message';
import { notFound, status } from '../ao/result';

export const MULTIPASS_DEVICE = 'multipass@1.0';

/** The keys that request extra passes when `multipass-keys` is absent. */
export const DEFAULT_MULTIPASS_KEYS: readonly string[] = ['compute'];

function count(m: Message, key: string): number {
  const v = rawGet(m, key);
  if (v === undefined) return 1;
  if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
  if (typeof v === 'string' && /^[0-9]{1,15}$/.test(v)) return Number(v);
  throw new AoError(`multipass@1.0: '${key}' must be an integer, got ${JSON.stringify(String(v))}`, {
    status: 400,
    code: 'ERR_BAD_REQUEST',
    key,
    device: MULTIPASS_DEVICE,
  });
}

function passKeys(m: Message): readonly string[] {
  const v = rawGet(m, 'multipass-keys');
  if (v === undefined) return DEFAULT_MULTIPASS_KEYS;
  const list = Array.isArray(v) ? v : isMessage(v) ? Object.values(v) : [v];
  return list.map((k) => normalizeKey(k));
}

const handler: HandlerFn = (key: string, base: Message) => {
  // It holds no state: a stack's snapshot (map mode) gets no copy of the state from it.
  if (key === 'snapshot') return notFound(key, MULTIPASS_DEVICE, 'multipass@1.0 holds no state to snapshot');
  if (!passKeys(base).includes(key)) return base;
  return count(base, 'pass') < count(base, 'passes') ? status('pass', base) : base;
};

export const multipassDevice = defineDevice(MULTIPASS_DEVICE, {
  info: Object.freeze({ handler, excludes: Object.freeze(['keys', 'set']) }),
});
