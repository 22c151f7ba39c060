/** process@1.0 through resolve (SPEC §9, §10.7). */
import { beforeAll, describe, expect, it } from 'vitest';
import { cacheWrite, resetPriv, resolve } from '../../src/ao';
import type { Message } from '../../src/ao';
import { AoError } from '../../src/errors';
import { inputPrefix, outputPrefix } from '../../src/devices/stack';
import { wasm } from '../../src/devices/wasm-64';
import { describeShared, sharedFixture } from '../helpers/fixtures';
import { rejection } from '../helpers/thrown';
import { wat } from '../helpers/wat';

/** The built-in registry has process@1.0, stack@1.0, wasm-64@1.0, json-iface@1.0, test-device@1.0. */
const opts = {};

/** fac(f64) as in test.wasm, plus an accumulator in memory (`add`) and a guest that traps after writing (`poison`). */
const ACC_WAT = `(module
  (memory (export "memory") 1)
  (func $fac (export "fac") (param $n f64) (result f64)
    (if (result f64) (f64.lt (local.get $n) (f64.const 1))
      (then (f64.const 1))
      (else (f64.mul (local.get $n) (call $fac (f64.sub (local.get $n) (f64.const 1)))))))
  (func (export "add") (param $x i32) (result i32)
    (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (local.get $x)))
    (i32.load (i32.const 0)))
  (func (export "poison") (param $x i32) (result i32)
    (i32.store (i32.const 0) (local.get $x))
    unreachable))`;

let accImage: string;
beforeAll(async () => {
  accImage = await cacheWrite(await wat(ACC_WAT));
});

function wasmProcess(image: string, extra: Message = {}): Message {
  return { device: 'process@1.0', 'execution-device': 'wasm-64@1.0', image, type: 'Process', ...extra };
}

const call = (fn: string, ...parameters: number[]) => ({ function: fn, parameters });

/** A snapshot after every slot (HyperBEAM's test configuration, process_snapshot_slots = 1). */
const EVERY_SLOT = { 'snapshot-interval': 1 };

/** Schedule each body in turn. */
async function scheduled(proc: Message, ...bodies: Message[]): Promise<Message> {
  let p = proc;
  for (const body of bodies) p = await resolve(p, { path: 'schedule', body }, opts);
  return p;
}

async function computeSlot(proc: Message, slot: number): Promise<Message> {
  return resolve(proc, { path: 'compute', slot }, opts);
}

describe('process@1.0 schedule', () => {
  it('appends {slot, body, block-height, block-timestamp} assignments from slot 0, leaving the base unchanged', async () => {
    const p0 = wasmProcess(accImage);
    const p1 = await resolve(p0, { path: 'schedule', body: call('add', 1), 'block-height': 7, 'block-timestamp': 1000 }, opts);
    const p2 = await resolve(p1, { path: 'schedule', body: call('add', 2) }, opts);
    expect(p0.schedule).toBeUndefined();
    expect(p1.schedule).toHaveLength(1);
    expect(p2.schedule).toEqual([
      { slot: 0, body: call('add', 1), 'block-height': 7, 'block-timestamp': 1000 },
      { slot: 1, body: call('add', 2), 'block-height': 7, 'block-timestamp': 1000 },
    ]);
  });

  it('defaults block-height and block-timestamp to 0 and accepts a list of bodies', async () => {
    const p = await resolve(wasmProcess(accImage), { path: 'schedule', body: [call('add', 1), call('add', 2)] }, opts);
    expect(p.schedule).toEqual([
      { slot: 0, body: call('add', 1), 'block-height': 0, 'block-timestamp': 0 },
      { slot: 1, body: call('add', 2), 'block-height': 0, 'block-timestamp': 0 },
    ]);
  });

  it('answers the schedule list without a body, and slot gives the last scheduled slot', async () => {
    const empty = wasmProcess(accImage);
    expect(await resolve(empty, 'schedule', opts)).toEqual([]);
    expect(await resolve(empty, 'slot', opts)).toBe(-1);
    const p = await scheduled(empty, call('add', 1), call('add', 2));
    expect(await resolve(p, 'slot', opts)).toBe(1);
    expect(await resolve(p, 'schedule/2/body/parameters', opts)).toEqual([2]);
  });

  it('rejects a block-height below the previous assignment and a body that is not a message', async () => {
    const p = await resolve(wasmProcess(accImage), { path: 'schedule', body: call('add', 1), 'block-height': 5 }, opts);
    const low = await rejection(resolve(p, { path: 'schedule', body: call('add', 1), 'block-height': 4 }, opts));
    expect(low).toMatchObject({ status: 400, message: "process@1.0: 'block-height' 4 is below the previous assignment's (5)" });
    const bad = await rejection(resolve(p, { path: 'schedule', body: 'Eval' }, opts));
    expect(bad).toMatchObject({ status: 400, message: 'process@1.0: schedule needs a message (or a list of messages) as body' });
  });
});

