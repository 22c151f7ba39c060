/**
 * The computation behind one served process. Two kinds, both driven only through `resolve`:
 *
 * - `wasm`: an AOS image (e.g. aos-2-pure-xs.wasm) in the json-iface stack the `aos` CLI uses
 *   (`json-iface@1.0` → `wasm-64@1.0` → `multipass@1.0`, prefix `wasm`, two passes). Its result
 *   is the guest's own JSON response, which is already the legacy CU result shape.
 * - `lua`: AOS written in Lua (hyper-aos.lua) as a `process@1.0` on `lua@5.3a`, with
 *   `commitments` naming the signer of each message for hyper-aos's trust checks (SPEC §7.9).
 *
 * An engine computes assignments in slot order, takes snapshots, is rebuilt from a snapshot, and
 * answers dry runs on a copy of its state (the live state is never touched by a dry run).
 *
 * Limits (limits.ts in this folder): a deterministic compute limit (fuel for WASM, Lua steps), the
 * process's `Compute-Limit` tag or a default, decides when a message fails; the wall-clock
 * deadline is the host's safety net, and a message it ends is flagged `Nondeterministic`.
 */

import { cacheWrite } from '../ao/cache';
import { isMessage, withoutPrivate, type Message } from '../ao/message';
import { resolve } from '../ao/resolve';
import { DEFAULT_OPTS } from '../ao/opts';
import { AoError, LimitError, type LimitKind } from '../errors';
import { wasm } from '../devices/wasm-64';
import { aosWasmStack } from '../devices/json-iface';
import { aosLuaProcess, disposeLuaVms, luaMemoryUsed, rsaCommitment } from '../devices/lua';
import type { Tag } from './signing';
import { limitsFor, type ComputeLimits } from './limits';
import { reseal } from '../lua-trust';

/** The legacy AOS-2 JSON form of a message, as CUs receive and dry runs send it. */
export interface LegacyMessage {
  Id: string;
  Owner: string;
  From?: string;
  Target: string;
  Anchor?: string;
  Data: string;
  Tags: Tag[];
  Timestamp?: string | number;
  'Block-Height'?: string | number;
  [k: string]: unknown;
}

/** A result as the legacy CU HTTP interface answers it. */
export interface LegacyResult {
  Output: unknown;
  Messages: unknown[];
  Spawns: unknown[];
  Assignments: unknown[];
  Error?: string;
  GasUsed: number;
  [k: string]: unknown;
}

/** One scheduled message: what the log stores and the engine computes. */
export interface Assignment {
  slot: number;
  /** Milliseconds since the epoch, assigned by the server (never decreasing). */
  timestamp: number;
  'block-height': number;
  message: LegacyMessage;
  /** The signed ANS-104 item (base64url) when the message came as one: what delegation forwards. */
  raw?: string;
  /** The scheduler's hash chain after this slot, when a HyperBEAM scheduler gave it (aos2.ts). */
  'hash-chain'?: string;
  /** Set when log compaction dropped the message's body: only `message.Id` is left. */
  compacted?: true;
}

export type EngineKind = 'wasm' | 'lua';

/** What an engine needs to start: the module and the process's identity. */
export interface ProcessDefinition {
  id: string;
  kind: EngineKind;
  /** The module's ID (the spawn's `Module` tag). */
  module: string;
  moduleBytes: Uint8Array;
  owner: string;
  tags: Tag[];
  /** The module's signed item, when it was registered as one (delegation forwards it). */
  moduleItem?: Uint8Array;
  /** The host's limits for processes whose tags set none (see limits.ts). */
  limits?: ComputeLimits;
  /** A directory keeping compiled WASM code, so a new thread or process loads it instead of compiling. */
  cacheDir?: string;
}

/**
 * What serve's registry drives: each compute answers a result (a failed message answers an
 * `Error` result and leaves the state as it was before it).
 */
