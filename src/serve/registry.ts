/**
 * The modules and processes a `serve` node holds, over a `Store` (store.ts): a directory (one
 * node) or PostgreSQL (several nodes; a process is held by the node with its lease, leases.ts).
 * Each held process is a `ServedProcess` (served-process.ts).
 *
 * With a memory budget, idle processes are evicted least recently used first (their engine is
 * dropped after a checkpoint) until the states held fit in it; an evicted process comes back
 * from its snapshot on its next message.
 */

import { sha256Id, messageId } from '../ao/cache';
import { AoError } from '../errors';
import { native } from '../native';
import { adoptState, type Assignment, type EngineKind, type LegacyMessage, type LegacyResult, type ProcessDefinition } from './engine';
import type { LeaseManager } from './leases';
import { ServedProcess, type EngineFactory } from './served-process';
import { tagValue, type SignedItem, type Tag } from './signing';
import type { Checkpoint } from './checkpoint';
import { restoredStub, stubsOf, type ModuleRecord, type ProcessRecord, type Store } from './store';

export { ServedProcess, type EngineFactory } from './served-process';
export type { ModuleRecord } from './store';

/** Slots between two persisted snapshots when nothing else is configured. */
export const DEFAULT_SNAPSHOT_INTERVAL = 64;
/** AOS WASM images declare this format; anything with `wasm` in it runs as a WASM AOS. */
export const WASM_MODULE_FORMAT = 'wasm64-unknown-emscripten-draft_2024_02_15';
/** Module-Format of AOS written in Lua (hyper-aos.lua). */
export const LUA_MODULE_FORMAT = 'lua';

/** A result with its slot and the ID of the message that produced it. */
export interface SlotResult {
  slot: number;
  id: string;
  result: LegacyResult;
}

/** Slots of history kept behind the latest snapshot when nothing else is configured. */
export const DEFAULT_RETAIN_SLOTS = 10_000;

function notFound(message: string): AoError {
  return new AoError(message, { status: 404, code: 'ERR_NOT_FOUND' });
}

