/**
 * process@1.0: a minimal local AO process (HyperBEAM dev_process, SPEC §9). A process message
 * names an `execution-device` (e.g. `stack@1.0`, `wasm-64@1.0`, `lua@5.3a`) and carries its
 * configuration (`device-stack`, `stack-keys`, `image`, `output-prefix`, `passes`, ...), an
 * in-memory schedule of assignments, and the execution state after its last computed slot.
 * The execution device is driven only through its `init`, `compute`, `snapshot` and `normalize`
 * keys, each run "as execution": `device` = `execution-device`, `input-prefix` = the process's
 * own or `process`, `output-prefixes` = `execution-output-prefixes` when present; afterwards
 * those keys get the process's values back.
 *
 * Keys:
 * - `schedule`
 *   - Assumes: the request's `body` (a message, or a list of messages) and optional
 *     `block-height` / `block-timestamp` (non-negative integers, never below the previous
 *     assignment's); the base's `schedule` (a list, default `[]`).
 *   - Generates: with a body, the process with `{slot, body, block-height, block-timestamp}`
 *     appended to `schedule` for each message (slots count from 0; heights and timestamps
 *     default to the previous assignment's, else 0). Without a body, the `schedule` list itself.
 *   - Side-effects: none (the base is not modified).
 * - `init`
 *   - Assumes: `execution-device`; the execution device's own keys.
 *   - Generates: the process after the execution device's `init` (run on a copy without live
 *     state), with `process` (the process definition, unless already present),
 *     `initialized: "true"`, `at-slot: -1`, and no `results`, `snapshot` or `snapshot-slot`.
 *   - Side-effects: whatever the execution device's `init` does (e.g. instantiate a module).
 * - `compute`
 *   - Assumes: the request's `slot` (default: the last scheduled slot); `schedule`, `at-slot`,
 *     `snapshot-interval` (slots) and `snapshot-time` (seconds; neither set: every 60 s by the
 *     process clock, `opts.processClock` or the wall clock; only `snapshot-interval` set: by slot
 *     count only; 0 turns either off), `snapshot-mode` (`Map` by default, or `Fold`: the stack mode
 *     used for `snapshot`), `historical-replay-limit` (default 1000); live execution state, or
 *     `snapshot` and `snapshot-slot` to restore from, or neither (then the process is initialised
 *     and replayed).
 *   - Generates: the process after slots `at-slot + 1 .. slot`, each run as the execution
 *     device's `compute` with `{path: compute, body, slot, block-height, block-timestamp}` on the
 *     state without `results`; `at-slot` = slot; when a snapshot is due, `snapshot` (the execution
 *     device's answer) and `snapshot-slot`. `slot == at-slot` gives the base itself; `slot <
 *     at-slot` gives that past slot, replayed on a state of its own from the snapshot (when of an
 *     earlier slot) or from `init`, never rewinding the live state. Errors (returned, the base
 *     stays usable): a past slot more than `historical-replay-limit` slots from its restore point →
 *     503 `ERR_REPLAY_LIMIT`; an unscheduled slot → 404 (`phase: get-schedule`); a failing
 *     execution key → its status, annotated with `phase` (`init` | `normalize` | `compute` |
 *     `snapshot`) and `attempted-slot`.
 *   - Side-effects: advances the live execution state, which the base's derived messages share;
 *     any message whose state has moved on (an older message, one whose compute failed) is
 *     restored from its snapshot (or re-initialised and replayed) on its next compute.
 * - `now`
 *   - Assumes: as `compute`.
 *   - Generates: the process computed up to the last scheduled slot.
 *   - Side-effects: as `compute`.
 * - `slot`
 *   - Assumes: `schedule`.
 *   - Generates: the last scheduled slot (-1 when nothing is scheduled).
 *   - Side-effects: none.
 * - `snapshot`
 *   - Assumes: live execution state (409 `ERR_STALE_STATE` when a newer message advanced it).
 *   - Generates: the execution device's `snapshot` (stack mode `snapshot-mode`), as `compute`
 *     stores it.
 *   - Side-effects: none.
 * - any other key (a departure from HyperBEAM, whose process@1.0 has no default)
 *   - Assumes: nothing, or the execution device's keys.
 *   - Generates: a stored key's value (`at-slot`, `results`, `process`, ...); otherwise the key
 *     run "as execution" on the execution device (a Lua process's functions, `normalize`), a
 *     message answer with the process's `device`, prefixes and `schedule` back. `keys`, `set`,
 *     `remove`, `id` are message@1.0's.
 *   - Side-effects: those of the execution device's key (409 on a state a newer message advanced).
 */

