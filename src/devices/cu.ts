/**
 * cu@1.0: delegates computation to Compute Units over HTTP (HyperBEAM dev_cu, SPEC §8, with the
 * seed's record shapes translated to messages), and delegated-compute@1.0: an execution device
 * for process@1.0 that runs each slot on a remote CU. Both talk to any CU speaking the legacy AO
 * CU interface (`hb-runtimes serve`, or another implementation) through an injectable
 * `ComputeUnitClient` (a fetch-based one by default, `opts.cuClient` or the state's private
 * `cu-client` to replace it).
 *
 * Routing: the CU of a process is `state.routes[<process id>]` when present, else one of
 * `state['compute-units']` (a list of base URLs) chosen by rendezvous hashing of the process ID
 * (stable: adding a CU moves only the processes it wins), else `state['cu-url']`.
 *
 * cu@1.0 keys:
 * - `push(msg, state)`
 *   - Assumes: `state.assignment` = `{process, slot}` (or those keys on `msg`); `msg` is the
 *     assigned message: the raw bytes of a signed ANS-104 item, a message whose `body` holds
 *     them, or a legacy JSON message (`Id`, `Owner`, `Tags`, `Data`, ...).
 *   - Generates: `state` with `results` (see Results) for that slot, computed by the CU
 *     (`POST /result/<slot>?process-id=<id>`).
 *   - Side-effects: the CU schedules the message at that slot if it has not yet.
 *   - Errors: a CU failure throws `AoError` 502 `ERR_CU` (`cu_error`) with the CU's answer.
 * - `execute(carrier, state)`
 *   - Assumes: `carrier.body` + `carrier.assignment` (a full assignment, pushed as above), or
 *     `carrier.process` + `carrier.slot` (a reference: the CU's result of that slot); optional
 *     `carrier['commit-to']` (a message ID).
 *   - Generates: `state` with `results`; with `commit-to`, only the commitment: `{status: 200,
 *     'commitment-for': <id>, commitment: <signed item bytes>, 'committed-by': <CU address>,
 *     process, slot}` when the ID is in the slot's results bundle (the computed message and its
 *     outbox), else `{status: 404, body: "Requested message to commit to not in results bundle."}`.
 *     Neither form: an error result 400 `no_viable_computation`.
 * - `verify(commitment, cu)`: true when the commitment is an ANS-104 item validly signed by the
 *   CU (`cu` = its address or public key) carrying `status: 200` and its `commitment-for`.
 *
 * Results: `{data, output, outbox: {"1": msg, ...}, spawns, error?, json: {content-type:
 * application/json, body: <the CU's JSON>}}` (outbox messages: lower-case keys, tags as keys).
 *
 * delegated-compute@1.0 keys: `init`, `normalize`, `snapshot` answer the base (the CU holds the
 * state); `compute` pushes the slot's message (`req.body`, `req.slot`) of the process
 * `<In>/id` (`process/id`) and sets `results` as above.
 */

import { createHash } from 'node:crypto';
import { defineDevice } from '../ao/device';
import { isMessage, rawGet, type Message } from '../ao/message';
import { DEFAULT_OPTS, type Opts } from '../ao/opts';
import { getPriv } from '../ao/private';
import { status } from '../ao/result';
import { AoError } from '../errors';
import { verifyItem } from '../serve/signing';

export const CU_DEVICE = 'cu@1.0';
export const DELEGATED_COMPUTE_DEVICE = 'delegated-compute@1.0';
export const COMMIT_NOT_FOUND = 'Requested message to commit to not in results bundle.';

/** The legacy AOS-2 JSON form of a message. */
export type LegacyJson = Record<string, unknown>;

/** How cu@1.0 reaches a CU. Every method resolves with the CU's parsed JSON answer. */
export interface ComputeUnitClient {
  /** `GET /`: the CU's info, with its signing `address` and `public-key`. */
  info(url: string): Promise<Record<string, unknown>>;
  /** `POST /result/<slot>?process-id=<pid>[&commit-to=<id>]` with a signed item or JSON message. */
  compute(url: string, pid: string, slot: number, message: Uint8Array | LegacyJson, commitTo?: string): Promise<Record<string, unknown>>;
  /** `GET /result/<slot>?process-id=<pid>[&commit-to=<id>]`. */
  result(url: string, pid: string, slot: number, commitTo?: string): Promise<Record<string, unknown>>;
  /** `POST /dry-run?process-id=<pid>`. */
  dryRun(url: string, pid: string, message: LegacyJson): Promise<Record<string, unknown>>;
}

