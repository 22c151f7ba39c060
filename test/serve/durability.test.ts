/**
 * Crash safety of `hb-runtimes serve`: the server (a child process on loopback) is killed with
 * SIGKILL in the middle of a burst of messages and restarted on the same store. Every
 * acknowledged message must be computed exactly once, with the results of a local run.
 */
import { afterEach, expect, it } from 'vitest';
import { aosWasmStack } from '../../src/devices';
import { ArweaveSigner, createData } from '@dha-team/arbundles';
import { cacheWrite, resolve, type Message } from '../../src/ao';
import { addressOf } from '../../src/serve/signing';
import { describeShared, sharedFixture } from '../helpers/fixtures';
import { startChildServer, tempStore, testWallet, uploadModule, type ChildServer } from '../helpers/serve';

const client = testWallet('client');
const signer = new ArweaveSigner(client.jwk as never);
const owner = addressOf(client.jwk.n);

async function item(data: string, tags: Array<{ name: string; value: string }>, target?: string): Promise<{ id: string; raw: Buffer }> {
  const d = createData(data, signer, { tags, ...(target ? { target } : {}) });
  await d.sign(signer);
  return { id: d.id, raw: d.getRaw() };
}

async function post(url: string, raw: Buffer): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: raw });
}

const children: ChildServer[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
});

/** Output.data of each Eval, computed locally on the stack the `aos` CLI uses. */
async function localWasm(pid: string, evals: string[]): Promise<string[]> {
  const image = await cacheWrite(sharedFixture('aos-2-pure-xs.wasm'));
  let proc: Message = await resolve(
    aosWasmStack({ image, owner, id: pid }),
    'init',
  );
  const out: string[] = [];
  for (const [i, data] of evals.entries()) {
    proc = await resolve(proc, { path: 'compute', 'block-height': i + 1, body: { action: 'Eval', data, target: pid, owner, from: owner, id: `M${i}` } });
    out.push((proc.results as { data: string }).data);
  }
  return out;
}

describeShared('hb-runtimes serve after kill -9', () => {
  it('computes every acknowledged message exactly once, with the results of a local run', async () => {
    const store = tempStore('hb-serve-crash-');
    const args = ['--store', store, '--wallet', testWallet('server').file, '--snapshot-interval', '4'];
    let server = await startChildServer(args);
    children.push(server);
    const module = await uploadModule(server.url, sharedFixture('aos-2-pure-xs.wasm'), 'application/wasm');
    const spawn = await item(' ', [
      { name: 'Data-Protocol', value: 'ao' },
      { name: 'Type', value: 'Process' },
      { name: 'Module', value: module },
      { name: 'Scheduler', value: 'local' },
    ]);
    expect((await post(server.url, spawn.raw)).status).toBe(200);
    const pid = spawn.id;

    // Each message counts itself and appends its marker: a duplicate or a loss shows in the state.
    const N = 40;
    const evalOf = (i: number) => `Count = (Count or 0) + 1; Seen = (Seen or "") .. "m${i},"; return Count`;
    const msgs = await Promise.all(
      Array.from({ length: N }, (_, i) => item(evalOf(i), [{ name: 'Data-Protocol', value: 'ao' }, { name: 'Type', value: 'Message' }, { name: 'Action', value: 'Eval' }], pid)),
    );

    const acked = new Set<string>();
    const before = new Map<string, unknown>();
    let next = 0;
    let killed = false;
    const worker = async () => {
      while (next < N && !killed) {
        const m = msgs[next++];
        try {
          const res = await post(server.url, m.raw);
          if (res.status === 200 && !killed) acked.add(m.id);
        } catch {
          // the connection died with the server: not acknowledged
        }
        if (acked.size === 6 && before.size === 0) {
          const first = [...acked][0];
          before.set(first, await fetch(`${server.url}/result/${first}?process-id=${pid}`).then((r) => r.json()));
        }
        if (acked.size >= 16 && !killed) {
          killed = true;
          server.child.kill('SIGKILL');
        }
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    expect(killed).toBe(true);
    if (server.child.exitCode === null && server.child.signalCode === null) await new Promise((r) => server.child.once('exit', r));
    expect(server.child.signalCode).toBe('SIGKILL');

    server = await startChildServer(args);
    children.push(server);
    // Which of the messages the restarted server holds, and what each computed.
    const held: Array<{ i: number; count: number; data: string }> = [];
    for (const [i, m] of msgs.entries()) {
      const res = await fetch(`${server.url}/result/${m.id}?process-id=${pid}`);
      if (res.status === 404) {
        expect(acked.has(m.id)).toBe(false);
        continue;
      }
      expect(res.status).toBe(200);
      const r = (await res.json()) as { Output: { data: string } };
      held.push({ i, count: Number(r.Output.data), data: r.Output.data });
      if (before.has(m.id)) expect(r).toEqual(before.get(m.id));
    }
    for (const id of acked) expect(held.some((h) => msgs[h.i].id === id)).toBe(true);
    // Counts 1..k, each once: every held message was computed exactly once, in slot order.
    const order = [...held].sort((a, b) => a.count - b.count);
    expect(order.map((h) => h.count)).toEqual(order.map((_, k) => k + 1));

    // The state agrees: each held message's marker exactly once, in slot order.
    const last = await item('return Seen', [{ name: 'Data-Protocol', value: 'ao' }, { name: 'Type', value: 'Message' }, { name: 'Action', value: 'Eval' }], pid);
    expect((await post(server.url, last.raw)).status).toBe(200);
    const seen = (await fetch(`${server.url}/result/${last.id}?process-id=${pid}`).then((r) => r.json())) as { Output: { data: string } };
    expect(seen.Output.data).toBe(order.map((h) => `m${h.i},`).join(''));

    // The same messages in the same order, computed locally.
    const local = await localWasm(pid, [...order.map((h) => evalOf(h.i)), 'return Seen']);
    expect([...order.map((h) => h.data), seen.Output.data]).toEqual(local);

    // Results recomputed after the snapshot matched the results on file.
    const info = (await fetch(`${server.url}/`).then((r) => r.json())) as Record<string, unknown>;
    expect(info['recompute-mismatches']).toBe(0);
    // A message sent again is not scheduled twice.
    const again = await post(server.url, msgs[order[0].i].raw);
    expect(await again.json()).toMatchObject({ id: msgs[order[0].i].id, message: 'Already scheduled', slot: 1 });
  });
});
