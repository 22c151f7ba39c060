/**
 * The processes a server holds, their local scheduler and their durable state (layout in
 * store.ts). Each process has a slot counter (slot 0 is its spawn item), an append-only log of
 * assignments, a serial compute loop, the results by slot, and a snapshot every
 * `snapshotInterval` slots.
 *
 * Durability rule: a message is acknowledged only after its assignment is fsynced to the log.
 * Results are appended to their own log without waiting; before a snapshot of slot S is written,
 * that log is fsynced, so a snapshot never covers a result that could be lost. On restart every
 * process is rebuilt from its latest snapshot, the results log, and the assignments after the
 * snapshot are computed again (deterministically: timestamps and heights come from the log).
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { sha256Id, messageId } from '../ao/cache';
import { AoError } from '../errors';
import { type Assignment, type Engine, type EngineKind, type LegacyMessage, type LegacyResult, type ProcessDefinition } from './engine';
import { tagValue, type SignedItem, type Tag } from './signing';
import { ensureDir, readWal, Wal, writeFileAtomic, writeFileAtomicAsync } from './store';

/** Slots between two persisted snapshots when nothing else is configured. */
export const DEFAULT_SNAPSHOT_INTERVAL = 64;
/** AOS WASM images declare this format; anything with `wasm` in it runs as a WASM AOS. */
export const WASM_MODULE_FORMAT = 'wasm64-unknown-emscripten-draft_2024_02_15';
/** Module-Format of AOS written in Lua (hyper-aos.lua). */
export const LUA_MODULE_FORMAT = 'lua';

export interface ModuleRecord {
  id: string;
  owner: string;
  tags: Tag[];
  kind: EngineKind;
  bytes: Uint8Array;
  /** The signed item it was registered with, if any. */
  item?: Uint8Array;
}

interface ProcessFile {
  id: string;
  owner: string;
  module: string;
  tags: Tag[];
  spawn: Assignment;
}

/** A result with its slot and the ID of the message that produced it. */
export interface SlotResult {
  slot: number;
  id: string;
  result: LegacyResult;
}

function notFound(message: string): AoError {
  return new AoError(message, { status: 404, code: 'ERR_NOT_FOUND' });
}

function badRequest(message: string): AoError {
  return new AoError(message, { status: 400, code: 'ERR_BAD_REQUEST' });
}

function conflict(message: string): AoError {
  return new AoError(message, { status: 409, code: 'ERR_CONFLICT' });
}

/** The module kind its tags declare. */
export function moduleKind(tags: Tag[]): EngineKind | undefined {
  const format = (tagValue(tags, 'Module-Format') ?? '').toLowerCase();
  const ctype = (tagValue(tags, 'Content-Type') ?? '').toLowerCase();
  if (format.includes('wasm') || ctype === 'application/wasm') return 'wasm';
  if (format === LUA_MODULE_FORMAT || format.includes('lua') || ctype === 'application/lua' || ctype === 'text/x-lua') return 'lua';
  return undefined;
}

/** The tags a module uploaded as raw bytes is described with (for the gateway's answers). */
export function moduleTagsFor(kind: EngineKind): Tag[] {
  return [
    { name: 'Data-Protocol', value: 'ao' },
    { name: 'Variant', value: 'ao.TN.1' },
    { name: 'Type', value: 'Module' },
    { name: 'Module-Format', value: kind === 'wasm' ? WASM_MODULE_FORMAT : LUA_MODULE_FORMAT },
    { name: 'Input-Encoding', value: 'JSON-1' },
    { name: 'Output-Encoding', value: 'JSON-1' },
    { name: 'Content-Type', value: kind === 'wasm' ? 'application/wasm' : 'application/lua' },
  ];
}

/** The legacy JSON form of a signed item. */
export function legacyOf(item: SignedItem): LegacyMessage {
  return {
    Id: item.id,
    Owner: item.owner,
    From: item.owner,
    Target: item.target,
    Anchor: item.anchor,
    Data: item.data.toString('utf8'),
    Tags: item.tags,
  };
}

/** IDs of the items in a slot's results bundle: the computed message and every output message. */
export function resultsBundleIds(messageIdOfSlot: string, result: LegacyResult): string[] {
  const ids = [messageIdOfSlot];
  for (const m of [...result.Messages, ...result.Spawns]) ids.push(messageId(m as never));
  return ids;
}

/** sha256 (base64url) of a result's JSON text: what a commitment binds. */
export function resultHash(result: LegacyResult): string {
  return sha256Id(Buffer.from(JSON.stringify(result), 'utf8'));
}

