/**
 * The scenario of issue #14 end to end: `hb-runtimes serve` (a child process, computing on its
 * worker pool), two aos-2-pure-xs processes spawned with unmodified @permaweb/aoconnect (legacy
 * mode), and an `Eval` of `while true do end` to the first. While it runs, `GET /` answers in
 * under a second and the other process computes; the loop's result carries `Error` (the
 * deterministic compute limit ended it), and the next message on the same process sees a
 * global set before the loop. A process whose own Compute-Limit is past the deadline gets its
 * loop ended by the deadline instead: that result is flagged Nondeterministic.
 */
import { connect, createDataItemSigner } from '@permaweb/aoconnect';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeShared, sharedFixture } from '../helpers/fixtures';
import { startChildServer, tempStore, testWallet, uploadModule, type ChildServer } from '../helpers/serve';

type Ao = ReturnType<typeof connect>;

async function timedGet(url: string): Promise<number> {
  const t = performance.now();
  const res = await fetch(`${url}/`, { signal: AbortSignal.timeout(5_000) });
  expect(res.status).toBe(200);
  await res.json();
  return performance.now() - t;
}

describeShared('serve computes on its worker pool (issue #14 scenario)', () => {
  let server: ChildServer;
  let ao: Ao;
  let address: string;
  const signer = () => createDataItemSigner(testWallet('client').jwk as never);
  const evalOn = (process: string, data: string) => ao.message({ process, signer: signer(), tags: [{ name: 'Action', value: 'Eval' }], data });
  const rawResult = async (process: string, id: string) =>
    (await (await fetch(`${server.url}/result/${id}?process-id=${process}`)).json()) as Record<string, unknown>;

  beforeAll(async () => {
    server = await startChildServer(['--store', tempStore(), '--wallet', testWallet('server').file, '--workers', '2', '--time-limit', '4000']);
    ao = connect({ MODE: 'legacy', MU_URL: server.url, CU_URL: server.url, GATEWAY_URL: server.url });
    address = ((await (await fetch(`${server.url}/`)).json()) as { address: string }).address;
  }, 90_000);
  afterAll(() => {
    server?.child.kill('SIGKILL');
  });

  it('keeps answering and computing while one process loops, and that process continues from before the loop', async () => {
    const module = await uploadModule(server.url, sharedFixture('aos-2-pure-xs.wasm'), 'application/wasm');
    const first = await ao.spawn({ module, scheduler: address, signer: signer() });
    const second = await ao.spawn({ module, scheduler: address, signer: signer() });
    const marker = await evalOn(first, 'Marker = "set before the loop"; return Marker');
    expect((await ao.result({ process: first, message: marker })).Output.data).toBe('set before the loop');
    expect((await ao.result({ process: second, message: await evalOn(second, 'return 1') })).Output.data).toBe('1');

    const loop = await evalOn(first, 'while true do end');
    const started = performance.now();
    const latencies = [];
    for (let i = 0; i < 5; i++) latencies.push(await timedGet(server.url));
    expect(Math.max(...latencies)).toBeLessThan(1_000);
    const t = performance.now();
    const four = await ao.result({ process: second, message: await evalOn(second, 'return 2 + 2') });
    expect(four.Output.data).toBe('4');
    expect(performance.now() - t).toBeLessThan(1_000);

    const looped = await ao.result({ process: first, message: loop });
    expect(looped.Error).toMatch(/fuel/);
    // Ended by the deterministic limit (the default compute limit), not flagged.
    expect(await rawResult(first, loop)).toMatchObject({ Limit: 'fuel', Messages: [], Spawns: [], Assignments: [] });
    expect((await rawResult(first, loop)).Nondeterministic).toBeUndefined();
    expect(performance.now() - started).toBeLessThan(4_000);
    const after = await ao.result({ process: first, message: await evalOn(first, 'return Marker') });
    expect(after.Output.data).toBe('set before the loop');
  }, 60_000);

  it('flags a message the deadline ended (a Compute-Limit past it), and rolls it back', async () => {
    const module = await uploadModule(server.url, sharedFixture('aos-2-pure-xs.wasm'), 'application/wasm');
    const pid = await ao.spawn({ module, scheduler: address, signer: signer(), tags: [{ name: 'Compute-Limit', value: '1000000000000000' }] });
    await ao.result({ process: pid, message: await evalOn(pid, 'Y = 1') });
    const loop = await evalOn(pid, 'Y = 2; while true do end');
    const looped = await rawResult(pid, loop);
    expect(looped).toMatchObject({ Limit: 'time', Nondeterministic: true });
    expect(looped.Error).toMatch(/time limit|deadline/i);
    expect((await ao.result({ process: pid, message: await evalOn(pid, 'return Y') })).Output.data).toBe('1');
  }, 60_000);
});