describe('process@1.0 on a WAT fixture (wasm-64@1.0)', () => {
  it('computes fac(5.0) at slot 0 → [120] and fac(6.0) at slot 1 → [720]', async () => {
    const p = await scheduled(wasmProcess(accImage), call('fac', 5.0), call('fac', 6.0));
    const s0 = await computeSlot(p, 0);
    expect(await resolve(s0, 'results/output', opts)).toEqual([120]);
    expect(await resolve(s0, 'at-slot', opts)).toBe(0);
    const s1 = await computeSlot(s0, 1);
    expect(await resolve(s1, 'results/output', opts)).toEqual([720]);
    expect(await resolve(s1, 'at-slot', opts)).toBe(1);
  });

  it('init stores the process definition under process and sets initialized and at-slot -1, leaking no bookkeeping', async () => {
    const def = wasmProcess(accImage);
    const p = await resolve(def, 'init', opts);
    expect(p.process).toEqual(def);
    expect(p).toMatchObject({ device: 'process@1.0', initialized: 'true', 'at-slot': -1 });
    for (const k of ['input-prefix', 'output-prefixes', 'device-key', 'pass', 'results', 'snapshot']) expect(p[k]).toBeUndefined();
    expect(wasm.instance(p)).toBeDefined();
  });

  it('initialises on the first compute, and leaves the base and its bookkeeping untouched', async () => {
    const p = await scheduled(wasmProcess(accImage), call('add', 5));
    const before = { ...p };
    const s0 = await computeSlot(p, 0);
    expect(p).toEqual(before);
    expect(s0).toMatchObject({ device: 'process@1.0', initialized: 'true', 'at-slot': 0, 'snapshot-slot': 0, results: { type: 'ok', output: [5] } });
    for (const k of ['input-prefix', 'output-prefixes', 'device-key', 'pass']) expect(s0[k]).toBeUndefined();
    expect(s0.schedule).toEqual(p.schedule);
  });

  it('computes up to the last scheduled slot when the request has no slot', async () => {
    const p = await scheduled(wasmProcess(accImage), call('add', 1), call('add', 2), call('add', 3));
    const r = await resolve(p, 'compute', opts);
    expect(r).toMatchObject({ 'at-slot': 2, results: { output: [6] } });
  });

  it('answers the message itself for the slot it is at', async () => {
    const s0 = await computeSlot(await scheduled(wasmProcess(accImage), call('add', 5)), 0);
    expect(await computeSlot(s0, 0)).toBe(s0);
  });

  it('reads a past slot on a state of its own, never rewinding the live one; an unscheduled slot is a 404', async () => {
    const p = await scheduled(wasmProcess(accImage), call('add', 1), call('add', 2), call('add', 4));
    const s2 = await computeSlot(p, 2);
    expect(s2.results.output).toEqual([7]);
    const past = await computeSlot(s2, 0); // replayed from init: the only snapshot is of slot 0, taken first
    expect([past['at-slot'], past.results.output]).toEqual([0, [1]]);
    expect(wasm.instance(past)).not.toBe(wasm.instance(s2));
    const s1 = await computeSlot(s2, 1);
    expect(s1.results.output).toEqual([3]);
    // s2 still holds the live state: it goes on from 7
    const s3 = await computeSlot(await scheduled(s2, call('add', 8)), 3);
    expect(s3.results.output).toEqual([15]);
    const missing = await rejection(computeSlot(s2, 5));
    expect(missing).toMatchObject({
      status: 404,
      code: 'ERR_NOT_FOUND',
      phase: 'get-schedule',
      'attempted-slot': 5,
      message: 'process@1.0: get-schedule failed at slot 5: slot 5 is not scheduled (the schedule ends at slot 2)',
    });
  });

  it('bounds a historical replay: past historical-replay-limit slots from a restore point it answers 503', async () => {
    const p = await scheduled(wasmProcess(accImage, { 'historical-replay-limit': 1, 'snapshot-interval': 0 }), call('add', 1), call('add', 2), call('add', 4));
    const s2 = await computeSlot(p, 2);
    const e = await rejection(computeSlot(s2, 1));
    expect(e).toMatchObject({
      status: 503,
      code: 'ERR_REPLAY_LIMIT',
      device: 'process@1.0',
      message: 'process@1.0: slot 1 is in the past (at slot 2) and 2 slots from the nearest restore point (init); historical replays are limited to 1 slots',
    });
    expect((await computeSlot(s2, 0)).results.output).toEqual([1]); // one slot from init: within the limit
    const withSnap = await scheduled(wasmProcess(accImage, { 'historical-replay-limit': 1, 'snapshot-interval': 1 }), call('add', 1), call('add', 2), call('add', 4));
    const t2 = await computeSlot(withSnap, 2);
    const fromSnapshot = await computeSlot({ ...t2, snapshot: (await computeSlot(withSnap, 0)).snapshot, 'snapshot-slot': 0 }, 1);
    expect(fromSnapshot.results.output).toEqual([3]); // one slot after the snapshot of slot 0
  });

  it('rejects a slot that is not a non-negative integer and a process without execution-device', async () => {
    const p = await scheduled(wasmProcess(accImage), call('add', 1));
    expect(await rejection(resolve(p, { path: 'compute', slot: 'x' }, opts))).toMatchObject({
      status: 400,
      message: `process@1.0: 'slot' must be a non-negative integer, got "x"`,
    });
    const { 'execution-device': _, ...noExec } = p;
    expect(await rejection(computeSlot(noExec, 0))).toMatchObject({ status: 400, message: 'process@1.0: the process has no execution-device' });
  });

  it('rejects a snapshot-interval that is not a non-negative integer', async () => {
    const p = await scheduled(wasmProcess(accImage, { 'snapshot-interval': -1 }), call('add', 1));
    expect(await rejection(computeSlot(p, 0))).toMatchObject({
      status: 400,
      message: "process@1.0: 'snapshot-interval' must be a non-negative integer, got -1",
    });
  });

  it('returns a failing init as an error with phase init', async () => {
    const e = await rejection(resolve({ device: 'process@1.0', 'execution-device': 'wasm-64@1.0' }, 'init', opts));
    expect(e).toMatchObject({
      status: 400,
      phase: 'init',
      'attempted-slot': -1,
      key: 'init',
      message: 'process@1.0: init failed: No viable image found in process/image.',
    });
  });

  it('keeps a trap as the slot result, and the previous message computes its next slot from its own state', async () => {
    const s0 = await computeSlot(await scheduled(wasmProcess(accImage), call('add', 5)), 0);
    const trapped = await computeSlot(await scheduled(s0, call('poison', 1000)), 1);
    expect(trapped.results).toEqual({ type: 'error', output: 'call trapped: wasm trap: wasm `unreachable` instruction executed' });
    // The trap wrote 1000 into the shared instance's memory; s0 is restored from its snapshot.
    const next = await computeSlot(await scheduled(s0, call('add', 1)), 1);
    expect(next.results).toEqual({ type: 'ok', output: [6] });
  });

  it('returns a failing slot as an error annotated with phase and attempted-slot; the previous message still computes', async () => {
    const s0 = await computeSlot(await scheduled(wasmProcess(accImage), call('add', 5)), 0);
    const e = await rejection(computeSlot(await scheduled(s0, call('missing')), 1));
    expect(e).toMatchObject({
      status: 404,
      phase: 'compute',
      'attempted-slot': 1,
      message: 'process@1.0: compute failed at slot 1: function not found: missing',
      body: { body: 'function not found: missing', phase: 'compute', 'attempted-slot': 1 },
    });
    const next = await computeSlot(await scheduled(s0, call('add', 1)), 1);
    expect(next.results).toEqual({ type: 'ok', output: [6] });
  });

  it('lets an older message compute its own future without disturbing the newer one', async () => {
    const s0 = await computeSlot(await scheduled(wasmProcess(accImage), call('add', 5)), 0);
    const s1 = await computeSlot(await scheduled(s0, call('add', 10)), 1);
    const fork = await computeSlot(await scheduled(s0, call('add', 100)), 1);
    expect(fork.results.output).toEqual([105]);
    expect(wasm.instance(fork)).not.toBe(wasm.instance(s1));
    const s2 = await computeSlot(await scheduled(s1, call('add', 1)), 2);
    expect(s2.results.output).toEqual([16]);
    expect(wasm.instance(s2)).toBe(wasm.instance(s1));
  });

  it('gives concurrent computes on one message their own execution state', async () => {
    const s0 = await computeSlot(await scheduled(wasmProcess(accImage), call('add', 5)), 0);
    const forkA = await scheduled(s0, call('add', 10));
    const forkB = await scheduled(s0, call('add', 100));
    const [a, b] = await Promise.all([computeSlot(forkA, 1), computeSlot(forkB, 1)]);
    expect([a.results.output, b.results.output]).toEqual([[15], [105]]);
  });

  it('restores from the snapshot when the message comes back from the cache without live state', async () => {
    const s1 = await computeSlot(await scheduled(wasmProcess(accImage, EVERY_SLOT), call('add', 5), call('add', 10), call('add', 1)), 1);
    expect(s1['snapshot-slot']).toBe(1);
    expect(s1.snapshot.body).toBeInstanceOf(Uint8Array);
    const id = await cacheWrite(s1);
    const s2 = await resolve(id, { path: 'compute', slot: 2 }, opts);
    expect(s2.results).toEqual({ type: 'ok', output: [16] });
    expect(s2['at-slot']).toBe(2);
  });

  it('restores a fresh process message that carries only the definition, schedule, snapshot and snapshot-slot', async () => {
    const s1 = await computeSlot(await scheduled(wasmProcess(accImage, EVERY_SLOT), call('add', 5), call('add', 10), call('add', 1)), 1);
    const fresh = { ...wasmProcess(accImage), schedule: s1.schedule, snapshot: s1.snapshot, 'snapshot-slot': 1 };
    const s2 = await computeSlot(fresh, 2);
    expect(s2.results.output).toEqual([16]);
    expect(s2.process).toEqual(wasmProcess(accImage));
  });

  it('starts from the snapshot instead of replaying the slots before it', async () => {
    const s1 = await computeSlot(await scheduled(wasmProcess(accImage, EVERY_SLOT), call('add', 5), call('add', 10)), 1);
    // Slots 0 and 1 would fail if they were replayed.
    const schedule = [
      { slot: 0, body: call('missing'), 'block-height': 0, 'block-timestamp': 0 },
      { slot: 1, body: call('missing'), 'block-height': 0, 'block-timestamp': 0 },
      { slot: 2, body: call('add', 1), 'block-height': 0, 'block-timestamp': 0 },
    ];
    const fresh = { ...wasmProcess(accImage), schedule, snapshot: s1.snapshot, 'snapshot-slot': 1 };
    expect((await computeSlot(fresh, 2)).results.output).toEqual([16]);
  });

  it('snapshots every snapshot-interval slots and replays the slots after the snapshot on restore', async () => {
    const p = await scheduled(wasmProcess(accImage, { 'snapshot-interval': 2 }), call('add', 1), call('add', 2), call('add', 3), call('add', 4));
    const s0 = await computeSlot(p, 0);
    expect(s0['snapshot-slot']).toBeUndefined();
    const s1 = await computeSlot(s0, 1);
    const s2 = await computeSlot(s1, 2);
    expect([s1['snapshot-slot'], s2['snapshot-slot']]).toEqual([1, 1]);
    const s3 = await computeSlot(resetPriv(s2), 3);
    expect(s3.results.output).toEqual([10]);
    expect(s3['snapshot-slot']).toBe(3);
  });

  it('snapshots by time by default (60 s, HyperBEAM process_snapshot_time), by slot count when snapshot-interval is set', async () => {
    let clock = 1000;
    const timed = { processClock: () => clock };
    const p = await scheduled(wasmProcess(accImage), call('add', 1), call('add', 2), call('add', 4), call('add', 8));
    const s0 = await resolve(p, { path: 'compute', slot: 0 }, timed);
    expect(s0['snapshot-slot']).toBe(0); // no snapshot yet: the first slot takes one
    clock = 1060;
    const s1 = await resolve(s0, { path: 'compute', slot: 1 }, timed);
    expect(s1['snapshot-slot']).toBe(0); // 60 s: not more than the interval
    clock = 1061;
    const s2 = await resolve(s1, { path: 'compute', slot: 2 }, timed);
    expect([s2['snapshot-slot'], s2.results.output]).toEqual([2, [7]]);
    const tenSeconds = await scheduled(wasmProcess(accImage, { 'snapshot-time': 10 }), call('add', 1), call('add', 2));
    clock = 0;
    const t0 = await resolve(tenSeconds, { path: 'compute', slot: 0 }, timed);
    clock = 11;
    expect((await resolve(t0, { path: 'compute', slot: 1 }, timed))['snapshot-slot']).toBe(1);
    const bySlots = await scheduled(wasmProcess(accImage, { 'snapshot-interval': 2 }), call('add', 1), call('add', 2));
    clock = 0;
    const u0 = await resolve(bySlots, { path: 'compute', slot: 0 }, timed);
    expect(u0['snapshot-slot']).toBeUndefined(); // slot counts only: slot 0 is 1 slot after "none" (-1)
    clock = 10_000;
    expect((await resolve(u0, { path: 'compute', slot: 1 }, timed))['snapshot-slot']).toBe(1);
  });

  it('re-initialises and replays the schedule when there is no snapshot (snapshot-interval 0)', async () => {
    const p = await scheduled(wasmProcess(accImage, { 'snapshot-interval': 0 }), call('add', 5), call('add', 10), call('add', 1));
    const s1 = await computeSlot(p, 1);
    expect(s1.snapshot).toBeUndefined();
    const s2 = await computeSlot(resetPriv(s1), 2);
    expect(s2.results.output).toEqual([16]);
  });
});

