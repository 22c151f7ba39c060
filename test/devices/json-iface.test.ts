/** json-iface@1.0 driving AOS (aos-2-pure-xs) in a stack, through resolve (SPEC §6, §10.4). */
import { expect, it } from 'vitest';
import { aosWasmStack } from '../../src/devices';
import { resolve } from '../../src/ao';
import { cacheWrite } from '../../src/ao/cache';
import { wasm } from '../../src/devices/wasm-64';
import { describeShared, sharedFixture } from '../helpers/fixtures';

/** The built-in registry has wasm-64@1.0 and json-iface@1.0. */
const opts = {};

async function aosProcess(): Promise<Record<string, unknown>> {
  const image = await cacheWrite(sharedFixture('aos-2-pure-xs.wasm'));
  return aosWasmStack({ image, owner: 'FOOBAR', name: 'Thomas', authority: 'FOOBAR', id: 'AOS' });
}

function evalReq(code: string, extra: Record<string, unknown> = {}) {
  return { path: 'compute', 'block-height': 1, body: { action: 'Eval', data: code, target: 'AOS', owner: 'FOOBAR', from: 'FOOBAR', ...extra } };
}

describeShared('json-iface@1.0 with aos-2-pure-xs', () => {
  it('evaluates `return 1+1` to results/data "2"', async () => {
    const p = await resolve(await aosProcess(), 'init', opts);
    const r = await resolve(p, evalReq('return 1+1'), opts);
    expect(await resolve(r, 'results/data', opts)).toBe('2');
    expect(await resolve(r, 'results/wasm/type', opts)).toBe('ok');
  });

  it('puts a Send in results/outbox/1 with its tags as keys', async () => {
    const p = await resolve(await aosProcess(), 'init', opts);
    const r = await resolve(p, evalReq('Send({Target = "Foo", Data = "Bar", Action = "Ping"}); return 5'), opts);
    expect(await resolve(r, 'results/data', opts)).toBe('5');
    const out = await resolve(r, 'results/outbox/1', opts);
    expect(out).toMatchObject({ target: 'Foo', data: 'Bar', action: 'Ping', type: 'Message', 'from-process': 'AOS' });
  });

  it('reports a Lua error as results/data and results/error', async () => {
    const p = await resolve(await aosProcess(), 'init', opts);
    const r = await resolve(p, evalReq('error("boom")'), opts);
    expect(await resolve(r, 'results/error', opts)).toMatch(/\[string "aos"\]:1: boom$/);
  });

  it('keeps state across messages and through a snapshot into a fresh process', async () => {
    const p = await resolve(await aosProcess(), 'init', opts);
    const r1 = await resolve(p, evalReq('X = 42'), opts);
    const snap = await resolve(r1, 'snapshot', opts);
    expect(snap.body).toBeInstanceOf(Uint8Array);
    // As process@1.0 does after loading a snapshot: normalize first, then compute.
    const fresh = await resolve({ ...(await aosProcess()), snapshot: snap }, 'normalize', opts);
    const r2 = await resolve(fresh, evalReq('return X'), opts);
    expect(await resolve(r2, 'results/data', opts)).toBe('42');
    expect(wasm.instance(r2)).not.toBe(wasm.instance(r1));
  });

  it('does not grow guest memory per message (one reused scratch buffer)', async () => {
    let p = await resolve(await aosProcess(), 'init', opts);
    p = await resolve(p, evalReq('return 1'), opts);
    const size = wasm.instance(p)!.memory.size;
    for (let i = 0; i < 200; i++) p = await resolve(p, evalReq(`return ${i}`), opts);
    expect(await resolve(p, 'results/data', opts)).toBe('199');
    expect(wasm.instance(p)!.memory.size).toBe(size);
  });
});