import { AoError } from '../errors';
import { defineDevice } from '../ao/device';
import {
  deviceOf,
  isMessage,
  isPrivateKey,
  Message,
  putKey,
  rawGet,
  UNSET,
  withChanges,
  withoutPrivate,
} from '../ao/message';
import { DEFAULT_OPTS, type Opts } from '../ao/opts';
import { privateOf, setPriv } from '../ao/private';
import { internalOpts, resolveStep } from '../ao/resolve';
import { andThen, errorOf, isNotFound, notFound, okResult, Result, type Maybe } from '../ao/result';

export const PROCESS_DEVICE = 'process@1.0';

/** Input prefix given to the execution device when the process has none. */
export const DEFAULT_INPUT_PREFIX = 'process';
/**
 * Seconds between snapshots when the process sets neither `snapshot-interval` nor `snapshot-time`
 * (HyperBEAM's `process_snapshot_time` default).
 */
export const DEFAULT_SNAPSHOT_TIME = 60;
/** Most slots a read of a past slot replays before answering 503 (`historical-replay-limit`). */
export const DEFAULT_HISTORICAL_REPLAY_LIMIT = 1000;
/** Private key holding when the state's last snapshot was taken (seconds, the process clock). */
const LAST_SNAPSHOT_KEY = 'process-last-snapshot';
/** Stack mode of the `snapshot` request when the process has no `snapshot-mode` (SPEC §9). */
export const DEFAULT_SNAPSHOT_MODE = 'Map';

/** Keys of the process message that are not part of the process definition (`process`). */
const NOT_DEFINITION = new Set(['schedule', 'results', 'snapshot', 'snapshot-slot', 'at-slot', 'initialized', 'process', 'path']);
/** Private key holding the process's claim on the live execution state. */
const TICKET_KEY = 'process-lease';

/**
 * The live execution state (an instance, a VM) created by one `init` or restore. It is mutable
 * and shared by every message derived from it; `gen` counts how often it has been claimed.
 */
class Lease {
  gen = 0;
}

/** A message's claim on a lease: valid while nobody has advanced the state since. */
class Ticket {
  constructor(
    readonly lease: Lease,
    readonly gen: number,
  ) {}
}

/** Where a process error happened: reading the schedule, or one of the execution keys. */
type Phase = 'get-schedule' | 'init' | 'normalize' | 'compute' | 'snapshot';

function badRequest(message: string, key: string, extra: Record<string, unknown> = {}): AoError {
  return new AoError(message, { status: 400, code: 'ERR_BAD_REQUEST', key, device: PROCESS_DEVICE, ...extra });
}

/** An integer slot from a number, bigint or decimal string; undefined otherwise. */
function integer(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isSafeInteger(v) ? v : undefined;
  if (typeof v === 'bigint') return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : undefined;
  if (typeof v === 'string' && /^-?[0-9]{1,15}$/.test(v)) return Number(v);
  return undefined;
}

function nonNegative(v: unknown, name: string, key: string): number {
  const n = integer(v);
  if (n === undefined || n < 0) {
    throw badRequest(`process@1.0: '${name}' must be a non-negative integer, got ${JSON.stringify(typeof v === 'bigint' ? String(v) : v)}`, key);
  }
  return n;
}

/** Schedules already checked (lists are never modified: `schedule` makes a new one). */
const checkedSchedules = new WeakSet<unknown[]>();

