/**
 * wasm-64@1.0: WebAssembly (64-bit memories) as an AO-Core device (HyperBEAM dev_wasm, SPEC §3).
 * `In` is the message's `input-prefix`, `P` its `output-prefix` (both set per device by a stack;
 * empty by default, and empty prefixes collapse: `<In>/image` with `In = ''` is `image`).
 *
 * Keys:
 * - `init`
 *   - Assumes: an image at `<In>/image` (a cache ID, a message with `body`, or the bytes), else
 *     bytes at `body`.
 *   - Generates: the base with private `<P>/instance` (a `WasmInstance`), `<P>/write` (bytes →
 *     pointer, through the guest's malloc), `<P>/read` (pointer → bytes) and
 *     `<P>/import-resolver`. Legacy-exception images (AOS) are translated once (SPEC decision 4).
 *   - Side-effects: compiles (cached by image hash) and instantiates; a previous instance of the
 *     same prefix is disposed (HyperBEAM leaked it).
 * - `compute`
 *   - Assumes: an instance or a `snapshot` (see `normalize`); `function` and `parameters` looked
 *     up in the request's body, the request, then the base; runs only when `pass` is 1 or absent;
 *     `<P>/stdlib/<module>` messages (import devices) and `strict-imports`, read from the message
 *     being computed (HyperBEAM resolves each import against it), not from the one at init.
 *   - Generates: the state after the call's imports, with `results/<P>/type` (`ok` | `error`) and
 *     `results/<P>/output` (the results, or the trap text); calls of imports nobody provides
 *     answer zeros (HyperBEAM's stub) and are listed under `results/<P>/undefined-calls` (this
 *     call's, at most 100); with `strict-imports` they trap instead.
 *   - Side-effects: runs guest code on the live instance (shared by the messages derived from it).
 * - `import`
 *   - Assumes: the request's `module`, `func`, `args`, `func-sig`; a stdlib device at
 *     `<P>/stdlib/<module>` answering `<func>` with `{state, results}` (SPEC §3.3).
 *   - Generates: `{state, results}`; without such a device, the unknown-import stub's answer.
 *   - Side-effects: none of its own.
 * - `snapshot`
 *   - Assumes: an instance.
 *   - Generates: `{body: <snapshot blob>}` (every memory and mutable global, versioned, checksummed).
 *   - Side-effects: none.
 * - `normalize`
 *   - Assumes: an instance, or `snapshot/<device-key>/body` (map-mode stacks) or `snapshot/body`.
 *   - Generates: the base itself when it has an instance; else a new instance restored from the
 *     snapshot (without an explicit `init`), with `snapshot` removed.
 *   - Side-effects: instantiates.
 * - `terminate`
 *   - Assumes: nothing.
 *   - Generates: the base without its private instance keys.
 *   - Side-effects: disposes the instance.
 * `instance` is excluded from resolution (it is private); use `wasm.instance(msg)`.
 */

import * as fs from 'node:fs';
import { defineDevice } from '../ao/device';
import { isCacheId, isMessage, Message, rawGet, UNSET } from '../ao/message';
import { DEFAULT_OPTS, type Opts } from '../ao/opts';
import { getPriv, setPriv } from '../ao/private';
import { as, get, getFirst, internalOpts, resolveInternal, set } from '../ao/resolve';
import { cacheRead, cacheWrite } from '../ao/cache';
import { pathParts } from '../ao/path';
import { isNotFound, errorOf, isThenable } from '../ao/result';
import { AoError, LimitError, WasmTrap } from '../errors';
import { emscriptenImports } from '../emscripten';
import { exitCodeOf } from '../wasi';
import { WasmInstance, type WasmImports, type WasmModule, type WasmValue } from '../wasm';
import { loadImage } from '../wasm-image';
import { inputPrefix, outputPrefix, snapshotBody } from './stack';

export const WASM64_DEVICE = 'wasm-64@1.0';
const MAX_UNDEFINED_CALLS = 100;

/** `a/b` joined with empty parts dropped (`''` + `image` → `image`). */
export function joinPath(...parts: string[]): string {
  return parts.filter((p) => p !== '').join('/');
}