export class ServedProcess {
  readonly assignments: Assignment[] = [];
  readonly results: Array<LegacyResult | undefined> = [];
  private readonly bySlotId = new Map<string, number>();
  /** Slots whose assignment is durable. */
  durable = 0;
  /** Last computed slot. */
  computed = -1;
  snapshotSlot = -1;
  mismatches = 0;
  /** Set when the store failed under this process: it computes nothing more. */
  fault?: Error;
  private closing = false;
  private engine?: Engine;
  private pumping?: Promise<void>;
  private waiters: Array<{ slot: number; resolve: () => void }> = [];
  private exclusive: Promise<unknown> = Promise.resolve();
  private readonly log: Wal;
  private readonly resultsLog: Wal;

  constructor(
    readonly def: ProcessDefinition,
    readonly dir: string,
    private readonly snapshotInterval: number,
    private readonly engineFactory: EngineFactory,
  ) {
    this.log = new Wal(path.join(dir, 'log.wal'), true);
    this.resultsLog = new Wal(path.join(dir, 'results.wal'), false);
  }

  get id(): string {
    return this.def.id;
  }

  get nextSlot(): number {
    return this.assignments.length;
  }

  slotOf(messageId: string): number | undefined {
    return this.bySlotId.get(messageId);
  }

  /** Records an assignment in memory (the caller makes it durable). */
  private place(a: Assignment): void {
    this.assignments.push(a);
    this.bySlotId.set(a.message.Id, a.slot);
  }

  /** Schedules a message at the next slot; resolves once its assignment is durable. */
  async assign(message: LegacyMessage, at?: number, raw?: Uint8Array): Promise<Assignment> {
    const slot = this.nextSlot;
    if (at !== undefined && at !== slot) throw conflict(`slot ${at} cannot be assigned: the next slot of process ${this.id} is ${slot}`);
    const prev = this.assignments[slot - 1];
    const a: Assignment = {
      slot,
      timestamp: Math.max(Date.now(), prev?.timestamp ?? 0),
      'block-height': slot,
      message,
      ...(raw ? { raw: Buffer.from(raw).toString('base64url') } : {}),
    };
    if (this.fault) throw this.faultError();
    this.place(a);
    try {
      await this.log.append(Buffer.from(JSON.stringify(a)));
    } catch (e) {
      // The slot is taken in memory but not on disk: accept nothing more for this process
      // (a restart reloads it from what is on disk).
      this.fault ??= e as Error;
      throw this.faultError();
    }
    this.durable = Math.max(this.durable, slot + 1);
    void this.pump();
    return a;
  }

  /** Restores the in-memory schedule from the files (at startup). */
  load(spawn: Assignment): void {
    this.place(spawn);
    for (const rec of readWal(path.join(this.dir, 'log.wal'))) this.place(JSON.parse(rec.toString('utf8')) as Assignment);
    this.durable = this.assignments.length;
    for (const rec of readWal(path.join(this.dir, 'results.wal'))) {
      const { slot, result } = JSON.parse(rec.toString('utf8')) as { slot: number; result: LegacyResult };
      if (this.results[slot] === undefined) this.results[slot] = result;
    }
  }

  async start(snapshotFile?: string): Promise<void> {
    let snap: { slot: number; bytes: Uint8Array } | undefined;
    if (snapshotFile && fs.existsSync(snapshotFile)) {
      const b = fs.readFileSync(snapshotFile);
      const slot = b.readInt32LE(0);
      // Usable only when every result it covers is on file.
      const covered = slot < this.durable && Array.from({ length: slot + 1 }, (_, i) => this.results[i]).every((r) => r !== undefined);
      if (covered) snap = { slot, bytes: b.subarray(4) };
    }
    this.engine = await this.engineFactory(this.def, snap?.bytes);
    this.computed = snap?.slot ?? -1;
    this.snapshotSlot = this.computed;
    void this.pump();
  }

  /** Computes every durable slot not computed yet, in order. */
  pump(): Promise<void> {
    if (this.pumping || !this.engine) return this.pumping ?? Promise.resolve();
    this.pumping = (async () => {
      // Yield first: with nothing to compute the body would finish (and clear `pumping`) before
      // `pumping` is assigned, leaving a settled promise there that stops every later pump.
      await null;
      try {
        while (this.computed + 1 < this.durable && !this.closing && !this.fault) await this.exclusively(() => this.computeNext());
      } catch (e) {
        // Only the store can fail here (engines turn compute failures into Error results):
        // stop computing this process, and say why on every later wait.
        this.fault = e as Error;
        process.stderr.write(`hb-runtimes serve: process ${this.id} stopped: ${this.fault.message}\n`);
        for (const w of this.waiters.splice(0)) w.resolve();
        return;
      } finally {
        this.pumping = undefined;
      }
      if (this.computed + 1 < this.durable && !this.closing) void this.pump();
    })();
    return this.pumping;
  }

