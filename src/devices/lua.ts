/**
 * lua@5.3a: real Lua 5.3 (the native `LuaVM`) as an AO-Core device (HyperBEAM dev_lua +
 * dev_lua_lib, SPEC §7). `P` is the message's `output-prefix` (empty by default).
 *
 * Keys:
 * - `init`
 *   - Assumes: `module` (SPEC §7.2: Lua source as bytes or text, a cache ID, a module message
 *     `{content-type: application/lua | text/x-lua, body | data, name?}`, a list of those, or a
 *     map of them); optional `sandbox` (`true`, a list of paths, or a map path → value),
 *     `device-sandbox` (device names `ao.resolve` may load), `memory-limit` (bytes),
 *     `instruction-limit` (steps per call) and `time-limit` (ms per call, or `infinity`).
 *   - Generates: the base with a live VM at private `<P>/state`: modules run in order (chunk name
 *     = module name), then the sandbox, then the `ao` library (merged into an existing `ao`
 *     table).
 *   - Side-effects: creates a VM; runs the modules' top-level code.
 * - `<any other key>` (the default handler; SPEC §7.5)
 *   - Assumes: a VM (initialised on demand); `function` and `parameters` from the request's
 *     body, the request, then the base; the function defaults to the key, the parameters to
 *     `[base without private keys, request, {}]`.
 *   - Generates: one result `v` → `v`; `(status, v)` → that status (`ok`, `error`, `skip`,
 *     `pass`); a returned table that decodes to a message *replaces* the base (its private part
 *     kept, `module` carried over); no result → `null`. A Lua error → status 500 with the Lua
 *     message, `body` (the error value) and `trace` (frames `{function, line}`); a missing
 *     function → 404.
 *   - Side-effects: runs Lua code on the live VM. A message result owns the VM from then on; the
 *     base becomes stale (decision 6: resolving on it again restores its own VM from its origin
 *     or its `snapshot`, or fails with 409, it never sees the newer state). A non-message result
 *     leaves the base the owner (a query).
 * - `snapshot`: `{body: <LuaVM snapshot>}` of the current VM (400 without one).
 * - `normalize`: the base itself when its VM is current; else a VM restored from
 *   `snapshot/<device-key>/body` or `snapshot/body` (400 without one), `snapshot` removed.
 * - `functions`: the sorted names of the global functions.
 * - `keys`, `set`, `encode`, `decode` and every key stored in the base read as message@1.0.
 */

import { defineDevice } from '../ao/device';
import { deviceOf, isCacheId, isMessage, isPrivateKey, Message, rawGet, UNSET } from '../ao/message';
import { DEFAULT_OPTS, type Opts } from '../ao/opts';
import { privateOf, setPriv } from '../ao/private';
import { as, resolveInternal, resolveSingletonInternal, set } from '../ao/resolve';
import { cacheRead, messageId } from '../ao/cache';
import { errorOf, isThenable, Result, status as statusOf, type Maybe, andThen } from '../ao/result';
import { pathParts } from '../ao/path';
import { AoError, LimitError, LuaError, LuaRuntimeError } from '../errors';
import { DEFAULT_TIME_LIMIT_MS } from '../limits';
import { LuaVM, type LuaValue } from '../lua';
import { LUA_PRELUDE } from './lua-prelude';
import { joinPath } from './wasm-64';
import { outputPrefix, snapshotBody } from './stack';

export const LUA_DEVICE = 'lua@5.3a';

/**
 * `sandbox: true`: HyperBEAM's list (SPEC §7.4), each replaced by the string `"sandboxed"`. The
 * VM never has the unsafe parts anyway (no `io`, no `os.execute`, no files, no bytecode, no
 * `debug` beyond `getinfo`/`traceback`): this list takes away what remains of them.
 */
export const DEFAULT_LUA_SANDBOX: readonly string[] = Object.freeze([
  'io', 'file', 'os.execute', 'os.exit', 'os.getenv', 'os.remove', 'os.rename', 'os.tmpname',
  'package', 'loadfile', 'require', 'dofile', 'load', 'loadstring',
]);