/** Raw read: the first key through message@1.0 (bypassing the message's own device). */
function raw(path: string, msg: Message, opts: Opts = DEFAULT_OPTS): any {
  return get(path, as('message@1.0', msg), internalOpts(opts));
}


/**
 * What an import provider serves for one import module: its functions, and hooks run around each
 * compute in which the provider is bound (e.g. wasi@1.0 loading its VFS from the state before the
 * call and writing it back after).
 */
export interface ProvidedImports {
  functions: WasmImports[string];
  beforeCall?: (state: Message, req: Message) => void;
  afterCall?: (state: Message) => Message;
}

/**
 * Providers of import functions for stdlib devices with a native fast path (wasi@1.0 registers
 * one), by device name: given the instance's runtime (its instance is set right after
 * instantiation), the import module name, its imports and the compiled module, return what it
 * serves, or undefined to use the generic AO-Core path. Called once per runtime, module and
 * device; the result is reused by every compute whose state names that device.
 */
export type ImportProvider = (
  rt: WasmRuntime,
  moduleName: string,
  imports: WasmModule['imports'],
  module: WasmModule,
) => ProvidedImports | undefined;
export const IMPORT_PROVIDERS = new Map<string, ImportProvider>();

type ImportFn = (...args: WasmValue[]) => unknown;
type FuncImport = WasmModule['imports'][number];

/** Live state of an instance, kept private at `<P>/runtime`. */
export class WasmRuntime {
  instance!: WasmInstance;
  /** The message the current call runs on; imports read and replace it (state handover). */
  state: Message | undefined;
  opts: Opts = DEFAULT_OPTS;
  undefinedCalls: Message[] = [];
  /** The function serving each function import (by import index), chosen from the state. */
  readonly slots: ImportFn[] = [];
  /** Providers bound for the current compute (their hooks run around it). */
  active: ProvidedImports[] = [];
  /** What `slots` were chosen for: the state's stdlib message (by identity) and strictness. */
  boundStdlib: unknown = null;
  boundStrict: boolean | undefined;
  /** Providers and emscripten shims made so far, reused by later bindings. */
  readonly providers = new Map<string, ProvidedImports | null>();
  emscripten: WasmImports[string] | undefined;
  /** The guest fault (trap or limit) that ended the last `compute`, if it failed. */
  lastFault: AoError | undefined;
  constructor(
    readonly prefix: string,
    readonly module: WasmModule,
  ) {}
}

function zeroOf(t: string | undefined): WasmValue | undefined {
  return t === 'i64' ? 0n : t === undefined ? undefined : 0;
}

/** HyperBEAM's signature string, `(iIfF)r` with the last character cut (SPEC §2.1). */
function sigOf(type: { params: string[]; results: string[] } | undefined): string {
  const code = (t: string) => ({ i32: 'i', i64: 'I', f32: 'f', f64: 'F' })[t] ?? 'e';
  const full = `(${(type?.params ?? []).map(code).join('')})${(type?.results ?? []).map(code).join('')}`;
  return full.slice(0, -1);
}

/**
 * The unknown-import stub (SPEC decision 3): zeros of the right types, the call recorded under
 * `results/<P>/undefined-calls`; with `strict-imports`, a trap.
 */
function stubImport(rt: WasmRuntime, module: string, name: string, results: string[], strict: boolean): ImportFn {
  return (...args: WasmValue[]) => {
    if (strict) {
      throw new AoError(`import ${module}.${name} is not provided (strict-imports)`, { status: 500, code: 'ERR_WASM_IMPORT' });
    }
    if (rt.undefinedCalls.length < MAX_UNDEFINED_CALLS) rt.undefinedCalls.push({ module, func: name, args });
    return results.length > 1 ? results.map(zeroOf) : zeroOf(results[0]);
  };
}

/** §3.3: resolve `<P>/stdlib/<module>/<func>` on the state, handing the state over. Synchronous. */
function importViaStdlib(state: Message, req: Message, opts: Opts): Message {
  const P = outputPrefix(state);
  const module = String(req.module);
  const target = joinPath(P, 'stdlib', module, String(req.func));
  const withState = set(state, joinPath(P, 'stdlib', module, 'state'), state, internalOpts(opts));
  const r = resolveInternal(withState, { ...req, path: target }, internalOpts(opts));
  if (isThenable(r)) {
    (r as Promise<unknown>).catch(() => undefined);
    throw new AoError(`import device at ${target} answered asynchronously: import handlers must be synchronous`, {
      status: 500,
      code: 'ERR_WASM_IMPORT',
    });
  }
  if (r.status === 'ok') return r.value;
  if (isNotFound(r)) return { state, results: [0], 'not-found': true };
  throw errorOf(r);
}

