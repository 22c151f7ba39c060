/**
 * The device registry: AO-Core knows no device, the built-ins are handed to it
 * (`registerBuiltinDevices`, called by src/devices/index.ts). Each test loads fresh module
 * instances, so the registration done by the test setup does not apply to them.
 */
import { beforeEach, describe, expect, it, vi } from 'vitest';

/** The rejection of `p` (its AoError class is that of the fresh module instances, so no instanceof). */
async function rejection(p: Promise<unknown>): Promise<{ status: number; code: string; message: string; name: string }> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(Error);
  return e as never;
}

beforeEach(() => {
  vi.resetModules();
});

describe('registerBuiltinDevices', () => {
  it('AO-Core alone has no devices and says where they come from', async () => {
    const { resolve } = await import('../../src/ao/resolve');
    const e = await rejection(resolve({ a: 1 }, 'a'));
    expect([e.name, e.status, e.code]).toEqual(['AoError', 500, 'ERR_DEVICE_FAULT']);
    expect(e.message).toBe(
      "No built-in devices are registered: load the package entry ('hb-runtimes') or src/devices, which registers them",
    );
  });

  it('loading src/devices registers every built-in', async () => {
    const { resolve } = await import('../../src/ao/resolve');
    const { BUILTIN_DEVICES } = await import('../../src/devices');
    expect(await resolve({ a: { b: 'leaf' } }, 'a/b')).toBe('leaf');
    expect(await resolve({ device: 'multipass@1.0', pass: 1, passes: 1 }, 'compute')).toEqual({ device: 'multipass@1.0', pass: 1, passes: 1 });
    expect(Object.keys(BUILTIN_DEVICES).sort()).toEqual([
      'cu@1.0', 'delegated-compute@1.0', 'json-iface@1.0', 'lua@5.3a', 'message@1.0', 'multipass@1.0',
      'process@1.0', 'stack@1.0', 'test-device@1.0', 'wasi@1.0', 'wasm-64@1.0',
    ]);
  });

  it('the package entry registers them', async () => {
    const { resolve } = await import('../../src');
    expect(await resolve({ device: 'test-device@1.0' }, 'test_func')).toBe('GOOD_FUNCTION');
  });

  it('takes another table (names matched case-insensitively) and requires message@1.0 in it', async () => {
    const { registerBuiltinDevices } = await import('../../src/ao/registry');
    const { resolve } = await import('../../src/ao/resolve');
    const { messageDevice } = await import('../../src/devices/message');
    expect(() => registerBuiltinDevices({ 'only@1.0': { x: () => 1 } })).toThrow(
      'registerBuiltinDevices: the built-in devices must include message@1.0',
    );
    registerBuiltinDevices({ 'message@1.0': messageDevice, 'Only@1.0': { x: () => 'from only' } });
    expect(await resolve({ device: 'ONLY@1.0' }, 'x')).toBe('from only');
    const e = await rejection(resolve({ device: 'stack@1.0' }, 'x'));
    expect([e.status, e.message]).toEqual([404, "Device 'stack@1.0' not found (resolving key 'x')"]);
  });
});
