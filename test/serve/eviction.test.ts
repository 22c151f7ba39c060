/**
 * What operators run a node with: idle processes evicted under a memory budget (least recently
 * used first, back from their snapshot on the next message), and log compaction behind
 * snapshots (the store stops growing; compacted slots answer 410, a resent message is still
 * recognised).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { startServer, type ServeHandle } from '../../src/serve/app';
import { describeShared, sharedFixture } from '../helpers/fixtures';
import { tempStore, testWallet, uploadModule, EVAL_TAGS, postItem, signedItem } from '../helpers/serve';

const evalTags = EVAL_TAGS;
const item = signedItem;
const post = postItem;

async function spawn(url: string, module: string): Promise<string> {
  const s = await item(' ', [{ name: 'Type', value: 'Process' }, { name: 'Module', value: module }]);
  expect((await post(url, s.raw)).status).toBe(200);
  return s.id;
}
async function evalOn(url: string, pid: string, code: string) {
  const m = await item(code, evalTags, pid);
  const r = await post(url, m.raw);
  expect(r.status).toBe(200);
  const res = (await fetch(`${url}/result/${m.id}?process-id=${pid}`).then((x) => x.json())) as { Output: { data: string } };
  return { ...m, output: res.Output?.data };
}

let server: ServeHandle | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describeShared('serve under a memory budget', () => {
  it('evicts idle processes least recently used first, and brings one back from its snapshot on its next message', async () => {
    const store = tempStore();
    // Measure one hyper-aos state first, then allow about two of them.
    server = await startServer({ store, workers: 0 });
    const module = await uploadModule(server.url, sharedFixture('hyper-aos.lua'), 'application/lua');
    const probe = await spawn(server.url, module);
    await server.registry.get(probe).checkpoint();
    const one = server.registry.get(probe).stateBytes;
    expect(one).toBeGreaterThan(10_000);
    await server.close();

    server = await startServer({ store: tempStore(), workers: 0, memoryBudget: Math.floor(one * 2.5) });
    await uploadModule(server.url, sharedFixture('hyper-aos.lua'), 'application/lua');
    const pids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const pid = await spawn(server.url, module);
      expect((await evalOn(server.url, pid, `N = ${i}; return N`)).output).toBe(String(i));
      pids.push(pid);
    }
    await server.registry.enforceBudget();
    const resident = pids.map((p) => server!.registry.get(p).resident);
    // The two used last stay; the two used first went (their state is in their snapshot).
    expect(resident).toEqual([false, false, true, true]);
    expect(server.registry.evictions).toBe(2);
    expect(server.registry.residentBytes()).toBeLessThanOrEqual(Math.floor(one * 2.5));
    expect(fs.existsSync(path.join(store, 'processes'))).toBe(true);
    // The first comes back with its state, and the least recently used (now the third) goes.
    expect((await evalOn(server.url, pids[0], 'return N')).output).toBe('0');
    expect(server.registry.get(pids[0]).resident).toBe(true);
    await server.registry.enforceBudget();
    expect(pids.map((p) => server!.registry.get(p).resident)).toEqual([true, false, false, true]);
    // Dry runs and state reads revive an evicted process too.
    const dry = await fetch(`${server.url}/dry-run?process-id=${pids[1]}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ Owner: server.registry.get(pids[1]).def.owner, Tags: [{ name: 'Action', value: 'Eval' }], Data: 'return N' }),
    }).then((r) => r.json());
    expect((dry as { Output: { data: string } }).Output.data).toBe('1');
    const info = (await fetch(`${server.url}/`).then((r) => r.json())) as { evictions: number };
    expect(info.evictions).toBe(3);
  });
});

describeShared('serve log compaction', () => {
  it('drops history behind the snapshot: the store stops growing, compacted slots answer 410, resends are still known', async () => {
    const store = tempStore();
    server = await startServer({ store, workers: 0, snapshotInterval: 4, retainSlots: 4 });
    const module = await uploadModule(server.url, sharedFixture('hyper-aos.lua'), 'application/lua');
    const pid = await spawn(server.url, module);
    const big = 'x'.repeat(20_000);
    const sent: Array<{ id: string; raw: Buffer }> = [];
    const logSize = () => fs.statSync(path.join(store, 'processes', pid, 'log.wal')).size + fs.statSync(path.join(store, 'processes', pid, 'results.wal')).size;
    const sizes: number[] = [];
    for (let i = 1; i <= 40; i++) {
      sent.push(await evalOn(server.url, pid, `C = (C or 0) + 1; return C -- ${big}`));
      if (i % 10 === 0) sizes.push(logSize());
    }
    // Each message carries 20 KB; with 4 slots kept behind a snapshot every 4, the logs hold at
    // most about 4 + 4 + 1 (the batch) full messages, whatever the history.
    expect(sizes[3]).toBeLessThan(12 * 21_000);
    expect(sizes[3]).toBeLessThan(sizes[0] * 1.5);
    const p = server.registry.get(pid);
    expect(p.compactedUpTo).toBeGreaterThanOrEqual(30);
    const old = await fetch(`${server.url}/result/${sent[0].id}?process-id=${pid}`);
    expect(old.status).toBe(410);
    expect(await old.json()).toMatchObject({ code: 'ERR_COMPACTED', status: 410 });
    expect((await fetch(`${server.url}/result/${sent[39].id}?process-id=${pid}`).then((r) => r.json())).Output.data).toBe('40');
    // A resent old message is recognised, not scheduled again.
    expect((await post(server.url, sent[0].raw)).body).toMatchObject({ message: 'Already scheduled', slot: 1 });
    // After a restart the compacted process goes on from its snapshot.
    await server.close();
    server = await startServer({ store, workers: 0, snapshotInterval: 4, retainSlots: 4 });
    expect((await evalOn(server.url, pid, 'return C')).output).toBe('40');
    expect(server.registry.get(pid).compactedUpTo).toBe(p.compactedUpTo);
  });
});