/** The stored schedule (a list of assignments), checked. */
function scheduleOf(base: Message, key: string): Message[] {
  const s = rawGet(base, 'schedule');
  if (s === undefined) return [];
  if (!Array.isArray(s)) throw badRequest("process@1.0: 'schedule' must be a list of assignments", key);
  if (!checkedSchedules.has(s)) {
    s.forEach((a, i) => {
      if (!isMessage(a) || integer(rawGet(a, 'slot')) !== i) {
        throw badRequest(`process@1.0: schedule entry ${i + 1} is not the assignment of slot ${i}`, key);
      }
    });
    checkedSchedules.add(s);
  }
  return s as Message[];
}

/** The slot the stored state is at: `at-slot`, else `snapshot-slot`, else -1 (nothing computed). */
function atSlotOf(base: Message): number {
  return integer(rawGet(base, 'at-slot')) ?? integer(rawGet(base, 'snapshot-slot')) ?? -1;
}

/** True when the base holds the live execution state and nothing has advanced it since. */
function isLive(base: Message): boolean {
  const t = privateOf(base)[TICKET_KEY];
  return t instanceof Ticket && t.gen === t.lease.gen;
}

function withTicket(m: Message, lease: Lease): Message {
  return setPriv(m, TICKET_KEY, new Ticket(lease, lease.gen));
}

/** The process definition: the message minus private keys, schedule, results and bookkeeping. */
function definitionOf(base: Message): Message {
  const out: Message = {};
  for (const k of Object.keys(base)) {
    if (isPrivateKey(k) || NOT_DEFINITION.has(k.toLowerCase()) || base[k] === undefined) continue;
    putKey(out, k, base[k]);
  }
  return out;
}

/** The base with a `process` key (HyperBEAM keeps an existing one). */
function ensureProcessKey(base: Message): Message {
  return isMessage(rawGet(base, 'process')) ? base : withChanges(base, new Map([['process', definitionOf(base)]]));
}

function executionDevice(proc: Message): unknown {
  const dev = rawGet(proc, 'execution-device');
  if (dev === undefined) throw badRequest('process@1.0: the process has no execution-device', 'execution-device');
  return dev;
}

/** The message an execution key runs on: the process with the execution device's bookkeeping. */
function executionView(proc: Message, { keepSnapshot = false, keepPrivate = true } = {}): Message {
  const changes = new Map<string, unknown>([
    ['device', executionDevice(proc)],
    ['input-prefix', rawGet(proc, 'input-prefix') ?? DEFAULT_INPUT_PREFIX],
    ['schedule', UNSET],
  ]);
  const outPrefixes = rawGet(proc, 'execution-output-prefixes');
  if (outPrefixes !== undefined) changes.set('output-prefixes', outPrefixes);
  if (!keepSnapshot) changes.set('snapshot', UNSET);
  const view = withChanges(proc, changes);
  return keepPrivate ? view : withoutPrivate(view);
}

/** Put the process's own `device`, prefixes, schedule and snapshot back on an execution result. */
function fromExecution(proc: Message, result: Message): Message {
  const own = (k: string) => rawGet(proc, k) ?? UNSET;
  return withChanges(
    result,
    new Map<string, unknown>([
      ['device', deviceOf(proc) ?? PROCESS_DEVICE],
      ['input-prefix', own('input-prefix')],
      ['output-prefixes', own('output-prefixes')],
      ['schedule', own('schedule')],
      ['snapshot', own('snapshot')],
      ['snapshot-slot', own('snapshot-slot')],
    ]),
  );
}

/** Resolve an execution key; a missing key (not found) answers `undefined`. */
async function execute(view: Message, req: Message, key: string, opts: Opts): Promise<Message | undefined | AoError> {
  const r: Result = await resolveStep(view, req, key, internalOpts(opts));
  if (r.status === 'error') return !r.fault && isNotFound(r) ? undefined : errorOf(r);
  if (!isMessage(r.value)) {
    return new AoError(`the execution device answered '${key}' with a non-message`, { status: 500, code: 'ERR_DEVICE_FAULT' });
  }
  return r.value;
}

/** Longest inner error text quoted in a slot error (inner errors may print a whole state). */
const MAX_INNER_TEXT = 500;

