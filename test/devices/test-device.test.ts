import { describe, expect, it } from 'vitest';
import { get, getPriv, resolve, resolveStatus } from '../../src/ao';

const dev = { device: 'test-device@1.0' };

describe('test-device@1.0', () => {
  it('answers test_func with GOOD_FUNCTION', async () => {
    expect(await resolve(dev, 'test_func')).toBe('GOOD_FUNCTION');
  });

  it('multiplies its two args in the stdlib convention (mul)', async () => {
    const base = { ...dev, state: { counter: 1 } };
    expect(await resolve(base, { path: 'mul', args: [6, 7] })).toEqual({ state: { counter: 1 }, results: [42] });
    expect(await resolve(base, { path: 'mul', args: [3n, 4n] })).toEqual({ state: { counter: 1 }, results: [12n] });
  });

  it('rejects mul without two args', async () => {
    await expect(resolve(dev, { path: 'mul', args: [1] })).rejects.toMatchObject({
      status: 400,
      message: "test-device@1.0 mul needs 'args' with two numbers",
    });
  });

  it('records computed slots (init, compute)', async () => {
    const base = await resolve(dev, 'init');
    expect(base).toEqual({ ...dev, 'already-seen': [] });
    const res = await resolve(base, { path: 'compute', slot: 1 });
    expect(get('results/assignment-slot', res)).toBe(1);
    const res2 = await resolve(res, { path: 'compute', slot: 2 });
    expect(get('results/assignment-slot', res2)).toBe(2);
    expect(get('already-seen', res2)).toEqual([2, 1]);
    expect(get('random-key', res2)).toBe('random-value');
  });

  it('runs twice per slot in a stack of two (test_device_compute shape)', async () => {
    const stack = { device: 'stack@1.0', 'device-stack': ['test-device@1.0', 'test-device@1.0'] };
    const initialised = await resolve(stack, 'init');
    const res = await resolve(initialised, { path: 'compute', slot: 1 });
    expect(get('already-seen', { ...res, device: 'message@1.0' })).toEqual([1, 1]);
    expect(get('results', { ...res, device: 'message@1.0' })).toEqual({ 'assignment-slot': 1 });
  });

  it('keeps already-seen privately on restore, or answers an error', async () => {
    const res = await resolve({ ...dev, 'already-seen': [1] }, 'restore');
    expect(getPriv('test-key/started-state', res)).toEqual([1]);
    const failed = await resolveStatus(dev, 'restore');
    expect(failed.status).toBe('error');
    expect(failed.value.message).toBe(
      "Device 'test-device@1.0' returned an error for key 'restore': No viable state to restore.",
    );
  });

  it('snapshots to an empty message', async () => {
    expect(await resolve(dev, 'snapshot')).toEqual({});
  });
});