export interface Engine {
  readonly kind: EngineKind;
  compute(a: Assignment): Promise<LegacyResult>;
  /** What the last `compute` cost, when the engine measures it. */
  readonly usage?: Usage;
  dryRun(a: Assignment): Promise<LegacyResult>;
  /** The state after the last computed slot, as bytes (`restore` takes them back). */
  snapshot(): Uint8Array | Promise<Uint8Array>;
  dispose(): void | Promise<void>;
}

/** Why a message failed: a limit (which one), a trap, a guest or device error, a crash. */
export interface Failure {
  message: string;
  /** The limit that ended it (`time` is the wall-clock deadline). */
  limit?: LimitKind;
  /** False when the outcome depends on the machine (the deadline, a dead or stuck worker). */
  deterministic: boolean;
}

/**
 * What computing one message cost the guest: `fuel`, the deterministic compute units it spent
 * (WASM fuel; not measured for Lua), and `memory`, the bytes its memory holds after it (WASM
 * linear memory, the Lua VM's allocation). Reported in metrics, never in results.
 */
export interface Usage {
  fuel?: number;
  memory?: number;
}

/** One message's result, and the failure when it failed (the state must then be rolled back). */
export interface Outcome {
  result: LegacyResult;
  failure?: Failure;
  usage?: Usage;
}

/**
 * The engine of one process in this thread (createEngine). `run` reports failures instead of
 * hiding them; after one, a WASM engine's state may be half-way through the message and must be
 * rebuilt (`keepsStateOnFailure` false); a Lua engine keeps the state before it.
 */
export interface LocalEngine {
  readonly kind: EngineKind;
  readonly keepsStateOnFailure: boolean;
  run(a: Assignment): Promise<Outcome>;
  dryRun(a: Assignment): Promise<LegacyResult>;
  snapshot(): Uint8Array;
  dispose(): void;
}

/** Fills in the fields a legacy result always has. */
export function legacyResult(r: Partial<LegacyResult>): LegacyResult {
  const out: LegacyResult = {
    Output: r.Output ?? {},
    Messages: r.Messages ?? [],
    Spawns: r.Spawns ?? [],
    Assignments: r.Assignments ?? [],
    GasUsed: r.GasUsed ?? 0,
  };
  if (r.Error !== undefined) out.Error = r.Error;
  if (r.Limit !== undefined) out.Limit = r.Limit;
  if (r.Nondeterministic === true) out.Nondeterministic = true;
  return out;
}

export function failure(e: unknown): LegacyResult {
  return legacyResult({ Error: (e as Error)?.message ?? String(e) });
}

/** A failure from what a compute threw (or the guest fault behind it). */
export function failureOf(e: unknown): Failure {
  const limit = e instanceof LimitError ? e.limit : undefined;
  return { message: (e as Error)?.message ?? String(e), ...(limit ? { limit } : {}), deterministic: limit !== 'time' };
}

/**
 * The legacy result of a failed message: `Error` (its text), `Limit` when a limit ended it, and
 * `Nondeterministic: true` when the outcome depends on the machine (never the process's
 * deterministic result: another CU may compute the message).
 */
export function failureResult(f: Failure): LegacyResult {
  return legacyResult({ Error: f.message, ...(f.limit ? { Limit: f.limit } : {}), ...(f.deterministic ? {} : { Nondeterministic: true }) });
}

// ---------------------------------------------------------------- WASM AOS (json-iface stack)

/** The stack message the `aos` CLI builds, for a process definition. */
export function wasmStackFor(def: ProcessDefinition, imageId: string): Message {
  const limits = limitsFor(def);
  return {
    ...aosWasmStack({ image: imageId, owner: def.owner, id: def.id, tags: def.tags.map((t) => ({ ...t })) }),
    fuel: limits.computeLimit,
    'time-limit': limits.timeLimit === Infinity ? 'infinity' : limits.timeLimit,
    ...(limits.memoryLimit !== undefined ? { 'max-memory': limits.memoryLimit } : {}),
  };
}