/** An execution failure, annotated with the phase and the slot it was working on. */
function slotError(inner: AoError, phase: Phase, slot: number): AoError {
  const text = inner.message.length > MAX_INNER_TEXT ? `${inner.message.slice(0, MAX_INNER_TEXT)}…` : inner.message;
  const where = slot < 0 ? '' : ` at slot ${slot}`;
  return new AoError(`process@1.0: ${phase} failed${where}: ${text}`, {
    status: inner.status,
    code: inner.code,
    body: { body: text, phase, 'attempted-slot': slot },
    cause: inner,
    device: PROCESS_DEVICE,
    phase,
    'attempted-slot': slot,
  });
}

/** Run the execution device's `init` on a copy without live state: a fresh state at slot -1. */
async function initialize(base: Message, opts: Opts): Promise<Message | AoError> {
  const proc = withChanges(
    ensureProcessKey(base),
    new Map<string, unknown>([
      ['results', UNSET],
      ['snapshot', UNSET],
      ['snapshot-slot', UNSET],
    ]),
  );
  const view = executionView(proc, { keepPrivate: false });
  const r = await execute(view, { path: 'init' }, 'init', opts);
  if (r instanceof AoError) return slotError(r, 'init', -1);
  const state = fromExecution(proc, r ?? view);
  const done = withChanges(
    state,
    new Map<string, unknown>([
      ['initialized', 'true'],
      ['at-slot', -1],
    ]),
  );
  return withTicket(done, new Lease());
}

/** A message holding live state at `at-slot`. */
interface State {
  msg: Message;
  lease: Lease;
}

/**
 * Live state for `base`: its own when still valid (claimed, so that nothing else advances it),
 * else restored from its snapshot (`normalize`), else initialised from scratch. The returned
 * state may be behind `base`'s `at-slot`; the caller replays the schedule up to it.
 */
async function acquire(base: Message, opts: Opts): Promise<State | AoError> {
  if (isLive(base)) {
    const lease = (privateOf(base)[TICKET_KEY] as Ticket).lease;
    lease.gen++;
    return { msg: base, lease };
  }
  const proc = ensureProcessKey(base);
  const snapshot = rawGet(proc, 'snapshot');
  const snapSlot = integer(rawGet(proc, 'snapshot-slot'));
  if (isMessage(snapshot) && snapSlot !== undefined && snapSlot >= 0 && snapSlot <= atSlotOf(proc)) {
    const view = executionView(proc, { keepSnapshot: true, keepPrivate: false });
    const r = await execute(view, { path: 'normalize' }, 'normalize', opts);
    if (r instanceof AoError) return slotError(r, 'normalize', snapSlot);
    const restored = withChanges(
      fromExecution(proc, r ?? view),
      new Map<string, unknown>([
        ['initialized', 'true'],
        ['at-slot', snapSlot],
      ]),
    );
    return { msg: restored, lease: new Lease() };
  }
  const fresh = await initialize(proc, opts);
  if (fresh instanceof AoError) return fresh;
  return { msg: fresh, lease: (privateOf(fresh)[TICKET_KEY] as Ticket).lease };
}

/** A snapshot answer that is the execution state itself (a device echoing its base) is none. */
function isStateEcho(v: unknown): boolean {
  return isMessage(v) && rawGet(v, 'execution-device') !== undefined;
}

/** The storable part of a snapshot answer: stack bookkeeping and echoes removed. */
function cleanSnapshot(snap: Message, view: Message): Message | undefined {
  if (isStateEcho(snap)) return undefined;
  const out: Message = {};
  for (const k of Object.keys(snap)) {
    const v = snap[k];
    const lk = k.toLowerCase();
    if (isPrivateKey(k) || v === undefined || isStateEcho(v)) continue;
    // fold mode puts the stack's own device and prefixes back on the last device's answer
    if (['device', 'device-key', 'input-prefix', 'output-prefix', 'pass'].includes(lk) && v === rawGet(view, lk)) continue;
    putKey(out, k, v);
  }
  return out;
}

/** When snapshots are due: every `slots` slots, and/or `seconds` after the last one (0: never). */
interface SnapshotPolicy {
  slots: number;
  seconds: number;
  /** The process clock, in seconds. */
  now: () => number;
}

const NO_SNAPSHOTS: SnapshotPolicy = { slots: 0, seconds: 0, now: () => 0 };

