/**
 * serve as HyperBEAM's compute unit: the calls `delegated-compute@1.0` (and `genesis-wasm@1.0`
 * around it) make, with request bodies shaped as HyperBEAM's sources build them:
 * `dev_scheduler_formats:assignments_to_aos2/4` (the AOS-2 page of `POST /result/:slot`),
 * `dev_json_iface:message_to_json_struct/2` (messages, dry runs: `Data: null` when not
 * printable), `dev_scheduler_server` (assignment keys, the hash chain), `dev_delegated_compute:
 * snapshot/3` (`POST /snapshot/:pid` with `{}`), and the ao CU's HyperBEAM SU client
 * (`GET /~scheduler@1.0/schedule?target=&from+Integer=&to+Integer=&limit=&accept=application/aos-2`).
 */
import { createHash } from 'node:crypto';
import * as zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataItem } from '@dha-team/arbundles';
import { startServer, type ServeHandle } from '../../src/serve/app';
import { verifyItem } from '../../src/serve/signing';
import { describeShared, sharedFixture } from '../helpers/fixtures';
import { tempStore, testWallet, uploadModule } from '../helpers/serve';
import { aos2, compute, COUNTER, hbProcess, id, postJson, struct, type Slot, type Tag } from '../helpers/hyperbeam';

describe('serve as the CU of a HyperBEAM node (delegated-compute@1.0)', () => {
  let a: ServeHandle;
  let moduleId: string;
  let proc: { pid: string; slots: Slot[] };
  beforeAll(async () => {
    a = await startServer({ store: tempStore(), jwk: testWallet('server').jwk, workers: 1 });
    moduleId = await uploadModule(a.url, Buffer.from(COUNTER), 'application/lua');
    proc = hbProcess(moduleId, 'a', ['x', 'y', 'z']);
  }, 60_000);
  afterAll(async () => a?.close());

  it('answers GET /status, which genesis-wasm@1.0 polls before it sends anything', async () => {
    const res = await fetch(`${a.url}/status`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'ok', name: 'hb-runtimes', address: a.signer.address });
  });

  it('spawns from the Process message at slot 0 and computes each slot of AOS-2 bodies', async () => {
    const { pid, slots } = proc;
    const r0 = await compute(a.url, pid, slots[0]);
    expect(r0.status).toBe(200);
    expect(r0.body.Output).toEqual({ data: '1:' });
    expect((await compute(a.url, pid, slots[1])).body.Output).toEqual({ data: '2:x' });
    expect((await compute(a.url, pid, slots[2])).body).toEqual({ Output: { data: '3:y' }, Messages: [], Spawns: [], Assignments: [], GasUsed: 0 });
    // Sent again (a retry): the same result, nothing computed twice.
    expect((await compute(a.url, pid, slots[2])).body.Output).toEqual({ data: '3:y' });
    const p = a.registry.get(pid);
    expect(p.def.tags).toContainEqual({ name: 'Execution-Device', value: 'genesis-wasm@1.0' });
    // HyperBEAM's timestamps, heights and hash chain are what the schedule holds.
    expect(p.assignments.map((x) => [x.timestamp, x['block-height'], p.hashChainOf(x.slot)])).toEqual(slots.slice(0, 3).map((s) => [s.timestamp, s.height, s.chain]));
  });

  it('refuses another message at a computed slot, a gap, a body without the slot, and bad tags', async () => {
    const { pid, slots } = proc;
    const other = { ...slots[2], message: { ...slots[2].message, Id: id('another') } };
    const conflict = await compute(a.url, pid, other);
    expect(conflict.status).toBe(409);
    expect(conflict.body.code).toBe('ERR_CONFLICT');
    const gap = await compute(a.url, pid, { ...slots[3], slot: 9 });
    expect(gap.status).toBe(409);
    expect(gap.body.error).toBe(`slot 9 cannot be assigned: the next slot of process ${pid} is 3`);
    const wrong = await postJson(`${a.url}/result/3?process-id=${pid}`, aos2(pid, slots[1]));
    expect(wrong.status).toBe(400);
    expect(wrong.body.error).toBe('the AOS-2 body has no assignment for slot 3 (it holds slots 1)');
    const badTag = aos2(pid, slots[3]);
    (badTag.edges[0].node.assignment.Tags as Tag[])[1].value = 'high';
    const bad = await postJson(`${a.url}/result/3?process-id=${pid}`, badTag);
    expect(bad.status).toBe(400);
    expect(bad.body.error).toBe("edge 0: assignment: 'Block-Height' must be a non-negative integer, got 'high'");
    expect(a.registry.get(pid).nextSlot).toBe(3);
  });

  it('reads the schedule as AOS-2 JSON (the ao CU\'s HyperBEAM SU client and accept=application/aos-2)', async () => {
    const { pid, slots } = proc;
    const res = await fetch(`${a.url}/~scheduler@1.0/schedule?target=${pid}&from+Integer=1&to+Integer=2&limit=1&accept=application/aos-2`);
    expect(res.status).toBe(200);
    const page = (await res.json()) as any;
    expect(page.page_info).toMatchObject({ process: pid, has_next_page: true, 'block-height': String(slots[2].height) });
    expect(page.edges).toHaveLength(1);
    expect(page.edges[0].cursor).toBe(1);
    expect(page.edges[0].node.message).toEqual({ ...slots[1].message, Signature: '', PublicKey: '' });
    const tags = Object.fromEntries((page.edges[0].node.assignment.Tags as Tag[]).map((t) => [t.name, t.value]));
    expect(tags).toMatchObject({ Process: pid, Slot: '1', Nonce: '1', Timestamp: String(slots[1].timestamp), 'Block-Height': String(slots[1].height), 'Hash-Chain': slots[1].chain, Message: slots[1].message.Id });
    // The legacy SU path with the Accept header: slots, the whole schedule.
    const all = (await fetch(`${a.url}/${pid}`, { headers: { accept: 'application/aos-2' } }).then((r) => r.json())) as any;
    expect(all.edges.map((e: any) => e.cursor)).toEqual([0, 1, 2]);
    expect(all.page_info.has_next_page).toBe(false);
    const plain = await fetch(`${a.url}/~scheduler@1.0/schedule?target=${pid}`);
    expect(plain.status).toBe(406);
    expect(((await plain.json()) as any).code).toBe('ERR_NOT_ACCEPTABLE');
  });

  it('takes HyperBEAM\'s dry-run struct (Data null: not printable) on a copy of the state', async () => {
    const { pid } = proc;
    const body = struct(id('dry'), [{ name: 'Action', value: 'Eval' }], null, pid);
    const d1 = await postJson(`${a.url}/dry-run?process-id=${pid}`, body);
    expect(d1.status).toBe(200);
    expect(d1.body.Output).toEqual({ data: '4:' });
    expect((await postJson(`${a.url}/dry-run?process-id=${pid}`, body)).body.Output).toEqual({ data: '4:' });
  });
});

