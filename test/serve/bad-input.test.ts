/**
 * Bad input to `hb-runtimes serve`: clear HTTP errors with JSON bodies, nothing stored, and the
 * server keeps serving.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArweaveSigner, createData } from '@dha-team/arbundles';
import { startServer, type ServeHandle } from '../../src/serve/app';
import { tempStore, testWallet } from '../helpers/serve';

const signer = new ArweaveSigner(testWallet('client').jwk as never);
const LUA = 'local n = 0\nfunction compute(base, req) n = n + 1; base.results = { output = { data = tostring(n) }, outbox = {} }; return base end\n';

async function signed(data: string, tags: Array<{ name: string; value: string }>, target?: string) {
  const d = createData(data, signer, { tags, ...(target ? { target } : {}) });
  await d.sign(signer);
  return { id: d.id, raw: d.getRaw() };
}

async function send(url: string, body: Buffer | string, contentType = 'application/octet-stream') {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': contentType }, body });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** Sends `head` on a raw socket and returns whatever the server answers before closing. */
function rawRequest(port: number, head: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.write(head));
    let got = '';
    sock.on('data', (d) => (got += d));
    sock.on('close', () => resolve(got));
    sock.on('error', reject);
    setTimeout(() => (sock.destroy(), resolve(got)), 10_000);
  });
}