/** A device recording what it sees while running as execution. */
const recorder = {
  init: (base: Message) => ({ ...base, 'init-seen': { input: inputPrefix(base), output: outputPrefix(base) } }),
  compute: (base: Message, req: Message) => ({
    ...base,
    results: {
      device: base.device,
      input: inputPrefix(base),
      output: outputPrefix(base),
      'has-schedule': base.schedule !== undefined,
      'has-snapshot': base.snapshot !== undefined,
      req: { slot: req.slot, 'block-height': req['block-height'], 'block-timestamp': req['block-timestamp'], body: req.body },
    },
  }),
  snapshot: () => ({ body: 'state' }),
};

describe('process@1.0 running as execution', () => {
  it('swaps in execution-device, input-prefix process and execution-output-prefixes, and puts the process values back', async () => {
    const o = { devices: { 'recorder@1.0': recorder } };
    const def = { device: 'process@1.0', 'execution-device': 'stack@1.0', 'device-stack': ['recorder@1.0'], 'execution-output-prefixes': ['out'] };
    let p: Message = await resolve(def, 'init', o);
    p = await resolve(p, { path: 'schedule', body: { action: 'A' }, 'block-height': 3, 'block-timestamp': 99 }, o);
    p = await resolve(p, { path: 'schedule', body: { action: 'B' } }, o);
    const s1 = await resolve(p, { path: 'compute', slot: 1 }, o);
    expect(s1['init-seen']).toEqual({ input: 'process', output: 'out' });
    expect(s1.results).toEqual({
      device: 'recorder@1.0',
      input: 'process',
      output: 'out',
      'has-schedule': false,
      'has-snapshot': false,
      req: { slot: 1, 'block-height': 3, 'block-timestamp': 99, body: { action: 'B' } },
    });
    expect(s1.device).toBe('process@1.0');
    for (const k of ['input-prefix', 'output-prefix', 'output-prefixes', 'device-key', 'pass']) expect(s1[k]).toBeUndefined();
    // A map-mode stack files each device's snapshot under its stack key.
    expect(s1.snapshot).toEqual({ 1: { body: 'state' } });
  });

  it('keeps a fold-mode snapshot (snapshot-mode Fold) as snapshot/body, without the stack bookkeeping', async () => {
    const o = { devices: { 'recorder@1.0': recorder } };
    const def = { device: 'process@1.0', 'execution-device': 'stack@1.0', 'device-stack': ['recorder@1.0', 'multipass@1.0'], 'snapshot-mode': 'Fold' };
    const s0 = await resolve(await resolve(def, { path: 'schedule', body: {} }, o), { path: 'compute', slot: 0 }, o);
    expect(s0.snapshot).toEqual({ body: 'state' });
  });

  it('drops snapshot answers that echo the execution state (multipass in map mode)', async () => {
    const def = { device: 'process@1.0', 'execution-device': 'stack@1.0', 'device-stack': ['multipass@1.0'] };
    const s0 = await resolve(await resolve(def, { path: 'schedule', body: {} }, opts), { path: 'compute', slot: 0 }, opts);
    expect(s0.snapshot).toEqual({});
  });

  it('runs a stack of two test-device@1.0 per slot: slot 1 has assignment-slot 1 and already-seen [1, 1, 0, 0]', async () => {
    const def = { device: 'process@1.0', 'execution-device': 'stack@1.0', 'device-stack': ['test-device@1.0', 'test-device@1.0'], type: 'Process' };
    const p = await scheduled(def, { action: 'A' }, { action: 'B' });
    const s1 = await computeSlot(p, 1);
    expect(await resolve(s1, 'results/assignment-slot', opts)).toBe(1);
    expect(await resolve(s1, 'already-seen', opts)).toEqual([1, 1, 0, 0]);
    expect(await resolve(s1, 'random-key', opts)).toBe('random-value');
  });
});