/** A CU that answered with an error status, or could not be reached. */
export function cuError(message: string, props: Record<string, unknown> = {}): AoError {
  return new AoError(message, { status: 502, code: 'ERR_CU', body: { error: 'cu_error', message, ...props }, ...props });
}

/** The default client: `fetch`, JSON answers, a timeout per request. */
export class FetchComputeUnitClient implements ComputeUnitClient {
  constructor(private readonly timeoutMs = 60_000) {}

  private async call(url: string, init?: RequestInit): Promise<Record<string, unknown>> {
    let res: Response;
    try {
      res = await fetch(url, { ...init, signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (e) {
      throw cuError(`compute unit ${new URL(url).origin} unreachable: ${(e as Error).message}`, { url });
    }
    const text = await res.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw cuError(`compute unit answered ${res.status} with a body that is not JSON`, { url, 'cu-status': res.status });
    }
    if (!res.ok) {
      const msg = isMessage(body) && typeof body.error === 'string' ? body.error : text.slice(0, 500);
      throw cuError(`compute unit answered ${res.status}: ${msg}`, { url, 'cu-status': res.status });
    }
    if (!isMessage(body)) throw cuError('compute unit answered JSON that is not an object', { url });
    return body as Record<string, unknown>;
  }

  info(url: string) {
    return this.call(`${url}/`);
  }

  compute(url: string, pid: string, slot: number, message: Uint8Array | LegacyJson, commitTo?: string) {
    const q = new URLSearchParams({ 'process-id': pid, ...(commitTo ? { 'commit-to': commitTo } : {}) });
    const raw = message instanceof Uint8Array;
    return this.call(`${url}/result/${slot}?${q}`, {
      method: 'POST',
      headers: { 'content-type': raw ? 'application/octet-stream' : 'application/json', accept: 'application/json' },
      body: raw ? Buffer.from(message) : JSON.stringify(message),
    });
  }

  result(url: string, pid: string, slot: number, commitTo?: string) {
    const q = new URLSearchParams({ 'process-id': pid, ...(commitTo ? { 'commit-to': commitTo } : {}) });
    return this.call(`${url}/result/${slot}?${q}`, { headers: { accept: 'application/json' } });
  }

  dryRun(url: string, pid: string, message: LegacyJson) {
    return this.call(`${url}/dry-run?${new URLSearchParams({ 'process-id': pid })}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(message),
    });
  }
}

const defaultClient = new FetchComputeUnitClient();

function clientOf(state: Message, opts: Opts): ComputeUnitClient {
  const c = getPriv('cu-client', state) ?? (opts as { cuClient?: unknown }).cuClient;
  return (c as ComputeUnitClient | undefined) ?? defaultClient;
}

function badRequest(message: string): AoError {
  return new AoError(message, { status: 400, code: 'ERR_BAD_REQUEST', device: CU_DEVICE });
}

/** Rendezvous (highest random weight) choice of a CU for a process. */
export function routeFor(pid: string, state: Message): string {
  const routes = rawGet(state, 'routes');
  if (isMessage(routes) && typeof routes[pid] === 'string') return trimUrl(routes[pid] as string);
  const units = rawGet(state, 'compute-units');
  if (Array.isArray(units) && units.length > 0) {
    let best = '';
    let bestScore = '';
    for (const u of units) {
      if (typeof u !== 'string') throw badRequest("'compute-units' must be a list of URLs");
      const score = createHash('sha256').update(`${u}\n${pid}`).digest('hex');
      if (score > bestScore) [best, bestScore] = [u, score];
    }
    return trimUrl(best);
  }
  const one = rawGet(state, 'cu-url');
  if (typeof one === 'string') return trimUrl(one);
  throw badRequest("no compute unit: give 'cu-url', 'compute-units' or 'routes'");
}

function trimUrl(u: string): string {
  return u.replace(/\/+$/, '');
}

function slotOf(v: unknown, where: string): number {
  const n = typeof v === 'string' && /^[0-9]{1,15}$/.test(v) ? Number(v) : typeof v === 'bigint' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw badRequest(`${where}: 'slot' must be a non-negative integer`);
  return n;
}

function pidOf(v: unknown, where: string): string {
  if (typeof v !== 'string' || v === '') throw badRequest(`${where}: 'process' must be a process ID`);
  return v;
}

/** The form a message is sent in: the signed item's bytes when there are some, else legacy JSON. */
export function wireForm(msg: unknown): Uint8Array | LegacyJson {
  if (msg instanceof Uint8Array) return msg;
  if (isMessage(msg)) {
    const body = rawGet(msg, 'body');
    if (body instanceof Uint8Array && rawGet(msg, 'Tags') === undefined) return body;
    if (Array.isArray(msg.Tags) || typeof msg.Id === 'string') return msg as LegacyJson;
    return legacyJsonOf(msg);
  }
  throw badRequest('the message must be signed item bytes, a message with them as body, or a legacy JSON message');
}

function text(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v instanceof Uint8Array) return Buffer.from(v).toString('utf8');
  if (v === undefined || v === null) return '';
  return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x));
}

const FIELDS = new Set(['id', 'owner', 'from', 'target', 'anchor', 'data', 'signature', 'commitments', 'path', 'device']);

/** An AO message in the legacy JSON form (keys other than the fields become tags). */
export function legacyJsonOf(m: Message): LegacyJson {
  const tags: Array<{ name: string; value: string }> = [];
  for (const k of Object.keys(m).sort()) {
    const lk = k.toLowerCase();
    if (FIELDS.has(lk) || lk.startsWith('priv')) continue;
    tags.push({ name: lk.replace(/(^|-)([a-z])/g, (_x, s: string, c: string) => s + c.toUpperCase()), value: text(m[k]) });
  }
  const owner = text(rawGet(m, 'owner'));
  return {
    Id: text(rawGet(m, 'id')),
    Owner: owner,
    From: text(rawGet(m, 'from') ?? owner),
    Target: text(rawGet(m, 'target')),
    Anchor: text(rawGet(m, 'anchor')),
    Data: text(rawGet(m, 'data')),
    Tags: tags,
  };
}

/** A CU's JSON result as the `results` message (json-iface's shape). */
export function resultsOf(json: Record<string, unknown>): Message {
  const output = json.Output;
  const results: Message = { json: { 'content-type': 'application/json', body: JSON.stringify(json) } };
  if (typeof json.Error === 'string') {
    results.error = json.Error;
    results.data = json.Error;
  } else if (isMessage(output)) {
    results.output = output as Message;
    if (output.data !== undefined) results.data = output.data as never;
  } else if (typeof output === 'string') {
    results.data = output;
  }
  const outbox = (list: unknown): Message => {
    const out: Message = {};
    (Array.isArray(list) ? list : []).forEach((m, i) => {
      if (!isMessage(m)) return;
      const o: Message = {};
      for (const [k, v] of Object.entries(m)) if (k !== 'Tags') o[k.toLowerCase()] = v as never;
      if (Array.isArray(m.Tags)) for (const t of m.Tags) if (isMessage(t) && typeof t.name === 'string') o[t.name.toLowerCase()] = t.value as never;
      out[String(i + 1)] = o;
    });
    return out;
  };
  results.outbox = outbox(json.Messages);
  results.spawns = outbox(json.Spawns);
  return results;
}

/** `{pid, slot}` of an assignment message (`process` or `process-id`, `slot`). */
function assignmentOf(a: unknown, where: string): { pid: string; slot: number } {
  if (!isMessage(a)) throw badRequest(`${where}: no assignment ({process, slot})`);
  return { pid: pidOf(rawGet(a, 'process') ?? rawGet(a, 'process-id'), where), slot: slotOf(rawGet(a, 'slot'), where) };
}

function commitmentAnswer(json: Record<string, unknown>, pid: string, slot: number): Message {
  if (json.status === 404) return { status: 404, body: COMMIT_NOT_FOUND };
  if (json.status !== 200 || typeof json.commitment !== 'string') throw cuError('compute unit answered a malformed commitment', { answer: json });
  return {
    status: 200,
    'commitment-for': json['commitment-for'] as string,
    'committed-by': json['committed-by'] as string,
    commitment: Buffer.from(json.commitment, 'base64url'),
    process: pid,
    slot,
  };
}

async function push(msg: unknown, state: Message = {}, opts: Opts = DEFAULT_OPTS): Promise<Message> {
  // The message is `msg` itself, or its `body` when `msg` carries the assignment.
  const carried = isMessage(msg) ? rawGet(msg, 'assignment') : undefined;
  const { pid, slot } = assignmentOf(rawGet(state, 'assignment') ?? carried, 'cu@1.0 push');
  const message = isMessage(carried) ? rawGet(msg as Message, 'body') : msg;
  const json = await clientOf(state, opts).compute(routeFor(pid, state), pid, slot, wireForm(message));
  return { ...state, results: resultsOf(json) };
}

async function execute(carrier: Message, state: Message = {}, opts: Opts = DEFAULT_OPTS): Promise<unknown> {
  const commitTo = rawGet(carrier, 'commit-to');
  if (commitTo !== undefined && typeof commitTo !== 'string') return status('error', { status: 400, body: "'commit-to' must be a message ID" });
  const client = clientOf(state, opts);
  const body = rawGet(carrier, 'body');
  const assignment = rawGet(carrier, 'assignment');
  let pid: string;
  let slot: number;
  let json: Record<string, unknown>;
  if (body !== undefined && isMessage(assignment)) {
    ({ pid, slot } = assignmentOf(assignment, 'cu@1.0 execute'));
    json = await client.compute(routeFor(pid, state), pid, slot, wireForm(body), commitTo);
  } else if (rawGet(carrier, 'process') !== undefined && rawGet(carrier, 'slot') !== undefined) {
    pid = pidOf(rawGet(carrier, 'process'), 'cu@1.0 execute');
    slot = slotOf(rawGet(carrier, 'slot'), 'cu@1.0 execute');
    json = await client.result(routeFor(pid, state), pid, slot, commitTo);
  } else {
    return status('error', { status: 400, body: 'no_viable_computation' });
  }
  if (commitTo !== undefined) return commitmentAnswer(json, pid, slot);
  return { ...state, results: resultsOf(json) };
}

/** True when `commitment` (a commitment message or its item bytes) is signed by the CU `cu` (address or public key). */
async function verify(commitment: unknown, cu: string): Promise<boolean> {
  const raw = isMessage(commitment) ? rawGet(commitment, 'commitment') : commitment;
  if (!(raw instanceof Uint8Array)) return false;
  try {
    const item = await verifyItem(raw);
    if (item.owner !== cu && item.ownerKey !== cu) return false;
    const tag = (n: string) => item.tags.find((t) => t.name === n)?.value;
    if (tag('status') !== '200') return false;
    if (isMessage(commitment) && tag('commitment-for') !== rawGet(commitment, 'commitment-for')) return false;
    return true;
  } catch {
    return false;
  }
}

export const cuDevice = defineDevice(CU_DEVICE, { push, execute });

/** The public `cu` namespace of API.md. */
export const cu = { push, execute, verify, routeFor, resultsOf, legacyJsonOf };

// ---------------------------------------------------------------- delegated-compute@1.0

function processIdOf(base: Message): string {
  const prefix = rawGet(base, 'input-prefix');
  const proc = rawGet(base, typeof prefix === 'string' && prefix !== '' ? prefix : 'process');
  const id = isMessage(proc) ? rawGet(proc, 'id') : undefined;
  if (typeof id !== 'string' || id === '') throw badRequest(`${DELEGATED_COMPUTE_DEVICE}: the process definition has no 'id'`);
  return id;
}

async function delegatedCompute(base: Message, req: Message = {}, opts: Opts = DEFAULT_OPTS): Promise<Message> {
  const pid = processIdOf(base);
  const slot = slotOf(rawGet(req, 'slot'), `${DELEGATED_COMPUTE_DEVICE} compute`);
  const json = await clientOf(base, opts).compute(routeFor(pid, base), pid, slot, wireForm(rawGet(req, 'body')));
  return { ...base, results: resultsOf(json) };
}

const same = (base: Message) => base;

export const delegatedComputeDevice = defineDevice(DELEGATED_COMPUTE_DEVICE, {
  init: same,
  normalize: same,
  snapshot: () => ({}),
  compute: delegatedCompute,
});
