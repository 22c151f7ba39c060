/**
 * stack@1.0: runs a key through a stack of devices (HyperBEAM dev_stack, SPEC §5), in `fold`
 * mode (each device's result feeds the next) or `map` mode (each device's result is collected
 * under its stack key). Every key goes through the stack except `set` and `keys` (message@1.0),
 * and, when `stack-keys` is given, every key not in it.
 *
 * Keys:
 * - `<any stacked key>`, fold mode (default)
 *   - Assumes: `device-stack` (a list, or a map `"1".."N"`, of device names or inline devices);
 *     optional `mode` (`Fold`/`Map`, any case; the request's wins over the base's),
 *     `input-prefix`/`output-prefix` (stack-level prefixes), `input-prefixes`/`output-prefixes`
 *     (lists or maps by stack position), and the request.
 *   - Generates: the base after every device resolved the key in turn, with `pass` counting
 *     from 1. A device answering `skip` ends the stack; `pass` re-runs it from the first device
 *     with `pass + 1`; a device lacking the key (not found) is skipped; a non-message result is
 *     returned as is (plain reads of stacked keys); an error is an error naming the position.
 *   - Side-effects: none. During each device's turn the message carries `device` (that device),
 *     `device-key` (its stack key), and `input-prefix`/`output-prefix` (its entry in the
 *     `-prefixes` lists, else the stack-level prefix); afterwards all of them, and `pass`, are
 *     restored to the values the stack message had (absent keys stay absent).
 * - `<any stacked key>`, map mode
 *   - Assumes: as fold mode.
 *   - Generates: `{<stack key>: <that device's result>}` for every device answering ok; results
 *     derived from the turn's message get the bookkeeping keys restored as in fold mode.
 *   - Side-effects: none.
 * - `transform`
 *   - Assumes: `device-stack`.
 *   - Generates: a message whose next key `K` activates stack entry `K` alone
 *     (`/transform/K/key` runs `key` on that device only, with its prefixes).
 *   - Side-effects: none.
 *
 * Errors: no `device-stack` or an unknown `mode` → 400; too many passes (`opts.maxPasses`,
 * default 1000) → 500.
 */

import { AoError } from '../errors';
import { defineDevice, deviceName, HandlerFn } from '../ao/device';
import {
  copyMessage,
  describe,
  isMessage,
  isPrivateKey,
  listIndex,
  Message,
  normalizeKey,
  normalizeKeys,
  ownGet,
  putKey,
  rawGet,
} from '../ao/message';
import { DEFAULT_MAX_PASSES, Opts } from '../ao/opts';
import { resolveStep } from '../ao/resolve';
import { errorOf, isNotFound, Maybe, notFound, okResult, Result } from '../ao/result';

export const STACK_DEVICE = 'stack@1.0';

/** The output prefix of a message (stack-assigned), `''` when none. Same as `outputPrefix`. */
export function prefix(msg: Message): string {
  return outputPrefix(msg);
}

/** The input prefix of a message (stack-assigned), `''` when none. */
export function inputPrefix(msg: Message): string {
  const p = rawGet(msg, 'input-prefix');
  return typeof p === 'string' ? p : '';
}

/** The output prefix of a message (stack-assigned), `''` when none. */
export function outputPrefix(msg: Message): string {
  const p = rawGet(msg, 'output-prefix');
  return typeof p === 'string' ? p : '';
}

/**
 * The snapshot blob a device should restore from: `snapshot/<device-key>/body` (a stack in map
 * mode files snapshots by device key), else `snapshot/body` (fold mode, plain messages). Stored
 * data only (raw reads); undefined when there is none.
 */
export function snapshotBody(base: Message): Uint8Array | undefined {
  const snap = rawGet(base, 'snapshot');
  if (!isMessage(snap)) return undefined;
  const key = rawGet(base, 'device-key');
  if (key !== undefined) {
    const keyed = rawGet(snap, String(key));
    const body = isMessage(keyed) ? rawGet(keyed, 'body') : undefined;
    if (body instanceof Uint8Array) return body;
  }
  const body = rawGet(snap, 'body');
  return body instanceof Uint8Array ? body : undefined;
}