function stdlibImport(rt: WasmRuntime, imp: FuncImport, strict: boolean): ImportFn {
  const module = imp.module!;
  const name = imp.name;
  const sig = sigOf(imp.type);
  const results = imp.type?.results ?? [];
  const stub = stubImport(rt, module, name, results, strict);
  return (...args: WasmValue[]) => {
    const state = rt.state;
    if (!state) throw new AoError(`import ${module}.${name} called outside a compute`, { status: 500 });
    const out = importViaStdlib(state, { path: 'import', module, func: name, args, 'func-sig': sig }, rt.opts);
    if (out['not-found']) return stub(...args);
    if (isMessage(out.state)) rt.state = out.state;
    const values = Array.isArray(out.results) ? out.results : [];
    return results.length > 1 ? values : values[0];
  };
}

/** A stored value at a `/`-separated path (raw reads, case-insensitive keys), or undefined. */
export function rawPath(msg: unknown, path: string): unknown {
  let v = msg;
  for (const k of pathParts(path)) v = isMessage(v) ? rawGet(v, k) : undefined;
  return v;
}

/** The provider serving `mod` through the stdlib device `device`, made once per runtime. */
function providerFor(rt: WasmRuntime, mod: string, device: string, list: FuncImport[]): ProvidedImports | undefined {
  const key = `${mod}\0${device}`;
  let p = rt.providers.get(key);
  if (p === undefined) {
    p = IMPORT_PROVIDERS.get(device)?.(rt, mod, list, rt.module) ?? null;
    rt.providers.set(key, p);
  }
  return p ?? undefined;
}

/**
 * Choose the function serving every import for a compute on `state` (HyperBEAM resolves each
 * import against the message being computed): a fast provider named by `<P>/stdlib/<module>`, else
 * that stdlib device through AO-Core; emscripten's shims for `env`; else the stub. Cached while the
 * state's stdlib message (by identity) and `strict-imports` stay the same, as they do from one
 * message to the next of a process.
 */
function bindImports(rt: WasmRuntime, state: Message): void {
  const stdlib = rawPath(state, joinPath(rt.prefix, 'stdlib')) ?? null;
  const strict = [true, 'true'].includes(rawGet(state, 'strict-imports') as never);
  if (stdlib === rt.boundStdlib && strict === rt.boundStrict) return;
  const byModule = new Map<string, FuncImport[]>();
  for (const imp of rt.module.imports) {
    if (imp.kind !== 'func') continue;
    const list = byModule.get(imp.module!) ?? [];
    list.push(imp);
    byModule.set(imp.module!, list);
  }
  const chosen = new Map<string, ImportFn>();
  const active: ProvidedImports[] = [];
  for (const [mod, list] of byModule) {
    const lib = isMessage(stdlib) ? rawGet(stdlib, mod) : undefined;
    let provided: ProvidedImports | undefined;
    if (isMessage(lib)) {
      const dev = typeof lib.device === 'string' ? lib.device.toLowerCase() : undefined;
      provided = dev ? providerFor(rt, mod, dev, list) : undefined;
      if (provided) active.push(provided);
      else for (const imp of list) chosen.set(`${mod}\0${imp.name}`, stdlibImport(rt, imp, strict));
    }
    if (mod === 'env') {
      rt.emscripten ??= emscriptenImports(list.map((i) => i.name), () => rt.instance);
      for (const [n, fn] of Object.entries(rt.emscripten)) chosen.set(`${mod}\0${n}`, fn);
    }
    if (provided) for (const [n, fn] of Object.entries(provided.functions)) chosen.set(`${mod}\0${n}`, fn as ImportFn);
  }
  let i = 0;
  for (const imp of rt.module.imports) {
    if (imp.kind !== 'func') continue;
    const k = `${imp.module!}\0${imp.name}`;
    rt.slots[i++] = chosen.get(k) ?? stubImport(rt, imp.module!, imp.name, imp.type?.results ?? [], strict);
  }
  rt.active = active;
  rt.boundStdlib = stdlib;
  rt.boundStrict = strict;
}