/** The message json-iface turns into AOS's msg JSON (SPEC §6.1): original tags kept verbatim. */
export function wasmBodyFor(a: Assignment): Message {
  const m = a.message;
  return {
    id: m.Id,
    owner: m.Owner,
    from: m.From ?? m.Owner,
    target: m.Target,
    anchor: m.Anchor ?? '',
    data: m.Data,
    tags: m.Tags.map((t) => ({ ...t })),
  };
}

/** The guest's JSON response of the last compute (json-iface keeps it at `results/json`). */
export function wasmLegacyResult(state: Message): LegacyResult {
  const results = (state as { results?: Message }).results;
  const json = isMessage(results) && isMessage(results.json) ? results.json.body : undefined;
  if (typeof json !== 'string') throw new AoError('the AOS stack produced no JSON result', { status: 500 });
  const parsed = JSON.parse(json) as { response?: Partial<LegacyResult> };
  return legacyResult(parsed.response ?? {});
}

class WasmEngine implements LocalEngine {
  readonly kind = 'wasm';
  readonly keepsStateOnFailure = false;
  private constructor(
    private state: Message,
    private readonly def: ProcessDefinition,
    private readonly imageId: string,
  ) {}

  static async create(def: ProcessDefinition, snapshot?: Uint8Array): Promise<WasmEngine> {
    const imageId = await cacheWrite(def.moduleBytes);
    const state = await resolve(wasmStackFor(def, imageId), 'init', initOpts(def));
    if (snapshot) instanceOf(state).restore(snapshot);
    return new WasmEngine(state, def, imageId);
  }

  private static request(a: Assignment): Message {
    return { path: 'compute', 'block-height': a['block-height'], 'block-timestamp': a.timestamp, body: wasmBodyFor(a) };
  }

  /**
   * A trap, a limit or unreadable output fails the message; so does a response with `Error` (the
   * ao CU discards the memory of such a message: its state is the one before it).
   */
  async run(a: Assignment): Promise<Outcome> {
    try {
      this.state = await resolve(this.state, WasmEngine.request(a));
      const result = wasmLegacyResult(this.state);
      // json-iface's last call of the message is `handle`: its fuel is the message's.
      const inst = instanceOf(this.state);
      const usage = { fuel: Number(inst.fuelConsumed), memory: Number(inst.memory.size) };
      if (result.Error !== undefined) return { result, failure: { message: String(result.Error), deterministic: true }, usage };
      return { result, usage };
    } catch (e) {
      const f = failureOf(wasm.lastFault(this.state) ?? e);
      return { result: failureResult(f), failure: f };
    }
  }

  async dryRun(a: Assignment): Promise<LegacyResult> {
    // A second instance of the same (already compiled) image, restored from the live memory.
    const fork = await resolve(wasmStackFor(this.def, this.imageId), 'init', initOpts(this.def));
    try {
      instanceOf(fork).restore(this.snapshot());
      return wasmLegacyResult(await resolve(fork, WasmEngine.request(a)));
    } catch (e) {
      return failureResult(failureOf(wasm.lastFault(fork) ?? e));
    } finally {
      instanceOf(fork).dispose();
    }
  }

  snapshot(): Uint8Array {
    return instanceOf(this.state).snapshot();
  }

  dispose(): void {
    wasm.instance(this.state)?.dispose();
  }
}

function initOpts(def: ProcessDefinition) {
  return def.cacheDir ? { ...DEFAULT_OPTS, wasmCacheDir: def.cacheDir } : DEFAULT_OPTS;
}

function instanceOf(state: Message) {
  const inst = wasm.instance(state);
  if (!inst) throw new AoError('the AOS stack has no WASM instance', { status: 500 });
  return inst;
}

// ---------------------------------------------------------------- Lua AOS (process@1.0)

