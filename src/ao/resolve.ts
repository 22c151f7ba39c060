/**
 * The resolve loop and device dispatch (HyperBEAM's hb_ao), plus the `get`/`set`/`getFirst`/`keys`
 * helpers built on it.
 *
 * `resolve(base, req)` splits the request's path into keys and resolves them one by one, each on
 * the previous result, each step's request carrying the request's other keys; it stops early on a
 * non-ok status. Steps stay synchronous until a device returns a promise, so `get` and `set` are
 * synchronous whenever every device on the path is.
 */

import { AoError } from '../errors';
import { loadForResolve } from './cache';
import { nextHashpath, withHashpath, withoutHashpath } from './hashpath';
import {
  describe,
  deviceOf,
  findKey,
  isCacheId,
  isMapLike,
  isMessage,
  isPrivateKey,
  listIndex,
  Message,
  rawGet,
  UNSET,
} from './message';
import { checkOpts, Opts } from './opts';
import { AsStep, parseSingleton, pathKeys } from './path';
import type { DeviceFn, DeviceInfo, HandlerFn } from './device';
import { CompiledDevice, keySet, lookupDevice, compiledMessageDevice } from './registry';
import {
  errorOf,
  faultResult,
  isThenable,
  Maybe,
  NotFound,
  notFound,
  okResult,
  Result,
  Status,
  andThen,
} from './result';

const MESSAGE_DEVICE = 'message@1.0';
const MAX_DEFAULT_CHAIN = 16;

// ---------------------------------------------------------------------------------------------
// Device calls

const MAX_ERROR_TEXT = 500;

/**
 * The text of an error body: a string, a message's `body`, or its `results/body` (the shape
 * devices such as json-iface@1.0 use: the whole state with the reason in `results/body`); else
 * a JSON rendering of plain data, cut short. The full body stays on the error as `body`.
 */
function errorText(body: unknown): string {
  if (typeof body === 'string') return body;
  if (body instanceof Error) return body.message;
  if (isMessage(body)) {
    if (typeof body.body === 'string') return body.body;
    const results = body.results;
    if (isMessage(results) && typeof results.body === 'string') return results.body;
    if ('priv' in body || 'device' in body) return describe(body);
  }
  try {
    const text = JSON.stringify(body, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v)) ?? String(body);
    return text.length > MAX_ERROR_TEXT ? `${text.slice(0, MAX_ERROR_TEXT)}…` : text;
  } catch {
    return describe(body);
  }
}

function codeFor(status: number): string {
  if (status === 404) return 'ERR_NOT_FOUND';
  if (status < 500) return 'ERR_BAD_REQUEST';
  return 'ERR_DEVICE_ERROR';
}

/** Name the key and device on an AoError that does not name them yet. */
function annotate(e: AoError, key: string, device: string): AoError {
  const x = e as AoError & { key?: unknown; device?: unknown };
  if (x.key === undefined) x.key = key;
  if (x.device === undefined) x.device = device;
  return e;
}

/** A device threw (or its promise rejected). */
function thrown(e: unknown, key: string, dev: CompiledDevice): Result {
  if (e instanceof AoError) return faultResult(annotate(e, key, dev.name));
  const text = e instanceof Error ? e.message : String(e);
  return faultResult(
    new AoError(`Device '${dev.name}' failed on key '${key}': ${text}`, {
      status: 500,
      code: 'ERR_DEVICE_FAULT',
      cause: e,
      key,
      device: dev.name,
    }),
  );
}

function malformed(key: string, dev: CompiledDevice, what: string): Result {
  return faultResult(
    new AoError(`Device '${dev.name}' returned a malformed result for key '${key}': ${what}`, {
      status: 500,
      code: 'ERR_DEVICE_FAULT',
      key,
      device: dev.name,
    }),
  );
}

/** A device answered with an error status. */
function deviceError(body: unknown, key: string, dev: CompiledDevice): Result {
  if (body instanceof NotFound) return new Result('error', body);
  if (body instanceof AoError) return new Result('error', annotate(body, key, dev.name));
  const s = isMessage(body) ? body.status : undefined;
  const st = typeof s === 'number' && Number.isInteger(s) && s >= 400 && s <= 599 ? s : 500;
  return new Result(
    'error',
    new AoError(`Device '${dev.name}' returned an error for key '${key}': ${errorText(body)}`, {
      status: st,
      code: codeFor(st),
      body,
      key,
      device: dev.name,
    }),
  );
}