/**
 * Default limits of a device VM (override with `memory-limit` / `instruction-limit` /
 * `time-limit`). The step budget is the deterministic limit, so it must end a runaway call well
 * before the wall-clock deadline (DEFAULT_TIME_LIMIT_MS, 10 s) does: 10^8 steps took 0.5–1.2 s for
 * VM and C library loops and 3.4 s for the slowest measured case (a loop allocating a table per
 * iteration, ~29M steps/s) on a loaded 2-core machine; a hyper-aos Eval takes under 10^5
 * (docs/devices/lua@5.3a.md, Limits).
 */
export const DEFAULT_LUA_MEMORY_LIMIT = 1024 * 1024 * 1024;
export const DEFAULT_LUA_INSTRUCTION_LIMIT = 100_000_000;

const LIBS = ['package', 'debug'] as const;
const STATUS_NAMES = new Set(['ok', 'error', 'skip', 'pass']);
/**
 * Keys kept out of the Lua view of the base and carried over to message results: the module
 * source, also in the process definition that process@1.0 copies under `process`. Scripts have
 * no use for their own source, and copying it into Lua and back on every call was a third of the
 * cost of an AOS message.
 */
const HIDDEN_KEYS = ['module'];
const HIDDEN_IN = ['process'];

/** Where a VM came from, to rebuild it for a message whose VM moved on. */
type Origin = { kind: 'modules'; base: Message } | { kind: 'snapshot'; body: Uint8Array };

/** One live VM, shared by the messages derived from one another. */
class LuaState {
  /** Bumped whenever a call changes which message owns the VM. */
  version = 0;
  /** The options of the running call, as `ao.*` calls use them. */
  opts: Opts = DEFAULT_OPTS;
  pending: Promise<[string, unknown]> | undefined;
  #given: Opts | undefined;
  constructor(
    readonly vm: LuaVM,
    readonly origin: Origin,
    readonly limits: { memoryLimit: number; instructionLimit: number; timeLimit: number },
    /** `device-sandbox`: the devices `ao.*` calls may load by name. */
    readonly allowedDevices: readonly string[] | undefined,
  ) {}
  /** Set the running call's options (with the device sandbox applied). */
  use(opts: Opts): void {
    if (opts === this.#given) return;
    this.#given = opts;
    this.opts = this.allowedDevices === undefined ? opts : { ...opts, allowedDevices: this.allowedDevices };
  }
}

/** What a message holds at private `<P>/state`: the VM and the version it stands for. */
class LuaRef {
  constructor(
    readonly state: LuaState,
    readonly version: number,
  ) {}
  get current(): boolean {
    return this.version === this.state.version;
  }
}

/** Every Lua VM held in `msg`'s private part, at any depth. */
function vmsIn(msg: Message): LuaRef[] {
  const out: LuaRef[] = [];
  const seen = new Set<unknown>();
  const walk = (v: unknown, depth: number): void => {
    if (depth > 16 || v === null || typeof v !== 'object' || seen.has(v)) return;
    seen.add(v);
    if (v instanceof LuaRef) {
      out.push(v);
      return;
    }
    if (v instanceof Uint8Array) return;
    for (const x of Object.values(v as Record<string, unknown>)) walk(x, depth + 1);
  };
  walk(privateOf(msg), 0);
  return out;
}

/**
 * Frees now every Lua VM held in `msg`'s private part (at any depth), instead of when the
 * collector finalizes it: V8 does not see a VM's native memory, so an owner that drops a process
 * (serve's eviction) frees its VMs itself. The message is unusable after. Returns how many.
 */
export function disposeLuaVms(msg: Message): number {
  const vms = vmsIn(msg);
  for (const r of vms) r.state.vm.dispose();
  return vms.length;
}

/** Bytes the Lua VMs held in `msg`'s private part have allocated (serve's per-process memory metric). */
export function luaMemoryUsed(msg: Message): number {
  let n = 0;
  for (const r of vmsIn(msg)) {
    try {
      n += r.state.vm.memoryUsed;
    } catch {
      // closed: holds nothing
    }
  }
  return n;
}

function badRequest(message: string, key: string, code = 'ERR_BAD_REQUEST', status = 400): AoError {
  return new AoError(message, { status, code, device: LUA_DEVICE, key });
}

function refOf(base: Message): LuaRef | undefined {
  const P = outputPrefix(base);
  let priv: unknown = privateOf(base);
  for (const k of pathParts(joinPath(P, 'state'))) priv = isMessage(priv) ? rawGet(priv, k) : undefined;
  return priv instanceof LuaRef ? priv : undefined;
}

function withRef(base: Message, ref: LuaRef | typeof UNSET): Message {
  return setPriv(base, joinPath(outputPrefix(base), 'state'), ref);
}

// ---------------------------------------------------------------------------------------------
// encode / decode (SPEC §7.6)

function isSequenceMap(m: Message): number {
  const ks = Object.keys(m);
  for (let i = 0; i < ks.length; i++) if (ks[i] !== String(i + 1)) return -1;
  return ks.length;
}

/**
 * A message as Lua sees it: maps whose keys are exactly `1..n` (and the empty map) become
 * arrays, private keys are dropped at every level, `undefined` entries skipped.
 */
export function encode(value: unknown, seen: object[] = []): unknown {
  if (typeof value !== 'object' || value === null || value instanceof Uint8Array) return value;
  if (seen.includes(value)) throw badRequest('lua@5.3a: cannot encode a message that contains itself', 'encode');
  seen.push(value);
  try {
    if (Array.isArray(value)) return value.map((v) => encode(v, seen));
    const m = value as Message;
    const n = isSequenceMap(m);
    if (n >= 0) {
      const out: unknown[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = encode(m[String(i + 1)], seen);
      return out;
    }
    const out: Message = {};
    for (const k of Object.keys(m)) {
      if (isPrivateKey(k) || m[k] === undefined) continue;
      out[k] = encode(m[k], seen);
    }
    return out;
  } finally {
    seen.pop();
  }
}

/**
 * A Lua value (as the VM returns it) as a message value: tables with keys `1..n` are lists,
 * the empty table is the empty list, other tables are messages (integer keys as decimal
 * strings).
 */
export function decode(value: unknown): any {
  if (typeof value !== 'object' || value === null || value instanceof Uint8Array) return value;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const d = decode(value[i]);
      if (d !== value[i]) return value.map(decode);
    }
    return value;
  }
  const m = value as Message;
  const ks = Object.keys(m);
  if (ks.length === 0) return [];
  let out: Message | undefined;
  for (const k of ks) {
    const d = decode(m[k]);
    if (d !== m[k]) {
      out ??= { ...m };
      out[k] = d;
    }
  }
  return out ?? m;
}

