/**
 * The unmodified @permaweb/aoconnect client (legacy MU/CU/gateway mode) against
 * `hb-runtimes serve` on loopback: spawn AOS processes from aos-2-pure-xs.wasm and hyper-aos.lua,
 * send Evals, read result / results / dryrun, and compare with the same messages computed
 * locally through `resolve`.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { aosLuaProcess, aosWasmStack, rsaCommitment } from '../../src/devices';
import { connect, createDataItemSigner } from '@permaweb/aoconnect';
import { cacheWrite, resolve, type Message } from '../../src/ao';
import { startServer, type ServeHandle } from '../../src/serve/app';
import { addressOf } from '../../src/serve/signing';
import { describeShared, sharedFixture } from '../helpers/fixtures';
import { tempStore, testWallet, uploadModule } from '../helpers/serve';

const EVALS = ['X = 41', 'return X + 1', 'Send({Target = "X", Data = "hi"}); return 5', 'error("boom")', 'return X'];

type Ao = ReturnType<typeof connect>;
type Tag = { name: string; value: string };

/** A transaction's tags, from the server's gateway route. */
async function tagsOf(url: string, id: string): Promise<Tag[]> {
  const res = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query: 'query ($ids: [ID!]!) { transactions(ids: $ids) { edges { node { tags { name value } } } } }', variables: { ids: [id] } }),
  });
  const body = (await res.json()) as { data: { transactions: { edges: Array<{ node: { tags: Tag[] } }> } } };
  return body.data.transactions.edges[0].node.tags;
}

/** The stack the `aos` CLI builds, computed locally. */
async function localWasm(pid: string, owner: string, spawnTags: Tag[], evals: string[]): Promise<Message[]> {
  const image = await cacheWrite(sharedFixture('aos-2-pure-xs.wasm'));
  let proc: Message = await resolve(
    aosWasmStack({ image, owner, id: pid, tags: spawnTags }),
    'init',
  );
  // Slot 0 is the spawn item itself (aoconnect gives it the data ' ').
  proc = await resolve(proc, { path: 'compute', 'block-height': 0, body: { id: pid, owner, from: owner, target: '', data: ' ', tags: spawnTags } });
  const out: Message[] = [];
  for (const [i, data] of evals.entries()) {
    proc = await resolve(proc, { path: 'compute', 'block-height': i + 1, body: { action: 'Eval', data, target: pid, owner, from: owner, id: `M${i}` } });
    out.push(JSON.parse((proc.results as { json: { body: string } }).json.body).response);
  }
  return out;
}

/** hyper-aos as a process@1.0, as the `aos` CLI runs it. */
async function localLua(pid: string, owner: string, spawnTags: Tag[], evals: string[]): Promise<Message[]> {
  const commitments = (id: string) => rsaCommitment(owner, id);
  let proc = aosLuaProcess(sharedFixture('hyper-aos.lua'), { owner, id: 'P', 'snapshot-interval': 0 });
  const spawn: Message = Object.fromEntries(spawnTags.map((t) => [t.name.toLowerCase(), t.value]));
  proc = await resolve(proc, { path: 'schedule', body: { ...spawn, id: pid, data: ' ', commitments: commitments(pid) }, 'block-height': 0 });
  proc = await resolve(proc, 'now');
  const out: Message[] = [];
  for (const [i, data] of evals.entries()) {
    const scheduled = await resolve(proc, { path: 'schedule', body: { action: 'Eval', data, commitments: commitments(`M${i}`) }, 'block-height': i + 1 });
    try {
      proc = await resolve(scheduled, 'now');
      out.push((proc as { results: Message }).results);
    } catch (e) {
      out.push({ error: (e as Error).message });
    }
  }
  return out;
}

