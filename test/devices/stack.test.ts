// SPEC §10.5: HyperBEAM's dev_stack and dev_multipass vectors through the public API, plus the
// §12 fixes (prefix restoration, bookkeeping keys, `mode` case, multipass re-runs).
import { describe, expect, it } from 'vitest';
import { as, get, resolve, resolveStatus, set, status, type Device, type Message } from '../../src/ao';
import { appendDevice, prefixSetDevice } from '../../src/devices';

function stackOf(devices: Record<string, unknown> | unknown[], extra: Message = {}): Message {
  return { device: 'Stack@1.0', 'device-stack': devices, result: 'INIT', ...extra };
}

const prefixStack = (extra: Message = {}): Message => ({
  device: 'Stack@1.0',
  'device-stack': { 1: prefixSetDevice(), 2: prefixSetDevice() },
  ...extra,
});

describe('stack@1.0 test vectors', () => {
  it('activates a stack entry by key (transform_internal_call_device)', async () => {
    const msg = { device: 'Stack@1.0', 'device-stack': { 1: appendDevice('_'), 2: 'Message@1.0' } };
    expect(await resolve(msg, 'transform/2/device')).toBe('Message@1.0');
  });

  it('runs a key on one named entry via /transform (transform_external_call_device)', async () => {
    const makeCool: Device = {
      info: () => ({
        handler: (key: string, m: Message) =>
          key === 'keys' ? Object.keys(m) : { ...m, [key]: `${get(key, as('message@1.0', m))}-Cool` },
      }),
      suffix: '-Cool',
    };
    const msg = { device: 'Stack@1.0', 'device-stack': { 'make-cool': makeCool }, value: 'Super' };
    const out = await resolve(msg, { path: '/transform/make-cool/value' });
    expect(out.value).toBe('Super-Cool');
  });

  it('checks the append device on its own (example_device_for_stack)', async () => {
    const out = await resolve({ device: appendDevice('_'), result: '1' }, { path: 'append', bin: '2' });
    expect(out).toEqual({ device: expect.any(Object), result: '1_2' });
  });

  it('folds two devices (simple_stack_execute)', async () => {
    const msg = stackOf({ 1: appendDevice('!D1!'), 2: appendDevice('_D2_') });
    const out = await resolve(msg, { path: 'append', bin: '2' });
    expect(out.result).toBe('INIT!D1!2_D2_2');
  });

  it('folds eight devices (many_devices)', async () => {
    const devs: Record<string, Device> = {};
    for (let i = 1; i <= 8; i++) devs[i] = appendDevice(`+D${i}`);
    const out = await resolve(stackOf(devs), { path: 'append', bin: '2' });
    expect(out.result).toBe('INIT+D12+D22+D32+D42+D52+D62+D72+D82');
  });

  it('folds five devices repeatedly with the same result (benchmark, without timing)', async () => {
    const devs: Record<string, Device> = {};
    for (let i = 1; i <= 5; i++) devs[i] = appendDevice(`+D${i}`);
    const msg = stackOf(devs);
    for (let n = 0; n < 10; n++) {
      expect((await resolve(msg, { path: 'append', bin: '2' })).result).toBe('INIT+D12+D22+D32+D42+D52');
    }
  });

  it('reads and writes unprefixed keys without prefixes (no_prefix)', async () => {
    const out = await resolve(prefixStack(), { path: 'prefix_set', key: 'example', example: 1 });
    expect(get('example', out)).toBe(1);
  });

  it('writes under per-device output prefixes (output_prefix)', async () => {
    const msg = prefixStack({ 'output-prefixes': { 1: 'out1/', 2: 'out2/' } });
    const out = await resolve(msg, { path: 'prefix_set', key: 'example', example: 1 });
    expect(get('out1/example', { ...out, device: 'message@1.0' })).toBe(1);
    expect(get('out2/example', { ...out, device: 'message@1.0' })).toBe(1);
  });

  it('reads and writes under per-device prefixes (input_and_output_prefixes)', async () => {
    const msg = prefixStack({
      'input-prefixes': { 1: 'in1/', 2: 'in2/' },
      'output-prefixes': { 1: 'out1/', 2: 'out2/' },
    });
    const out = await resolve(msg, { path: 'prefix_set', key: 'example', in1: { example: 1 }, in2: { example: 2 } });
    expect(get('out1/example', { ...out, device: 'message@1.0' })).toBe(1);
    expect(get('out2/example', { ...out, device: 'message@1.0' })).toBe(2);
  });

  it('passes stack-level prefixes through to every device (input_output_prefixes_passthrough)', async () => {
    const msg = prefixStack({ 'output-prefix': 'combined-out/', 'input-prefix': 'combined-in/' });
    const out = await resolve(msg, { path: 'prefix_set', key: 'example', 'combined-in': { example: 1 } });
    expect(get('combined-out/example', { ...out, device: 'message@1.0' })).toBe(1);
  });

  it('resolves again on its own result (reinvocation)', async () => {
    const msg = stackOf({ 1: appendDevice('+D1'), 2: appendDevice('+D2') });
    const res1 = await resolve(msg, { path: 'append', bin: '2' });
    expect(res1.result).toBe('INIT+D12+D22');
    const res2 = await resolve(res1, { path: 'append', bin: '3' });
    expect(res2.result).toBe('INIT+D12+D22+D13+D23');
  });

  it('stops the stack on skip (skip)', async () => {
    const msg = stackOf({ 1: appendDevice('+D1', 'skip'), 2: appendDevice('+D2') });
    expect((await resolve(msg, { path: 'append', bin: '2' })).result).toBe('INIT+D12');
  });

  it('re-runs from the first device on pass until the device stops (pass)', async () => {
    const msg = stackOf({ 1: appendDevice('+D1', 'pass') });
    expect((await resolve(msg, { path: 'append', bin: '_' })).result).toBe('INIT+D1_+D1_');
  });

  it('skips devices lacking the key (not_found)', async () => {
    const d2: Device = { ...appendDevice('+D2'), special: (m: Message) => ({ ...m, output: 1337 }) };
    const msg = stackOf({ 1: appendDevice('+D1'), 2: d2 });
    const msg3 = await resolve(msg, { path: 'append', bin: '_' });
    expect(msg3.result).toBe('INIT+D1_+D2_');
    expect(get('special/output', msg3)).toBe(1337);
  });

  it('collects each device result in map mode (simple_map)', async () => {
    const msg = stackOf({ 1: appendDevice('+D1'), 2: appendDevice('+D2') });
    const msg3 = await resolve(msg, { path: 'append', mode: 'Map', bin: '/' });
    expect(get('1/result', msg3)).toBe('INIT+D1/');
    expect(get('2/result', msg3)).toBe('INIT+D2/');
  });
});