function optionalCount(proc: Message, key: string): number | undefined {
  const v = rawGet(proc, key);
  if (v === undefined) return undefined;
  if (v === false || v === 'false') return 0;
  return nonNegative(v, key, 'compute');
}

/** The process clock: `opts.processClock` (seconds, or a function giving them), else the wall clock. */
function processClock(opts: Opts): () => number {
  const c = opts.processClock;
  if (typeof c === 'function') return () => Number(c());
  if (typeof c === 'number') return () => c;
  return () => Math.floor(Date.now() / 1000);
}

/**
 * `snapshot-interval` (slots) and `snapshot-time` (seconds; HyperBEAM's `process_snapshot_slots`
 * and `process_snapshot_time`), either may be 0. With neither set, every 60 seconds; setting only
 * `snapshot-interval` means by slot count only.
 */
function snapshotPolicy(proc: Message, opts: Opts): SnapshotPolicy {
  const slots = optionalCount(proc, 'snapshot-interval');
  const seconds = optionalCount(proc, 'snapshot-time') ?? (slots === undefined ? DEFAULT_SNAPSHOT_TIME : 0);
  return { slots: slots ?? 0, seconds, now: processClock(opts) };
}

function snapshotDue(p: SnapshotPolicy, msg: Message, slot: number): boolean {
  if (p.slots > 0 && slot - (integer(rawGet(msg, 'snapshot-slot')) ?? -1) >= p.slots) return true;
  if (p.seconds <= 0) return false;
  const last = privateOf(msg)[LAST_SNAPSHOT_KEY];
  return typeof last !== 'number' || p.now() > last + p.seconds;
}

/** Run one assignment (and the snapshot it is due for) on live state. */
async function step(msg: Message, a: Message, slot: number, policy: SnapshotPolicy, opts: Opts): Promise<Message | AoError> {
  const req: Message = { path: 'compute', body: rawGet(a, 'body'), slot };
  for (const k of ['block-height', 'block-timestamp']) {
    const v = rawGet(a, k);
    if (v !== undefined) req[k] = v;
  }
  const view = executionView(withChanges(msg, new Map([['results', UNSET]])));
  const r = await execute(view, req, 'compute', opts);
  if (r === undefined) {
    return slotError(new AoError(`the execution device has no 'compute'`, { status: 404, code: 'ERR_NOT_FOUND' }), 'compute', slot);
  }
  if (r instanceof AoError) return slotError(r, 'compute', slot);
  let next = withChanges(fromExecution(msg, r), new Map<string, unknown>([['at-slot', slot]]));
  if (snapshotDue(policy, next, slot)) {
    const sview = executionView(next);
    const mode = rawGet(next, 'snapshot-mode') ?? DEFAULT_SNAPSHOT_MODE;
    const s = await execute(sview, { path: 'snapshot', mode }, 'snapshot', opts);
    if (s instanceof AoError) return slotError(s, 'snapshot', slot);
    const snap = s === undefined ? undefined : cleanSnapshot(s, sview);
    if (snap !== undefined) {
      next = withChanges(
        next,
        new Map<string, unknown>([
          ['snapshot', snap],
          ['snapshot-slot', slot],
        ]),
      );
      next = setPriv(next, LAST_SNAPSHOT_KEY, policy.now());
    }
  }
  return next;
}

function replayLimit(proc: Message): number {
  const v = rawGet(proc, 'historical-replay-limit');
  return v === undefined ? DEFAULT_HISTORICAL_REPLAY_LIMIT : nonNegative(v, 'historical-replay-limit', 'compute');
}

/**
 * The process at a slot before `at-slot` (HyperBEAM reads it from its result cache): replayed on a
 * state of its own, from the stored snapshot when it is of an earlier slot, else from `init`, so the
 * live state is never rewound. More than `historical-replay-limit` slots to replay: 503.
 */