describe('checkpoints: POST /snapshot/:process, then POST /state on a fresh node', () => {
  let a: ServeHandle;
  let b: ServeHandle;
  let bStore: string;
  let moduleId: string;
  let proc: { pid: string; slots: Slot[] };
  let snapshot: { raw: Buffer; headers: Headers };
  beforeAll(async () => {
    a = await startServer({ store: tempStore(), jwk: testWallet('server').jwk, workers: 1 });
    bStore = tempStore();
    b = await startServer({ store: bStore, jwk: testWallet('server-b').jwk, workers: 1, checkpointAuthorities: [a.signer.address] });
    moduleId = await uploadModule(a.url, Buffer.from(COUNTER), 'application/lua');
    expect(await uploadModule(b.url, Buffer.from(COUNTER), 'application/lua')).toBe(moduleId);
    proc = hbProcess(moduleId, 'cp', ['p', 'q', 'r', 's']);
    for (const s of proc.slots.slice(0, 3)) expect((await compute(a.url, proc.pid, s)).status).toBe(200);
    const res = await fetch(`${a.url}/snapshot/${proc.pid}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(res.status).toBe(200);
    snapshot = { raw: Buffer.from(await res.arrayBuffer()), headers: res.headers };
  }, 60_000);
  afterAll(async () => {
    await a?.close();
    await b?.close();
  });

  it('answers a signed Checkpoint item with the legacy CU\'s tags, also as headers', async () => {
    expect(snapshot.headers.get('content-type')).toBe('application/ans104');
    const item = await verifyItem(snapshot.raw);
    expect(item.owner).toBe(a.signer.address);
    const tags = Object.fromEntries(item.tags.map((t) => [t.name, t.value]));
    const s2 = proc.slots[2];
    expect(tags).toEqual({
      'Data-Protocol': 'ao',
      Variant: 'ao.TN.1',
      Type: 'Checkpoint',
      Process: proc.pid,
      Module: moduleId,
      Epoch: '0',
      Nonce: '2',
      Message: s2.message.Id,
      Timestamp: String(s2.timestamp),
      'Block-Height': String(s2.height),
      'Hash-Chain': s2.chain,
      'SHA-256': createHash('sha256').update(zlib.gunzipSync(item.data)).digest('base64url'),
      'Content-Type': 'application/octet-stream',
      'Content-Encoding': 'gzip',
    });
    for (const h of ['process', 'module', 'nonce', 'timestamp', 'block-height', 'hash-chain']) expect(snapshot.headers.get(h)).toBe(tags[h.replace(/(^|-)([a-z])/g, (_m, d: string, c: string) => d + c.toUpperCase()).replace('Block-height', 'Block-Height')]);
    expect(snapshot.headers.get('id')).toBe(item.id);
  });

  it('carries the process on from the checkpoint on a node that never saw it, with the same results', async () => {
    const res = await fetch(`${b.url}/state`, { method: 'POST', headers: { 'content-type': 'application/ans104' }, body: snapshot.raw });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ process: proc.pid, slot: 2, outcome: 'restored', 'next-slot': 3 });
    const onA = await compute(a.url, proc.pid, proc.slots[3]);
    const onB = await compute(b.url, proc.pid, proc.slots[3]);
    expect(onA.body.Output).toEqual({ data: '4:r' });
    expect(onB.body).toEqual(onA.body);
    // History before the checkpoint is not on B; the slot's own stub keeps its chain.
    const early = await fetch(`${b.url}/result/1?process-id=${proc.pid}`);
    expect(early.status).toBe(410);
    expect(((await early.json()) as any).error).toBe(`slot 1 of process ${proc.pid} precedes the checkpoint (slot 2) it was restored from: its history is not here`);
    expect(b.registry.get(proc.pid).hashChainOf(3)).toBe(proc.slots[3].chain);
    // Loading it again changes nothing.
    const again = await fetch(`${b.url}/state`, { method: 'POST', headers: { 'content-type': 'application/ans104' }, body: snapshot.raw });
    expect(((await again.json()) as any).outcome).toBe('unchanged');
  });

  it('survives a restart of the node it was restored on', async () => {
    await b.close();
    b = await startServer({ store: bStore, jwk: testWallet('server-b').jwk, workers: 1, checkpointAuthorities: [a.signer.address] });
    const p = b.registry.get(proc.pid);
    expect([p.nextSlot, p.restoredAt, p.hashChainOf(3)]).toEqual([4, 2, proc.slots[3].chain]);
    expect((await compute(b.url, proc.pid, proc.slots[4])).body.Output).toEqual({ data: '5:s' });
  });

  it('loads the header form (tags as headers, gzipped data as body), and refuses tampered, unsigned and untrusted ones', async () => {
    const c = await startServer({ store: tempStore(), jwk: testWallet('server-c').jwk, workers: 0, checkpointAuthorities: [a.signer.address] });
    const d = await startServer({ store: tempStore(), jwk: testWallet('server-d').jwk, workers: 0 });
    try {
      await uploadModule(c.url, Buffer.from(COUNTER), 'application/lua');
      await uploadModule(d.url, Buffer.from(COUNTER), 'application/lua');
      const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
      for (const h of ['process', 'module', 'epoch', 'nonce', 'message', 'timestamp', 'block-height', 'hash-chain', 'sha-256', 'signature', 'owner']) headers[h] = snapshot.headers.get(h)!;
      const data = Buffer.from(new DataItem(snapshot.raw).rawData);
      const post = (url: string, h: Record<string, string>) => fetch(`${url}/state`, { method: 'POST', headers: h, body: data }).then(async (r) => ({ status: r.status, body: (await r.json()) as any }));
      const tampered = await post(c.url, { ...headers, nonce: '1' });
      expect([tampered.status, tampered.body.error]).toEqual([401, 'the data item signature does not verify']);
      const { signature: _s, ...unsigned } = headers;
      const u = await post(c.url, unsigned);
      expect(u.status).toBe(401);
      expect(u.body.error).toMatch(/^a checkpoint must be signed/);
      const untrusted = await post(d.url, headers);
      expect([untrusted.status, untrusted.body.code]).toEqual([403, 'ERR_UNTRUSTED']);
      expect(d.registry.processes.size).toBe(0);
      const ok = await post(c.url, headers);
      expect([ok.status, ok.body.outcome, ok.body['next-slot']]).toEqual([200, 'restored', 3]);
      expect((await compute(c.url, proc.pid, proc.slots[3])).body.Output).toEqual({ data: '4:r' });
    } finally {
      await c.close();
      await d.close();
    }
  });

  it('bounds POST /state by --body-limit like any route (the body is buffered before its signature is checked)', async () => {
    const small = await startServer({ store: tempStore(), jwk: testWallet('server-c').jwk, workers: 0, bodyLimit: 1024, checkpointAuthorities: [a.signer.address] });
    try {
      expect(snapshot.raw.length).toBeGreaterThan(1024);
      const res = await fetch(`${small.url}/state`, { method: 'POST', headers: { 'content-type': 'application/ans104' }, body: snapshot.raw });
      expect(res.status).toBe(413);
      expect(((await res.json()) as any).code).toBe('FST_ERR_CTP_BODY_TOO_LARGE');
      expect(small.registry.processes.size).toBe(0);
    } finally {
      await small.close();
    }
  });

  it('refuses a checkpoint against another history of the process', async () => {
    // A process with the same ID but other messages after the spawn: the chain at slot 2 differs.
    const fork = hbProcess(moduleId, 'cp', ['p', 'other'], 'fork');
    const e = await startServer({ store: tempStore(), jwk: testWallet('server-c').jwk, workers: 0, checkpointAuthorities: [a.signer.address] });
    try {
      await uploadModule(e.url, Buffer.from(COUNTER), 'application/lua');
      for (const s of fork.slots) expect((await compute(e.url, fork.pid, s)).status).toBe(200);
      const res = await fetch(`${e.url}/state`, { method: 'POST', headers: { 'content-type': 'application/ans104' }, body: snapshot.raw });
      expect(res.status).toBe(409);
      expect(((await res.json()) as any).error).toBe(
        `process ${proc.pid} is at slot 2 with another history than the checkpoint's at slot 2 (hash chain ${fork.slots[2].chain} here, ${proc.slots[2].chain} in the checkpoint)`,
      );
    } finally {
      await e.close();
    }
  });
});