describe('multipass@1.0 test vectors', () => {
  it('asks for another pass until `passes` is reached (basic_multipass)', async () => {
    const base = { device: 'multipass@1.0', passes: 2, pass: 1 };
    expect(await resolveStatus(base, 'Compute')).toEqual({ status: 'pass', value: base });
    expect(await resolveStatus({ ...base, pass: 2 }, 'Compute')).toEqual({ status: 'ok', value: { ...base, pass: 2 } });
  });

  it('does not ask for passes on keys outside multipass-keys', async () => {
    const base = { device: 'multipass@1.0', passes: 2, pass: 1 };
    expect(await resolveStatus(base, 'init')).toEqual({ status: 'ok', value: base });
    const custom = { ...base, 'multipass-keys': ['init'] };
    expect((await resolveStatus(custom, 'init')).status).toBe('pass');
    expect((await resolveStatus(custom, 'compute')).status).toBe('ok');
  });

  it('makes a stack run its compute key twice but its init key once', async () => {
    const counter: Device = {
      compute: (m: Message) => ({ ...m, runs: [...m.runs, `compute@${m.pass}`] }),
      init: (m: Message) => ({ ...m, runs: [...m.runs, `init@${m.pass}`] }),
    };
    const msg = { device: 'stack@1.0', 'device-stack': [counter, 'multipass@1.0'], passes: 2, runs: [] };
    expect((await resolve(msg, 'compute')).runs).toEqual(['compute@1', 'compute@2']);
    expect((await resolve(msg, 'init')).runs).toEqual(['init@1']);
  });
});

