/**
 * test-device@1.0: a small device for tests and examples (HyperBEAM dev_test), plus generators of
 * the inline devices used by the stack@1.0 test vectors (SPEC §10.5).
 *
 * Keys:
 * - `test_func` (also `test-func`)
 *   - Assumes: nothing.
 *   - Generates: the string `"GOOD_FUNCTION"`.
 *   - Side-effects: none.
 * - `init`
 *   - Assumes: nothing.
 *   - Generates: the base with `already-seen: []`.
 *   - Side-effects: none.
 * - `compute`
 *   - Assumes: the request's `slot`; the base's `already-seen` (default `[]`).
 *   - Generates: the base with `random-key: "random-value"`, `results/assignment-slot: slot`
 *     (merged into existing `results`) and `slot` prepended to `already-seen`.
 *   - Side-effects: none.
 * - `restore`
 *   - Assumes: the base's `already-seen`.
 *   - Generates: the base with private `test-key/started-state` = `already-seen`; without
 *     `already-seen`, the error "No viable state to restore.".
 *   - Side-effects: none.
 * - `mul` (a WASM import in the stdlib convention of SPEC §3.3)
 *   - Assumes: the base's `state`, the request's `args` (two numbers or two bigints).
 *   - Generates: `{state: <base.state>, results: [args[0] * args[1]]}`.
 *   - Side-effects: none.
 * - `snapshot`
 *   - Assumes: nothing.
 *   - Generates: `{}`.
 *   - Side-effects: none.
 */

import { AoError } from '../errors';
import { defineDevice, Device } from '../ao/device';
import { Message, rawGet } from '../ao/message';
import type { Opts } from '../ao/opts';
import { setPriv } from '../ao/private';
import { get, set } from '../ao/resolve';
import { Status, status } from '../ao/result';
import { inputPrefix, outputPrefix } from './stack';

export const TEST_DEVICE = 'test-device@1.0';

export const testDevice = defineDevice(TEST_DEVICE, {
  test_func(): string {
    return 'GOOD_FUNCTION';
  },

  init(base: Message, _req: Message, opts: Opts): Message {
    return set(base, { 'already-seen': [] }, undefined, opts);
  },

  compute(base: Message, req: Message, opts: Opts): Message {
    const slot = get('slot', req, opts);
    const seen = get('already-seen', base, opts) ?? [];
    return set(
      base,
      { 'random-key': 'random-value', results: { 'assignment-slot': slot }, 'already-seen': [slot, ...seen] },
      undefined,
      opts,
    );
  },

  restore(base: Message, _req: Message, opts: Opts) {
    const seen = get('already-seen', base, opts);
    if (seen === undefined) return status('error', 'No viable state to restore.');
    return setPriv(base, 'test-key/started-state', seen);
  },

  mul(base: Message, req: Message): Message {
    const args = rawGet(req, 'args');
    if (!Array.isArray(args) || args.length !== 2) {
      throw new AoError("test-device@1.0 mul needs 'args' with two numbers", {
        status: 400,
        code: 'ERR_BAD_REQUEST',
        key: 'mul',
        device: TEST_DEVICE,
      });
    }
    return { state: rawGet(base, 'state'), results: [args[0] * args[1]] };
  },

  snapshot(): Message {
    return {};
  },
});

/**
 * The "append device" of the stack vectors: `append` adds `separator + req.bin` to the base's
 * `result` and answers with `answer` (ok, skip or pass); on a base whose `pass` is 3 it answers
 * ok with the base unchanged.
 */
export function appendDevice(separator: string, answer: Status = 'ok'): Device {
  return {
    append(base: Message, req: Message) {
      if (rawGet(base, 'pass') === 3) return base;
      const existing = rawGet(base, 'result');
      const add = rawGet(req, 'bin');
      if (typeof existing !== 'string' || typeof add !== 'string') {
        throw new TypeError("append needs a string 'result' on the base and 'bin' on the request");
      }
      return status(answer, { ...base, result: existing + separator + add });
    },
  };
}

/**
 * The "prefix_set device" of the stack vectors: reads `<input-prefix>/<key>` from the request
 * (where `key` is the request's `key`) and writes it at `<output-prefix>/<key>` of the base.
 */
export function prefixSetDevice(): Device {
  return {
    prefix_set(base: Message, req: Message, opts: Opts): Message {
      const key = get('key', req, opts);
      const value = get(`${inputPrefix(base)}/${key}`, req, opts);
      return set(base, `${outputPrefix(base)}/${key}`, value, opts);
    },
  };
}
