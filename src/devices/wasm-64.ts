/**
 * wasm-64@1.0: WebAssembly (64-bit memories) as an AO-Core device (HyperBEAM dev_wasm, SPEC §3).
 * `In` is the message's `input-prefix`, `P` its `output-prefix` (both set per device by a stack;
 * empty by default, and empty prefixes collapse: `<In>/image` with `In = ''` is `image`).
 *
 * Keys:
 * - `init`
 *   - Assumes: an image at `<In>/image` (a cache ID, a message with `body`, or the bytes), else
 *     bytes at `body`; optional `<P>/stdlib/<module>` messages (import devices), `strict-imports`.
 *   - Generates: the base with private `<P>/instance` (a `WasmInstance`), `<P>/write` (bytes →
 *     pointer, through the guest's malloc), `<P>/read` (pointer → bytes) and
 *     `<P>/import-resolver`. Legacy-exception images (AOS) are translated once (SPEC decision 4).
 *   - Side-effects: compiles (cached by image hash) and instantiates; a previous instance of the
 *     same prefix is disposed (HyperBEAM leaked it).
 * - `compute`
 *   - Assumes: an instance or a `snapshot` (see `normalize`); `function` and `parameters` looked
 *     up in the request's body, the request, then the base; runs only when `pass` is 1 or absent.
 *   - Generates: the state after the call's imports, with `results/<P>/type` (`ok` | `error`) and
 *     `results/<P>/output` (the results, or the trap text); calls of imports nobody provides are
 *     listed under `results/<P>/undefined-calls` (at most 100).
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
 * Providers of import functions for stdlib devices with a native fast path (wasi@1.0 registers
 * one): given the instance's runtime (its instance is set right after instantiation), the import
 * module name, its imports and the compiled module, return functions, or undefined to use the
 * generic AO-Core path.
 */
export type ImportProvider = (
  rt: WasmRuntime,
  moduleName: string,
  imports: WasmModule['imports'],
  module: WasmModule,
) => WasmImports[string] | undefined;
export const IMPORT_PROVIDERS = new Map<string, ImportProvider>();

/** Live state of an instance, kept private at `<P>/runtime`. */
export class WasmRuntime {
  instance!: WasmInstance;
  /** The message the current call runs on; imports read and replace it (state handover). */
  state: Message | undefined;
  opts: Opts = DEFAULT_OPTS;
  undefinedCalls: Message[] = [];
  /** Hooks run before each compute call, on its state and request (e.g. wasi@1.0 loading its VFS). */
  readonly beforeCall: Array<(state: Message, req: Message) => void> = [];
  /** Hooks run after each compute on the final state (e.g. wasi@1.0 writing its VFS back). */
  readonly afterCall: Array<(state: Message) => Message> = [];
  constructor(
    readonly prefix: string,
    readonly strictImports: boolean,
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

/** The unknown-import stub (SPEC decision 3): zeros of the right types, the call recorded. */
function stubImport(rt: WasmRuntime, module: string, name: string, results: string[]) {
  return (...args: WasmValue[]) => {
    if (rt.strictImports) {
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

function stdlibImport(rt: WasmRuntime, module: string, name: string, type: { params: string[]; results: string[] } | undefined) {
  const sig = sigOf(type);
  return (...args: WasmValue[]) => {
    const state = rt.state;
    if (!state) throw new AoError(`import ${module}.${name} called outside a compute`, { status: 500 });
    const out = importViaStdlib(state, { path: 'import', module, func: name, args, 'func-sig': sig }, rt.opts);
    if (out['not-found']) return stubImport(rt, module, name, type?.results ?? [])(...args);
    if (isMessage(out.state)) rt.state = out.state;
    const results = Array.isArray(out.results) ? out.results : [];
    return (type?.results.length ?? 0) > 1 ? results : results[0];
  };
}

/** The import table, fixed at init: fast providers, stdlib devices, emscripten, else stubs. */
function buildImports(rt: WasmRuntime, module: WasmModule, base: Message): WasmImports {
  const imports: WasmImports = {};
  const byModule = new Map<string, WasmModule['imports'][number][]>();
  for (const imp of module.imports) {
    if (imp.kind !== 'func') continue;
    const list = byModule.get(imp.module!) ?? [];
    list.push(imp);
    byModule.set(imp.module!, list);
  }
  const getInstance = () => rt.instance;
  for (const [mod, list] of byModule) {
    const fns: WasmImports[string] = (imports[mod] = {});
    const lib = raw(joinPath(rt.prefix, 'stdlib', mod), base, rt.opts);
    let provided: WasmImports[string] | undefined;
    if (isMessage(lib)) {
      const dev = typeof lib.device === 'string' ? lib.device.toLowerCase() : undefined;
      provided = dev ? IMPORT_PROVIDERS.get(dev)?.(rt, mod, list, module) : undefined;
      if (!provided) for (const imp of list) fns[imp.name] = stdlibImport(rt, mod, imp.name, imp.type);
    }
    if (mod === 'env') Object.assign(fns, emscriptenImports(list.map((i) => i.name), getInstance));
    if (provided) Object.assign(fns, provided);
    for (const imp of list) fns[imp.name] ??= stubImport(rt, mod, imp.name, imp.type?.results ?? []);
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
  const module = await loadImage(bytes, {
    cacheDir: typeof opts.wasmCacheDir === 'string' ? opts.wasmCacheDir : undefined,
    fuel: raw('fuel', base) !== undefined,
  });
  const strict = [true, 'true'].includes(raw('strict-imports', base));
  const rt = new WasmRuntime(P, strict);
  rt.opts = opts;
  const fuel = raw('fuel', base);
  const maxMemory = raw('max-memory', base);
  rt.instance = new WasmInstance(module, buildImports(rt, module, base), {
    ...(fuel !== undefined ? { fuel: BigInt(fuel) } : {}),
    ...(maxMemory !== undefined ? { maxMemoryBytes: Number(maxMemory) } : {}),
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
  for (const hook of rt.beforeCall) hook(state0, req);
  let type = 'ok';
  let output: unknown;
  try {
    output = rt.instance.call(String(fn), Array.isArray(params) ? params : [params]);
  } catch (e) {
    if (!isGuestFault(e)) throw e;
    type = 'error';
    output = e.message;
    const code = exitCodeOf(e);
    if (code !== undefined) output = `the guest exited with proc_exit(${code})`;
  }
  let state = rt.state ?? state0;
  rt.state = undefined;
  for (const hook of rt.afterCall) state = hook(state);
  const results: Message = { type, output };
  if (rt.undefinedCalls.length > 0) results['undefined-calls'] = rt.undefinedCalls;
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
 * Stores an image in the cache and returns the message that runs it:
 * `{ device: 'wasm-64@1.0', image: <id> }`. `file` is a path or the bytes.
 */
export async function cacheWasmImage(file: string | Uint8Array, opts?: Opts): Promise<Message> {
  const bytes = typeof file === 'string' ? fs.readFileSync(file) : file;
  const id = await cacheWrite(bytes, opts);
  return { device: WASM64_DEVICE, image: id };
}

/** The public `wasm` namespace of API.md: the device functions plus helpers. */
export const wasm = { init, compute, import: importKey, snapshot, normalize, terminate, instance, cacheWasmImage };