// ---------------------------------------------------------------------------------------------
// Modules (SPEC §7.2)

interface Module {
  name: string;
  code: string | Uint8Array;
}

function isModuleMessage(m: Message): boolean {
  const ct = rawGet(m, 'content-type');
  return ct === 'application/lua' || ct === 'text/x-lua';
}

function moduleFromMessage(m: Message): Module {
  const code = rawGet(m, 'body') ?? rawGet(m, 'data');
  const name = rawGet(m, 'name') ?? rawGet(m, 'id');
  const label = typeof name === 'string' ? name : messageId(m);
  if (typeof code !== 'string' && !(code instanceof Uint8Array)) {
    throw badRequest(`Lua module '${label}' is not loadable: it has no body or data`, 'init');
  }
  return { name: label, code };
}

async function moduleOf(item: unknown, opts: Opts): Promise<Module> {
  if (isCacheId(item)) {
    let found: Message | Uint8Array;
    try {
      found = await cacheRead(item, opts);
    } catch (e) {
      if (e instanceof AoError && e.status === 404) {
        throw new AoError(`Lua module '${item}' not found.`, { status: 404, code: 'ERR_NOT_FOUND', device: LUA_DEVICE, key: 'init' });
      }
      throw e;
    }
    return found instanceof Uint8Array ? { name: item, code: found } : moduleFromMessage(found);
  }
  if (typeof item === 'string' || item instanceof Uint8Array) return { name: messageId(item), code: item };
  if (isMessage(item)) return moduleFromMessage(item);
  throw badRequest(`lua@5.3a: a module must be Lua source, a cache ID or a module message, got ${typeof item}`, 'init');
}