/** The process@1.0 message for a hyper-aos process (as the `aos` CLI builds it). */
export function luaProcessFor(def: ProcessDefinition): Message {
  const limits = limitsFor(def);
  const authority = def.tags.filter((t) => t.name.toLowerCase() === 'authority').map((t) => t.value);
  const proc = aosLuaProcess(def.moduleBytes, {
    owner: def.owner,
    id: def.id,
    name: 'process.lua',
    authority: authority.length > 0 ? authority.join(',') : def.owner,
    // Every slot: a dry run restores a copy from the snapshot of the current slot.
    'snapshot-interval': 1,
    'instruction-limit': limits.computeLimit,
    'time-limit': limits.timeLimit === Infinity ? 'infinity' : limits.timeLimit,
    ...(limits.memoryLimit !== undefined ? { 'memory-limit': limits.memoryLimit } : {}),
  });
  return { ...proc, id: def.id };
}

/** The message hyper-aos reads: tags as lower-case keys, `data`, and the signer's commitment. */
export function luaBodyFor(a: Assignment): Message {
  const m = a.message;
  const body: Message = {};
  for (const t of m.Tags) {
    const k = t.name.toLowerCase();
    if (!(k in body)) body[k] = t.value;
  }
  body.id = m.Id;
  body.data = m.Data;
  body.target = m.Target;
  if (m.From !== undefined && m.From !== m.Owner) body['from-process'] = m.From;
  body.commitments = rsaCommitment(m.Owner, m.Id);
  return body;
}

/** hyper-aos's `results` (`output`, `outbox`) in the legacy shape. */
export function luaLegacyResult(state: Message): LegacyResult {
  const results = (state as { results?: Message }).results ?? {};
  const output = isMessage(results.output) ? results.output : {};
  const outbox = isMessage(results.outbox) ? results.outbox : Array.isArray(results.outbox) ? results.outbox : {};
  const messages: unknown[] = [];
  const entries = Array.isArray(outbox) ? outbox.map((m, i) => [String(i + 1), m] as const) : Object.entries(outbox);
  entries.sort((x, y) => Number(x[0]) - Number(y[0]));
  for (const [, m] of entries) if (isMessage(m)) messages.push(legacyOutboxMessage(m));
  return legacyResult({ Output: jsonSafe(output), Messages: messages });
}

const FIELDS: Record<string, string> = { target: 'Target', data: 'Data', anchor: 'Anchor' };

function legacyOutboxMessage(m: Message): Message {
  const out: Message = { Target: '', Anchor: '', Data: '', Tags: [] };
  const tags: Tag[] = [];
  for (const [k, v] of Object.entries(m)) {
    const field = FIELDS[k.toLowerCase()];
    if (field) out[field] = typeof v === 'string' ? v : JSON.stringify(jsonSafe(v));
    else tags.push({ name: headerCase(k), value: typeof v === 'string' ? v : JSON.stringify(jsonSafe(v)) });
  }
  out.Tags = tags;
  return out;
}

function headerCase(key: string): string {
  return key.replace(/(^|-)([a-z])/g, (_m, sep: string, c: string) => sep + c.toUpperCase());
}

/** JSON-compatible copy (bigint → string, bytes → UTF-8 text). */
export function jsonSafe(v: unknown): unknown {
  return JSON.parse(
    JSON.stringify(v, (_k, x) => {
      if (typeof x === 'bigint') return x.toString();
      if (isMessage(x) && x.type === 'Buffer' && Array.isArray(x.data)) return Buffer.from(x.data as number[]).toString('utf8');
      return x;
    }) ?? 'null',
  );
}

class LuaEngine implements LocalEngine {
  readonly kind = 'lua';
  readonly keepsStateOnFailure = true;
  /** process@1.0 slots computed so far (failed messages are not scheduled: state unchanged). */
  private constructor(private proc: Message) {}

  static async create(def: ProcessDefinition, snapshot?: Uint8Array): Promise<LuaEngine> {
    let proc = luaProcessFor(def);
    if (snapshot) {
      // The schedule before the snapshot is never run again: placeholders keep the slot numbers.
      const { slot, body } = decodeLuaSnapshot(snapshot);
      const schedule = Array.from({ length: slot + 1 }, (_, i) => ({ slot: i, body: {}, 'block-height': 0, 'block-timestamp': 0 }));
      proc = { ...proc, schedule, snapshot: { body }, 'snapshot-slot': slot, 'at-slot': slot };
    } else {
      proc = await resolve(proc, 'init');
    }
    return new LuaEngine(proc);
  }