const STATUSES = new Set<Status>(['ok', 'error', 'skip', 'pass']);

/** Turn what a device function returned into a Result. */
function fromReturn(v: unknown, key: string, dev: CompiledDevice): Result {
  if (v instanceof Result) {
    if (!STATUSES.has(v.status)) return malformed(key, dev, `unknown status '${String(v.status)}'`);
    if (v.status === 'error') return v.fault ? v : deviceError(v.value, key, dev);
    if (v.value === undefined) return malformed(key, dev, `status '${v.status}' without a value`);
    return v;
  }
  if (v === undefined) return malformed(key, dev, 'undefined');
  if (v instanceof AoError) return new Result('error', annotate(v, key, dev.name));
  return new Result('ok', v);
}

function settle(out: unknown, key: string, dev: CompiledDevice): Maybe<Result> {
  if (isThenable(out)) {
    return Promise.resolve(out).then(
      (v) => fromReturn(v, key, dev),
      (e) => thrown(e, key, dev),
    );
  }
  return fromReturn(out, key, dev);
}

function callFn(fn: DeviceFn, dev: CompiledDevice, base: unknown, req: Message, key: string, opts: Opts): Maybe<Result> {
  let out: unknown;
  try {
    out = fn.call(dev.source, base, req, opts);
  } catch (e) {
    return thrown(e, key, dev);
  }
  return settle(out, key, dev);
}

function callHandler(fn: HandlerFn, dev: CompiledDevice, base: unknown, req: Message, key: string, opts: Opts): Maybe<Result> {
  let out: unknown;
  try {
    out = fn.call(dev.source, key, base, req, opts);
  } catch (e) {
    return thrown(e, key, dev);
  }
  return settle(out, key, dev);
}

/** message@1.0's default: read the stored value (private keys hidden, case-insensitive). */
function messageGet(base: Message | unknown[], key: string): Result {
  if (Array.isArray(base)) {
    const i = listIndex(key, base.length);
    return i >= 0 ? okResult(base[i]) : notFound(key, MESSAGE_DEVICE);
  }
  if (isPrivateKey(key)) return notFound(key, MESSAGE_DEVICE, 'private keys cannot be resolved');
  const v = rawGet(base, key);
  return v === undefined ? notFound(key, MESSAGE_DEVICE) : okResult(v);
}

function deviceInfo(dev: CompiledDevice, base: unknown, opts: Opts): DeviceInfo | Result | undefined {
  const src = dev.info;
  if (src === undefined) return undefined;
  if (typeof src !== 'function') return src;
  let info: unknown;
  try {
    info = src.call(dev.source, base, opts);
  } catch (e) {
    return thrown(e, 'info', dev);
  }
  if (info === undefined) return undefined;
  if (!isMessage(info)) return malformed('info', dev, `info() returned ${describe(info)}`);
  return info as DeviceInfo;
}

/** Resolve `key` on `base` with a known device (HyperBEAM §1.4 dispatch order). */
function dispatch(dev: CompiledDevice, base: Message | unknown[], req: Message, key: string, opts: Opts, depth: number): Maybe<Result> {
  const msgDev = compiledMessageDevice();
  if (dev === msgDev) {
    const fn = dev.fns.get(key);
    return fn === undefined ? messageGet(base, key) : callFn(fn, dev, base, req, key, opts);
  }
  const info = deviceInfo(dev, base, opts);
  if (info instanceof Result) return info;
  let exported = true;
  if (info !== undefined && key !== 'info') {
    try {
      if (info.excludes !== undefined && keySet(info.excludes, dev.name, 'excludes').has(key)) exported = false;
      else if (info.exports !== undefined && !keySet(info.exports, dev.name, 'exports').has(key)) exported = false;
    } catch (e) {
      return thrown(e, key, dev);
    }
  }
  if (exported) {
    const handler = info?.handler;
    if (handler !== undefined) {
      if (typeof handler !== 'function') return malformed('info', dev, 'info.handler is not a function');
      return callHandler(handler, dev, base, req, key, opts);
    }
    const fn = dev.fns.get(key);
    if (fn !== undefined) return callFn(fn, dev, base, req, key, opts);
    const dflt = info?.default;
    if (dflt !== undefined) {
      if (typeof dflt === 'function') return callHandler(dflt as HandlerFn, dev, base, req, key, opts);
      if (depth >= MAX_DEFAULT_CHAIN) return malformed(key, dev, 'default devices chain too deep (a cycle?)');
      let next: CompiledDevice;
      try {
        next = lookupDevice(dflt, opts, key);
      } catch (e) {
        return faultResult(e as AoError);
      }
      return dispatch(next, base, req, key, opts, depth + 1);
    }
  }
  return dispatch(msgDev, base, req, key, opts, depth + 1);
}