/** The modules of a base, in load order. */
export async function modulesOf(base: Message, opts: Opts = DEFAULT_OPTS): Promise<Module[]> {
  const spec = rawGet(base, 'module');
  if (spec === undefined || spec === null) {
    throw new AoError('no-modules-found: the base has no `module`', { status: 404, code: 'ERR_NO_MODULES', device: LUA_DEVICE, key: 'init' });
  }
  let items: unknown[];
  if (Array.isArray(spec)) items = spec;
  else if (isMessage(spec) && !isModuleMessage(spec)) items = Object.keys(spec).sort().map((k) => spec[k]);
  else items = [spec];
  const out: Module[] = [];
  for (const item of items) out.push(await moduleOf(item, opts));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Sandbox (SPEC §7.4)

function sandboxEntries(spec: unknown): Array<[string[], unknown]> {
  if (spec === undefined || spec === null || spec === false || spec === 'false') return [];
  const keys = (p: string): string[] => {
    const parts = p.split(/[./]/).filter((s) => s !== '');
    return parts[0] === '_G' ? parts.slice(1) : parts;
  };
  let pairs: Array<[string, unknown]>;
  if (spec === true || spec === 'true') pairs = DEFAULT_LUA_SANDBOX.map((p) => [p, 'sandboxed']);
  else if (Array.isArray(spec)) pairs = spec.map((p) => [String(p), 'sandboxed']);
  else if (isMessage(spec)) pairs = Object.keys(spec).map((p) => [p, spec[p]]);
  else throw badRequest(`lua@5.3a: sandbox must be true, a list of paths or a map of path to value, got ${JSON.stringify(spec)}`, 'init');
  const out: Array<[string[], unknown]> = [];
  for (const [p, v] of pairs) {
    const ks = keys(p);
    if (ks.length === 0) throw badRequest(`lua@5.3a: empty sandbox path '${p}'`, 'init');
    out.push([ks, encode(v)]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The VM and its host function

function positiveInt(v: unknown, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = typeof v === 'string' ? Number(v) : typeof v === 'bigint' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1) {
    throw badRequest(`lua@5.3a: ${name} must be a positive integer, got ${JSON.stringify(String(v))}`, 'init');
  }
  return n;
}

function deviceSandboxOf(base: Message): readonly string[] | undefined {
  const v = rawGet(base, 'device-sandbox');
  if (v === undefined) return undefined;
  const list = isMessage(v) ? Object.values(v) : v;
  if (!Array.isArray(list) || !list.every((d) => typeof d === 'string')) {
    throw badRequest(`lua@5.3a: device-sandbox must be a list of device names, got ${JSON.stringify(v)}`, 'init');
  }
  return Object.freeze([...list]);
}

/** `time-limit`: milliseconds (a positive integer), or `infinity` for none. */
function timeLimitOf(v: unknown): number {
  if (v === Infinity || (typeof v === 'string' && v.toLowerCase() === 'infinity')) return Infinity;
  return positiveInt(v, 'time-limit', DEFAULT_TIME_LIMIT_MS);
}

function limitsOf(base: Message) {
  return {
    memoryLimit: positiveInt(rawGet(base, 'memory-limit'), 'memory-limit', DEFAULT_LUA_MEMORY_LIMIT),
    // AO's `compute-limit` (a process's deterministic budget) stands for the step budget.
    instructionLimit: positiveInt(rawGet(base, 'instruction-limit') ?? rawGet(base, 'compute-limit'), 'instruction-limit', DEFAULT_LUA_INSTRUCTION_LIMIT),
    timeLimit: timeLimitOf(rawGet(base, 'time-limit')),
  };
}

/** The error value of a failed resolution, as Lua's `ao.resolve` returns it. */
function errorBody(r: Result): unknown {
  const e = errorOf(r);
  return e.body !== undefined ? e.body : e.message;
}

function asResult(r: Result): [string, unknown] {
  if (r.status === 'error') return ['error', encode(errorBody(r))];
  return [r.status, encode(r.value)];
}

/** `ao.resolve` arguments (SPEC §7.8) as a resolution. */
function resolveFromLua(args: unknown[], opts: Opts): Maybe<Result> {
  const elem = (v: unknown): unknown => {
    if (Array.isArray(v) && v.length === 3 && v[0] === 'as' && typeof v[1] === 'string') return as(v[1], decode(v[2]));
    return decode(v);
  };
  if (args.length === 1) {
    const req = decode(args[0]);
    if (!isMessage(req) && typeof req !== 'string') throw new AoError('ao.resolve: expected a message or a path', { status: 400 });
    return resolveSingletonInternal(req, opts);
  }
  if (args.length === 2 && typeof args[1] === 'string') return resolveInternal(elem(args[0]), args[1], opts);
  let acc: Maybe<Result> = resolveInternal(elem(args[0]), [], opts);
  for (let i = 1; i < args.length; i++) {
    const req = elem(args[i]);
    acc = andThen(acc, (r) => (r.status !== 'ok' ? r : resolveInternal(r.value, req as Message, opts)));
  }
  return acc;
}

function hostFunction(st: LuaState) {
  return (kind: string, ...args: unknown[]): unknown => {
    const opts = st.opts;
    switch (kind) {
      case 'print': {
        const sink = opts.luaPrint;
        if (typeof sink === 'function') sink(String(args[0]));
        return null;
      }
      case 'event': {
        const sink = opts.luaEvent;
        if (typeof sink === 'function') sink(...args.map(decode));
        return null;
      }
      case 'resolve':
      case 'get': {
        const r =
          kind === 'resolve'
            ? resolveFromLua(args, opts)
            : resolveFromLua(args[1] === undefined || args[1] === null ? [String(args[0])] : [args[1], String(args[0])], opts);
        if (isThenable(r)) {
          st.pending = (r as Promise<Result>).then(asResult, (e) => ['error', e instanceof AoError ? encode(e.body) : String(e)]);
          return ['await'];
        }
        // A device outside `device-sandbox` is a Lua error, not an answer the script may ignore.
        if (r.status === 'error' && errorOf(r).code === 'ERR_DEVICE_NOT_ALLOWED') throw errorOf(r);
        return asResult(r as Result);
      }
      case 'set': {
        const [base, key, value] = args;
        const b = decode(base);
        const out = isMessage(key) ? set(b, decode(key), undefined, opts) : set(b, String(key), decode(value), opts);
        return ['ok', encode(out)];
      }
      default:
        throw new AoError(`unknown host request '${kind}'`, { status: 500 });
    }
  };
}

function newState(vm: LuaVM, origin: Origin, limits: LuaState['limits'], allowed: readonly string[] | undefined): LuaState {
  const st = new LuaState(vm, origin, limits, allowed);
  vm.setGlobalFunction('_hb.host', hostFunction(st));
  return st;
}

async function createState(base: Message, opts: Opts): Promise<LuaState> {
  const modules = await modulesOf(base, opts);
  const sandbox = sandboxEntries(rawGet(base, 'sandbox'));
  const limits = limitsOf(base);
  const allowed = deviceSandboxOf(base);
  const vm = new LuaVM({ libs: [...LIBS], ...limits });
  try {
    const st = newState(vm, { kind: 'modules', base }, limits, allowed);
    st.use(opts);
    vm.load(LUA_PRELUDE, '=hb-prelude');
    for (const m of modules) vm.load(m.code, m.name);
    if (sandbox.length > 0) vm.call('_hb.sandbox', [sandbox]);
    vm.call('_hb.install_ao', []);
    return st;
  } catch (e) {
    vm.dispose();
    throw e;
  }
}

function restoreState(body: Uint8Array, like: Pick<LuaState, 'limits' | 'allowedDevices'>): LuaState {
  const vm = LuaVM.restore(body, like.limits);
  return newState(vm, { kind: 'snapshot', body }, like.limits, like.allowedDevices);
}

function settingsOf(base: Message): Pick<LuaState, 'limits' | 'allowedDevices'> {
  return { limits: limitsOf(base), allowedDevices: deviceSandboxOf(base) };
}

/** The base with a current VM: its own, rebuilt from its origin or snapshot, or a new one. */
function ensureState(base: Message, opts: Opts, key: string): Maybe<Message> {
  const ref = refOf(base);
  if (ref !== undefined && ref.current) return base;
  if (ref !== undefined && ref.version === 0) {
    const o = ref.state.origin;
    if (o.kind === 'snapshot') return withRef(base, new LuaRef(restoreState(o.body, ref.state), 0));
    return createState(o.base, opts).then((st) => withRef(base, new LuaRef(st, 0)));
  }
  const body = snapshotBody(base);
  if (body !== undefined) return withRef(base, new LuaRef(restoreState(body, settingsOf(base)), 0));
  if (ref !== undefined) {
    throw new AoError(
      `lua@5.3a: this message's Lua state has moved on (a newer message owns the VM) and the message has no snapshot to restore it from`,
      { status: 409, code: 'ERR_LUA_STALE', device: LUA_DEVICE, key },
    );
  }
  return createState(base, opts).then((st) => withRef(base, new LuaRef(st, 0)));
}

// ---------------------------------------------------------------------------------------------
// Calls

/** Frames of a Lua traceback: `{function, line}` (line as `chunk:line`, or a number). */
export function decodeTrace(trace: unknown): Message[] | undefined {
  if (typeof trace !== 'string') return undefined;
  const frames: Message[] = [];
  for (const line of trace.split('\n').slice(1)) {
    const m = /^\s*(.+?):(?:(\d+):)? in (.+)$/.exec(line);
    if (m === null) continue;
    const [, where, ln, what] = m;
    if (where === '[C]' || where.includes('hb-prelude')) continue;
    const chunk = where.replace(/^\[string "(.*)"\]$/, '$1');
    const fn = /(?:function|local|method|field|upvalue|global) '([^']+)'|function <([^>]+)>/.exec(what);
    frames.push({ function: fn ? (fn[1] ?? fn[2]) : what, line: ln !== undefined ? `${chunk}:${ln}` : chunk });
  }
  return frames;
}

function luaFault(e: unknown, st: LuaState, fn: string): unknown {
  if (!(e instanceof LuaError) && !(e instanceof LimitError)) return e;
  let traceText: unknown = e.trace;
  try {
    const [t] = st.vm.load('return _hb.trace', '=hb-trace');
    if (typeof t === 'string') traceText = t;
  } catch {
    /* the VM cannot answer (closed or out of budget): keep the native trace */
  }
  const body = e instanceof LuaRuntimeError && e.body !== undefined ? decode(e.body) : e.message;
  const Cls = e.constructor as new (m: string, p: object) => AoError;
  return new Cls(e.message, {
    status: 500,
    code: e.code,
    body,
    trace: decodeTrace(traceText) ?? traceText,
    traceback: traceText,
    device: LUA_DEVICE,
    key: fn,
    cause: e,
    ...(e instanceof LimitError ? { limit: (e as LimitError & { limit?: string }).limit } : {}),
  });
}

/** Raw read of a path (stored data only, whatever devices the messages name). */
function rawPath(path: string, msg: unknown): any {
  let v: unknown = msg;
  for (const k of path.split('/')) v = isMessage(v) ? rawGet(v, k) : undefined;
  return v;
}

/** The first of `paths` present in its message (raw reads). */
function firstOf(candidates: ReadonlyArray<readonly [unknown, string]>): any {
  for (const [m, p] of candidates) {
    const v = rawPath(p, m);
    if (v !== undefined) return v;
  }
  return undefined;
}

function timestampOf(base: Message, req: Message): number {
  const v = firstOf([[req, 'block-timestamp'], [req, 'body/block-timestamp'], [base, 'block-timestamp']]) ?? 0;
  const n = Number(v);
  return Number.isFinite(n) ? n : 0;
}

/** Run `fn(...params)` to completion, awaiting asynchronous `ao.resolve`s. */
function runCall(st: LuaState, fn: string, params: unknown[], now: number, opts: Opts): Maybe<LuaValue[] | undefined> {
  st.use(opts);
  const step = (out: LuaValue[]): Maybe<LuaValue[] | undefined> => {
    if (out[0] === 'done') return out.slice(1);
    if (out[0] === 'missing') return undefined;
    const pending = st.pending!;
    st.pending = undefined;
    return pending.then(([s, v]) => {
      st.use(opts);
      return step(st.vm.call('_hb.answer', [s, v]));
    });
  };
  return step(st.vm.call('_hb.call', [fn, now, ...params]));
}

function withoutHidden(m: Message): Message {
  const out: Message = {};
  for (const k of Object.keys(m)) if (!HIDDEN_KEYS.includes(k)) out[k] = m[k];
  return out;
}

function luaView(base: Message): Message {
  const out: Message = {};
  for (const k of Object.keys(base)) {
    if (isPrivateKey(k) || HIDDEN_KEYS.includes(k)) continue;
    const v = base[k];
    out[k] = HIDDEN_IN.includes(k) && isMessage(v) ? withoutHidden(v) : v;
  }
  return out;
}

/** `decoded` with the hidden keys of `base` put back where the script did not set them. */
function withHidden(decoded: Message, base: Message): Message {
  const out: Message = { ...decoded };
  for (const k of HIDDEN_KEYS) if (base[k] !== undefined && out[k] === undefined) out[k] = base[k];
  for (const k of HIDDEN_IN) {
    const from = base[k];
    const to = out[k];
    if (!isMessage(from) || !isMessage(to)) continue;
    for (const h of HIDDEN_KEYS) if (from[h] !== undefined && to[h] === undefined) out[k] = { ...(out[k] as Message), [h]: from[h] };
  }
  return out;
}

function mapResults(values: LuaValue[], base: Message, ref: LuaRef, fn: string): Result {
  if (values.length === 0) return statusOf('ok', null);
  let st = 'ok';
  let v: unknown = values[0];
  if (values.length >= 2) {
    if (typeof values[0] !== 'string' || !STATUS_NAMES.has(values[0])) {
      throw new AoError(
        `Lua function '${fn}' returned ${values.length} values: the first must be a status (ok, error, skip or pass), got ${JSON.stringify(values[0])}`,
        { status: 500, code: 'ERR_LUA_RESULT', device: LUA_DEVICE, key: fn },
      );
    }
    st = values[0];
    v = values[1];
  }
  const decoded = decode(v);
  if (isMessage(decoded)) {
    const state = ref.state;
    state.version++;
    let out = withHidden(decoded, base);
    const priv = privateOf(base);
    if (Object.keys(priv).length > 0) out.priv = priv;
    out = withRef(out, new LuaRef(state, state.version));
    return statusOf(st as 'ok', out);
  }
  return statusOf(st as 'ok', decoded === undefined ? null : decoded);
}

/**
 * `eval` is not built in (a deliberate choice, docs/devices/lua@5.3a.md): code sent in a request
 * would change the state outside the schedule. A module that wants it defines it.
 */
const EVAL_HINT =
  ". lua@5.3a does not evaluate code from requests by itself; to allow it, define the function in a module, e.g. `function eval(base, req) return load(req.code)() end` (it runs under the message's sandbox and limits; `sandbox: true` removes `load`)";

function callKey(key: string, base: Message, req: Message = {}, opts: Opts = DEFAULT_OPTS): Maybe<Result> {
  return andThen(ensureState(base, opts, key), (b) => {
    const fn = String(firstOf([[req, 'body/function'], [req, 'function'], [b, 'function']]) ?? key);
    let params = firstOf([[req, 'body/parameters'], [req, 'parameters'], [b, 'parameters']]);
    if (params === undefined) params = [luaView(b), req, {}];
    const list = (Array.isArray(params) ? params : [params]).map((p) => encode(p));
    const ref = refOf(b)!;
    const st = ref.state;
    const fail = (e: unknown): never => {
      st.version++; // the VM may be half-way through a change: nobody owns it any more
      throw luaFault(e, st, fn);
    };
    let run: Maybe<LuaValue[] | undefined>;
    try {
      run = runCall(st, fn, list, timestampOf(b, req), opts);
    } catch (e) {
      return fail(e);
    }
    const done = (values: LuaValue[] | undefined): Result => {
      if (values === undefined) {
        const hint = fn === 'eval' ? EVAL_HINT : '';
        throw new AoError(`Key '${key}' not found: no Lua function '${fn}'${hint}`, { status: 404, code: 'ERR_NOT_FOUND', device: LUA_DEVICE, key });
      }
      return mapResults(values, b, ref, fn);
    };
    return run instanceof Promise ? run.then(done, fail) : done(run);
  });
}

// ---------------------------------------------------------------------------------------------
// Device keys

/**
 * A message without a `device` gets lua@5.3a, so the message `lua.init` gives resolves its Lua
 * functions (a process@1.0 message keeps its device and hands such keys to its execution device).
 */
async function init(base: Message, _req: Message = {}, opts: Opts = DEFAULT_OPTS): Promise<Message> {
  const st = await createState(base, opts);
  const out = withRef(base, new LuaRef(st, 0));
  return deviceOf(out) === undefined ? { ...out, device: LUA_DEVICE } : out;
}

function snapshot(base: Message): Message {
  const ref = refOf(base);
  if (ref === undefined || !ref.current) {
    throw badRequest('Cannot snapshot Lua state: state not initialized.', 'snapshot', 'ERR_NO_STATE');
  }
  return { body: ref.state.vm.snapshot() };
}

function normalize(base: Message): Message {
  const ref = refOf(base);
  if (ref !== undefined && ref.current) return base;
  const body = snapshotBody(base);
  if (body === undefined) {
    throw badRequest('No Lua state or snapshot to restore from (no_lua_state_snapshot_found)', 'normalize', 'ERR_NO_STATE');
  }
  const restored = withRef(base, new LuaRef(restoreState(body, settingsOf(base)), 0));
  return set(restored, { snapshot: UNSET }, undefined, DEFAULT_OPTS);
}

function functions(base: Message, _req: Message = {}, opts: Opts = DEFAULT_OPTS): Maybe<string[]> {
  return andThen(ensureState(base, opts, 'functions'), (b) => refOf(b)!.state.vm.call('_hb.functions', [])[0] as string[]);
}

const EXCLUDED = ['keys', 'set', 'encode', 'decode'];

export const luaDevice = defineDevice(LUA_DEVICE, {
  info: (base: Message) => ({
    excludes: [...EXCLUDED, ...Object.keys(base).filter((k) => !isPrivateKey(k))],
    default: callKey,
  }),
  init,
  snapshot,
  normalize,
  functions,
});

/** Calls the Lua function `key` through resolution rules (`lua.compute(key, base, req)`). */
function compute(key: string, base: Message, req: Message = {}, opts: Opts = DEFAULT_OPTS): Promise<unknown> {
  return Promise.resolve()
    .then(() => callKey(key, base, req, opts))
    .then((r) => {
      if (r.status === 'error') throw errorOf(r);
      return r.value;
    });
}

/**
 * HyperBEAM's dev_lua_test (SPEC §7.10): initialise `base`, run every global function whose name
 * ends in `_test` with no parameters, in name order. A test passes when it resolves with status
 * ok.
 */
async function tests(base: Message, opts: Opts = DEFAULT_OPTS): Promise<Array<{ name: string; status: string; value: unknown }>> {
  const initialized = await init(base, {}, opts);
  const names = ((await functions(initialized, {}, opts)) as string[]).filter((n) => n.endsWith('_test'));
  const out: Array<{ name: string; status: string; value: unknown }> = [];
  for (const name of names) {
    let r: Result;
    try {
      r = await callKey(name, initialized, { function: name, parameters: [] }, opts);
    } catch (e) {
      r = new Result('error', e);
    }
    out.push({ name, status: r.status, value: r.status === 'error' && r.value instanceof AoError ? r.value.message : r.value });
  }
  return out;
}

/**
 * An `rsa-pss-sha512` commitment by `committer` under `id`: what hyper-aos.lua reads to trust a
 * message and to find its owner (SPEC §7.9; the Lua code does not check signatures).
 */
export function rsaCommitment(committer: string, id: string): Message {
  return { [id]: { alg: 'rsa-pss-sha512', committer } };
}

/**
 * A process@1.0 message that runs AOS written in Lua (hyper-aos.lua) on lua@5.3a: `owner` is its
 * authority and the committer of the process under `id` (hyper-aos takes its `Owner` and `ao.id`
 * from that commitment). Other keys (`snapshot-interval`, ...) go in `extra`.
 */
export function aosLuaProcess(
  source: Uint8Array | string,
  { owner, id, name = 'hyper-aos.lua', ...extra }: { owner: string; id: string; name?: string } & Message,
): Message {
  return {
    device: 'process@1.0',
    'execution-device': LUA_DEVICE,
    module: { 'content-type': 'application/lua', name, body: source },
    type: 'Process',
    authority: owner,
    commitments: rsaCommitment(owner, id),
    ...extra,
  };
}

/** The public `lua` namespace of API.md. */
export const lua = {
  init,
  snapshot: async (base: Message) => snapshot(base),
  normalize: async (base: Message) => normalize(base),
  functions: async (base: Message, req?: Message, opts?: Opts) => functions(base, req, opts),
  compute,
  tests,
  encode: (value: unknown) => encode(value),
  decode: (value: unknown) => decode(value),
  /** The live `LuaVM` of a message (at its output prefix), if it is current. */
  vm: (msg: Message): LuaVM | undefined => {
    const ref = refOf(msg);
    return ref !== undefined && ref.current ? ref.state.vm : undefined;
  },
};