type Container = Message | unknown[];

/** The bookkeeping values of the stack message, restored after each run. */
interface Saved {
  device: unknown;
  deviceKey: unknown;
  inPrefix: unknown;
  outPrefix: unknown;
  pass: unknown;
}

interface Ctx {
  stack: Container;
  inPrefixes: Container | undefined;
  outPrefixes: Container | undefined;
  saved: Saved;
  req: Message;
  key: string;
  opts: Opts;
}

function badRequest(message: string, key: string): AoError {
  return new AoError(message, { status: 400, code: 'ERR_BAD_REQUEST', key, device: STACK_DEVICE });
}

function entryOf(c: Container | undefined, k: string): unknown {
  if (c === undefined) return undefined;
  if (Array.isArray(c)) {
    const i = listIndex(k, c.length);
    return i < 0 ? undefined : c[i];
  }
  return rawGet(c, k);
}

function container(base: Message, name: string, key: string): Container | undefined {
  const v = rawGet(base, name);
  if (v === undefined) return undefined;
  if (Array.isArray(v) || isMessage(v)) return v;
  throw badRequest(`stack@1.0: '${name}' must be a list or a message, got ${describe(v)}`, key);
}

function makeCtx(base: Message, req: Message, key: string, opts: Opts): Ctx {
  const stack = container(base, 'device-stack', key);
  if (stack === undefined) throw badRequest(`stack@1.0: the message has no device-stack (resolving '${key}')`, key);
  return {
    stack,
    inPrefixes: container(base, 'input-prefixes', key),
    outPrefixes: container(base, 'output-prefixes', key),
    saved: {
      device: ownGet(base, 'device'),
      deviceKey: ownGet(base, 'device-key'),
      inPrefix: ownGet(base, 'input-prefix'),
      outPrefix: ownGet(base, 'output-prefix'),
      pass: ownGet(base, 'pass'),
    },
    req,
    key,
    opts,
  };
}

/** Activate stack entry `k` on `m`: undefined when the stack has no such entry. */
function transform(ctx: Ctx, m: Message, k: string): Message | undefined {
  const dev = entryOf(ctx.stack, k);
  if (dev === undefined) return undefined;
  const out = copyMessage(m);
  out.device = dev;
  out['device-key'] = k;
  const inP = entryOf(ctx.inPrefixes, k) ?? ctx.saved.inPrefix;
  const outP = entryOf(ctx.outPrefixes, k) ?? ctx.saved.outPrefix;
  if (inP !== undefined) out['input-prefix'] = inP;
  else if (out['input-prefix'] !== undefined) delete out['input-prefix'];
  if (outP !== undefined) out['output-prefix'] = outP;
  else if (out['output-prefix'] !== undefined) delete out['output-prefix'];
  return out;
}

/** Put the stack's own bookkeeping values back (absent ones removed). */
function restore(saved: Saved, m: Message, withPass: boolean): Message {
  const out: Message = {};
  for (const k in m) {
    if (k === 'device' || k === 'device-key' || k === 'input-prefix' || k === 'output-prefix') continue;
    if (withPass && k === 'pass') continue;
    if (k === '__proto__') putKey(out, k, m[k]);
    else out[k] = m[k];
  }
  if (saved.device !== undefined) out.device = saved.device;
  if (saved.deviceKey !== undefined) out['device-key'] = saved.deviceKey;
  if (saved.inPrefix !== undefined) out['input-prefix'] = saved.inPrefix;
  if (saved.outPrefix !== undefined) out['output-prefix'] = saved.outPrefix;
  if (withPass && saved.pass !== undefined) out.pass = saved.pass;
  return out;
}

function entryName(ctx: Ctx, k: string): string {
  const e = entryOf(ctx.stack, k);
  return typeof e === 'string' ? e : (deviceName(e) ?? 'inline device');
}