  /** Runs `f` alone: computes, dry runs and state reads never overlap. */
  exclusively<T>(f: () => Promise<T>): Promise<T> {
    const run = this.exclusive.then(f, f);
    this.exclusive = run.catch(() => undefined);
    return run;
  }

  private async computeNext(): Promise<void> {
    const slot = this.computed + 1;
    const known = this.results[slot];
    // A message the deadline (or a lost worker) failed is not computed again: its recorded
    // outcome stands and the state stays the one before it, as it was the first time.
    const result = known?.Nondeterministic === true ? known : await this.engine!.compute(this.assignments[slot]);
    if (known === undefined) {
      this.results[slot] = result;
      // Not awaited (results can be recomputed); a failure is fatal for this process.
      this.resultsLog.append(Buffer.from(JSON.stringify({ slot, result }))).catch((e: Error) => {
        this.fault ??= e;
      });
    } else if (JSON.stringify(known) !== JSON.stringify(result)) {
      this.mismatches++;
    }
    this.computed = slot;
    this.waiters = this.waiters.filter((w) => (w.slot <= slot ? (w.resolve(), false) : true));
    if (slot - this.snapshotSlot >= this.snapshotInterval) await this.persistSnapshot();
  }

  private async persistSnapshot(): Promise<void> {
    const slot = this.computed;
    await this.resultsLog.sync();
    const state = await this.engine!.snapshot();
    const head = Buffer.alloc(4);
    head.writeInt32LE(slot, 0);
    await writeFileAtomicAsync(path.join(this.dir, 'snapshot.bin'), Buffer.concat([head, state]));
    this.snapshotSlot = slot;
  }

  /** Resolves once `slot` is computed. */
  whenComputed(slot: number): Promise<void> {
    if (this.computed >= slot) return Promise.resolve();
    if (this.fault) return Promise.reject(this.faultError());
    return new Promise<void>((resolve) => this.waiters.push({ slot, resolve })).then(() => {
      if (this.computed < slot && this.fault) throw this.faultError();
    });
  }

  private faultError(): AoError {
    return new AoError(`process ${this.id} stopped computing: ${this.fault?.message}`, { status: 500, code: 'ERR_STORE' });
  }

  async resultOf(slot: number): Promise<LegacyResult> {
    if (slot < 0 || slot >= this.nextSlot) throw notFound(`process ${this.id} has no slot ${slot}`);
    await this.whenComputed(slot);
    return this.results[slot]!;
  }

  /** A dry run on the state after every slot assigned so far. */
  async dryRun(message: LegacyMessage): Promise<LegacyResult> {
    const last = this.nextSlot - 1;
    await this.whenComputed(last);
    return this.exclusively(async () => {
      const prev = this.assignments[this.computed];
      return this.engine!.dryRun({ slot: this.computed + 1, timestamp: Math.max(Date.now(), prev?.timestamp ?? 0), 'block-height': this.computed + 1, message });
    });
  }

  /** The current state as bytes, with the slot it is at. */
  async state(): Promise<{ slot: number; bytes: Uint8Array }> {
    await this.whenComputed(this.nextSlot - 1);
    return this.exclusively(async () => ({ slot: this.computed, bytes: await this.engine!.snapshot() }));
  }

  async close(): Promise<void> {
    // Stop after the slot being computed; what is left is computed again on the next start.
    this.closing = true;
    await this.pumping;
    await this.exclusive;
    await this.log.close();
    await this.resultsLog.close();
    await this.engine?.dispose();
  }
}

/** Makes the engine of a process (default: local WASM or Lua; serve's delegation replaces it). */
export type EngineFactory = (def: ProcessDefinition, snapshot?: Uint8Array) => Promise<Engine>;

export interface RegistryOptions {
  dir: string;
  snapshotInterval?: number;
  /** How processes compute (serve/compute.ts; delegation: remote.ts). */
  engineFactory: EngineFactory;
}

/** Every module and process of one server. */
export class ProcessRegistry {
  readonly modules = new Map<string, ModuleRecord>();
  readonly processes = new Map<string, ServedProcess>();
  readonly dir: string;
  private readonly snapshotInterval: number;
  private readonly engineFactory: EngineFactory;

  constructor(opts: RegistryOptions) {
    this.dir = path.resolve(opts.dir);
    this.engineFactory = opts.engineFactory;
    this.snapshotInterval = opts.snapshotInterval ?? DEFAULT_SNAPSHOT_INTERVAL;
    if (!Number.isSafeInteger(this.snapshotInterval) || this.snapshotInterval < 1) throw badRequest('snapshotInterval must be a positive integer');
  }

