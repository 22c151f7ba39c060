/**
 * Where `hb-runtimes serve` keeps what must survive it: modules, processes, each process's
 * schedule (assignments), its results and its latest snapshot. Two stores implement it:
 *
 * - a directory (dir-store.ts, the embedded default): one node, files and WALs;
 * - PostgreSQL (pg-store.ts, `--store postgres://…`): several nodes on one database, each process
 *   owned by one node at a time through a lease (leases.ts).
 *
 * Durability rule, for both: `appendAssignment` resolves only once the assignment is durable (a
 * message is acknowledged after that); `appendResult` need not be durable until `syncResults`,
 * which runs before a snapshot that covers those results is written.
 *
 * Compaction: once a snapshot covers slot S, the bodies of assignments and the results of slots
 * at or below `S - retain` are dropped. What stays of such a slot is a stub (slot, timestamp,
 * block height, message ID), so a message sent again is still recognised as scheduled.
 */
import type { Assignment, EngineKind, LegacyResult } from './engine';
import type { Tag } from './signing';

export interface ModuleRecord {
  id: string;
  owner: string;
  tags: Tag[];
  kind: EngineKind;
  bytes: Uint8Array;
  /** The signed item it was registered with, if any. */
  item?: Uint8Array;
}

/** A process as stored: its spawn item (slot 0) and assignment. */
export interface ProcessRecord {
  id: string;
  owner: string;
  module: string;
  tags: Tag[];
  spawn: Assignment;
}

/** What remains of a compacted assignment. */
export interface CompactedAssignment {
  slot: number;
  timestamp: number;
  'block-height': number;
  id: string;
  'hash-chain'?: string;
  compacted: true;
}

export type StoredAssignment = Assignment | CompactedAssignment;

export function isCompacted(a: StoredAssignment | undefined): a is CompactedAssignment {
  return a !== undefined && (a as CompactedAssignment).compacted === true;
}

/** One process's log, results and snapshot. */
export interface ProcessLog {
  /** Assignments of slots 1.. in order (compacted ones as stubs). */
  readAssignments(): Promise<StoredAssignment[]>;
  readResults(): Promise<Array<{ slot: number; result: LegacyResult }>>;
  /** Resolves once `a` is durable. The PostgreSQL store refuses it (409 ERR_LEASE_LOST) without the lease. */
  appendAssignment(a: Assignment): Promise<void>;
  appendResult(slot: number, result: LegacyResult): Promise<void>;
  /** Makes every appended result durable. */
  syncResults(): Promise<void>;
  readSnapshot(): Promise<{ slot: number; bytes: Uint8Array } | undefined>;
  writeSnapshot(slot: number, bytes: Uint8Array): Promise<void>;
  /** Drops the bodies of assignments and the results of slots ≤ `upTo` (see above). */
  compact(upTo: number, stubs: CompactedAssignment[]): Promise<void>;
  close(): Promise<void>;
}

export interface Store {
  readonly kind: 'dir' | 'postgres';
  /** A short description for logs (a path, or a URL without its password). */
  readonly where: string;
  listModules(): Promise<ModuleRecord[]>;
  getModule(id: string): Promise<ModuleRecord | undefined>;
  putModule(m: ModuleRecord): Promise<void>;
  /** Every process in the store. */
  listProcesses(): Promise<ProcessRecord[]>;
  getProcess(id: string): Promise<ProcessRecord | undefined>;
  /** Stores a process record; false when one with that ID was there already. */
  putProcess(p: ProcessRecord): Promise<boolean>;
  processLog(id: string): ProcessLog;
  close(): Promise<void>;
}

/** Assignments to stub when compacting up to `upTo`. */
export function stubsOf(assignments: StoredAssignment[], from: number, upTo: number): CompactedAssignment[] {
  const out: CompactedAssignment[] = [];
  for (let s = Math.max(1, from); s <= upTo; s++) {
    const a = assignments[s];
    if (!a || isCompacted(a)) continue;
    out.push({ slot: a.slot, timestamp: a.timestamp, 'block-height': a['block-height'], id: a.message.Id, ...(a['hash-chain'] ? { 'hash-chain': a['hash-chain'] } : {}), compacted: true });
  }
  return out;
}

/**
 * The stub a process restored from a checkpoint at `slot` starts its log with (registry.ts): the
 * slot's metadata, written as an assignment (so both stores take it) that reads back as compacted.
 */
export function restoredStub(slot: number, timestamp: number, blockHeight: number, id: string, hashChain: string): Assignment & CompactedAssignment {
  return {
    slot,
    timestamp,
    'block-height': blockHeight,
    id,
    'hash-chain': hashChain,
    compacted: true,
    message: { Id: id, Owner: '', From: '', Target: '', Anchor: '', Data: '', Tags: [] },
  };
}

/** The store a `--store` value names: a `postgres://` (or `postgresql://`) URL, else a directory. */
export function isPostgresUrl(spec: string): boolean {
  return /^postgres(ql)?:\/\//i.test(spec);
}