describe('stack@1.0 beyond HyperBEAM', () => {
  it('leaves no bookkeeping keys in fold results', async () => {
    const msg = stackOf({ 1: appendDevice('+D1'), 2: appendDevice('+D2') });
    const out = await resolve(msg, { path: 'append', bin: '2' });
    expect(out).toEqual({ ...msg, result: 'INIT+D12+D22' });
    expect(Object.keys(out).sort()).toEqual(['device', 'device-stack', 'result']);
  });

  it('restores the stack-level prefixes, not the last device prefixes', async () => {
    const msg = prefixStack({
      'input-prefix': 'stack-in',
      'output-prefix': 'stack-out',
      'input-prefixes': { 1: 'in1', 2: 'in2' },
      'output-prefixes': { 1: 'out1', 2: 'out2' },
    });
    const out = await resolve(msg, { path: 'prefix_set', key: 'x', in1: { x: 'a' }, in2: { x: 'b' } });
    expect(out['input-prefix']).toBe('stack-in');
    expect(out['output-prefix']).toBe('stack-out');
    expect(out.out1).toEqual({ x: 'a' });
    expect(out.out2).toEqual({ x: 'b' });
    expect(out['device-key']).toBeUndefined();
    expect(out['previous-device']).toBeUndefined();
    expect(out['previous-input-prefix']).toBeUndefined();
    expect(out.pass).toBeUndefined();
  });

  it('gives a device without its own prefix the stack-level prefix', async () => {
    const msg = prefixStack({ 'output-prefix': 'shared', 'output-prefixes': { 1: 'first' } });
    const out = await resolve(msg, { path: 'prefix_set', key: 'x', x: 7 });
    expect(out.first).toEqual({ x: 7 });
    expect(out.shared).toEqual({ x: 7 });
    expect(out['output-prefix']).toBe('shared');
  });

  it('keeps a pass value the stack message already had', async () => {
    const msg = stackOf([appendDevice('+D1')], { pass: 7 });
    const out = await resolve(msg, { path: 'append', bin: '2' });
    expect(out.pass).toBe(7);
    expect(out.result).toBe('INIT+D12');
  });

  it('shows each device its own device-key, prefixes and pass while it runs', async () => {
    const seen: unknown[] = [];
    const spy: Device = {
      look: (m: Message) => {
        seen.push([m['device-key'], m['input-prefix'], m['output-prefix'], m.pass]);
        return m;
      },
    };
    const msg = {
      device: 'stack@1.0',
      'device-stack': [spy, spy],
      'input-prefix': 'in',
      'output-prefixes': ['o1'],
    };
    await resolve(msg, 'look');
    expect(seen).toEqual([
      ['1', 'in', 'o1', 1],
      ['2', 'in', undefined, 1],
    ]);
  });

  it('accepts device-stack as a list', async () => {
    const out = await resolve(stackOf([appendDevice('+D1'), appendDevice('+D2')]), { path: 'append', bin: '2' });
    expect(out.result).toBe('INIT+D12+D22');
  });

  it('accepts the mode in any case, the request winning over the base', async () => {
    const msg = stackOf({ 1: appendDevice('+D1') }, { mode: 'MAP' });
    expect((await resolve(msg, { path: 'append', bin: '/' }))['1']).toEqual({ ...msg, result: 'INIT+D1/' });
    expect((await resolve(msg, { path: 'append', bin: '/', mode: 'fold' })).result).toBe('INIT+D1/');
  });

  it('restores the stack device on map-mode results derived from the turn message', async () => {
    const msg = stackOf({ 1: appendDevice('+D1'), 2: { snapshot: () => ({ body: 'bytes' }) } });
    const out = await resolve(msg, { path: 'append', bin: '/', mode: 'map' });
    expect(out['1']).toEqual({ ...msg, result: 'INIT+D1/' });
    const snaps = await resolve(msg, { path: 'snapshot', mode: 'map' });
    expect(snaps).toEqual({ 2: { body: 'bytes' } });
  });

  it('routes only stack-keys through the stack', async () => {
    const msg = stackOf({ 1: appendDevice('+D1') }, { 'stack-keys': ['append'], other: 'plain' });
    expect((await resolve(msg, { path: 'append', bin: '2' })).result).toBe('INIT+D12');
    expect(await resolve(msg, 'other')).toBe('plain');
  });

  it('sends snapshot and normalize through the stack whatever stack-keys says (they reach the state device)', async () => {
    const counter: Device = {
      compute: (m: Message) => ({ ...m, n: (m.n as number) + 1 }),
      snapshot: (m: Message) => ({ body: String(m.n) }),
      normalize: (m: Message) => {
        const snap = m.snapshot as Message | undefined;
        const { snapshot: _s, ...rest } = m;
        return snap === undefined ? m : { ...rest, n: Number((snap.body as string) ?? (snap['1'] as Message).body) };
      },
    };
    const msg = { device: 'stack@1.0', 'device-stack': [counter, 'multipass@1.0'], 'stack-keys': ['compute'], n: 0, snapshot: 'stored' };
    const two = await resolve(await resolve(msg, 'compute'), 'compute');
    expect(two.n).toBe(2);
    expect(await resolve(two, { path: 'snapshot', mode: 'map' })).toEqual({ 1: { body: '2' } }); // multipass@1.0 adds nothing
    const folded = await resolve(two, 'snapshot');
    expect(folded.body).toBe('2');
    const restored = await resolve({ ...msg, n: 0, snapshot: folded }, 'normalize');
    expect([restored.n, restored.snapshot]).toEqual([2, undefined]);
    expect(await resolve({ ...msg, other: 'plain' }, 'other')).toBe('plain'); // other keys still read as stored
  });

  it('hands set and keys to message@1.0', async () => {
    const msg = stackOf({ 1: appendDevice('+D1') });
    expect(set(msg, 'result', 'X').result).toBe('X');
    expect(await resolve(msg, 'keys')).toEqual(['device', 'device-stack', 'result']);
  });

  it('waits for asynchronous devices', async () => {
    const slow: Device = {
      append: async (m: Message, r: Message) => {
        await new Promise((res) => setTimeout(res, 1));
        return { ...m, result: `${m.result}~${r.bin}` };
      },
    };
    const msg = stackOf([slow, appendDevice('+D2'), slow]);
    expect((await resolve(msg, { path: 'append', bin: '2' })).result).toBe('INIT~2+D22~2');
  });

  it('reads a plain key through the stack as a raw value', async () => {
    const msg = stackOf({ 1: appendDevice('+D1') });
    expect(await resolve(msg, 'result')).toBe('INIT');
  });

  it('stops a device that keeps answering pass', async () => {
    const forever: Device = { spin: (m: Message) => status('pass', m) };
    const msg = { device: 'stack@1.0', 'device-stack': [forever] };
    await expect(resolve(msg, 'spin', { maxPasses: 5 })).rejects.toMatchObject({
      status: 500,
      code: 'ERR_DEVICE_FAULT',
      message: "stack@1.0: more than 5 passes resolving 'spin' (device 1 keeps answering 'pass')",
    });
  });
});