// ---------------------------------------------------------------------------------------------
// Shared fixtures (SPEC §10.7)

async function aosProcess(extra: Message = {}): Promise<Message> {
  const image = await cacheWrite(sharedFixture('aos-2-pure-xs.wasm'));
  return {
    device: 'process@1.0',
    'execution-device': 'stack@1.0',
    'device-stack': ['json-iface@1.0', 'wasm-64@1.0', 'multipass@1.0'],
    'output-prefix': 'wasm',
    passes: 2,
    'stack-keys': ['init', 'compute', 'snapshot', 'normalize'],
    type: 'Process',
    image,
    owner: 'FOOBAR',
    authority: 'FOOBAR',
    name: 'Thomas',
    id: 'AOS',
    ...extra,
  };
}

const evalMsg = (code: string) => ({ action: 'Eval', data: code, target: 'AOS', owner: 'FOOBAR', from: 'FOOBAR' });

async function evals(proc: Message, ...codes: string[]): Promise<Message> {
  let p = proc;
  for (const code of codes) p = await resolve(p, { path: 'schedule', body: evalMsg(code), 'block-height': 1 }, opts);
  return p;
}

describeShared('process@1.0 on the shared fixtures', () => {
  it('wasm_compute: test.wasm computes fac(5.0) → [120] at slot 0 and fac(6.0) → [720] at slot 1', async () => {
    const image = await cacheWrite(sharedFixture('test.wasm'));
    const p = await scheduled(wasmProcess(image), call('fac', 5.0), call('fac', 6.0));
    const s0 = await computeSlot(p, 0);
    expect(await resolve(s0, 'results/output', opts)).toEqual([120]);
    const s1 = await computeSlot(s0, 1);
    expect(await resolve(s1, 'results/output', opts)).toEqual([720]);
  });

  it('aos_compute: `return 1+1` → results/data "2" at slot 0, `return 2+2` → "4" at slot 1', async () => {
    const p = await evals(await aosProcess(), 'return 1+1', 'return 2+2');
    const s0 = await computeSlot(p, 0);
    expect(await resolve(s0, 'results/data', opts)).toBe('2');
    const s1 = await computeSlot(s0, 1);
    expect(await resolve(s1, 'results/data', opts)).toBe('4');
    expect(s1.device).toBe('process@1.0');
    for (const k of ['input-prefix', 'device-key', 'pass']) expect(s1[k]).toBeUndefined();
    expect(s1['output-prefix']).toBe('wasm');
  });

  it('now_results: now/results/data is "4", and slot 1 results stay readable', async () => {
    const p = await evals(await aosProcess(), 'return 1+1', 'return 2+2');
    expect(await resolve(p, 'now/results/data', opts)).toBe('4');
    const now = await resolve(p, 'now', opts);
    expect(await resolve(now, { path: 'compute/results/data', slot: 1 }, opts)).toBe('4');
  });

  it('restore: X = 42, X = 1337 then `return X` → "1337" from a snapshot, via the cache and via a fresh message', async () => {
    const p = await evals(await aosProcess(EVERY_SLOT), 'X = 42', 'X = 1337', 'return X');
    const s1 = await computeSlot(p, 1);
    expect(s1['snapshot-slot']).toBe(1);
    expect(await resolve(s1, 'snapshot/2/body', opts)).toBeInstanceOf(Uint8Array);
    const id = await cacheWrite(s1);
    expect(await resolve(id, { path: 'compute/results/data', slot: 2 }, opts)).toBe('1337');
    const fresh = { ...(await aosProcess()), schedule: s1.schedule, snapshot: s1.snapshot, 'snapshot-slot': 1 };
    expect(await resolve(fresh, { path: 'compute/results/data', slot: 2 }, opts)).toBe('1337');
  });

  it('restore: a fold-mode snapshot (snapshot/body) restores too', async () => {
    const p = await evals(await aosProcess({ 'snapshot-mode': 'Fold' }), 'X = 42', 'X = 1337', 'return X');
    const s1 = await computeSlot(p, 1);
    expect(Object.keys(s1.snapshot)).toEqual(['body']);
    expect(await resolve(resetPriv(s1), { path: 'compute/results/data', slot: 2 }, opts)).toBe('1337');
  });

  it('reports a Lua error as the slot results, and the process continues', async () => {
    const s1 = await computeSlot(await evals(await aosProcess(), 'X = 42', 'error("boom")', 'return X'), 1);
    expect(await resolve(s1, 'results/error', opts)).toMatch(/\[string "aos"\]:1: boom$/);
    expect(await resolve(s1, { path: 'compute/results/data', slot: 2 }, opts)).toBe('42');
  });

  it('returns an out-of-fuel guest as an annotated error, and the previous message still computes its next slot', async () => {
    const s0 = await computeSlot(await evals(await aosProcess({ fuel: 1_000_000_000 }), 'X = 42'), 0);
    const e = await rejection(computeSlot(await evals(s0, 'while true do X = X + 1 end'), 1));
    expect(e).toMatchObject({ status: 500, phase: 'compute', 'attempted-slot': 1 });
    expect(e.message).toMatch(/^process@1\.0: compute failed at slot 1: stack@1\.0 entry 1 \(json-iface@1\.0\)/);
    const s1 = await computeSlot(await evals(s0, 'return X'), 1);
    expect(await resolve(s1, 'results/data', opts)).toBe('42');
  });
});