/** The import table handed to the instance: each function calls whatever its slot holds now. */
function dispatchImports(rt: WasmRuntime): WasmImports {
  const imports: WasmImports = {};
  let i = 0;
  for (const imp of rt.module.imports) {
    if (imp.kind !== 'func') continue;
    const slot = i++;
    (imports[imp.module!] ??= {})[imp.name] = (...args: WasmValue[]) => rt.slots[slot]!(...args) as never;
  }
  return imports;
}

async function imageBytes(base: Message, opts: Opts): Promise<Uint8Array> {
  const In = inputPrefix(base);
  let image = raw(joinPath(In, 'image'), base, opts);
  if (isCacheId(image)) image = await cacheRead(image, opts);
  if (isMessage(image)) image = raw('body', image);
  if (image instanceof Uint8Array) return image;
  const body = raw('body', base);
  if (body instanceof Uint8Array) return body;
  throw new AoError(`No viable image found in ${joinPath(In, 'image') || 'image'}.`, {
    status: 400,
    code: 'ERR_NO_IMAGE',
    device: WASM64_DEVICE,
    key: 'init',
  });
}

/** The live runtime of a message at its output prefix, if any. */
function runtimeOf(base: Message): WasmRuntime | undefined {
  const rt = getPriv(joinPath(outputPrefix(base), 'runtime'), base);
  return rt instanceof WasmRuntime && !rt.instance.disposed ? rt : undefined;
}

async function init(base: Message, _req: Message, opts: Opts = DEFAULT_OPTS): Promise<Message> {
  const P = outputPrefix(base);
  runtimeOf(base)?.instance.dispose();
  const bytes = await imageBytes(base, opts);
  // AO's `compute-limit` / `memory-limit` (a process's deterministic budget) stand for `fuel` / `max-memory`.
  const fuel = raw('fuel', base) ?? raw('compute-limit', base);
  const module = await loadImage(bytes, {
    cacheDir: typeof opts.wasmCacheDir === 'string' ? opts.wasmCacheDir : undefined,
    fuel: fuel !== undefined,
  });
  const rt = new WasmRuntime(P, module);
  rt.opts = opts;
  bindImports(rt, base);
  const maxMemory = raw('max-memory', base) ?? raw('memory-limit', base);
  const timeLimit = raw('time-limit', base);
  rt.instance = new WasmInstance(module, dispatchImports(rt), {
    ...(fuel !== undefined ? { fuel: BigInt(fuel) } : {}),
    ...(maxMemory !== undefined ? { maxMemoryBytes: Number(maxMemory) } : {}),
    ...(timeLimit !== undefined ? { timeLimit: timeLimit === 'infinity' ? Infinity : Number(timeLimit) } : {}),
  });
  const instance = rt.instance;
  let out = base;
  out = setPriv(out, joinPath(P, 'instance'), instance);
  out = setPriv(out, joinPath(P, 'runtime'), rt);
  out = setPriv(out, joinPath(P, 'write'), (bytes: Uint8Array | string) => instance.writeString(bytes));
  out = setPriv(out, joinPath(P, 'read'), (ptr: WasmValue | [WasmValue]) => instance.readString(ptr));
  out = setPriv(out, joinPath(P, 'import-resolver'), (state: Message, req: Message, o?: Opts) =>
    importViaStdlib(state, req, o ?? DEFAULT_OPTS),
  );
  return out;
}

async function normalize(base: Message, _req: Message = {}, opts: Opts = DEFAULT_OPTS): Promise<Message> {
  if (runtimeOf(base)) return base;
  const body = snapshotBody(base);
  if (body === undefined) {
    throw new AoError('no WASM instance or snapshot to restore from', {
      status: 400,
      code: 'ERR_NO_INSTANCE',
      device: WASM64_DEVICE,
      key: 'normalize',
    });
  }
  const started = await init(base, {}, opts);
  runtimeOf(started)!.instance.restore(body);
  return set(started, { snapshot: UNSET }, undefined, internalOpts(opts));
}

