/**
 * json-iface@1.0: drives AOS processes compiled to WebAssembly through their
 * `handle(msgJson, envJson) → resultJson` convention (HyperBEAM dev_json_iface, SPEC §6). Sits in
 * a stack before wasm-64@1.0 and works in two passes; `P` is the output prefix (AOS: `wasm`).
 *
 * Keys:
 * - `init`
 *   - Assumes: nothing.
 *   - Generates: the base with `function: "handle"`.
 *   - Side-effects: none.
 * - `compute`, pass 1 (prepare)
 *   - Assumes: the base's `process` (the process definition), the request's `body` (the message;
 *     the request itself when it has no body) and `block-height` (default 0); the private `<P>/runtime` of
 *     wasm-64@1.0 when the instance is live.
 *   - Generates: the base with `function: "handle"` and `parameters: [msgPtr, envPtr]` (the JSON
 *     strings when there is no live instance). The message JSON is `jsonStruct` (HyperBEAM's
 *     current form: ANS-104 original tags, `PublicKey`, `From` from `from-process`, `Data` null
 *     when not text) plus `Module` and `Block-Height`.
 *   - Side-effects: writes both JSON strings into guest memory through one reused scratch buffer
 *     (grown geometrically, old buffer freed when the guest exports `free`), so memory does not grow
 *     per message as in HyperBEAM.
 * - `compute`, pass 2 (collect)
 *   - Assumes: `results/<P>/type` and `results/<P>/output` from wasm-64@1.0.
 *   - Generates: `results/data` (`Output.data`, else the response's `Data`, else `''`),
 *     `results/outbox/<n>` (each message with lower-case keys and its tags as keys, plus
 *     `from-process` and `from-image`), `results/spawns/<n>`, `results/patches` (each patch's tags
 *     as a map), `results/json` (the raw response). A guest `Error` becomes `results/data` = the
 *     error text and `results/error`; an `Output` that is not an object gives empty results (as
 *     HyperBEAM). A trap, malformed JSON, `{"ok": false}` or a response that is not an object is an
 *     error result naming the cause.
 *   - Side-effects: none.
 * - `compute` on other passes: the base unchanged.
 */

import { defineDevice } from '../ao/device';
import { isMessage, Message, putKey, rawGet } from '../ao/message';
import { DEFAULT_OPTS, type Opts } from '../ao/opts';
import { getPriv } from '../ao/private';
import { as, get, internalOpts, set } from '../ao/resolve';
import { messageId } from '../ao/cache';
import { status } from '../ao/result';
import { AoError } from '../errors';
import { decodeUtf8Strict } from '../utf8';
import { outputPrefix } from './stack';
import { joinPath, rawPath, WasmRuntime } from './wasm-64';

export const JSON_IFACE_DEVICE = 'json-iface@1.0';

/** Keys that are message fields of the AO JSON form, not tags. */
const NON_TAG_KEYS = new Set(['id', 'anchor', 'owner', 'data', 'target', 'signature', 'commitments', 'from', 'device', 'path', 'priv']);

/** `block-height` → `Block-Height`. */
function headerCase(key: string): string {
  return key.replace(/(^|-)([a-z])/g, (_m, sep: string, c: string) => sep + c.toUpperCase());
}

function tagValue(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v instanceof Uint8Array) return Buffer.from(v).toString('utf8');
  if (typeof v === 'bigint' || typeof v === 'number' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x));
}

/** HyperBEAM's `Data`: the bytes as text when they are valid UTF-8 ("printable"), else `null`. */
function dataOf(v: unknown): unknown {
  if (v === undefined || v === null) return '';
  if (v instanceof Uint8Array) {
    try {
      return decodeUtf8Strict(v);
    } catch {
      return null;
    }
  }
  return v;
}

/** A list, or a numbered message (`{1: a, 2: b}`), in order; undefined for anything else. */
function orderedList(v: unknown): unknown[] | undefined {
  if (Array.isArray(v)) return v;
  if (!isMessage(v)) return undefined;
  const ks = Object.keys(v);
  if (!ks.every((k) => /^[1-9][0-9]*$/.test(k))) return undefined;
  return ks.map(Number).sort((a, b) => a - b).map((n) => v[String(n)]);
}

interface Signer {
  committer: string;
  commitment: Message;
}

