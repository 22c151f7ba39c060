/**
 * cu@1.0 and delegated-compute@1.0, through `resolve`, against real `hb-runtimes serve` servers on
 * loopback: a server delegating its processes to another, cu.push / cu.execute, commitments
 * verified against the CU's key, routing over several CUs, an injected client.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aosLuaProcess, aosWasmStack, rsaCommitment } from '../../src/devices';
import { ArweaveSigner, createData } from '@dha-team/arbundles';
import { cacheWrite, resolve, resolveStatus, type Message } from '../../src/ao';
import { cu, COMMIT_NOT_FOUND, type ComputeUnitClient } from '../../src/devices/cu';
import { startServer, type ServeHandle } from '../../src/serve/app';
import { addressOf } from '../../src/serve/signing';
import { describeShared, sharedFixture } from '../helpers/fixtures';
import { tempStore, testWallet, uploadModule } from '../helpers/serve';

const client = testWallet('client');
const signer = new ArweaveSigner(client.jwk as never);
const owner = addressOf(client.jwk.n);
type Tag = { name: string; value: string };

async function item(data: string, tags: Tag[], target?: string): Promise<{ id: string; raw: Buffer }> {
  const d = createData(data, signer, { tags, ...(target ? { target } : {}) });
  await d.sign(signer);
  return { id: d.id, raw: d.getRaw() };
}
const evalTags: Tag[] = [{ name: 'Data-Protocol', value: 'ao' }, { name: 'Type', value: 'Message' }, { name: 'Action', value: 'Eval' }];
const spawnTags = (module: string): Tag[] => [{ name: 'Data-Protocol', value: 'ao' }, { name: 'Type', value: 'Process' }, { name: 'Module', value: module }];

async function post(url: string, raw: Buffer): Promise<Record<string, unknown>> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: raw });
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, unknown>;
}

async function resultOf(url: string, pid: string, id: string): Promise<Record<string, any>> {
  return (await fetch(`${url}/result/${id}?process-id=${pid}`).then((r) => r.json())) as Record<string, any>;
}

const EVALS = ['X = 41', 'return X + 1', 'Send({Target = "X", Data = "hi"}); return 5', 'return X'];

describe('cu@1.0 routing', () => {
  it('routes a process by its ID: explicit routes first, then rendezvous hashing over the CUs', () => {
    const units = ['http://127.0.0.1:1', 'http://127.0.0.1:2', 'http://127.0.0.1:3'];
    const pids = Array.from({ length: 60 }, (_, i) => `process-${i}`);
    const chosen = pids.map((p) => cu.routeFor(p, { 'compute-units': units }));
    expect(new Set(chosen)).toEqual(new Set(units));
    expect(pids.map((p) => cu.routeFor(p, { 'compute-units': units }))).toEqual(chosen);
    // A fourth CU takes over some processes; no other process moves.
    const more = pids.map((p) => cu.routeFor(p, { 'compute-units': [...units, 'http://127.0.0.1:4'] }));
    more.forEach((u, i) => expect(u === chosen[i] || u === 'http://127.0.0.1:4').toBe(true));
    expect(more.filter((u) => u === 'http://127.0.0.1:4').length).toBeGreaterThan(0);
    expect(cu.routeFor('process-1', { routes: { 'process-1': 'http://127.0.0.1:9/' }, 'compute-units': units })).toBe('http://127.0.0.1:9');
    expect(() => cu.routeFor('p', {})).toThrow("no compute unit: give 'cu-url', 'compute-units' or 'routes'");
  });

  it('calls an injected ComputeUnitClient, and answers no_viable_computation without an assignment', async () => {
    const calls: unknown[] = [];
    const fake: ComputeUnitClient = {
      info: async () => ({}),
      compute: async (url, pid, slot, message) => (calls.push(['compute', url, pid, slot, message instanceof Uint8Array]), { Output: { data: 'pushed' }, Messages: [] }),
      result: async (url, pid, slot, commitTo) => (calls.push(['result', url, pid, slot, commitTo]), { status: 404 }),
      dryRun: async () => ({}),
    };
    const opts = { cuClient: fake } as never;
    const pushed = await resolve({ device: 'cu@1.0', body: new Uint8Array([1, 2]) }, { path: 'push', assignment: { process: 'P', slot: 3 }, 'cu-url': 'http://cu' }, opts);
    expect(pushed.results).toMatchObject({ data: 'pushed', outbox: {} });
    const miss = await resolve({ device: 'cu@1.0', process: 'P', slot: 2, 'commit-to': 'X' }, { path: 'execute', 'cu-url': 'http://cu' }, opts);
    expect(miss).toEqual({ status: 404, body: COMMIT_NOT_FOUND });
    expect(calls).toEqual([
      ['compute', 'http://cu', 'P', 3, true],
      ['result', 'http://cu', 'P', 2, 'X'],
    ]);
    const none = await resolveStatus({ device: 'cu@1.0' }, { path: 'execute', 'cu-url': 'http://cu' }, opts);
    expect(none.status).toBe('error');
    expect((none.value as { status: number; message: string }).status).toBe(400);
    expect((none.value as Error).message).toContain('no_viable_computation');
  });

  it('turns an unreachable CU into a 502 cu_error', async () => {
    const e = await resolve({ device: 'cu@1.0', process: 'P', slot: 0 }, { path: 'execute', 'cu-url': 'http://127.0.0.1:9' }).catch((x) => x);
    expect(e).toMatchObject({ status: 502, code: 'ERR_CU' });
    expect(e.message).toContain('compute unit http://127.0.0.1:9 unreachable');
  });
});

describeShared('cu@1.0 against hb-runtimes serve', () => {
  let cuB: ServeHandle;
  let nodeA: ServeHandle;
  let cuC: ServeHandle;
  beforeAll(async () => {
    cuB = await startServer({ store: tempStore(), jwk: testWallet('server').jwk });
    cuC = await startServer({ store: tempStore(), jwk: testWallet('server').jwk });
    nodeA = await startServer({ store: tempStore(), jwk: testWallet('node-a').jwk, delegate: [cuB.url] });
  });
  afterAll(async () => {
    await nodeA?.close();
    await cuB?.close();
    await cuC?.close();
  });

  it('a server delegating its process computes on the other: equal results on both, equal to a local run', async () => {
    const module = await uploadModule(nodeA.url, sharedFixture('aos-2-pure-xs.wasm'), 'application/wasm');
    const spawn = await item(' ', spawnTags(module));
    await post(nodeA.url, spawn.raw);
    const ids: string[] = [];
    for (const data of EVALS) {
      const m = await item(data, evalTags, spawn.id);
      await post(nodeA.url, m.raw);
      ids.push(m.id);
    }
    const onA = [];
    for (const id of ids) onA.push(await resultOf(nodeA.url, spawn.id, id));
    const onB = [];
    for (const id of ids) onB.push(await resultOf(cuB.url, spawn.id, id));
    expect(onA.map((r) => r.Output.data)).toEqual(['', '42', '5', '41']);
    expect(onB).toEqual(onA);
    // A holds no state of its own: the CU does.
    expect((await fetch(`${nodeA.url}/state/${spawn.id}`).then((r) => r.arrayBuffer())).byteLength).toBe(0);
    expect((await fetch(`${cuB.url}/state/${spawn.id}`).then((r) => r.arrayBuffer())).byteLength).toBeGreaterThan(12 << 20);

    // The same messages locally (the spawn item first, as both servers do).
    const image = await cacheWrite(sharedFixture('aos-2-pure-xs.wasm'));
    let proc: Message = await resolve(
      aosWasmStack({ image, owner, id: spawn.id, tags: spawnTags(module) }),
      'init',
    );
    proc = await resolve(proc, { path: 'compute', 'block-height': 0, body: { id: spawn.id, owner, from: owner, target: '', data: ' ', tags: spawnTags(module) } });
    const local = [];
    for (const [i, data] of EVALS.entries()) {
      proc = await resolve(proc, { path: 'compute', 'block-height': i + 1, body: { id: ids[i], owner, from: owner, target: spawn.id, data, tags: evalTags } });
      local.push(JSON.parse((proc.results as { json: { body: string } }).json.body).response);
    }
    expect(onB.map((r) => r.Output)).toEqual(local.map((r) => r.Output));
    expect(onB.map((r) => r.Messages)).toEqual(local.map((r) => r.Messages));

    // cu.execute by reference: the CU's result of slot 3; a commitment for the message of that slot.
    const byRef = await resolve({ device: 'cu@1.0', process: spawn.id, slot: 3 }, { path: 'execute', 'cu-url': cuB.url });
    expect(JSON.parse(byRef.results.json.body)).toEqual(onA[2]);
    expect(byRef.results).toMatchObject({ data: '5', outbox: { '1': { target: 'X', data: 'hi', reference: '2' } } });
    const commit = await resolve({ device: 'cu@1.0', process: spawn.id, slot: 3, 'commit-to': ids[2] }, { path: 'execute', 'cu-url': cuB.url });
    expect(commit).toMatchObject({ status: 200, 'commitment-for': ids[2], 'committed-by': cuB.signer.address, process: spawn.id, slot: 3 });
    const info = (await fetch(`${cuB.url}/`).then((r) => r.json())) as { address: string; 'public-key': string };
    expect(await cu.verify(commit, info.address)).toBe(true);
    expect(await cu.verify(commit, info['public-key'])).toBe(true);
    expect(await cu.verify(commit, nodeA.signer.address)).toBe(false);
    const bytes = Buffer.from(commit.commitment as Uint8Array);
    for (const at of [bytes.length - 1, 2 + 512 + 10, 2 + 5]) {
      const tampered = Buffer.from(bytes);
      tampered[at] ^= 1;
      expect(await cu.verify({ ...commit, commitment: tampered }, info.address)).toBe(false);
    }
    // The outbox message is in the results bundle too; another slot's message is not.
    const outId = (await import('../../src/ao/cache')).messageId(onA[2].Messages[0]);
    expect(await resolve({ device: 'cu@1.0', process: spawn.id, slot: 3, 'commit-to': outId }, { path: 'execute', 'cu-url': cuB.url })).toMatchObject({ status: 200, 'commitment-for': outId });
    expect(await resolve({ device: 'cu@1.0', process: spawn.id, slot: 3, 'commit-to': ids[0] }, { path: 'execute', 'cu-url': cuB.url })).toEqual({ status: 404, body: COMMIT_NOT_FOUND });
  });

  it('cu.push delegates a hyper-aos process slot by slot; delegated-compute@1.0 runs a local process@1.0 on the CU', async () => {
    const module = await uploadModule(cuC.url, sharedFixture('hyper-aos.lua'), 'application/lua');
    const spawn = await item(' ', spawnTags(module));
    const state = { assignment: { process: spawn.id, slot: 0 }, 'cu-url': cuC.url };
    const first = await resolve({ device: 'cu@1.0', body: spawn.raw }, { path: 'push', ...state });
    expect(first.results.output).toMatchObject({ data: 'New Message' });
    const msgs = [];
    const pushed = [];
    for (const [i, data] of EVALS.entries()) {
      const m = await item(data, evalTags, spawn.id);
      msgs.push(m);
      const r = await resolve({ device: 'cu@1.0', body: m.raw }, { path: 'push', assignment: { process: spawn.id, slot: i + 1 }, 'cu-url': cuC.url });
      pushed.push(r.results);
    }
    expect(pushed.map((r) => r.data)).toEqual(['', '42', '5', '41']);
    // Pushing a slot again answers the same result; another message at a taken slot is refused.
    const again = await resolve({ device: 'cu@1.0', body: msgs[1].raw }, { path: 'push', assignment: { process: spawn.id, slot: 2 }, 'cu-url': cuC.url });
    expect(again.results).toEqual(pushed[1]);
    const clash = await resolve({ device: 'cu@1.0', body: msgs[1].raw }, { path: 'push', assignment: { process: spawn.id, slot: 3 }, 'cu-url': cuC.url }).catch((e) => e);
    expect(clash).toMatchObject({ status: 502, code: 'ERR_CU', 'cu-status': 409 });

    // execute with a full assignment: the slot's result, or only the commitment for its message.
    const more = await item('return X * 2', evalTags, spawn.id);
    const full = await resolve({ device: 'cu@1.0', body: more.raw, assignment: { process: spawn.id, slot: 5 } }, { path: 'execute', 'cu-url': cuC.url });
    expect(full.results.data).toBe('82');
    const committed = await resolve(
      { device: 'cu@1.0', body: more.raw, assignment: { process: spawn.id, slot: 5 }, 'commit-to': more.id },
      { path: 'execute', 'cu-url': cuC.url },
    );
    expect(committed).toMatchObject({ status: 200, 'commitment-for': more.id, slot: 5 });
    expect(await cu.verify(committed, cuC.signer.address)).toBe(true);
    expect(await cu.verify({ ...committed, 'commitment-for': msgs[0].id }, cuC.signer.address)).toBe(false);
    expect(await cu.verify(Buffer.from('not an item'), cuC.signer.address)).toBe(false);

    // A local process@1.0 whose execution device is the remote CU: same results.
    let proc: Message = { device: 'process@1.0', 'execution-device': 'delegated-compute@1.0', id: spawn.id, 'cu-url': cuC.url, 'snapshot-interval': 0 };
    proc = await resolve(proc, 'init');
    proc = await resolve(proc, { path: 'schedule', body: [{ body: spawn.raw }, ...msgs.map((m) => ({ body: m.raw }))] });
    const seen = [];
    for (let slot = 1; slot <= EVALS.length; slot++) {
      proc = await resolve(proc, { path: 'compute', slot });
      seen.push((proc as { results: Message }).results);
    }
    expect(seen).toEqual(pushed);

    // The local run of the same messages (hyper-aos on process@1.0).
    const commitments = (id: string) => rsaCommitment(owner, id);
    let lp = aosLuaProcess(sharedFixture('hyper-aos.lua'), { owner, id: spawn.id, 'snapshot-interval': 0 });
    lp = await resolve(await resolve(lp, { path: 'schedule', body: { 'data-protocol': 'ao', type: 'Process', module, data: ' ', commitments: commitments(spawn.id) } }), 'now');
    const local = [];
    for (const [i, data] of EVALS.entries()) {
      lp = await resolve(await resolve(lp, { path: 'schedule', body: { 'data-protocol': 'ao', type: 'Message', action: 'Eval', data, commitments: commitments(msgs[i].id) } }), 'now');
      local.push(((lp as { results: Message }).results.output as Message).data);
    }
    expect(pushed.map((r) => r.data)).toEqual(local);
  });
});