function isGuestFault(e: unknown): e is AoError {
  return e instanceof WasmTrap || e instanceof LimitError;
}

async function compute(base: Message, req: Message = {}, opts: Opts = DEFAULT_OPTS): Promise<Message> {
  const state0 = await normalize(base, req, opts);
  const pass = raw('pass', state0);
  if (pass !== undefined && Number(pass) !== 1) return state0;
  const io = internalOpts(opts);
  const fn = getFirst([[req, 'body/function'], [req, 'function'], [state0, 'function']], undefined, io);
  if (fn === undefined) return state0;
  const params = getFirst([[req, 'body/parameters'], [req, 'parameters'], [state0, 'parameters']], [], io);
  const rt = runtimeOf(state0)!;
  const P = rt.prefix;
  rt.state = state0;
  rt.opts = opts;
  rt.undefinedCalls = [];
  bindImports(rt, state0);
  const hooked = rt.active;
  for (const p of hooked) p.beforeCall?.(state0, req);
  let type = 'ok';
  let output: unknown;
  rt.lastFault = undefined;
  try {
    output = rt.instance.call(String(fn), Array.isArray(params) ? params : [params]);
  } catch (e) {
    if (!isGuestFault(e)) throw e;
    rt.lastFault = e;
    type = 'error';
    output = e.message;
    const code = exitCodeOf(e);
    if (code !== undefined) output = `the guest exited with proc_exit(${code})`;
  }
  let state = rt.state ?? state0;
  rt.state = undefined;
  for (const p of hooked) if (p.afterCall) state = p.afterCall(state);
  const results: Message = { type, output };
  // `undefined-calls` describes this call only: a stale list from an earlier compute is removed.
  if (rt.undefinedCalls.length > 0) results['undefined-calls'] = rt.undefinedCalls;
  else if (rawPath(state, joinPath('results', P, 'undefined-calls')) !== undefined) results['undefined-calls'] = UNSET;
  return set(state, { [joinPath('results', P)]: results }, undefined, io);
}

function snapshot(base: Message): Message {
  const rt = runtimeOf(base);
  if (!rt) throw new AoError('snapshot: no WASM instance (run init first)', { status: 400, code: 'ERR_NO_INSTANCE' });
  return { body: rt.instance.snapshot() };
}

function terminate(base: Message): Message {
  const P = outputPrefix(base);
  runtimeOf(base)?.instance.dispose();
  let out = base;
  for (const k of ['instance', 'runtime', 'write', 'read', 'import-resolver']) out = setPriv(out, joinPath(P, k), UNSET);
  return out;
}

function importKey(base: Message, req: Message, opts: Opts = DEFAULT_OPTS): Message {
  const out = importViaStdlib(base, req, opts);
  if (out['not-found']) {
    const results = [0];
    return { state: base, results };
  }
  return out;
}

export const wasm64Device = defineDevice(WASM64_DEVICE, {
  info: { excludes: ['instance', 'runtime'] },
  init,
  compute,
  import: importKey,
  snapshot,
  normalize,
  terminate,
});

/** The `WasmInstance` of a message (at its output prefix), or undefined. */
export function instance(msg: Message): WasmInstance | undefined {
  return runtimeOf(msg)?.instance;
}

/**
 * The guest fault (a `WasmTrap`, or a `LimitError` saying which limit) that ended the last
 * `compute` on this message's instance, or undefined when it succeeded. The results only carry
 * its text; hosts that must tell a deterministic limit from the wall-clock deadline read it here.
 */
export function lastFault(msg: Message): AoError | undefined {
  return runtimeOf(msg)?.lastFault;
}

/**
 * Stores an image in the cache and returns the message that runs it:
 * `{ device: 'wasm-64@1.0', image: <id> }`. `file` is a path or the bytes.
 */
export async function cacheWasmImage(file: string | Uint8Array, opts?: Opts): Promise<Message> {
  const bytes = typeof file === 'string' ? fs.readFileSync(file) : file;
  const id = await cacheWrite(bytes, opts);
  return { device: WASM64_DEVICE, image: id };
}

/** The public `wasm` namespace of API.md: the device functions plus helpers. */
export const wasm = { init, compute, import: importKey, snapshot, normalize, terminate, instance, lastFault, cacheWasmImage };