describe('process@1.0 hands the keys it does not define to its execution device (a departure from HyperBEAM)', () => {
  const MATH = 'function add(a, b) return a + b end function greet(base, req) return "Hello, " .. (req.name or "stranger") .. "!" end Calls = 0 function bump() Calls = Calls + 1 return Calls end';
  const luaProcess = (extra: Message = {}): Message => ({
    device: 'process@1.0',
    'execution-device': 'lua@5.3a',
    module: { 'content-type': 'application/lua', body: MATH },
    ...extra,
  });

  it('a Lua process made by lua.init calls its functions; stored keys read as stored; private keys stay hidden', async () => {
    const { lua } = await import('../../src/devices/lua');
    const p = await lua.init(luaProcess({ note: 'stored' }), {}, {});
    expect(p.device).toBe('process@1.0');
    expect(await resolve(p, { path: 'add', parameters: [5, 3] }, opts)).toBe(8);
    expect(await resolve(p, { path: 'greet', name: 'Ada' }, opts)).toBe('Hello, Ada!');
    expect(await resolve(p, 'note', opts)).toBe('stored');
    expect(await resolve(p, 'execution-device', opts)).toBe('lua@5.3a');
    expect((await rejection(resolve(p, 'priv', opts))).status).toBe(404);
    expect(await resolve(p, 'keys', opts)).toEqual(['device', 'execution-device', 'module', 'note']);
    const missing = await rejection(resolve(p, 'nope', opts));
    expect([missing.status, missing.message]).toEqual([404, "Key 'nope' not found: no Lua function 'nope'"]);
  });

  it('snapshot gives the execution device snapshot; normalize restores it into a fresh process', async () => {
    let p = await resolve(luaProcess(), 'init', opts);
    expect(await resolve(p, 'bump', opts)).toBe(1);
    expect(await resolve(p, 'bump', opts)).toBe(2);
    const snap = await resolve(p, 'snapshot', opts);
    expect(Object.keys(snap)).toEqual(['body']);
    p = await resolve({ ...luaProcess(), snapshot: snap }, 'normalize', opts);
    expect([p.device, p.snapshot]).toEqual(['process@1.0', undefined]);
    expect(await resolve(p, 'bump', opts)).toBe(3);
  });

  it('refuses to reach a state that a newer message advanced (409), and needs an execution device (404)', async () => {
    const p = await scheduled(wasmProcess(accImage), call('add', 1), call('add', 2));
    const s0 = await computeSlot(p, 0);
    const s1 = await computeSlot(s0, 1);
    const stale = await rejection(resolve(s0, 'snapshot', opts));
    expect([stale.status, stale.code]).toEqual([409, 'ERR_STALE_STATE']);
    expect(stale.message).toBe(
      "process@1.0: this message's execution state has moved on (a newer message computed from it), so 'snapshot' cannot run on it; use the newest message, or this one's stored snapshot",
    );
    expect(Object.keys(await resolve(s1, 'snapshot', opts))).toEqual(['body']);
    const none = await rejection(resolve({ device: 'process@1.0' }, 'add', opts));
    expect([none.status, none.message]).toEqual([404, "Key 'add' not found: the process has no execution-device to hand it to (device process@1.0)"]);
  });
});