/** The first signed commitment (HyperBEAM's primary signer: commitments in ID order). */
function primarySigner(m: Message): Signer | undefined {
  const cs = rawGet(m, 'commitments');
  if (!isMessage(cs)) return undefined;
  for (const id of Object.keys(cs).sort()) {
    const c = cs[id];
    if (isMessage(c) && typeof rawGet(c, 'committer') === 'string') return { committer: rawGet(c, 'committer'), commitment: c };
  }
  return undefined;
}

/** The original tags of an ANS-104 commitment (`commitment-device: ans104@1.0`), order and case kept. */
function ans104Tags(m: Message): unknown[] | undefined {
  const cs = rawGet(m, 'commitments');
  if (!isMessage(cs)) return undefined;
  for (const id of Object.keys(cs).sort()) {
    const c = cs[id];
    if (!isMessage(c) || String(rawGet(c, 'commitment-device')).toLowerCase() !== 'ans104@1.0') continue;
    const tags = orderedList(rawGet(c, 'original-tags'));
    if (tags !== undefined) return tags;
  }
  return undefined;
}

function stringOr(v: unknown, dflt: string): string {
  return typeof v === 'string' ? v : dflt;
}

/**
 * The AO JSON form of a message (SPEC §6.1 jsonStruct, as HyperBEAM's current dev_json_iface
 * writes it): `Tags` from the ANS-104 commitment's `original-tags` when there is one (order and case
 * kept), else the message's `tags` list, else its keys in header case; `Owner`, `Signature` and
 * `PublicKey` from the primary signed commitment (`committer`, `signature`, `keyid` without its
 * `scheme:` prefix), else the `owner` / `signature` keys; `From` = `from-process`, else `from`, else
 * the owner; `Data` = `null` when it is bytes that are not UTF-8 text.
 */
export function jsonStruct(m: Message): Record<string, unknown> {
  let tags: Array<{ name: unknown; value: unknown }>;
  const original = ans104Tags(m) ?? rawGet(m, 'tags');
  if (Array.isArray(original)) {
    tags = [];
    for (const t of original) if (isMessage(t)) tags.push({ name: String(t.name), value: tagValue(t.value) });
  } else {
    tags = [];
    for (const k of Object.keys(m).sort()) {
      if (NON_TAG_KEYS.has(k.toLowerCase()) || k.toLowerCase().startsWith('priv') || k.toLowerCase() === 'tags') continue;
      tags.push({ name: headerCase(k), value: tagValue(m[k]) });
    }
  }
  const signer = primarySigner(m);
  const owner = signer !== undefined ? signer.committer : stringOr(rawGet(m, 'owner'), '');
  const signature = signer !== undefined ? stringOr(rawGet(signer.commitment, 'signature'), '') : stringOr(rawGet(m, 'signature'), '');
  const keyid = signer !== undefined ? stringOr(rawGet(signer.commitment, 'keyid'), '') : '';
  return {
    Id: typeof rawGet(m, 'id') === 'string' ? rawGet(m, 'id') : messageId(m),
    Anchor: rawGet(m, 'anchor') ?? '',
    Owner: owner,
    From: rawGet(m, 'from-process') ?? rawGet(m, 'from') ?? owner,
    Tags: tags,
    Target: rawGet(m, 'target') ?? '',
    Data: dataOf(rawGet(m, 'data')),
    Signature: signature,
    PublicKey: keyid.includes(':') ? keyid.slice(keyid.indexOf(':') + 1) : keyid,
  };
}

function json(v: unknown): string {
  // Without a replacer JSON.stringify is several times faster: used when nothing needs one.
  if (plain(v, 3)) return JSON.stringify(v);
  return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x instanceof Uint8Array ? Buffer.from(x).toString('utf8') : x));
}

