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
 */

import { cacheWrite } from '../ao/cache';
import { isMessage, withoutPrivate, type Message } from '../ao/message';
import { resolve } from '../ao/resolve';
import { AoError } from '../errors';
import { wasm } from '../devices/wasm-64';
import { aosWasmStack } from '../devices/json-iface';
import { aosLuaProcess, rsaCommitment } from '../devices/lua';
import type { Tag } from './signing';

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
}

export interface Engine {
  readonly kind: EngineKind;
  compute(a: Assignment): Promise<LegacyResult>;
  dryRun(a: Assignment): Promise<LegacyResult>;
  /** The state after the last computed slot, as bytes (`restore` takes them back). */
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
  return out;
}

export function failure(e: unknown): LegacyResult {
  return legacyResult({ Error: (e as Error)?.message ?? String(e) });
}

// ---------------------------------------------------------------- WASM AOS (json-iface stack)

/** The stack message the `aos` CLI builds, for a process definition. */
export function wasmStackFor(def: ProcessDefinition, imageId: string): Message {
  return aosWasmStack({ image: imageId, owner: def.owner, id: def.id, tags: def.tags.map((t) => ({ ...t })) });
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

class WasmEngine implements Engine {
  readonly kind = 'wasm';
  private constructor(
    private state: Message,
    private readonly def: ProcessDefinition,
    private readonly imageId: string,
  ) {}

  static async create(def: ProcessDefinition, snapshot?: Uint8Array): Promise<WasmEngine> {
    const imageId = await cacheWrite(def.moduleBytes);
    const state = await resolve(wasmStackFor(def, imageId), 'init');
    if (snapshot) instanceOf(state).restore(snapshot);
    return new WasmEngine(state, def, imageId);
  }

  private static request(a: Assignment): Message {
    return { path: 'compute', 'block-height': a['block-height'], 'block-timestamp': a.timestamp, body: wasmBodyFor(a) };
  }

  async compute(a: Assignment): Promise<LegacyResult> {
    try {
      this.state = await resolve(this.state, WasmEngine.request(a));
      return wasmLegacyResult(this.state);
    } catch (e) {
      return failure(e);
    }
  }

  async dryRun(a: Assignment): Promise<LegacyResult> {
    // A second instance of the same (already compiled) image, restored from the live memory.
    const fork = await resolve(wasmStackFor(this.def, this.imageId), 'init');
    try {
      instanceOf(fork).restore(this.snapshot());
      return wasmLegacyResult(await resolve(fork, WasmEngine.request(a)));
    } catch (e) {
      return failure(e);
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

function instanceOf(state: Message) {
  const inst = wasm.instance(state);
  if (!inst) throw new AoError('the AOS stack has no WASM instance', { status: 500 });
  return inst;
}

// ---------------------------------------------------------------- Lua AOS (process@1.0)

/** The process@1.0 message for a hyper-aos process (as the `aos` CLI builds it). */
export function luaProcessFor(def: ProcessDefinition): Message {
  const authority = def.tags.filter((t) => t.name.toLowerCase() === 'authority').map((t) => t.value);
  const proc = aosLuaProcess(def.moduleBytes, {
    owner: def.owner,
    id: def.id,
    name: 'process.lua',
    authority: authority.length > 0 ? authority.join(',') : def.owner,
    // Every slot: a dry run restores a copy from the snapshot of the current slot.
    'snapshot-interval': 1,
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

class LuaEngine implements Engine {
  readonly kind = 'lua';
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

  private async run(base: Message, a: Assignment): Promise<Message> {
    const scheduled = await resolve(base, { path: 'schedule', body: luaBodyFor(a), 'block-height': a['block-height'], 'block-timestamp': a.timestamp });
    return resolve(scheduled, 'now');
  }

  async compute(a: Assignment): Promise<LegacyResult> {
    try {
      this.proc = await this.run(this.proc, a);
      return luaLegacyResult(this.proc);
    } catch (e) {
      // The failed message is dropped: this.proc keeps the state before it (restored from its
      // snapshot on the next compute).
      return failure(e);
    }
  }

  async dryRun(a: Assignment): Promise<LegacyResult> {
    // Without the private part the copy owns no VM: process@1.0 restores one from the snapshot.
    try {
      return luaLegacyResult(await this.run(withoutPrivate(this.proc), a));
    } catch (e) {
      return failure(e);
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
    // The VM is freed with its message.
  }
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

/** An engine for a process, fresh or rebuilt from `snapshot` (bytes from `engine.snapshot()`). */
export async function createEngine(def: ProcessDefinition, snapshot?: Uint8Array): Promise<Engine> {
  if (def.kind === 'wasm') return WasmEngine.create(def, snapshot);
  if (snapshot && decodeLuaSnapshot(snapshot).slot < 0) return LuaEngine.create(def);
  return LuaEngine.create(def, snapshot);
}
