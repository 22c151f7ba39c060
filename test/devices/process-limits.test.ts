/**
 * AO's `compute-limit` / `memory-limit` keys on a process@1.0 message: the deterministic budget
 * of each message (Lua steps for lua@5.3a, fuel for wasm-64@1.0). Going past it fails the
 * message's compute with a `LimitError`; nothing is recorded and the process stays computable.
 */
import { expect, it } from 'vitest';
import { cacheWrite, resolve, type Message } from '../../src/ao';
import { aosLuaProcess, aosWasmStack, rsaCommitment } from '../../src/devices';
import { wasm } from '../../src/devices/wasm-64';
import { LimitError } from '../../src/errors';
import { describeShared, sharedFixture } from '../helpers/fixtures';
import { rejection } from '../helpers/thrown';

const OWNER = 'O'.repeat(43);

describeShared('compute-limit on AO processes', () => {
  it('lua@5.3a under process@1.0: compute-limit is the step budget of each message', async () => {
    let proc: Message = aosLuaProcess(sharedFixture('hyper-aos.lua'), { owner: OWNER, id: 'P', 'compute-limit': 2_000_000 });
    const msg = (i: number, data: string) => ({ path: 'schedule', body: { action: 'Eval', data, commitments: rsaCommitment(OWNER, `M${i}`) }, 'block-height': i });
    proc = await resolve(await resolve(proc, { path: 'schedule', body: { type: 'Process', id: 'P', data: '', commitments: rsaCommitment(OWNER, 'P') }, 'block-height': 0 }), 'now');
    proc = await resolve(await resolve(proc, msg(1, 'x = 3')), 'now');
    const looping = await resolve(proc, msg(2, 'while true do end'));
    const e = await rejection(resolve(looping, 'now'));
    expect(e).toMatchObject({ code: 'ERR_LIMIT_STEPS', phase: 'compute', 'attempted-slot': 2 });
    expect(e.cause).toBeInstanceOf(LimitError);
    expect(e.cause).toMatchObject({ limit: 'steps', message: 'instruction limit of 2000000 exceeded' });
    // Nothing was recorded: the process computes its next message from the state before.
    const next = await resolve(await resolve(proc, msg(2, 'return x')), 'now');
    expect(((next as { results: Message }).results.output as Message).data).toBe('3');
  });

  it('wasm-64@1.0 in the AOS stack: compute-limit is the fuel of each call', async () => {
    const image = await cacheWrite(sharedFixture('aos-2-pure-xs.wasm'));
    let st = await resolve({ ...aosWasmStack({ image, owner: OWNER, id: 'P', tags: [] }), 'compute-limit': 300_000_000 }, 'init');
    const body = (i: number, data: string) => ({ path: 'compute', 'block-height': i, body: { id: `M${i}`, owner: OWNER, from: OWNER, target: 'P', data, tags: [{ name: 'Action', value: 'Eval' }] } });
    st = await resolve(st, body(1, 'x = 1'));
    await expect(resolve(st, body(2, 'while true do end'))).rejects.toThrow(/WASM execution error/);
    expect(wasm.lastFault(st)).toMatchObject({ limit: 'fuel', code: 'ERR_LIMIT_FUEL' });
  });
});