function hashpathResult(r: Result, base: unknown, req: Message, key: string): Result {
  const v = r.value;
  if (!isMessage(v)) return r;
  if (r.status === 'ok') return new Result('ok', withHashpath(v, nextHashpath(base, req, key)));
  const stripped = withoutHashpath(v);
  return stripped === v ? r : new Result(r.status, stripped, r.fault);
}

/**
 * One resolution step: resolve `key` (already normalised) on `base` with request `req`.
 * Internal API for devices that drive other devices (stack@1.0); never throws.
 */
export function resolveStep(base: unknown, req: Message, key: string, opts: Opts): Maybe<Result> {
  let dev: CompiledDevice;
  if (isMessage(base)) {
    const dv = deviceOf(base);
    if (dv === undefined) {
      dev = compiledMessageDevice();
    } else {
      try {
        dev = lookupDevice(dv, opts, key);
      } catch (e) {
        return faultResult(e as AoError);
      }
    }
  } else if (Array.isArray(base)) {
    dev = compiledMessageDevice();
  } else {
    return notFound(key, MESSAGE_DEVICE, `cannot resolve a key on ${describe(base)}`);
  }
  const r = dispatch(dev, base, req, key, opts, 0);
  if (opts.hashpath !== 'update') return r;
  return andThen(r, (res) => hashpathResult(res, base, req, key));
}

/** Resolve `keys` in turn from `base`; each step's request is `req` with `path` set to the step's key. */
function resolveKeys(base: unknown, keys: readonly string[], from: number, req: Message | undefined, opts: Opts): Maybe<Result> {
  let m = base;
  for (let i = from; i < keys.length; i++) {
    const key = keys[i];
    const stepReq: Message = req === undefined ? { path: key } : { ...req, path: key };
    const r = resolveStep(m, stepReq, key, opts);
    if (r instanceof Promise) {
      const next = i + 1;
      return r.then((res) => (res.status !== 'ok' || next === keys.length ? res : resolveKeys(res.value, keys, next, req, opts)));
    }
    if (r.status !== 'ok' || i + 1 === keys.length) return r;
    m = r.value;
  }
  return okResult(m);
}

function badRequest(message: string, extra: Record<string, unknown> = {}): AoError {
  return new AoError(message, { status: 400, code: 'ERR_BAD_REQUEST', ...extra });
}

function badBase(fn: string, base: unknown): AoError {
  return new AoError(`${fn}: base must be a message, a list or a 43-character cache ID, got ${describe(base)}`, {
    status: 400,
    code: 'ERR_INVALID_ARG',
  });
}

/** The base of a resolution: messages and lists as they are, cache IDs loaded. */
function loadBase(base: unknown, fn: string, opts: Opts): Maybe<Result> {
  if (isMapLike(base)) return okResult(base);
  if (typeof base === 'string' && isCacheId(base)) {
    const onError = (e: unknown): Result => {
      const err = e instanceof AoError ? e : badRequest(String(e));
      return err.status === 404 ? new Result('error', err) : faultResult(err);
    };
    try {
      const loaded = loadForResolve(base, opts);
      if (loaded instanceof Promise) return loaded.then(okResult, onError);
      return okResult(loaded);
    } catch (e) {
      return onError(e);
    }
  }
  throw badBase(fn, base);
}