describe('hb-runtimes serve on bad input', () => {
  let server: ServeHandle;
  let store: string;
  let pid: string;

  beforeAll(async () => {
    store = tempStore();
    server = await startServer({ store, jwk: testWallet('server').jwk, bodyLimit: 64 * 1024, requestTimeout: 1000 });
    const up = await fetch(`${server.url}/modules`, { method: 'POST', headers: { 'content-type': 'application/lua' }, body: LUA });
    const module = ((await up.json()) as { id: string }).id;
    const spawn = await signed(' ', [{ name: 'Type', value: 'Process' }, { name: 'Module', value: module }]);
    expect((await send(server.url, spawn.raw)).status).toBe(200);
    pid = spawn.id;
  });
  afterAll(async () => server?.close());

  const logSize = () => fs.statSync(path.join(store, 'processes', pid, 'log.wal')).size;

  it('refuses unsigned, badly signed and non-item bodies with 401, storing nothing', async () => {
    const before = logSize();
    const unsigned = createData('return 1', signer, { tags: [{ name: 'Type', value: 'Message' }], target: pid });
    expect(await send(server.url, unsigned.getRaw())).toEqual({ status: 401, body: { error: 'the data item is not signed', code: 'ERR_UNAUTHORIZED', status: 401 } });
    const good = await signed('return 1', [{ name: 'Type', value: 'Message' }], pid);
    const altered = Buffer.from(good.raw);
    altered[altered.length - 1] ^= 1;
    expect(await send(server.url, altered)).toEqual({ status: 401, body: { error: 'the data item signature does not verify', code: 'ERR_UNAUTHORIZED', status: 401 } });
    const garbage = await send(server.url, Buffer.from('definitely not a data item'));
    expect(garbage.status).toBe(401);
    expect(garbage.body.error).toMatch(/^not an ANS-104 data item: /);
    // Concurrent failed verifications print nothing (arweave-js warns on each) and leave console.warn as it was.
    const warn = console.warn;
    const printed: unknown[] = [];
    console.warn = (...a: unknown[]) => void printed.push(a);
    const mine = console.warn;
    try {
      const answers = await Promise.all(Array.from({ length: 8 }, () => send(server.url, altered)));
      expect(answers.map((a) => a.status)).toEqual(Array(8).fill(401));
      expect(console.warn).toBe(mine);
      expect(printed).toEqual([]);
    } finally {
      console.warn = warn;
    }
    expect(logSize()).toBe(before);
    expect(server.registry.get(pid).nextSlot).toBe(1);
  });

  it('answers 404 for unknown processes and messages, 400 for bad requests', async () => {
    const lost = await signed('x', [{ name: 'Type', value: 'Message' }], 'A'.repeat(43));
    expect(await send(server.url, lost.raw)).toEqual({ status: 404, body: { error: `process ${'A'.repeat(43)} is not held by this server`, code: 'ERR_NOT_FOUND', status: 404 } });
    const r = await fetch(`${server.url}/result/${'B'.repeat(43)}?process-id=${pid}`);
    expect(r.status).toBe(404);
    expect(await r.json()).toEqual({ error: `message ${'B'.repeat(43)} is not scheduled on process ${pid}`, code: 'ERR_NOT_FOUND', status: 404 });
    expect((await fetch(`${server.url}/results/nope`)).status).toBe(404);
    expect(await fetch(`${server.url}/result/1`).then(async (x) => [x.status, await x.json()])).toEqual([400, { error: "missing query parameter 'process-id'", code: 'ERR_BAD_REQUEST', status: 400 }]);
    expect((await send(`${server.url}/dry-run?process-id=nope`, '{}', 'application/json')).status).toBe(404);
    const noType = await signed('x', [], pid);
    expect(await send(server.url, noType.raw)).toEqual({ status: 400, body: { error: "unsupported data item Type '' (expected Module, Process or Message)", code: 'ERR_BAD_REQUEST', status: 400 } });
    expect((await fetch(`${server.url}/results/${pid}?limit=ten`)).status).toBe(400);
    expect((await fetch(`${server.url}/nowhere`)).status).toBe(404);
  });

  it('answers 400 for malformed JSON and 413 for bodies over the limit', async () => {
    const bad = await send(`${server.url}/dry-run?process-id=${pid}`, '{"Tags": [', 'application/json');
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({ code: 'FST_ERR_CTP_INVALID_JSON_BODY', status: 400 });
    expect((await send(`${server.url}/dry-run?process-id=${pid}`, '{"Tags": 5}', 'application/json')).body.error).toBe("'Tags' must be a list of {name, value} strings");
    const big = await send(server.url, Buffer.alloc(65 * 1024, 1));
    expect(big).toEqual({ status: 413, body: { error: 'Request body is too large', code: 'FST_ERR_CTP_BODY_TOO_LARGE', status: 413 } });
    expect(server.registry.get(pid).nextSlot).toBe(1);
  });

  it('answers 500 ERR_STORE for a process whose log cannot be written, and keeps serving other processes', async () => {
    const up = await fetch(`${server.url}/modules`, { method: 'POST', headers: { 'content-type': 'application/lua' }, body: LUA });
    const module = ((await up.json()) as { id: string }).id;
    const spawn = await signed(' ', [{ name: 'Type', value: 'Process' }, { name: 'Module', value: module }, { name: 'Name', value: 'doomed' }]);
    expect((await send(server.url, spawn.raw)).status).toBe(200);
    // The disk goes away under this process's log.
    await (server.registry.get(spawn.id) as unknown as { log: { close(): Promise<void> } }).log.close();
    const m = await signed('x', [{ name: 'Type', value: 'Message' }], spawn.id);
    const first = await send(server.url, m.raw);
    expect(first.status).toBe(500);
    expect(first.body).toMatchObject({ code: 'ERR_STORE', error: expect.stringContaining(`process ${spawn.id} stopped computing: WAL `) });
    const m2 = await signed('y', [{ name: 'Type', value: 'Message' }], spawn.id);
    expect((await send(server.url, m2.raw)).status).toBe(500);
    const fine = await signed('z', [{ name: 'Type', value: 'Message' }], pid);
    expect((await send(server.url, fine.raw)).status).toBe(200);
  });

  it('times out a client that never finishes its request, and keeps serving others', async () => {
    const port = Number(new URL(server.url).port);
    const slow = rawRequest(port, `POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\nabc`);
    // Meanwhile a well-behaved client is served.
    const ok = await signed('again', [{ name: 'Type', value: 'Message' }], pid);
    expect(await send(server.url, ok.raw)).toMatchObject({ status: 200, body: { id: ok.id, slot: 2 } });
    const answer = await slow;
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(answer.slice(answer.indexOf('\r\n\r\n') + 4)).toBe('{"error":"the request was not received within 1000 ms","code":"ERR_HTTP_REQUEST_TIMEOUT","status":408}');
    const res = await fetch(`${server.url}/result/${ok.id}?process-id=${pid}`).then((x) => x.json());
    expect(res).toMatchObject({ Output: { data: '3' } });
    expect(server.registry.get(pid).nextSlot).toBe(3);
  });
});
