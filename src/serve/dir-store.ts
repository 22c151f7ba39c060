/**
 * The directory store, `hb-runtimes serve`'s embedded default (one node). Layout:
 *
 * ```
 * wallet.json                      the server's JWK when generated (mode 0600)
 * modules/<id>.json                module metadata (tags, owner); <id>.bin its bytes; <id>.item its signed item
 * processes/<pid>/process.json     the process: its spawn item (slot 0) and assignment
 * processes/<pid>/log.wal          assignments of slots 1.. (append-only, group-committed, fsynced)
 * processes/<pid>/results.wal      computed results, by slot (append-only)
 * processes/<pid>/snapshot.bin     the latest state snapshot: i32 slot, then the bytes (replaced atomically)
 * ```
 *
 * Compaction rewrites both WALs atomically (a new file renamed over the old one), with stubs in
 * place of the compacted assignments and without the compacted results.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Assignment, LegacyResult } from './engine';
import type { CompactedAssignment, ModuleRecord, ProcessLog, ProcessRecord, StoredAssignment, Store } from './store';
import { ensureDir, readWal, Wal, walRecord, writeFileAtomic, writeFileAtomicAsync } from './wal';

class DirProcessLog implements ProcessLog {
  private log: Wal;
  private results: Wal;

  constructor(private readonly dir: string) {
    this.log = new Wal(path.join(dir, 'log.wal'), true);
    this.results = new Wal(path.join(dir, 'results.wal'), false);
  }

  async readAssignments(): Promise<StoredAssignment[]> {
    return readWal(path.join(this.dir, 'log.wal')).map((rec) => JSON.parse(rec.toString('utf8')) as StoredAssignment);
  }

  async readResults(): Promise<Array<{ slot: number; result: LegacyResult }>> {
    return readWal(path.join(this.dir, 'results.wal')).map((rec) => JSON.parse(rec.toString('utf8')) as { slot: number; result: LegacyResult });
  }

  appendAssignment(a: Assignment): Promise<void> {
    return this.log.append(Buffer.from(JSON.stringify(a)));
  }

  appendResult(slot: number, result: LegacyResult): Promise<void> {
    return this.results.append(Buffer.from(JSON.stringify({ slot, result })));
  }

  syncResults(): Promise<void> {
    return this.results.sync();
  }

  async readSnapshot(): Promise<{ slot: number; bytes: Uint8Array } | undefined> {
    const file = path.join(this.dir, 'snapshot.bin');
    if (!fs.existsSync(file)) return undefined;
    const b = fs.readFileSync(file);
    return { slot: b.readInt32LE(0), bytes: b.subarray(4) };
  }

  async writeSnapshot(slot: number, bytes: Uint8Array): Promise<void> {
    const head = Buffer.alloc(4);
    head.writeInt32LE(slot, 0);
    await writeFileAtomicAsync(path.join(this.dir, 'snapshot.bin'), Buffer.concat([head, bytes]));
  }

  async compact(upTo: number, stubs: CompactedAssignment[]): Promise<void> {
    const bySlot = new Map(stubs.map((s) => [s.slot, s]));
    const assignments = (await this.readAssignments()).map((a) => bySlot.get(a.slot) ?? a);
    const results = (await this.readResults()).filter((r) => r.slot === 0 || r.slot > upTo);
    await this.log.close();
    await this.results.close();
    rewriteWal(path.join(this.dir, 'log.wal'), assignments.map((a) => Buffer.from(JSON.stringify(a))));
    rewriteWal(path.join(this.dir, 'results.wal'), results.map((r) => Buffer.from(JSON.stringify(r))));
    this.log = new Wal(path.join(this.dir, 'log.wal'), true);
    this.results = new Wal(path.join(this.dir, 'results.wal'), false);
  }

  async close(): Promise<void> {
    await this.log.close();
    await this.results.close();
  }
}

/** Replaces a WAL by one holding `records` (written beside it, fsynced, renamed over it). */
function rewriteWal(file: string, records: Buffer[]): void {
  writeFileAtomic(file, Buffer.concat(records.map(walRecord)));
}

export class DirStore implements Store {
  readonly kind = 'dir' as const;
  readonly where: string;

  constructor(readonly dir: string) {
    this.dir = path.resolve(dir);
    this.where = this.dir;
    ensureDir(path.join(this.dir, 'modules'));
    ensureDir(path.join(this.dir, 'processes'));
  }

  private processDir(id: string): string {
    return path.join(this.dir, 'processes', id);
  }

  async listModules(): Promise<ModuleRecord[]> {
    const out: ModuleRecord[] = [];
    for (const f of fs.readdirSync(path.join(this.dir, 'modules'))) {
      if (!f.endsWith('.json') || f.startsWith('.')) continue;
      const m = await this.getModule(f.slice(0, -'.json'.length));
      if (m) out.push(m);
    }
    return out;
  }

  async getModule(id: string): Promise<ModuleRecord | undefined> {
    const mdir = path.join(this.dir, 'modules');
    const metaFile = path.join(mdir, `${id}.json`);
    if (!fs.existsSync(metaFile)) return undefined;
    const meta = JSON.parse(fs.readFileSync(metaFile, 'utf8')) as Omit<ModuleRecord, 'bytes'>;
    const itemFile = path.join(mdir, `${meta.id}.item`);
    const item = fs.existsSync(itemFile) ? fs.readFileSync(itemFile) : undefined;
    return { ...meta, bytes: fs.readFileSync(path.join(mdir, `${meta.id}.bin`)), ...(item ? { item } : {}) };
  }

  async putModule(m: ModuleRecord): Promise<void> {
    const mdir = path.join(this.dir, 'modules');
    writeFileAtomic(path.join(mdir, `${m.id}.bin`), m.bytes);
    if (m.item) writeFileAtomic(path.join(mdir, `${m.id}.item`), m.item);
    // The metadata last: a module is in the store once its .json is.
    writeFileAtomic(path.join(mdir, `${m.id}.json`), JSON.stringify({ id: m.id, owner: m.owner, tags: m.tags, kind: m.kind }));
  }

  async listProcesses(): Promise<ProcessRecord[]> {
    const out: ProcessRecord[] = [];
    for (const id of fs.readdirSync(path.join(this.dir, 'processes'))) {
      const p = await this.getProcess(id);
      if (p) out.push(p);
    }
    return out;
  }

  async getProcess(id: string): Promise<ProcessRecord | undefined> {
    const file = path.join(this.processDir(id), 'process.json');
    if (!fs.existsSync(file)) return undefined;
    return JSON.parse(fs.readFileSync(file, 'utf8')) as ProcessRecord;
  }

  async putProcess(p: ProcessRecord): Promise<boolean> {
    const file = path.join(this.processDir(p.id), 'process.json');
    if (fs.existsSync(file)) return false;
    writeFileAtomic(file, JSON.stringify(p));
    return true;
  }

  processLog(id: string): ProcessLog {
    return new DirProcessLog(this.processDir(id));
  }

  async close(): Promise<void> {}
}