/** Whether `v` (to `depth` levels) holds only strings, numbers, booleans, null, plain arrays and objects. */
function plain(v: unknown, depth: number): boolean {
  if (v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return true;
  if (typeof v !== 'object' || depth === 0) return false;
  if (Array.isArray(v)) {
    for (const x of v) if (!plain(x, depth - 1)) return false;
    return true;
  }
  if (Object.getPrototypeOf(v) !== Object.prototype) return false;
  for (const k in v) if (!plain((v as Record<string, unknown>)[k], depth - 1)) return false;
  return true;
}

/** Scratch memory per runtime: one buffer reused for every message (see header). */
const scratch = new WeakMap<WasmRuntime, { ptr: bigint | number; cap: number }>();

function writeInputs(rt: WasmRuntime, msgJson: string, envJson: string): [bigint | number, bigint | number] {
  const inst = rt.instance;
  const msgLen = Buffer.byteLength(msgJson, 'utf8');
  const need = msgLen + 1 + Buffer.byteLength(envJson, 'utf8') + 1;
  let s = scratch.get(rt);
  if (!s || s.cap < need) {
    let cap = Math.max(4096, s ? s.cap : 0);
    while (cap < need) cap *= 2;
    if (s) inst.free(s.ptr);
    s = { ptr: inst.malloc(cap), cap };
    scratch.set(rt, s);
  }
  // Both strings, NUL-terminated, straight into guest memory (a view of it: no buffer in between).
  const at = Number(s.ptr);
  const mem = Buffer.from(inst.memory.view());
  mem.write(msgJson, at, 'utf8');
  mem[at + msgLen] = 0;
  mem.write(envJson, at + msgLen + 1, 'utf8');
  mem[at + need - 1] = 0;
  const envPtr = typeof s.ptr === 'bigint' ? s.ptr + BigInt(msgLen + 1) : s.ptr + msgLen + 1;
  return [s.ptr, envPtr];
}

/** The `env` JSON of a process definition, made once per definition object (messages are immutable, docs/ao-core.md). */
const envJsonOf = new WeakMap<object, string>();
function envJson(process: unknown): string {
  if (!isMessage(process)) return json({ Process: {} });
  let text = envJsonOf.get(process);
  if (text === undefined) {
    text = json({ Process: jsonStruct(process) });
    envJsonOf.set(process, text);
  }
  return text;
}

function prepare(base: Message, req: Message, opts: Opts): Message {
  const io = internalOpts(opts);
  const process = rawGet(base, 'process');
  const body = rawGet(req, 'body');
  const message: Message = isMessage(body) ? body : req;
  const image = isMessage(process) ? rawGet(process, 'image') : undefined;
  const blockHeight = rawGet(req, 'block-height') ?? rawGet(message, 'block-height');
  const msgStruct: Record<string, unknown> = { ...jsonStruct(message), Module: typeof image === 'string' ? image : '' };
  // AOS reads Block-Height unconditionally; a message without one is at height 0.
  msgStruct['Block-Height'] = String(blockHeight ?? 0);
  const msgJson = json(msgStruct);
  const env = envJson(process);
  const rt = getPriv(joinPath(outputPrefix(base), 'runtime'), base);
  const parameters = rt instanceof WasmRuntime && !rt.instance.disposed ? writeInputs(rt, msgJson, env) : [msgJson, env];
  return set(base, { function: 'handle', parameters }, undefined, io);
}

function errorResult(base: Message, text: string, extra: Message = {}, opts: Opts): unknown {
  return status('error', set(base, { results: { body: text, ...extra } }, undefined, internalOpts(opts)));
}

/** Lower-cased keys, minus the AO bookkeeping fields, plus the tags as keys (SPEC §6.2). */
function outboxMessage(m: Message, process: unknown): Message {
  const out: Message = {};
  for (const [k, v] of Object.entries(m)) {
    const lk = k.toLowerCase();
    if (lk === 'from-process' || lk === 'from-image' || lk === 'anchor' || lk === 'tags') continue;
    out[lk] = v;
  }
  const tags = m.Tags ?? m.tags;
  if (Array.isArray(tags)) {
    for (const t of tags) if (isMessage(t) && typeof t.name === 'string') out[t.name.toLowerCase()] = t.value;
  }
  if (isMessage(process)) {
    out['from-process'] = typeof rawGet(process, 'id') === 'string' ? rawGet(process, 'id') : messageId(process);
    const image = rawGet(process, 'image');
    if (image !== undefined) out['from-image'] = image;
  }
  return out;
}

/** A patch as HyperBEAM's json-iface gives it: its tags as a map (`name: value`), names as written. */
function patchOf(p: Message): Message {
  const out: Message = {};
  const tags = p.Tags ?? p.tags;
  if (Array.isArray(tags)) for (const t of tags) if (isMessage(t) && typeof t.name === 'string') putKey(out, t.name, t.value);
  return out;
}

function numbered(list: unknown[], f: (x: Message) => Message): Message {
  const out: Message = {};
  list.forEach((x, i) => {
    if (isMessage(x)) out[String(i + 1)] = f(x);
  });
  return out;
}

function collect(base: Message, opts: Opts): unknown {
  const io = internalOpts(opts);
  const P = outputPrefix(base);
  // What wasm-64 left in pass 1 is plain values: read raw, as it writes them (else through message@1.0).
  const own = rawPath(base, joinPath('results', P));
  const type = isMessage(own) ? rawGet(own, 'type') : get(joinPath('results', P, 'type'), as('message@1.0', base), io);
  const output = isMessage(own) ? rawGet(own, 'output') : get(joinPath('results', P, 'output'), as('message@1.0', base), io);
  if (type === 'error') return errorResult(base, 'WASM execution error.', { error: String(output) }, opts);
  if (type !== 'ok') return errorResult(base, 'No WASM results to collect (run compute on pass 1 first).', {}, opts);
  const reader = getPriv(joinPath(P, 'read'), base);
  let text: string;
  try {
    const raw = typeof reader === 'function' ? reader(output) : Array.isArray(output) ? output[0] : output;
    text = raw instanceof Uint8Array ? Buffer.from(raw).toString('utf8') : String(raw);
  } catch (e) {
    return errorResult(base, `Cannot read the result output: ${(e as Error).message}`, {}, opts);
  }
  let parsed: any;
  try {
    parsed = JSON.parse(text);
  } catch {
    return errorResult(base, 'JSON error parsing result output.', { json: text.slice(0, 4096) }, opts);
  }
  if (!isMessage(parsed)) return errorResult(base, 'Invalid results: the guest did not answer a JSON object.', {}, opts);
  if (parsed.ok !== true) {
    const why = parsed.error ?? parsed.response ?? 'no reason given';
    return errorResult(base, `The guest reported a failure: ${typeof why === 'string' ? why : json(why)}`, {}, opts);
  }
  const r = parsed.response;
  if (!isMessage(r)) return errorResult(base, 'Invalid results: no response object.', {}, opts);
  const process = rawGet(base, 'process');
  const results: Message = { json: { 'content-type': 'application/json', body: text } };
  if (r.Error !== undefined) {
    results.data = typeof r.Error === 'string' ? r.Error : json(r.Error);
    results.error = results.data;
  } else if (r.Output === undefined || isMessage(r.Output)) {
    // HyperBEAM's normalize_results: data from Output.data, else the response's Data, else ''.
    const out = (r.Output ?? {}) as Message;
    results.data = (out.data ?? r.Data ?? '') as never;
    results.outbox = numbered(Array.isArray(r.Messages) ? r.Messages : [], (m) => outboxMessage(m, process));
    results.spawns = numbered(Array.isArray(r.Spawns) ? r.Spawns : [], (m) => outboxMessage(m, process));
    const patches = Array.isArray(r.patches) ? r.patches : Array.isArray(r.Patches) ? r.Patches : [];
    results.patches = patches.filter(isMessage).map(patchOf);
  } else {
    // An Output that is not an object (test builds answer a bare string): HyperBEAM gives empty results.
    Object.assign(results, { data: '', outbox: {}, spawns: {}, patches: [] });
  }
  return set(base, { results }, undefined, io);
}

/**
 * The message that runs a WebAssembly AOS image as a process (SPEC §6): json-iface@1.0 over
 * wasm-64@1.0 with multipass@1.0, two passes, prefixes `process` (input) and `wasm` (output).
 * `process` is the process definition: at least `image` (a cache ID), usually `owner` and `id`.
 */
export function aosWasmStack(process: Message): Message {
  return {
    device: 'stack@1.0',
    'device-stack': ['json-iface@1.0', 'wasm-64@1.0', 'multipass@1.0'],
    'input-prefix': 'process',
    'output-prefix': 'wasm',
    passes: 2,
    'stack-keys': ['init', 'compute', 'snapshot', 'normalize'],
    process: { type: 'Process', ...process },
  };
}

export const jsonIfaceDevice = defineDevice(JSON_IFACE_DEVICE, {
  init: (base: Message, _req: Message, opts: Opts = DEFAULT_OPTS) => set(base, { function: 'handle' }, undefined, internalOpts(opts)),
  compute: (base: Message, req: Message = {}, opts: Opts = DEFAULT_OPTS) => {
    const pass = rawGet(base, 'pass');
    if (pass === undefined) return base;
    const n = Number(pass);
    if (n === 1) return prepare(base, req, opts);
    if (n === 2) return collect(base, opts);
    if (!Number.isFinite(n)) throw new AoError(`json-iface: bad pass ${String(pass)}`, { status: 400 });
    return base;
  },
});