describeShared('HyperBEAM delegated compute of the AOS WASM image HyperBEAM tests with (aos-2-pure-xs.wasm)', () => {
  let a: ServeHandle;
  let b: ServeHandle;
  beforeAll(async () => {
    a = await startServer({ store: tempStore(), jwk: testWallet('server').jwk, workers: 1 });
    b = await startServer({ store: tempStore(), jwk: testWallet('server-b').jwk, workers: 1, checkpointAuthorities: [a.signer.address] });
  }, 60_000);
  afterAll(async () => {
    await a?.close();
    await b?.close();
  });

  it('computes Evals (genesis-wasm\'s spawn_and_execute_slot shape), checkpoints and carries on elsewhere', async () => {
    const wasm = sharedFixture('aos-2-pure-xs.wasm');
    const moduleId = await uploadModule(a.url, wasm, 'application/wasm');
    await uploadModule(b.url, wasm, 'application/wasm');
    const { pid, slots } = hbProcess(moduleId, 'wasm', ['Number = 10', 'return 1+1', 'Number = Number * 2', 'return Number']);
    for (const s of slots.slice(0, 3)) expect((await compute(a.url, pid, s)).status).toBe(200);
    expect((await compute(a.url, pid, slots[2])).body.Output.data).toBe('2');
    const snap = await fetch(`${a.url}/snapshot/${pid}`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    const raw = Buffer.from(await snap.arrayBuffer());
    const loaded = await fetch(`${b.url}/state`, { method: 'POST', headers: { 'content-type': 'application/ans104' }, body: raw });
    expect(((await loaded.json()) as any).outcome).toBe('restored');
    for (const s of slots.slice(3)) {
      const [ra, rb] = [await compute(a.url, pid, s), await compute(b.url, pid, s)];
      expect(rb.body).toEqual(ra.body);
    }
    expect((await compute(b.url, pid, slots[4])).body.Output.data).toBe('20');
  }, 120_000);
});