function stackError(ctx: Ctx, k: string, r: Result): Result {
  const inner = errorOf(r);
  const device = (inner as AoError & { device?: unknown }).device ?? entryName(ctx, k);
  return new Result(
    'error',
    new AoError(`stack@1.0 entry ${k} (${entryName(ctx, k)}): ${inner.message}`, {
      status: inner.status,
      code: inner.code,
      body: inner.body,
      cause: inner,
      key: ctx.key,
      device,
      stackKey: k,
    }),
    true,
  );
}

function malformedStatus(ctx: Ctx, k: string, r: Result): Result {
  return new Result(
    'error',
    new AoError(
      `stack@1.0: device ${k} (${entryName(ctx, k)}) answered '${r.status}' without a message for key '${ctx.key}'`,
      { status: 500, code: 'ERR_DEVICE_FAULT', key: ctx.key, device: entryName(ctx, k), stackKey: k },
    ),
    true,
  );
}

function passNumber(m: Message): number {
  const p = rawGet(m, 'pass');
  if (typeof p === 'number' && Number.isSafeInteger(p)) return p;
  if (typeof p === 'string' && /^[0-9]{1,15}$/.test(p)) return Number(p);
  return 1;
}

interface FoldState {
  m: Message;
  i: number;
  passes: number;
}

/** Apply one device's answer to the fold; a Result ends the fold. */
function advance(ctx: Ctx, st: FoldState, mi: Message, r: Result): Result | undefined {
  const k = String(st.i);
  switch (r.status) {
    case 'ok':
      if (!isMessage(r.value)) return r; // a plain value short-circuits the stack
      st.m = r.value;
      st.i++;
      return undefined;
    case 'error':
      if (!r.fault && isNotFound(r)) {
        st.m = mi; // this device lacks the key: skip it
        st.i++;
        return undefined;
      }
      return stackError(ctx, k, r);
    case 'skip':
      if (!isMessage(r.value)) return malformedStatus(ctx, k, r);
      return okResult(restore(ctx.saved, r.value, true));
    case 'pass': {
      if (!isMessage(r.value)) return malformedStatus(ctx, k, r);
      const max = ctx.opts.maxPasses ?? DEFAULT_MAX_PASSES;
      if (++st.passes > max) {
        return new Result(
          'error',
          new AoError(`stack@1.0: more than ${max} passes resolving '${ctx.key}' (device ${k} keeps answering 'pass')`, {
            status: 500,
            code: 'ERR_DEVICE_FAULT',
            key: ctx.key,
            device: entryName(ctx, k),
            stackKey: k,
          }),
          true,
        );
      }
      st.m = copyMessage(r.value);
      st.m.pass = passNumber(r.value) + 1;
      st.i = 1;
      return undefined;
    }
    default:
      return malformedStatus(ctx, k, r);
  }
}

function runFold(ctx: Ctx, st: FoldState): Maybe<Result> {
  for (;;) {
    const mi = transform(ctx, st.m, String(st.i));
    if (mi === undefined) return okResult(restore(ctx.saved, st.m, true));
    const r = resolveStep(mi, ctx.req, ctx.key, ctx.opts);
    if (r instanceof Promise) {
      return r.then((res) => advance(ctx, st, mi, res) ?? runFold(ctx, st));
    }
    const done = advance(ctx, st, mi, r);
    if (done !== undefined) return done;
  }
}

function fold(ctx: Ctx, base: Message): Maybe<Result> {
  const m = copyMessage(base);
  m.pass = 1;
  return runFold(ctx, { m, i: 1, passes: 1 });
}

function stackKeys(stack: Container): string[] {
  if (Array.isArray(stack)) return stack.map((_, i) => String(i + 1));
  const out: string[] = [];
  for (const k of Object.keys(stack)) {
    const nk = normalizeKey(k);
    if (nk !== 'path' && nk !== 'hashpath' && !isPrivateKey(nk)) out.push(nk);
  }
  return out;
}

function mapValue(ctx: Ctx, mi: Message, k: string, v: unknown): unknown {
  if (isMessage(v) && v.device === mi.device && ownGet(v, 'device-key') === k) return restore(ctx.saved, v, false);
  return v;
}

