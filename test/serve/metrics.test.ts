/**
 * What operators watch and what protects a node: `GET /metrics` (Prometheus text), backpressure
 * on a long process queue (202, then 503 + Retry-After), and the per-IP dry-run rate limit (429).
 */
import { afterEach, expect, it } from 'vitest';
import { startServer, type ServeHandle } from '../../src/serve/app';
import { inThreadEngineFactory } from '../../src/serve/compute';
import { addressOf } from '../../src/serve/signing';
import { describeShared, sharedFixture } from '../helpers/fixtures';
import { tempStore, testWallet, uploadModule, EVAL_TAGS, postItem, signedItem, spawnLuaProcess } from '../helpers/serve';

const owner = addressOf(testWallet('client').jwk.n);
const evalTags = EVAL_TAGS;
const item = signedItem;
const post = postItem;

const spawnLua = (url: string) => spawnLuaProcess(url, sharedFixture('hyper-aos.lua'));
/** The value of one sample line of a scrape (`name{labels} value`). */
function sample(text: string, name: string, labels: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? undefined : Number(line.split(' ').at(-1));
}

let server: ServeHandle | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describeShared('serve operations', () => {
  it('GET /metrics: per-process evaluation, outcomes, gas, state, queue; per-node requests and latency', async () => {
    server = await startServer({ store: tempStore(), workers: 0, snapshotInterval: 2 });
    const pid = await spawnLua(server.url);
    const ids = [];
    for (const code of ['X = 1; return X', 'return X + 1', 'error("boom")']) {
      const m = await item(code, evalTags, pid);
      expect((await post(server.url, m.raw)).status).toBe(200);
      ids.push(m.id);
    }
    for (const id of ids) await fetch(`${server.url}/result/${id}?process-id=${pid}`).then((r) => r.json());
    // The snapshot after the last slot (interval 2) is written after its result is answered.
    await server.registry.get(pid).exclusively(async () => undefined);
    const res = await fetch(`${server.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    const p = `process="${pid}"`;
    // The spawn (slot 0) and three messages; hyper-aos fails the error("boom") Eval.
    expect(sample(text, 'hb_process_eval_seconds_count', p)).toBe(4);
    expect(sample(text, 'hb_process_messages_total', `${p},outcome="ok"`)).toBe(3);
    expect(sample(text, 'hb_process_messages_total', `${p},outcome="error"`)).toBe(1);
    expect(sample(text, 'hb_process_queue_length', p)).toBe(0);
    expect(sample(text, 'hb_process_resident', p)).toBe(1);
    expect(sample(text, 'hb_process_state_bytes', p)).toBe(server.registry.get(pid).stateBytes);
    expect(server.registry.get(pid).stateBytes).toBeGreaterThan(10_000);
    expect(sample(text, 'hb_process_snapshot_bytes', p)).toBe(server.registry.get(pid).stateBytes);
    // Requests so far: the module upload, the spawn and three messages, three result reads.
    expect(sample(text, 'hb_http_requests_total', 'method="POST",route="/",status="200"')).toBe(4);
    expect(sample(text, 'hb_http_requests_total', 'method="POST",route="/modules",status="200"')).toBe(1);
    expect(sample(text, 'hb_http_requests_total', 'method="GET",route="/result/:message",status="200"')).toBe(3);
    expect(sample(text, 'hb_http_request_duration_seconds_count', 'method="GET",route="/result/:message"')).toBe(3);
    expect(text).toMatch(/^hb_processes_held 1$/m);
    expect(text).toMatch(/^hb_evictions_total 0$/m);
    expect(text).toMatch(/^process_resident_memory_bytes \d+/m);
  });

  it('GET /metrics: per-process fuel and guest memory, as an in-thread replay of the same schedule measures them', async () => {
    server = await startServer({ store: tempStore(), workers: 1 });
    const wasmModule = await uploadModule(server.url, sharedFixture('aos-2-pure-xs.wasm'), 'application/wasm');
    const spawn = await item(' ', [{ name: 'Type', value: 'Process' }, { name: 'Module', value: wasmModule }]);
    expect((await post(server.url, spawn.raw)).status).toBe(200);
    const luaPid = await spawnLua(server.url);
    for (const [pid, code] of [
      [spawn.id, 'X = string.rep("a", 3000000); return #X'],
      [spawn.id, 'return 1 + 1'],
      [luaPid, 'Y = string.rep("b", 2000000); return #Y'],
    ]) {
      const m = await item(code, evalTags, pid);
      expect((await post(server.url, m.raw)).status).toBe(200);
      await fetch(`${server.url}/result/${m.id}?process-id=${pid}`).then((r) => r.json());
    }
    const text = await fetch(`${server.url}/metrics`).then((r) => r.text());
    // The same schedule replayed here, engine by engine: fuel is deterministic, memory exact.
    const replay = async (pid: string) => {
      const p = server!.registry.get(pid);
      const engine = await inThreadEngineFactory()(p.def);
      let fuel = 0;
      for (const a of p.assignments) {
        await engine.compute(a);
        fuel += engine.usage?.fuel ?? 0;
      }
      const memory = engine.usage?.memory;
      await engine.dispose();
      return { fuel, memory };
    };
    const w = await replay(spawn.id);
    expect(w.fuel).toBeGreaterThan(1_000_000);
    expect(sample(text, 'hb_process_fuel_used_total', `process="${spawn.id}"`)).toBe(w.fuel);
    expect(w.memory).toBeGreaterThan(3_000_000);
    expect(sample(text, 'hb_process_memory_bytes', `process="${spawn.id}"`)).toBe(w.memory);
    const l = await replay(luaPid);
    // Lua steps are not measured; the VM's allocation holds the 2 MB string.
    expect(l.fuel).toBe(0);
    expect(sample(text, 'hb_process_fuel_used_total', `process="${luaPid}"`)).toBeUndefined();
    const luaMemory = sample(text, 'hb_process_memory_bytes', `process="${luaPid}"`)!;
    expect(luaMemory).toBeGreaterThan(2_000_000);
    expect(Math.abs(luaMemory - l.memory!)).toBeLessThan(64 * 1024);
  }, 60_000);

  it('answers 202 once a queue is half full, and 503 ERR_BUSY with Retry-After when it is full; nothing is scheduled then', async () => {
    // On a worker: the HTTP thread keeps taking messages while the slow one computes.
    server = await startServer({ store: tempStore(), workers: 1, maxQueue: 3 });
    const pid = await spawnLua(server.url);
    // One slow message (a long Lua loop), then three more signed beforehand, sent while it runs.
    const slow = await item('for i = 1, 60000000 do end; return "slow"', evalTags, pid);
    const rest = [];
    for (let i = 0; i < 3; i++) rest.push(await item(`return ${i}`, evalTags, pid));
    const first = await post(server.url, slow.raw);
    expect(first.status).toBe(200);
    const b = await post(server.url, rest[0].raw);
    expect(b.status).toBe(202);
    expect(b.body).toMatchObject({ id: rest[0].id, slot: 2 });
    expect(b.headers.get('queue-length')).toBe('2');
    expect(Number(b.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    const c = await post(server.url, rest[1].raw);
    expect(c.status).toBe(202);
    const d = await post(server.url, rest[2].raw);
    expect(d.status).toBe(503);
    expect(d.body).toMatchObject({ code: 'ERR_BUSY', status: 503 });
    expect(String(d.body.error)).toContain('has 3 messages waiting (the limit is 3)');
    expect(Number(d.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(server.registry.get(pid).slotOf(rest[2].id)).toBeUndefined();
    expect(((await fetch(`${server.url}/result/${rest[1].id}?process-id=${pid}`).then((r) => r.json())) as { Output: { data: string } }).Output.data).toBe('1');
    // Once the queue drained, the refused message is accepted.
    expect((await post(server.url, rest[2].raw)).status).toBe(200);
  });

  it('limits dry runs per client IP: 429 ERR_RATE_LIMIT with Retry-After', async () => {
    server = await startServer({ store: tempStore(), workers: 0, dryRunRateLimit: 2 });
    const pid = await spawnLua(server.url);
    const dry = () =>
      fetch(`${server!.url}/dry-run?process-id=${pid}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ Owner: owner, Tags: [{ name: 'Action', value: 'Eval' }], Data: 'return 6 * 7' }),
      });
    for (let i = 0; i < 2; i++) {
      const r = await dry();
      expect(r.status).toBe(200);
      expect(((await r.json()) as { Output: { data: string } }).Output.data).toBe('42');
    }
    const limited = await dry();
    expect(limited.status).toBe(429);
    expect(await limited.json()).toMatchObject({ code: 'ERR_RATE_LIMIT', status: 429 });
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    // Other routes are not limited.
    expect((await fetch(`${server.url}/`)).status).toBe(200);
  });
});