/** The keys of a request, and the request message to carry into each step (its path key spelt `path`). */
function requestKeys(req: unknown): { keys: readonly string[]; carry: Message | undefined } {
  if (typeof req === 'string' || typeof req === 'number' || Array.isArray(req)) {
    return { keys: pathKeys(req), carry: undefined };
  }
  if (isMessage(req)) {
    const pk = findKey(req, 'path');
    if (pk === undefined) throw badRequest('Request message has no path');
    const keys = pathKeys(req[pk]);
    let carry: Message = req;
    if (pk !== 'path') {
      carry = { ...req };
      delete carry[pk];
    }
    return { keys, carry };
  }
  throw badRequest(`Request must be a path or a message, got ${describe(req)}`);
}

/** Resolve a request on a base, giving the final Result (internal; may throw 400s on bad input). */
export function resolveInternal(base: unknown, req: unknown, opts: Opts): Maybe<Result> {
  const { keys, carry } = requestKeys(req);
  const loaded = loadBase(base, 'resolve()', opts);
  if (keys.length === 0) return loaded;
  return andThen(loaded, (b) => (b.status !== 'ok' ? b : resolveKeys(b.value, keys, 0, carry, opts)));
}

function toAoError(e: unknown): AoError {
  if (e instanceof AoError) return e;
  return new AoError(`Internal error: ${e instanceof Error ? e.message : String(e)}`, {
    status: 500,
    code: 'ERR_DEVICE_FAULT',
    cause: e,
  });
}

function valueOrThrow(r: Result): unknown {
  if (r.status === 'error') throw errorOf(r);
  return r.value;
}

function settlePublic(r: Maybe<Result>): Promise<any> {
  if (r instanceof Promise) return r.then(valueOrThrow);
  try {
    return Promise.resolve(valueOrThrow(r));
  } catch (e) {
    return Promise.reject(e);
  }
}

// ---------------------------------------------------------------------------------------------
// Public API

/**
 * Resolve `req` (a path such as `'a/b/c'`, or a message with a `path`) on `base` (a message, a
 * list, or a cache ID to load). Resolves with the final value (for ok, skip and pass results);
 * rejects with an `AoError`: 404 for missing keys and devices, 400 for bad requests, 500 for
 * device faults, each naming the key and device.
 */
export function resolve(base: unknown, req: Message | string | readonly unknown[], opts?: Opts): Promise<any> {
  try {
    return settlePublic(resolveInternal(base, req, checkOpts(opts)));
  } catch (e) {
    return Promise.reject(toAoError(e));
  }
}

/** A resolution outcome with its status. For errors, `value` is the `AoError`. */
export interface StatusValue {
  status: Status;
  value: any;
}

/**
 * Like `resolve`, but never rejects: resolves with `{status, value}`, exposing `skip` and `pass`
 * (and errors as `{status: 'error', value: AoError}`).
 */
export function resolveStatus(base: unknown, req: Message | string | readonly unknown[], opts?: Opts): Promise<StatusValue> {
  const shape = (r: Result): StatusValue => ({ status: r.status, value: r.status === 'error' ? errorOf(r) : r.value });
  try {
    const r = resolveInternal(base, req, checkOpts(opts));
    return r instanceof Promise ? r.then(shape) : Promise.resolve(shape(r));
  } catch (e) {
    return Promise.resolve({ status: 'error', value: toAoError(e) });
  }
}

function asyncInSync(fn: string, path: unknown): AoError {
  return new AoError(
    `${fn}: resolving '${String(path)}' reached a device (or store) that answered asynchronously; use resolve() for asynchronous devices`,
    { status: 400, code: 'ERR_ASYNC_DEVICE', key: String(path) },
  );
}

/** Run a resolution that must stay synchronous. */
function syncResult(r: Maybe<Result>, fn: string, path: unknown): Result {
  if (r instanceof Promise) {
    r.catch(() => undefined);
    throw asyncInSync(fn, path);
  }
  return r;
}

/**
 * Synchronous lookup: the value at `path` in `msg` (resolved through devices), or undefined when
 * absent or when a device answers with an error. Device faults and bad arguments throw an
 * `AoError`. Every device on the path must answer synchronously (message@1.0 does); keys whose
 * device works asynchronously need `resolve`.
 */