function badRequest(message: string): AoError {
  return new AoError(message, { status: 400, code: 'ERR_BAD_REQUEST' });
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


export interface RegistryOptions {
  store: Store;
  snapshotInterval?: number;
  /** Slots of history kept behind the latest snapshot (default 10,000; Infinity keeps all). */
  retainSlots?: number;
  /** Bytes of process state held in memory before idle processes are evicted (default: no limit). */
  memoryBudget?: number;
  /** How processes compute (serve/compute.ts; delegation: remote.ts). */
  engineFactory: EngineFactory;
  /** With a shared store: who holds which process. */
  leases?: LeaseManager;
}

/** Every module and process of one node. */
export class ProcessRegistry {
  readonly modules = new Map<string, ModuleRecord>();
  /** The processes this node holds. */
  readonly processes = new Map<string, ServedProcess>();
  /** Records of processes held elsewhere, as far as this node has read them. */
  private readonly records = new Map<string, ProcessRecord>();
  readonly store: Store;
  readonly leases?: LeaseManager;
  readonly memoryBudget: number;
  evictions = 0;
  private readonly snapshotInterval: number;
  private readonly retainSlots: number;
  private readonly engineFactory: EngineFactory;
  private readonly opening = new Map<string, Promise<ServedProcess | undefined>>();
  private evicting?: Promise<void>;
  private nextPass?: Promise<void>;
  private evictTimer?: NodeJS.Timeout;

  constructor(opts: RegistryOptions) {
    this.store = opts.store;
    this.leases = opts.leases;
    this.engineFactory = opts.engineFactory;
    this.snapshotInterval = opts.snapshotInterval ?? DEFAULT_SNAPSHOT_INTERVAL;
    this.retainSlots = opts.retainSlots ?? DEFAULT_RETAIN_SLOTS;
    this.memoryBudget = opts.memoryBudget ?? Infinity;
    if (!Number.isSafeInteger(this.snapshotInterval) || this.snapshotInterval < 1) throw badRequest('snapshotInterval must be a positive integer');
    if (!(this.retainSlots === Infinity || (Number.isSafeInteger(this.retainSlots) && this.retainSlots >= 0))) throw badRequest('retainSlots must be a non-negative integer or Infinity');
    if (!(this.memoryBudget > 0)) throw badRequest('memoryBudget must be a positive number of bytes');
  }

  /** Reads the modules; with a store of its own, every process too, and starts recomputing. */
  async open(): Promise<void> {
    for (const m of await this.store.listModules()) this.modules.set(m.id, m);
    if (!this.leases) for (const rec of await this.store.listProcesses()) await this.startProcess(rec);
    if (Number.isFinite(this.memoryBudget)) {
      this.evictTimer = setInterval(() => void this.enforceBudget(), 1000);
      this.evictTimer.unref();
      await this.enforceBudget();
    }
  }

  private async startProcess(rec: ProcessRecord): Promise<ServedProcess> {
    const mod = await this.moduleOf(rec.module);
    if (!mod) throw notFound(`module ${rec.module} of process ${rec.id} is not in the store`);
    const def: ProcessDefinition = { id: rec.id, kind: mod.kind, module: mod.id, moduleBytes: mod.bytes, owner: rec.owner, tags: rec.tags, ...(mod.item ? { moduleItem: mod.item } : {}) };
    const p = new ServedProcess(def, this.store.processLog(rec.id), { snapshotInterval: this.snapshotInterval, retainSlots: this.retainSlots }, this.engineFactory);
    try {
      await p.load(rec.spawn);
      await p.start();
    } catch (e) {
      await p.close().catch(() => undefined);
      throw e;
    }
    // Held once loaded: requests meanwhile wait in `hold`.
    this.processes.set(rec.id, p);
    this.records.delete(rec.id);
    return p;
  }

  /** A module, from memory or the store. */
  async moduleOf(id: string): Promise<ModuleRecord | undefined> {
    const known = this.modules.get(id);
    if (known) return known;
    const m = await this.store.getModule(id);
    if (m) this.modules.set(id, m);
    return m;
  }

  /** Stores a module (durably) under `id`. */
  async addModule(id: string, owner: string, tags: Tag[], bytes: Uint8Array, item?: Uint8Array): Promise<ModuleRecord> {
    const existing = this.modules.get(id);
    if (existing) return existing;
    const kind = moduleKind(tags);
    if (!kind) throw badRequest(`module ${id}: Module-Format '${tagValue(tags, 'Module-Format') ?? ''}' is neither a WASM AOS image nor Lua`);
    const rec: ModuleRecord = { id, owner, tags, kind, bytes, ...(item ? { item } : {}) };
    await this.store.putModule(rec);
    this.modules.set(id, rec);
    return rec;
  }

  /** Registers a process from its signed spawn item; resolves once durable. Idempotent. */
  async spawn(item: SignedItem): Promise<ServedProcess> {
    const moduleId = tagValue(item.tags, 'Module');
    if (!moduleId) throw badRequest("the process has no 'Module' tag");
    const spawn: Assignment = { slot: 0, timestamp: Date.now(), 'block-height': 0, message: legacyOf(item), raw: item.raw.toString('base64url') };
    return this.spawnRecord({ id: item.id, owner: item.owner, module: moduleId, tags: item.tags, spawn });
  }

  /**
   * Registers a process from its record (a verified spawn item, or the Process message a
   * HyperBEAM scheduler assigned at slot 0); resolves once durable. Idempotent.
   */
  async spawnRecord(rec: ProcessRecord): Promise<ServedProcess> {
    const existing = this.processes.get(rec.id) ?? (await this.opening.get(rec.id));
    if (existing) return existing;
    if (!rec.module) throw badRequest("the process has no 'Module' tag");
    if (!(await this.moduleOf(rec.module))) throw notFound(`module ${rec.module} is not known to this server (upload it first)`);
    if (!(await this.store.putProcess(rec))) {
      // Spawned before (here or on another node): hold it like any other stored process.
      const held = await this.hold(rec.id);
      if (held) return held;
      throw new AoError(`process ${rec.id} is held by another node`, { status: 409, code: 'ERR_NOT_OWNER' });
    }
    if (this.leases && (await this.leases.acquire(rec.id)) === undefined) {
      throw new AoError(`process ${rec.id} is held by another node`, { status: 409, code: 'ERR_NOT_OWNER' });
    }
    const p = await this.track(rec.id, this.startProcess(rec));
    void this.enforceBudget();
    return p!;
  }

  /**
   * Carries a process on from a checkpoint (checkpoint.ts) at slot N: its next message is N + 1.
   * A process this node has not seen starts there; one behind N drops what it computed and starts
   * there; one at N with the same hash chain is left as it is (`unchanged`), as is one past N
   * whose chain at N matches. Any other history conflicts (409): a checkpoint never rewrites
   * slots a process has already computed differently.
   */
  async restore(cp: Checkpoint): Promise<{ process: ServedProcess; outcome: 'restored' | 'unchanged' }> {
    const id = cp.process;
    const mod = await this.moduleOf(cp.module);
    if (!mod) throw notFound(`module ${cp.module} of process ${id} is not known to this server (upload it first)`);
    let state: Uint8Array;
    try {
      state = adoptState(mod.kind, cp.state);
    } catch (e) {
      throw new AoError(`the checkpoint's state is not a ${mod.kind} state: ${(e as Error).message}`, { status: 400, code: 'ERR_BAD_CHECKPOINT' });
    }
    let p = await this.hold(id);
    if (!p && (await this.store.getProcess(id))) throw new AoError(`process ${id} is held by another node`, { status: 409, code: 'ERR_NOT_OWNER' });
    if (p) {
      const last = p.nextSlot - 1;
      if (last >= cp.slot) {
        if (p.assignments[cp.slot] && p.hashChainOf(cp.slot) === cp.hashChain) return { process: p, outcome: 'unchanged' };
        throw new AoError(`process ${id} is at slot ${last} with another history than the checkpoint's at slot ${cp.slot} (hash chain ${p.assignments[cp.slot] ? p.hashChainOf(cp.slot) : 'unknown'} here, ${cp.hashChain} in the checkpoint)`, {
          status: 409,
          code: 'ERR_CONFLICT',
        });
      }
    } else {
      if (!(await this.store.putProcess(cp.record))) throw new AoError(`process ${id} is held by another node`, { status: 409, code: 'ERR_NOT_OWNER' });
      if (this.leases && (await this.leases.acquire(id)) === undefined) throw new AoError(`process ${id} is held by another node`, { status: 409, code: 'ERR_NOT_OWNER' });
    }
    const rec = p ? { id, owner: p.def.owner, module: p.def.module, tags: p.def.tags, spawn: p.assignments[0] } : cp.record;
    const opening = (async () => {
      const behind = p ? [...p.assignments] : [];
      if (p) {
        this.processes.delete(id);
        await p.close();
      }
      const log = this.store.processLog(id);
      try {
        await log.appendAssignment(restoredStub(cp.slot, cp.timestamp, cp.blockHeight, cp.message || `checkpoint-${cp.slot}`, cp.hashChain));
        await log.writeSnapshot(cp.slot, state);
        // What a process behind the checkpoint had computed is history the checkpoint replaces.
        if (behind.length > 1) await log.compact(cp.slot, stubsOf(behind, 1, cp.slot));
      } finally {
        await log.close();
      }
      return this.startProcess(rec);
    })();
    p = await this.track(id, opening);
    void this.enforceBudget();
    return { process: p!, outcome: 'restored' };
  }

  /** Remembers a process being opened, so that concurrent requests for it wait for that one. */
  private track(id: string, opening: Promise<ServedProcess | undefined>): Promise<ServedProcess | undefined> {
    const tracked = opening.finally(() => {
      if (this.opening.get(id) === tracked) this.opening.delete(id);
    });
    this.opening.set(id, tracked);
    return tracked;
  }

  /**
   * The process `id` if this node holds it or can take it (its lease is free or lapsed): loaded
   * from the store, its unfinished messages computed. Undefined when another node holds it or it
   * does not exist.
   */
  hold(id: string): Promise<ServedProcess | undefined> {
    const held = this.processes.get(id);
    if (held) return Promise.resolve(held);
    const inFlight = this.opening.get(id);
    if (inFlight) return inFlight;
    if (!this.leases) return Promise.resolve(undefined);
    return this.track(
      id,
      (async () => {
        const rec = await this.store.getProcess(id);
        if (!rec) return undefined;
        if ((await this.leases!.acquire(id)) === undefined) {
          this.records.set(id, rec);
          return undefined;
        }
        try {
          return await this.startProcess(rec);
        } catch (e) {
          await this.leases!.release(id).catch(() => undefined);
          throw e;
        }
      })(),
    );
  }

  /** Drops a process whose lease another node took: its state here is no longer the truth. */
  async drop(id: string): Promise<void> {
    const p = this.processes.get(id);
    if (!p) return;
    this.processes.delete(id);
    p.fault ??= new AoError(`process ${id} moved to another node`, { status: 409, code: 'ERR_LEASE_LOST' });
    await p.close().catch(() => undefined);
  }

  /** Owner and tags of a process, held here or read from the store before (the gateway's answers). */
  recordOf(id: string): { owner: string; tags: Tag[] } | undefined {
    const p = this.processes.get(id);
    if (p) return { owner: p.def.owner, tags: p.def.tags };
    return this.records.get(id);
  }

  /** Reads records of processes held elsewhere into `recordOf`'s cache. */
  async prefetch(ids: string[]): Promise<void> {
    for (const id of ids) {
      if (this.processes.has(id) || this.records.has(id)) continue;
      if (await this.moduleOf(id)) continue;
      const rec = await this.store.getProcess(id);
      if (rec) this.records.set(id, rec);
    }
  }

  /** Bytes of state held in memory, as last measured (each resident process's latest snapshot). */
  residentBytes(): number {
    let n = 0;
    for (const p of this.processes.values()) if (p.resident && p.stateBytes > 0) n += p.stateBytes;
    return n;
  }

  /**
   * Evicts idle processes, least recently used first, until the states held fit the budget. A
   * call while a pass runs gets the next pass (which sees what changed meanwhile).
   */
  enforceBudget(): Promise<void> {
    if (!Number.isFinite(this.memoryBudget)) return Promise.resolve();
    if (this.nextPass) return this.nextPass;
    const pass: Promise<void> = (this.evicting ?? Promise.resolve()).then(async () => {
      if (this.nextPass === pass) this.nextPass = undefined;
      try {
        await this.evictionPass();
      } catch (e) {
        process.stderr.write(`hb-runtimes serve: eviction failed: ${(e as Error).message}\n`);
      } finally {
        if (this.evicting === pass) this.evicting = undefined;
      }
    });
    this.nextPass = pass;
    this.evicting = pass;
    return pass;
  }

  private async evictionPass(): Promise<void> {
    // Measure what is not measured yet (a checkpoint: eviction needs one anyway).
    for (const p of this.processes.values()) if (p.resident && p.stateBytes < 0 && p.idle) await p.checkpoint();
    const lru = [...this.processes.values()].filter((p) => p.resident).sort((a, b) => a.lastUsed - b.lastUsed);
    let total = this.residentBytes();
    let evicted = 0;
    for (const p of lru) {
      if (total <= this.memoryBudget) break;
      const bytes = Math.max(0, p.stateBytes);
      if (await p.evict()) {
        total -= bytes;
        evicted++;
      }
    }
    this.evictions += evicted;
    // The VMs are freed; without this their pages stay in the allocator's heaps.
    if (evicted > 0) native.trimMemory();
  }

  /** A scheduled message by ID, from whichever held process holds it. */
  findMessage(id: string): Assignment | undefined {
    for (const p of this.processes.values()) {
      const slot = p.slotOf(id);
      if (slot !== undefined && !p.assignments[slot].compacted) return p.assignments[slot];
    }
    return undefined;
  }

  get(id: string): ServedProcess {
    const p = this.processes.get(id);
    if (!p) throw notFound(`process ${id} is not held by this server`);
    return p;
  }

  async close(): Promise<void> {
    clearInterval(this.evictTimer);
    await this.evicting;
    for (const p of this.processes.values()) await p.close();
  }
}
