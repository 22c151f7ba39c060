/**
 * A message the wall-clock deadline ended is recorded flagged `Nondeterministic`; when serve
 * recomputes the process after a restart it keeps that outcome instead of computing the message
 * again (so the process's history stays the same), and the state stays the one before it.
 */
import { connect, createDataItemSigner } from '@permaweb/aoconnect';
import { expect, it } from 'vitest';
import { startServer } from '../../src/serve/app';
import { describeShared, sharedFixture } from '../helpers/fixtures';
import { tempStore, testWallet, uploadModule } from '../helpers/serve';

describeShared('serve and the deadline across a restart', () => {
  it('keeps a flagged outcome when recomputing', async () => {
    const store = tempStore();
    const jwk = testWallet('server').jwk;
    const signer = () => createDataItemSigner(testWallet('client').jwk as never);
    const opts = { store, jwk, workers: 1, limits: { timeLimit: 300 }, snapshotInterval: 1000 };
    let server = await startServer(opts);
    let ao = connect({ MODE: 'legacy', MU_URL: server.url, CU_URL: server.url, GATEWAY_URL: server.url });
    const module = await uploadModule(server.url, sharedFixture('aos-2-pure-xs.wasm'), 'application/wasm');
    const pid = await ao.spawn({ module, scheduler: server.signer.address, signer: signer(), tags: [{ name: 'Compute-Limit', value: '1000000000000000' }] });
    const send = (data: string) => ao.message({ process: pid, signer: signer(), tags: [{ name: 'Action', value: 'Eval' }], data });
    await ao.result({ process: pid, message: await send('Y = 1') });
    const loop = await send('Y = 2; while true do end');
    const raw = async () => (await (await fetch(`${server.url}/result/${loop}?process-id=${pid}`)).json()) as Record<string, unknown>;
    const first = await raw();
    expect(first).toMatchObject({ Limit: 'time', Nondeterministic: true });
    expect((await ao.result({ process: pid, message: await send('return Y') })).Output.data).toBe('1');
    await server.close();

    // Restarted with no deadline to speak of: the loop would now end by its (huge) fuel budget.
    server = await startServer({ ...opts, limits: { timeLimit: 60_000 } });
    ao = connect({ MODE: 'legacy', MU_URL: server.url, CU_URL: server.url, GATEWAY_URL: server.url });
    try {
      const t = Date.now();
      expect(await raw()).toEqual(first);
      expect((await ao.result({ process: pid, message: await send('return Y') })).Output.data).toBe('1');
      expect(Date.now() - t).toBeLessThan(10_000);
      const info = (await (await fetch(`${server.url}/`)).json()) as Record<string, unknown>;
      expect(info['recompute-mismatches']).toBe(0);
    } finally {
      await server.close();
    }
  }, 90_000);
});