export function get(path: string | number | readonly unknown[], msg: unknown, opts?: Opts): any {
  const o = checkOpts(opts);
  const keys = pathKeys(path);
  const loaded = syncResult(loadBase(msg, 'get()', o), 'get()', path);
  const r = loaded.status !== 'ok' || keys.length === 0 ? loaded : syncResult(resolveKeys(loaded.value, keys, 0, undefined, o), 'get()', path);
  if (r.status === 'error') {
    if (r.fault) throw errorOf(r);
    return undefined;
  }
  return r.value;
}

/** The first value found among `[message, path]` candidates, else `fallback`. */
export function getFirst(candidates: ReadonlyArray<readonly [unknown, string | number | readonly unknown[]]>, fallback?: any, opts?: Opts): any {
  for (const [msg, path] of candidates) {
    const v = get(path, msg, opts);
    if (v !== undefined) return v;
  }
  return fallback;
}

/** The public keys of a message, resolved through its device (`keys`), normalised. */
export function keys(msg: unknown, opts?: Opts): string[] {
  const o = checkOpts(opts);
  const loaded = syncResult(loadBase(msg, 'keys()', o), 'keys()', 'keys');
  const r = loaded.status !== 'ok' ? loaded : syncResult(resolveStep(loaded.value, { path: 'keys' }, 'keys', o), 'keys()', 'keys');
  if (r.status === 'error') throw errorOf(r);
  if (!Array.isArray(r.value)) {
    throw new AoError(`keys(): the message's device returned ${describe(r.value)} instead of a list`, {
      status: 500,
      code: 'ERR_DEVICE_FAULT',
      key: 'keys',
    });
  }
  return r.value.map((k) => (typeof k === 'string' && k.length !== 43 ? k.toLowerCase() : String(k)));
}

/** Return `msg` with its device replaced by `device` (HyperBEAM's `{as, Device, Msg}`). */
export function as(device: unknown, msg: Message): Message {
  if (!isMessage(msg)) throw badBase('as()', msg);
  return { ...msg, device };
}

// ---------------------------------------------------------------------------------------------
// set

const internalOptsCache = new WeakMap<Opts, Opts>();

/** The options for internal bookkeeping reads and writes: hashpaths ignored. */
export function internalOpts(opts: Opts): Opts {
  if (opts.hashpath !== 'update') return opts;
  let o = internalOptsCache.get(opts);
  if (o === undefined) {
    o = { ...opts, hashpath: 'ignore' };
    internalOptsCache.set(opts, o);
  }
  return o;
}

/** Call the message's `set` (through its device) with `{key: value}` entries. */
function deviceSet(m: Message | unknown[], entries: ReadonlyArray<readonly [string, unknown]>, explicit: boolean, opts: Opts): Message {
  const req: Message = { path: 'set' };
  for (const [k, v] of entries) req[k] = v;
  if (explicit) req['set-mode'] = 'explicit';
  const r = syncResult(resolveStep(m, req, 'set', opts), 'set()', entries.map(([k]) => k).join(','));
  if (r.status === 'error') throw errorOf(r);
  if (!isMapLike(r.value)) {
    throw new AoError(`set(): the message's device returned ${describe(r.value)} instead of a message`, {
      status: 500,
      code: 'ERR_DEVICE_FAULT',
      key: 'set',
    });
  }
  return r.value as Message;
}

function nest(keys: readonly string[], from: number, value: unknown): unknown {
  let v = value;
  for (let i = keys.length - 1; i >= from; i--) v = { [keys[i]]: v };
  return v;
}

/** Set `value` at `keys[from..]` in `m`, writing each level through its own device. */
function deepSet(m: Message | unknown[], keys: readonly string[], from: number, value: unknown, opts: Opts): Message {
  const key = keys[from];
  if (from === keys.length - 1) return deviceSet(m, [[key, value]], false, opts);
  const cur = syncResult(resolveStep(m, { path: key }, key, opts), 'set()', keys.join('/'));
  if (cur.status === 'error' && cur.fault) throw errorOf(cur);
  const sub = cur.status === 'ok' ? cur.value : undefined;
  if (isMapLike(sub)) {
    const updated = deepSet(sub, keys, from + 1, value, opts);
    return updated === sub ? (m as Message) : deviceSet(m, [[key, updated]], true, opts);
  }
  if (value === UNSET) return m as Message;
  return deviceSet(m, [[key, nest(keys, from + 1, value)]], false, opts);
}