  private processDir(id: string): string {
    return path.join(this.dir, 'processes', id);
  }

  /** Reads every module and process from the store and starts recomputing. */
  async open(): Promise<void> {
    const mdir = path.join(this.dir, 'modules');
    ensureDir(mdir);
    ensureDir(path.join(this.dir, 'processes'));
    for (const f of fs.readdirSync(mdir)) {
      if (!f.endsWith('.json') || f.startsWith('.')) continue;
      const meta = JSON.parse(fs.readFileSync(path.join(mdir, f), 'utf8')) as Omit<ModuleRecord, 'bytes'>;
      const itemFile = path.join(mdir, `${meta.id}.item`);
      const item = fs.existsSync(itemFile) ? fs.readFileSync(itemFile) : undefined;
      this.modules.set(meta.id, { ...meta, bytes: fs.readFileSync(path.join(mdir, `${meta.id}.bin`)), ...(item ? { item } : {}) });
    }
    for (const id of fs.readdirSync(path.join(this.dir, 'processes'))) {
      const dir = this.processDir(id);
      const file = path.join(dir, 'process.json');
      if (!fs.existsSync(file)) continue;
      const pf = JSON.parse(fs.readFileSync(file, 'utf8')) as ProcessFile;
      const p = this.instantiate(pf);
      p.load(pf.spawn);
      await p.start(path.join(dir, 'snapshot.bin'));
    }
  }

  private instantiate(pf: ProcessFile): ServedProcess {
    const mod = this.modules.get(pf.module);
    if (!mod) throw notFound(`module ${pf.module} of process ${pf.id} is not in the store`);
    const def: ProcessDefinition = { id: pf.id, kind: mod.kind, module: mod.id, moduleBytes: mod.bytes, owner: pf.owner, tags: pf.tags, ...(mod.item ? { moduleItem: mod.item } : {}) };
    const p = new ServedProcess(def, this.processDir(pf.id), this.snapshotInterval, this.engineFactory);
    this.processes.set(pf.id, p);
    return p;
  }

  /** Stores a module (durably) under `id`. */
  addModule(id: string, owner: string, tags: Tag[], bytes: Uint8Array, item?: Uint8Array): ModuleRecord {
    const existing = this.modules.get(id);
    if (existing) return existing;
    const kind = moduleKind(tags);
    if (!kind) throw badRequest(`module ${id}: Module-Format '${tagValue(tags, 'Module-Format') ?? ''}' is neither a WASM AOS image nor Lua`);
    const mdir = path.join(this.dir, 'modules');
    writeFileAtomic(path.join(mdir, `${id}.bin`), bytes);
    if (item) writeFileAtomic(path.join(mdir, `${id}.item`), item);
    const rec: ModuleRecord = { id, owner, tags, kind, bytes, ...(item ? { item } : {}) };
    writeFileAtomic(path.join(mdir, `${id}.json`), JSON.stringify({ id, owner, tags, kind }));
    this.modules.set(id, rec);
    return rec;
  }

  /** Registers a process from its signed spawn item; resolves once durable. Idempotent. */
  async spawn(item: SignedItem): Promise<ServedProcess> {
    const existing = this.processes.get(item.id);
    if (existing) return existing;
    const moduleId = tagValue(item.tags, 'Module');
    if (!moduleId) throw badRequest("the process has no 'Module' tag");
    if (!this.modules.has(moduleId)) throw notFound(`module ${moduleId} is not known to this server (upload it first)`);
    const spawn: Assignment = { slot: 0, timestamp: Date.now(), 'block-height': 0, message: legacyOf(item), raw: item.raw.toString('base64url') };
    const pf: ProcessFile = { id: item.id, owner: item.owner, module: moduleId, tags: item.tags, spawn };
    const p = this.instantiate(pf);
    p.load(spawn);
    writeFileAtomic(path.join(this.processDir(item.id), 'process.json'), JSON.stringify(pf));
    await p.start();
    return p;
  }

  /** A scheduled message by ID, from whichever process holds it. */
  findMessage(id: string): Assignment | undefined {
    for (const p of this.processes.values()) {
      const slot = p.slotOf(id);
      if (slot !== undefined) return p.assignments[slot];
    }
    return undefined;
  }

  get(id: string): ServedProcess {
    const p = this.processes.get(id);
    if (!p) throw notFound(`process ${id} is not held by this server`);
    return p;
  }

  async close(): Promise<void> {
    for (const p of this.processes.values()) await p.close();
  }
}
