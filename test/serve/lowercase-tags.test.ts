/**
 * Messages of a Lua process with every tag name lower-cased, as the `aos` CLI spawns lua@5.3a
 * processes through aoconnect (`tags.reduce((a, t) => ({ ...a, [t.name.toLowerCase()]: t.value }))`):
 * hyper-aos accepts them through process@1.0, and `hb-runtimes serve` accepts the signed items.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { resolve, type Message } from '../../src/ao';
import { aosLuaProcess, rsaCommitment } from '../../src/devices';
import { startServer, type ServeHandle } from '../../src/serve/app';
import { ItemSigner } from '../../src/serve/signing';
import { describeShared, sharedFixture } from '../helpers/fixtures';
import { tempStore, testWallet, uploadModule } from '../helpers/serve';

const lower = (tags: Array<[string, string]>) => tags.map(([name, value]) => ({ name: name.toLowerCase(), value }));

describeShared('lower-cased tag names on a Lua process', () => {
  let server: ServeHandle;
  let client: ItemSigner;

  beforeAll(async () => {
    server = await startServer({ store: tempStore(), jwk: testWallet('server').jwk });
    client = new ItemSigner(testWallet('client').jwk);
  });
  afterAll(async () => {
    await server?.close();
  });

  it('hyper-aos through process@1.0: a spawn and an Eval whose keys are all lower case', async () => {
    const owner = client.address;
    let p = aosLuaProcess(sharedFixture('hyper-aos.lua'), { owner, id: 'LowerCaseProcess-0123456789abcdefghijklmnopq', 'snapshot-interval': 0 });
    const spawn: Message = Object.fromEntries(lower([['Name', 'lc'], ['Authority', owner], ['AOS-Version', '2.0.7'], ['Data-Protocol', 'ao'], ['Type', 'Process']]).map((t) => [t.name, t.value]));
    p = await resolve(p, { path: 'schedule', body: { ...spawn, commitments: rsaCommitment(owner, 'SpawnItem-0123456789abcdefghijklmnopqrstuvwx') } });
    const evalBody: Message = { ...Object.fromEntries(lower([['Action', 'Eval'], ['Data-Protocol', 'ao'], ['Type', 'Message']]).map((t) => [t.name, t.value])), data: 'return 1 + 1' };
    p = await resolve(p, { path: 'schedule', body: { ...evalBody, commitments: rsaCommitment(owner, 'EvalItem-0123456789abcdefghijklmnopqrstuvwxy') } });
    expect(await resolve(p, 'now/results/output/data')).toBe('2');
  });

  it('hb-runtimes serve: signed items whose tag names are all lower case spawn and compute', async () => {
    const module = await uploadModule(server.url, sharedFixture('hyper-aos.lua'), 'application/lua');
    const spawnTags = lower([['Data-Protocol', 'ao'], ['Variant', 'ao.TN.1'], ['Type', 'Process'], ['Module', module], ['Scheduler', server.signer.address], ['Authority', client.address], ['Name', 'lc'], ['AOS-Version', '2.0.7']]);
    const spawn = await client.sign(' ', spawnTags);
    const post = (raw: Buffer) => fetch(server.url, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: raw });
    const spawned = await post(spawn.raw);
    expect(spawned.status).toBe(200);
    const msg = await client.sign('return 1 + 1', lower([['Data-Protocol', 'ao'], ['Variant', 'ao.TN.1'], ['Type', 'Message'], ['Action', 'Eval']]), spawn.id);
    expect((await post(msg.raw)).status).toBe(200);
    const res = await fetch(`${server.url}/result/${msg.id}?process-id=${spawn.id}`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { Output: { data: string } }).Output.data).toBe('2');
  });
});
