/**
 * `serve` with `workers: 0` computes on its own thread, with the same failure semantics as on
 * the pool: a message past its compute limit answers Error (Limit: fuel) and the process goes on
 * from its state before it; no pool is started.
 */
import { connect, createDataItemSigner } from '@permaweb/aoconnect';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startServer, type ServeHandle } from '../../src/serve/app';
import { describeShared, sharedFixture } from '../helpers/fixtures';
import { tempStore, testWallet, uploadModule } from '../helpers/serve';

describeShared('serve in its own thread (workers: 0)', () => {
  let server: ServeHandle;
  let ao: ReturnType<typeof connect>;
  const signer = () => createDataItemSigner(testWallet('client').jwk as never);

  beforeAll(async () => {
    server = await startServer({ store: tempStore(), jwk: testWallet('server').jwk, workers: 0, limits: { computeLimit: 300_000_000 } });
    ao = connect({ MODE: 'legacy', MU_URL: server.url, CU_URL: server.url, GATEWAY_URL: server.url });
  });
  afterAll(async () => server?.close());

  it('rolls a failed message back, without a pool', async () => {
    expect(server.pool).toBeUndefined();
    const module = await uploadModule(server.url, sharedFixture('aos-2-pure-xs.wasm'), 'application/wasm');
    const pid = await ao.spawn({ module, scheduler: server.signer.address, signer: signer() });
    const send = (data: string) => ao.message({ process: pid, signer: signer(), tags: [{ name: 'Action', value: 'Eval' }], data });
    expect((await ao.result({ process: pid, message: await send('V = 1; return V') })).Output.data).toBe('1');
    const loop = await send('V = 2; while true do end');
    const raw = (await (await fetch(`${server.url}/result/${loop}?process-id=${pid}`)).json()) as Record<string, unknown>;
    expect(raw).toMatchObject({ Error: 'call ran out of fuel (budget 300000000)', Limit: 'fuel', Messages: [] });
    expect(raw.Nondeterministic).toBeUndefined();
    expect((await ao.result({ process: pid, message: await send('return V') })).Output.data).toBe('1');
  }, 60_000);
});