async function historical(base0: Message, target: number, at: number, opts: Opts): Promise<Message | AoError> {
  const snapSlot = integer(rawGet(base0, 'snapshot-slot'));
  // A snapshot holds the state, not the results of its slot: that slot itself must be replayed.
  const fromSnapshot = isMessage(rawGet(base0, 'snapshot')) && snapSlot !== undefined && snapSlot >= 0 && snapSlot < target;
  const from = fromSnapshot ? snapSlot : -1;
  const limit = replayLimit(base0);
  if (target - from > limit) {
    return new AoError(
      `process@1.0: slot ${target} is in the past (at slot ${at}) and ${target - from} slots from the nearest restore point (${fromSnapshot ? `the snapshot of slot ${from}` : 'init'}); historical replays are limited to ${limit} slots`,
      { status: 503, code: 'ERR_REPLAY_LIMIT', device: PROCESS_DEVICE, key: 'compute', slot: target, 'at-slot': at, 'replay-from': from },
    );
  }
  // No private part: no claim on the live state, which stays where it is.
  const start = withChanges(
    withoutPrivate(base0),
    new Map<string, unknown>(
      fromSnapshot
        ? [
            ['at-slot', from],
            ['results', UNSET],
          ]
        : [
            ['at-slot', UNSET],
            ['results', UNSET],
            ['snapshot', UNSET],
            ['snapshot-slot', UNSET],
            ['initialized', UNSET],
          ],
    ),
  );
  return run(start, target, NO_SNAPSHOTS, opts);
}

/** The process computed up to `target` (SPEC §9). Failures are returned as AoErrors. */
async function computeTo(base0: Message, target: number, opts: Opts): Promise<Message | AoError> {
  const at = atSlotOf(base0);
  if (target === at) return base0;
  executionDevice(base0);
  if (target < at) return historical(base0, target, at, opts);
  return run(base0, target, snapshotPolicy(base0, opts), opts);
}

/** Acquire a state for `base0` and run the schedule up to `target` (scheduled, not before the state). */
async function run(base0: Message, target: number, policy: SnapshotPolicy, opts: Opts): Promise<Message | AoError> {
  const schedule = scheduleOf(base0, 'compute');
  if (target >= schedule.length) {
    const inner = new AoError(`slot ${target} is not scheduled (the schedule ends at slot ${schedule.length - 1})`, {
      status: 404,
      code: 'ERR_NOT_FOUND',
    });
    return slotError(inner, 'get-schedule', target);
  }
  const st = await acquire(base0, opts);
  if (st instanceof AoError) return st;
  let msg = st.msg;
  for (let slot = atSlotOf(msg) + 1; slot <= target; slot++) {
    const next = await step(msg, schedule[slot], slot, policy, opts);
    if (next instanceof AoError) return next;
    msg = next;
  }
  return withTicket(msg, st.lease);
}

function requestedSlot(req: Message, base: Message): number {
  const v = rawGet(req, 'slot');
  if (v === undefined) return scheduleOf(base, 'compute').length - 1;
  const n = integer(v);
  if (n === undefined || n < 0) throw badRequest(`process@1.0: 'slot' must be a non-negative integer, got ${JSON.stringify(v)}`, 'compute');
  return n;
}

function schedule(base: Message, req: Message = {}): Message | Message[] {
  const list = scheduleOf(base, 'schedule');
  const body = rawGet(req, 'body');
  if (body === undefined) return list;
  const items: unknown[] = Array.isArray(body) ? body : [body];
  const out = list.slice();
  for (const item of items) {
    if (!isMessage(item)) throw badRequest('process@1.0: schedule needs a message (or a list of messages) as body', 'schedule');
    const prev = out[out.length - 1];
    const a: Message = { slot: out.length, body: item };
    for (const k of ['block-height', 'block-timestamp']) {
      const before = prev === undefined ? 0 : (integer(rawGet(prev, k)) ?? 0);
      const given = rawGet(req, k);
      const v = given === undefined ? before : nonNegative(given, k, 'schedule');
      if (v < before) throw badRequest(`process@1.0: '${k}' ${v} is below the previous assignment's (${before})`, 'schedule');
      a[k] = v;
    }
    out.push(a);
  }
  return withChanges(base, new Map([['schedule', out]]));
}

async function init(base: Message, _req: Message, opts: Opts = DEFAULT_OPTS): Promise<Message | AoError> {
  return initialize(base, opts);
}

