/**
 * `hb-runtimes serve` restarted on its store: processes of both kinds come back from their
 * snapshot plus the log, answer the same results, and go on from the same state.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ArweaveSigner, createData } from '@dha-team/arbundles';
import { startServer } from '../../src/serve/app';
import { addressOf } from '../../src/serve/signing';
import { describeShared, sharedFixture } from '../helpers/fixtures';
import { startChildServer, tempStore, testWallet, uploadModule } from '../helpers/serve';

const signer = new ArweaveSigner(testWallet('client').jwk as never);
type Tag = { name: string; value: string };

async function item(data: string, tags: Tag[], target?: string) {
  const d = createData(data, signer, { tags, ...(target ? { target } : {}) });
  await d.sign(signer);
  return { id: d.id, raw: d.getRaw() };
}
async function post(url: string, raw: Buffer) {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: raw });
  expect(res.status).toBe(200);
  return res.json();
}
const evalTags: Tag[] = [{ name: 'Type', value: 'Message' }, { name: 'Action', value: 'Eval' }];

describe('hb-runtimes serve without a wallet', () => {
  it('generates one into the store (mode 0600) and signs with it again after a restart', async () => {
    const store = tempStore();
    let server = await startServer({ store });
    const address = server.signer.address;
    await server.close();
    const file = path.join(store, 'wallet.json');
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const jwk = JSON.parse(fs.readFileSync(file, 'utf8'));
    expect(addressOf(jwk.n)).toBe(address);
    expect(Buffer.from(jwk.n, 'base64url').length).toBe(512);
    server = await startServer({ store });
    try {
      expect(await fetch(`${server.url}/`).then((r) => r.json())).toMatchObject({ address });
    } finally {
      await server.close();
    }
  });
});

describeShared('hb-runtimes serve restarted on the same store', () => {
  it.each([
    ['aos-2-pure-xs.wasm', 'application/wasm'],
    ['hyper-aos.lua', 'application/lua'],
  ] as const)('restores a %s process from its snapshot and log', async (fixture, type) => {
    const store = tempStore();
    const jwk = testWallet('server').jwk;
    let server = await startServer({ store, jwk, snapshotInterval: 3 });
    const module = await uploadModule(server.url, sharedFixture(fixture), type);
    const spawn = await item(' ', [{ name: 'Type', value: 'Process' }, { name: 'Module', value: module }]);
    await post(server.url, spawn.raw);
    const pid = spawn.id;
    const ids: string[] = [];
    for (let i = 1; i <= 7; i++) {
      const m = await item(`S = (S or "") .. "${i}"; return S`, evalTags, pid);
      await post(server.url, m.raw);
      ids.push(m.id);
    }
    const before = await fetch(`${server.url}/results/${pid}?limit=100`).then((r) => r.json());
    expect(before.edges.slice(1).map((e: { node: { Output: { data: string } } }) => e.node.Output.data)).toEqual(['1', '12', '123', '1234', '12345', '123456', '1234567']);
    expect((await fetch(`${server.url}/state/${pid}`)).headers.get('slot')).toBe('7');
    await server.close();
    // Snapshots after slots 2 and 5: slots 6 and 7 are recomputed from the log.
    expect(fs.readFileSync(path.join(store, 'processes', pid, 'snapshot.bin')).readInt32LE(0)).toBe(5);

    server = await startServer({ store, jwk, snapshotInterval: 3 });
    try {
      expect(await fetch(`${server.url}/results/${pid}?limit=100`).then((r) => r.json())).toEqual(before);
      // (The state bytes are equivalent, not identical: see docs/serve.md, Durability.)
      expect((await fetch(`${server.url}/state/${pid}`)).headers.get('slot')).toBe('7');
      const next = await item('return S .. "!"', evalTags, pid);
      expect(await post(server.url, next.raw)).toMatchObject({ slot: 8 });
      expect((await fetch(`${server.url}/result/${next.id}?process-id=${pid}`).then((r) => r.json())).Output.data).toBe('1234567!');
      const info = await fetch(`${server.url}/`).then((r) => r.json());
      expect(info).toMatchObject({ processes: 1, modules: 1, 'recompute-mismatches': 0 });
    } finally {
      await server.close();
    }
  });
});

describeShared('hb-runtimes serve restarted as a new OS process', () => {
  it('restores a hyper-aos.lua process from its sealed snapshot (the key comes from the wallet)', async () => {
    const store = tempStore();
    const args = ['--store', store, '--wallet', testWallet('server').file, '--snapshot-interval', '2'];
    let server = await startChildServer(args);
    let pid = '';
    try {
      const module = await uploadModule(server.url, sharedFixture('hyper-aos.lua'), 'application/lua');
      const spawn = await item(' ', [{ name: 'Type', value: 'Process' }, { name: 'Module', value: module }]);
      await post(server.url, spawn.raw);
      pid = spawn.id;
      for (let i = 1; i <= 5; i++) await post(server.url, (await item(`S = (S or "") .. "${i}"; return S`, evalTags, pid)).raw);
      const last = await fetch(`${server.url}/results/${pid}?sort=DESC&limit=1`).then((r) => r.json());
      expect(last.edges[0].node.Output.data).toBe('12345');
    } finally {
      server.child.kill('SIGTERM');
      await new Promise((r) => server.child.once('exit', r));
    }
    expect(fs.readFileSync(path.join(store, 'processes', pid, 'snapshot.bin')).readInt32LE(0)).toBeGreaterThanOrEqual(2);
    server = await startChildServer(args);
    try {
      const next = await item('return S .. "!"', evalTags, pid);
      await post(server.url, next.raw);
      expect((await fetch(`${server.url}/result/${next.id}?process-id=${pid}`).then((r) => r.json())).Output.data).toBe('12345!');
      expect(await fetch(`${server.url}/`).then((r) => r.json())).toMatchObject({ 'recompute-mismatches': 0 });
    } finally {
      server.child.kill('SIGKILL');
    }
  }, 120_000);
});