const mergeStack: object[] = [];
const MAX_MERGE_DEPTH = 1000;

/**
 * Apply every key of `values` to `msg` (deep paths allowed), through `msg`'s device. Used by
 * `set` and by message@1.0 to deep-merge nested messages. Detects cycles in `values`.
 */
export function setMany(msg: Message | unknown[], values: Message, opts: Opts): Message {
  if (mergeStack.includes(values)) {
    throw badRequest('set(): the update contains a cycle');
  }
  if (mergeStack.length >= MAX_MERGE_DEPTH) {
    throw badRequest(`set(): the update is nested deeper than ${MAX_MERGE_DEPTH} levels`);
  }
  mergeStack.push(values);
  try {
    let m = msg as Message;
    for (const k of Object.keys(values)) {
      const v = values[k];
      if (v === undefined) continue;
      const ks = pathKeys(k);
      if (ks.length === 0 || isPrivateKey(ks[0]) || ks[0] === 'hashpath') continue;
      m = deepSet(m, ks, 0, v, opts);
    }
    return m;
  } finally {
    mergeStack.pop();
  }
}

/**
 * Set values in a message, through its device: `set(msg, 'a/b', v)` or `set(msg, {k: v, 'x/y': w})`.
 * Nested messages are deep-merged (message@1.0), `UNSET` deletes a key, `undefined` values are
 * ignored, and `priv`/`hashpath` in the update are dropped. Returns a new message; `msg` is never
 * modified. Synchronous: every device involved must answer synchronously.
 */
export function set(msg: Message | unknown[], pathOrMap: string | number | readonly unknown[] | Message, value?: unknown, opts?: Opts): Message {
  const o = internalOpts(checkOpts(opts));
  if (!isMapLike(msg)) throw badBase('set()', msg);
  if (isMessage(pathOrMap)) return setMany(msg, pathOrMap, o);
  const ks = pathKeys(pathOrMap);
  if (ks.length === 0) throw badRequest('set(): empty path');
  if (value === undefined || isPrivateKey(ks[0]) || ks[0] === 'hashpath') return msg as Message;
  return deepSet(msg, ks, 0, value, o);
}

// ---------------------------------------------------------------------------------------------
// Singleton requests

/**
 * Resolve a singleton request such as `{path: '/~message@1.0&k=v/k'}` or `'/ID/a/b?x=1'`
 * (HyperBEAM §1.10): the base is built from the request, then each path segment is resolved in
 * turn. Resolves with the final value; rejects with an `AoError`.
 */
export function resolveSingleton(req: Message | string, opts?: Opts): Promise<any> {
  try {
    return settlePublic(resolveSingletonInternal(req, checkOpts(opts)));
  } catch (e) {
    return Promise.reject(toAoError(e));
  }
}

/** `resolveSingleton` as a Result, synchronous while every device is (internal; may throw 400s). */
export function resolveSingletonInternal(req: Message | string, o: Opts): Maybe<Result> {
  const [first, ...steps] = parseSingleton(req);
  const base = loadBase(first, 'resolveSingleton()', o);
  const run = (m: unknown, i: number): Maybe<Result> => {
    for (; i < steps.length; i++) {
      const step = steps[i];
      let stepReq: Message;
      if (step instanceof AsStep) {
        if (!isMessage(m)) return notFound(String(step.req.path ?? step.device), MESSAGE_DEVICE, `cannot set a device on ${describe(m)}`);
        m = { ...m, device: step.device };
        if (step.req.path === undefined) continue;
        stepReq = step.req;
      } else {
        stepReq = step as Message;
      }
      const key = pathKeys(stepReq.path)[0];
      if (key === undefined) continue;
      const r = resolveStep(m, { ...stepReq, path: key }, key, o);
      const next = i + 1;
      if (r instanceof Promise) return r.then((res) => (res.status !== 'ok' ? res : run(res.value, next)));
      if (r.status !== 'ok') return r;
      m = r.value;
    }
    return okResult(m);
  };
  return andThen(base, (b) => (b.status !== 'ok' ? b : run(b.value, 0)));
}