  private async step(base: Message, a: Assignment): Promise<Message> {
    const scheduled = await resolve(base, { path: 'schedule', body: luaBodyFor(a), 'block-height': a['block-height'], 'block-timestamp': a.timestamp });
    return resolve(scheduled, 'now');
  }

  async run(a: Assignment): Promise<Outcome> {
    try {
      this.proc = await this.step(this.proc, a);
      return { result: luaLegacyResult(this.proc), usage: { memory: luaMemoryUsed(this.proc) } };
    } catch (e) {
      // The failed message is dropped: this.proc keeps the state before it (restored from its
      // snapshot on the next compute).
      const f = failureOf(causeLimit(e) ?? e);
      return { result: failureResult(f), failure: f };
    }
  }

  async dryRun(a: Assignment): Promise<LegacyResult> {
    // Without the private part the copy owns no VM: process@1.0 restores one from the snapshot.
    try {
      return luaLegacyResult(await this.step(withoutPrivate(this.proc), a));
    } catch (e) {
      return failureResult(failureOf(causeLimit(e) ?? e));
    }
  }

  snapshot(): Uint8Array {
    const snap = (this.proc as { snapshot?: Message }).snapshot;
    const slot = Number((this.proc as Message)['snapshot-slot'] ?? -1);
    const body = isMessage(snap) ? snap.body : undefined;
    if (!(body instanceof Uint8Array)) return encodeLuaSnapshot(-1, new Uint8Array(0));
    return encodeLuaSnapshot(slot, body);
  }

  dispose(): void {
    // Now, not at the collector's pleasure (it does not see the VM's native memory).
    disposeLuaVms(this.proc);
  }
}

/** The `LimitError` behind a process@1.0 failure (its `cause` chain), if a limit ended it. */
function causeLimit(e: unknown): LimitError | undefined {
  for (let c = e, i = 0; c instanceof Error && i < 8; c = (c as Error).cause, i++) if (c instanceof LimitError) return c;
  if (e instanceof AoError && typeof (e as { limit?: unknown }).limit === 'string') {
    return new LimitError(e.message, { limit: (e as { limit?: string }).limit });
  }
  return undefined;
}

function encodeLuaSnapshot(slot: number, body: Uint8Array): Uint8Array {
  const out = Buffer.alloc(8 + body.length);
  out.writeInt32LE(slot, 0);
  out.writeUInt32LE(body.length, 4);
  out.set(body, 8);
  return out;
}

function decodeLuaSnapshot(bytes: Uint8Array): { slot: number; body: Uint8Array } {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < 8 || b.readUInt32LE(4) !== b.length - 8) throw new AoError('malformed Lua process snapshot', { status: 500 });
  return { slot: b.readInt32LE(0), body: b.subarray(8) };
}

/**
 * A state another node's engine produced, made this node's: Lua states are sealed with the
 * node's key (lua-trust.ts), so one from a trusted checkpoint is sealed again here. WASM states
 * carry no seal.
 */
export function adoptState(kind: EngineKind, bytes: Uint8Array): Uint8Array {
  if (kind !== 'lua') return bytes;
  const { slot, body } = decodeLuaSnapshot(bytes);
  return body.length === 0 ? bytes : encodeLuaSnapshot(slot, reseal(body));
}

/** An engine for a process, fresh or rebuilt from `snapshot` (bytes from `engine.snapshot()`). */
export async function createEngine(def: ProcessDefinition, snapshot?: Uint8Array): Promise<LocalEngine> {
  if (def.kind === 'wasm') return WasmEngine.create(def, snapshot);
  if (snapshot && decodeLuaSnapshot(snapshot).slot < 0) return LuaEngine.create(def);
  return LuaEngine.create(def, snapshot);
}