function map(ctx: Ctx, base: Message): Maybe<Result> {
  const ks = stackKeys(ctx.stack);
  const out: Message = {};
  const run = (i: number): Maybe<Result> => {
    for (; i < ks.length; i++) {
      const k = ks[i];
      const mi = transform(ctx, base, k);
      if (mi === undefined) continue;
      const r = resolveStep(mi, ctx.req, ctx.key, ctx.opts);
      const collect = (res: Result): Result | undefined => {
        if (res.status === 'ok') out[k] = mapValue(ctx, mi, k, res.value);
        else if (res.status === 'error' && res.fault) return stackError(ctx, k, res);
        return undefined;
      };
      if (r instanceof Promise) {
        const next = i + 1;
        return r.then((res) => collect(res) ?? run(next));
      }
      const failed = collect(r);
      if (failed !== undefined) return failed;
    }
    return okResult(out);
  };
  return run(0);
}

function modeOf(base: Message, req: Message, key: string): 'fold' | 'map' {
  let mode = rawGet(req, 'mode');
  if (mode === undefined) mode = rawGet(base, 'mode');
  if (mode === undefined) return 'fold';
  if (typeof mode === 'string') {
    const m = mode.toLowerCase();
    if (m === 'fold' || m === 'map') return m;
  }
  throw badRequest(`stack@1.0: unknown mode ${JSON.stringify(String(mode))} (expected 'Fold' or 'Map')`, key);
}

const EXCLUDES: readonly string[] = ['set', 'keys'];
/**
 * Keys that always go through the stack, whatever `stack-keys` says: they reach the device
 * holding the state (a stack whose keys are only `init` and `compute` can still be snapshotted
 * and restored).
 */
export const STATE_KEYS: readonly string[] = ['snapshot', 'normalize'];
const listCache = new WeakMap<object, readonly string[]>();

/** `stack-keys` as a list (a numbered map is accepted too), plus the state keys. */
function stackKeysList(v: unknown): readonly string[] | undefined {
  if (v === undefined) return undefined;
  const cacheable = typeof v === 'object' && v !== null;
  let l = cacheable ? listCache.get(v) : undefined;
  if (l === undefined) {
    const given = Array.isArray(v) ? (v as string[]) : isMessage(v) ? (Object.values(v) as string[]) : [String(v)];
    l = [...given, ...STATE_KEYS.filter((k) => !given.some((g) => typeof g === 'string' && normalizeKey(g) === k))];
    if (cacheable) listCache.set(v, l);
  }
  return l;
}

function transformer(base: Message): Message {
  const exports = stackKeysList(rawGet(base, 'stack-keys'));
  const handler: HandlerFn = (k: string, m: Message, _req: Message, opts: Opts) => {
    const ctx = makeCtx(m, {}, k, opts);
    const mi = transform(ctx, m, k);
    return mi === undefined ? notFound(k, STACK_DEVICE, 'no such entry in device-stack') : okResult(mi);
  };
  const dev = defineDevice(`${STACK_DEVICE} transformer`, {
    info: exports === undefined ? { handler, excludes: EXCLUDES } : { handler, excludes: EXCLUDES, exports },
  });
  return { ...base, device: dev };
}

const router: HandlerFn = (key: string, base0: Message, req: Message, opts: Opts): Maybe<Result> => {
  if (key === 'transform') return okResult(transformer(base0));
  const base = normalizeKeys(base0);
  const mode = modeOf(base, req, key);
  const ctx = makeCtx(base, req, key, opts);
  return mode === 'fold' ? fold(ctx, base) : map(ctx, base);
};

const BASE_INFO = Object.freeze({ handler: router, excludes: EXCLUDES });

export const stackDevice = defineDevice(STACK_DEVICE, {
  info(base: Message) {
    const exports = stackKeysList(rawGet(base, 'stack-keys'));
    return exports === undefined ? BASE_INFO : { handler: router, excludes: EXCLUDES, exports };
  },
});
