/** The SU read routes of `hb-runtimes serve`: the schedule of a process, one message, the time. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArweaveSigner, createData } from '@dha-team/arbundles';
import { startServer, type ServeHandle } from '../../src/serve/app';
import { tempStore, testWallet } from '../helpers/serve';

const signer = new ArweaveSigner(testWallet('client').jwk as never);
const LUA = 'function compute(base, req) base.results = { output = { data = req.body.data }, outbox = {} }; return base end\n';

async function signed(data: string, tags: Array<{ name: string; value: string }>, target?: string) {
  const d = createData(data, signer, { tags, ...(target ? { target } : {}) });
  await d.sign(signer);
  return { id: d.id, raw: d.getRaw() };
}
const post = (url: string, raw: Buffer) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: raw }).then((r) => r.json());

describe('hb-runtimes serve SU routes', () => {
  let server: ServeHandle;
  let pid: string;
  const ids: string[] = [];
  beforeAll(async () => {
    server = await startServer({ store: tempStore(), jwk: testWallet('server').jwk });
    const up = await fetch(`${server.url}/modules`, { method: 'POST', headers: { 'content-type': 'application/lua' }, body: LUA });
    const module = ((await up.json()) as { id: string }).id;
    const spawn = await signed(' ', [{ name: 'Type', value: 'Process' }, { name: 'Module', value: module }]);
    await post(server.url, spawn.raw);
    pid = spawn.id;
    for (const data of ['a', 'b', 'c']) {
      const m = await signed(data, [{ name: 'Type', value: 'Message' }, { name: 'Action', value: 'Echo' }], pid);
      await post(server.url, m.raw);
      ids.push(m.id);
    }
  });
  afterAll(async () => server?.close());

  it('lists the assignments of a process in slot order, with Nonce = slot', async () => {
    const page = (await fetch(`${server.url}/${pid}?limit=2`).then((r) => r.json())) as any;
    expect(page.page_info).toEqual({ has_next_page: true });
    expect(page.edges.map((e: any) => e.node.message.id)).toEqual([pid, ids[0]]);
    const all = (await fetch(`${server.url}/${pid}?process-id=${pid}&from=0`).then((r) => r.json())) as any;
    expect(all.edges.map((e: any) => e.node.assignment.tags.find((t: any) => t.name === 'Nonce').value)).toEqual(['0', '1', '2', '3']);
    expect(all.edges[3].node.message).toMatchObject({ id: ids[2], data: 'c', target: pid, tags: [{ name: 'Type', value: 'Message' }, { name: 'Action', value: 'Echo' }] });
    const future = (await fetch(`${server.url}/${pid}?from=${Date.now() + 60_000}`).then((r) => r.json())) as any;
    expect(future.edges).toEqual([]);
  });

  it('answers one message with its assignment, 404 for unknown ones, and the time', async () => {
    const one = (await fetch(`${server.url}/${ids[1]}?process-id=${pid}`).then((r) => r.json())) as any;
    expect(one.message).toMatchObject({ id: ids[1], data: 'b' });
    expect(one.assignment.tags).toContainEqual({ name: 'Nonce', value: '2' });
    expect(one.assignment.tags).toContainEqual({ name: 'Message', value: ids[1] });
    expect((await fetch(`${server.url}/${'D'.repeat(43)}?process-id=${pid}`)).status).toBe(404);
    expect((await fetch(`${server.url}/${'D'.repeat(43)}`)).status).toBe(404);
    expect((await fetch(`${server.url}/${pid}?from=yesterday`)).status).toBe(400);
    const t = (await fetch(`${server.url}/timestamp`).then((r) => r.json())) as { timestamp: number };
    expect(Math.abs(t.timestamp - Date.now())).toBeLessThan(60_000);
  });
});