describeShared('aoconnect (legacy mode) against hb-runtimes serve', () => {
  let server: ServeHandle;
  let ao: Ao;
  let owner: string;
  const signer = () => createDataItemSigner(testWallet('client').jwk as never);

  beforeAll(async () => {
    const client = testWallet('client');
    owner = addressOf(client.jwk.n);
    server = await startServer({ store: tempStore(), jwk: testWallet('server').jwk });
    ao = connect({ MODE: 'legacy', MU_URL: server.url, CU_URL: server.url, GATEWAY_URL: server.url });
  });
  afterAll(async () => server?.close());

  it('spawns an AOS process from aos-2-pure-xs.wasm and reads Eval results equal to a local run', async () => {
    const module = await uploadModule(server.url, sharedFixture('aos-2-pure-xs.wasm'), 'application/wasm');
    const pid = await ao.spawn({ module, scheduler: server.signer.address, signer: signer(), tags: [{ name: 'Name', value: 'wasm-aos' }] });
    expect(pid).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const ids: string[] = [];
    for (const data of EVALS) ids.push(await ao.message({ process: pid, signer: signer(), tags: [{ name: 'Action', value: 'Eval' }], data }));
    const remote = [];
    for (const id of ids) remote.push(await ao.result({ process: pid, message: id }));
    const local = await localWasm(pid, owner, await tagsOf(server.url, pid), EVALS);

    expect(remote.map((r) => r.Output?.data ?? r.Error)).toEqual(['', '42', '5', '\n\n[string ".handlers"]:559: [string "aos"]:1: boom', '41']);
    expect(remote.map((r) => r.Output?.data)).toEqual(local.map((r) => (r as { Output?: Message }).Output?.data));
    expect(remote.map((r) => r.Error)).toEqual(local.map((r) => r.Error));
    expect(remote[2].Messages).toEqual(local[2].Messages);
    expect(remote[2].Messages).toMatchObject([{ Target: 'X', Data: 'hi', Anchor: '00000000000000000000000000000002' }]);

    // results: the spawn (slot 0) and every message, in order; paged by cursor.
    const all = await ao.results({ process: pid, sort: 'ASC', limit: 100 });
    expect(all.edges.map((e: { cursor: string }) => e.cursor)).toEqual(['0', '1', '2', '3', '4', '5']);
    // (aoconnect's schema keeps Output, Messages, Spawns and Error of each node)
    const kept = remote.map(({ Output, Messages, Spawns, Error }) => (Error === undefined ? { Output, Messages, Spawns } : { Output, Messages, Spawns, Error }));
    expect(all.edges.slice(1).map((e: { node: unknown }) => e.node)).toEqual(kept);
    const page = await ao.results({ process: pid, from: '2', sort: 'ASC', limit: 2 });
    expect(page.edges.map((e: { cursor: string }) => e.cursor)).toEqual(['3', '4']);
    const desc = await ao.results({ process: pid, sort: 'DESC', limit: 2 });
    expect(desc.edges.map((e: { cursor: string }) => e.cursor)).toEqual(['5', '4']);

    // dryrun reads the state and changes nothing.
    const dry = await ao.dryrun({ process: pid, tags: [{ name: 'Action', value: 'Eval' }], data: 'X = 1000; return X + 1', Owner: owner });
    expect(dry.Output.data).toBe('1001');
    const after = await ao.message({ process: pid, signer: signer(), tags: [{ name: 'Action', value: 'Eval' }], data: 'return X' });
    expect((await ao.result({ process: pid, message: after })).Output.data).toBe('41');
  });

  it('spawns a hyper-aos.lua process and reads Eval results equal to a local run', async () => {
    const module = await uploadModule(server.url, sharedFixture('hyper-aos.lua'), 'application/lua');
    const pid = await ao.spawn({ module, scheduler: server.signer.address, signer: signer() });
    const ids: string[] = [];
    for (const data of EVALS) ids.push(await ao.message({ process: pid, signer: signer(), tags: [{ name: 'Action', value: 'Eval' }], data }));
    const remote = [];
    for (const id of ids) remote.push(await ao.result({ process: pid, message: id }));
    const local = await localLua(pid, owner, await tagsOf(server.url, pid), EVALS);

    expect(remote.map((r) => r.Output?.data)).toEqual(['', '42', '5', undefined, '41']);
    expect(remote.map((r) => r.Output?.data)).toEqual(local.map((r) => (r.output as Message | undefined)?.data));
    // hyper-aos cannot handle an Eval error: the message fails (state unchanged) with the Lua error.
    expect(remote[3].Error).toContain("attempt to get length of a nil value (field 'Messages')");
    expect(local[3].error).toContain("attempt to get length of a nil value (field 'Messages')");
    expect(remote[2].Messages).toEqual([{ Target: 'X', Anchor: '', Data: 'hi', Tags: [{ name: 'Reference', value: '1' }] }]);
    expect((local[2].outbox as Message)['1']).toMatchObject({ Target: 'X', Data: 'hi', reference: '1' });

    const dry = await ao.dryrun({ process: pid, tags: [{ name: 'Action', value: 'Eval' }], data: 'X = 7; return X * 6', Owner: owner });
    expect(dry.Output.data).toBe('42');
    const after = await ao.message({ process: pid, signer: signer(), tags: [{ name: 'Action', value: 'Eval' }], data: 'return X' });
    expect((await ao.result({ process: pid, message: after })).Output.data).toBe('41');

    // assign: the same message delivered to a second process, computed there on its own state.
    const other = await ao.spawn({ module, scheduler: server.signer.address, signer: signer() });
    expect(await ao.assign({ process: other, message: ids[1] })).toBe(ids[1]);
    expect((await ao.result({ process: other, message: ids[1] })).Error).toContain("attempt to get length of a nil value (field 'Messages')"); // X is nil there: the Eval fails
    expect(await ao.assign({ process: other, message: ids[0] })).toBe(ids[0]);
    expect((await ao.result({ process: other, message: ids[0] })).Output.data).toBe('');
    expect(await ao.assign({ process: other, message: ids[4] })).toBe(ids[4]);
    expect((await ao.result({ process: other, message: ids[4] })).Output.data).toBe('41');
    await expect(ao.assign({ process: other, message: 'C'.repeat(43) })).rejects.toThrow(`404: {"error":"message ${'C'.repeat(43)} is not known to this server","code":"ERR_NOT_FOUND","status":404}`);
  });

  it('answers the gateway queries for a module and a process, and the info route with the signing address', async () => {
    const module = await uploadModule(server.url, sharedFixture('hyper-aos.lua'), 'application/lua');
    const res = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'query ($ids: [ID!]!) { transactions(ids: $ids) { edges { node { tags { name value } } } } }', variables: { ids: [module, 'unknown'] } }),
    });
    const body = (await res.json()) as { data: { transactions: { edges: Array<{ node: { tags: unknown[]; id: string } }> } } };
    expect(body.data.transactions.edges).toHaveLength(1);
    expect(body.data.transactions.edges[0].node.tags).toContainEqual({ name: 'Module-Format', value: 'lua' });
    const loc = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'query ($owner: String!) { transactions(owners: [$owner], tags: [{ name: "Type", values: ["Scheduler-Location"] }]) { edges { node { tags { name value } } } } }', variables: { owner: server.signer.address } }),
    }).then((r) => r.json() as Promise<typeof body>);
    expect(loc.data.transactions.edges[0].node.tags).toContainEqual({ name: 'Url', value: server.url });
    const info = (await fetch(`${server.url}/`).then((r) => r.json())) as Record<string, unknown>;
    expect(info.address).toBe(server.signer.address);
    expect(info.address).toBe(addressOf(testWallet('server').jwk.n));
  });
});