async function compute(base: Message, req: Message = {}, opts: Opts = DEFAULT_OPTS): Promise<Message | AoError> {
  return computeTo(base, requestedSlot(req, base), opts);
}

async function now(base: Message, _req: Message, opts: Opts = DEFAULT_OPTS): Promise<Message | AoError> {
  return computeTo(base, scheduleOf(base, 'now').length - 1, opts);
}

function slot(base: Message): number {
  return scheduleOf(base, 'slot').length - 1;
}

// ---------------------------------------------------------------------------------------------
// Keys process@1.0 does not define: handed to the execution device

/** Keys message@1.0 answers for every message (never handed to the execution device). */
const MESSAGE_KEYS: readonly string[] = Object.freeze(['keys', 'set', 'set-path', 'remove', 'id', 'verify']);

/**
 * A message whose claim on the live execution state is no longer current (a newer message
 * advanced it) must not reach that state: the answer would be another message's.
 */
function staleState(base: Message, key: string): AoError | undefined {
  const t = privateOf(base)[TICKET_KEY];
  if (!(t instanceof Ticket) || t.gen === t.lease.gen) return undefined;
  return new AoError(
    `process@1.0: this message's execution state has moved on (a newer message computed from it), so '${key}' cannot run on it; use the newest message, or this one's stored snapshot`,
    { status: 409, code: 'ERR_STALE_STATE', device: PROCESS_DEVICE, key },
  );
}

/** The execution device's `snapshot` (stack mode `snapshot-mode`, default Map), cleaned as stored snapshots are. */
async function snapshot(base: Message, _req: Message, opts: Opts = DEFAULT_OPTS): Promise<Message | AoError> {
  const stale = staleState(base, 'snapshot');
  if (stale !== undefined) return stale;
  const view = executionView(ensureProcessKey(base));
  const s = await execute(view, { path: 'snapshot', mode: rawGet(base, 'snapshot-mode') ?? DEFAULT_SNAPSHOT_MODE }, 'snapshot', opts);
  if (s === undefined) return new AoError(`process@1.0: the execution device has no 'snapshot'`, { status: 404, code: 'ERR_NOT_FOUND', device: PROCESS_DEVICE, key: 'snapshot' });
  return s instanceof AoError ? s : (cleanSnapshot(s, view) ?? {});
}

/**
 * Any other key (a deliberate departure: HyperBEAM's process@1.0 has no default): a stored key reads
 * its value; otherwise the key runs "as execution" on the execution device, so a Lua process
 * initialised with `lua.init` resolves its Lua functions (`add` → 8) and `normalize` reaches the
 * device holding the state. A message answer gets the process's device, prefixes and schedule back.
 */
function executionDefault(key: string, base: Message, req: Message, opts: Opts = DEFAULT_OPTS): Maybe<Result> {
  if (isPrivateKey(key)) return notFound(key, PROCESS_DEVICE, 'private keys cannot be resolved');
  const stored = rawGet(base, key);
  if (stored !== undefined) return okResult(stored);
  const dev = rawGet(base, 'execution-device');
  if (dev === undefined) return notFound(key, PROCESS_DEVICE, 'the process has no execution-device to hand it to');
  const stale = staleState(base, key);
  if (stale !== undefined) return new Result('error', stale);
  const view = executionView(base, { keepSnapshot: true });
  return andThen(resolveStep(view, req, key, internalOpts(opts)), (r) => {
    if (r.status === 'error' || !isMessage(r.value) || r.value.device !== dev) return r;
    const back = withChanges(
      r.value,
      new Map<string, unknown>([
        ['device', deviceOf(base) ?? PROCESS_DEVICE],
        ['input-prefix', rawGet(base, 'input-prefix') ?? UNSET],
        ['output-prefixes', rawGet(base, 'output-prefixes') ?? UNSET],
        ['schedule', rawGet(base, 'schedule') ?? UNSET],
      ]),
    );
    return new Result(r.status, back);
  });
}

const PROCESS_INFO = Object.freeze({ excludes: MESSAGE_KEYS, default: executionDefault });

export const processDevice = defineDevice(PROCESS_DEVICE, {
  info: PROCESS_INFO,
  schedule,
  init,
  compute,
  now,
  slot,
  snapshot,
});
