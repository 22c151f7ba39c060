import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AoError } from '../../src/errors';
import {
  cacheWrite,
  defineDevice,
  DirectoryStore,
  get,
  MemoryStore,
  resolve,
  set,
  status,
  type Device,
  type Message,
} from '../../src/ao';

const boom = defineDevice('boom@1.0', {
  explode() {
    throw new Error('kaboom');
  },
  async later() {
    throw new RangeError('late');
  },
  teapot() {
    throw new AoError('short and stout', { status: 418, code: 'ERR_TEAPOT' });
  },
  nothing() {
    return undefined;
  },
  skipless() {
    return status('skip');
  },
  refused() {
    return status('error', { status: 403, body: 'nope' });
  },
  plain() {
    return status('error', 'bad thing');
  },
});
const opts = { devices: { 'Boom@1.0': boom } };
const onBoom = { device: 'boom@1.0' };

describe('unknown devices', () => {
  it('are a 404 naming the device and key', async () => {
    await expect(resolve({ device: 'nope@1.0' }, 'x')).rejects.toMatchObject({
      status: 404,
      code: 'ERR_NOT_FOUND',
      message: "Device 'nope@1.0' not found (resolving key 'x')",
      key: 'x',
      device: 'nope@1.0',
    });
  });

  it('include remote device IDs, which cannot be loaded', async () => {
    const id = 'A'.repeat(43);
    await expect(resolve({ device: id }, 'x')).rejects.toMatchObject({
      status: 404,
      code: 'ERR_NOT_FOUND',
      message: `Device '${id}' not found (resolving key 'x'): loading remote devices by ID is not supported`,
    });
  });

  it('throw from get too, rather than reading as absent', () => {
    expect(() => get('x', { device: 'nope@1.0' })).toThrow(expect.objectContaining({ status: 404, device: 'nope@1.0' }));
  });

  it('are found case-insensitively among user devices', async () => {
    await expect(resolve({ device: 'BOOM@1.0' }, 'plain', opts)).rejects.toMatchObject({ status: 500 });
  });
});

describe('invalid device values', () => {
  it('are a 400', async () => {
    await expect(resolve({ device: 42 }, 'x')).rejects.toMatchObject({
      status: 400,
      code: 'ERR_BAD_REQUEST',
      message: "Invalid device value (resolving key 'x'): expected a 'name@version' string or a device object, got an integer",
      key: 'x',
    });
  });

  it('include malformed user device tables', async () => {
    await expect(resolve({}, 'a', { devices: { 'bad@1.0': 'not a device' as unknown as Device } })).rejects.toMatchObject({
      status: 400,
      code: 'ERR_INVALID_ARG',
      message: "opts.devices['bad@1.0'] must be a device object, got a string",
    });
  });
});

describe('malformed requests and paths', () => {
  it('reject a path segment of the wrong type', async () => {
    await expect(resolve({}, { path: { a: 1 } })).rejects.toMatchObject({
      status: 400,
      code: 'ERR_BAD_REQUEST',
      message: 'Malformed path: segment of type a message; expected a string, an integer or a list of them',
    });
    await expect(resolve({}, { path: 2.5 })).rejects.toMatchObject({
      status: 400,
      message: 'Malformed path: 2.5 is not an integer or string segment',
    });
  });

  it('reject a request message without a path', async () => {
    await expect(resolve({}, { a: 1 })).rejects.toMatchObject({
      status: 400,
      code: 'ERR_BAD_REQUEST',
      message: 'Request message has no path',
    });
  });

  it('reject a request of the wrong type', async () => {
    await expect(resolve({}, true as unknown as string)).rejects.toMatchObject({
      status: 400,
      code: 'ERR_BAD_REQUEST',
      message: 'Request must be a path or a message, got a boolean',
    });
  });

  it('reject misspelled and invalid options', async () => {
    await expect(resolve({}, 'a', { hashPath: 'update' })).rejects.toMatchObject({
      status: 400,
      code: 'ERR_INVALID_ARG',
      message: "Unknown option 'hashPath': did you mean 'hashpath'?",
    });
    await expect(resolve({}, 'a', { hashpath: 'always' as 'update' })).rejects.toMatchObject({
      status: 400,
      message: 'opts.hashpath must be \'update\' or \'ignore\', got "always"',
    });
  });
});

describe('non-message bases', () => {
  it('are a 400 at the start of a resolution', async () => {
    await expect(resolve(42, 'a')).rejects.toMatchObject({
      status: 400,
      code: 'ERR_INVALID_ARG',
      message: 'resolve(): base must be a message, a list or a 43-character cache ID, got an integer',
    });
    await expect(resolve('hello', 'a')).rejects.toMatchObject({
      status: 400,
      message: 'resolve(): base must be a message, a list or a 43-character cache ID, got a string',
    });
    expect(() => get('a', null)).toThrow(
      expect.objectContaining({
        status: 400,
        message: 'get(): base must be a message, a list or a 43-character cache ID, got null',
      }),
    );
  });

  it('are a 404 naming the key when a path goes into a plain value', async () => {
    await expect(resolve({ a: 'x' }, 'a/b')).rejects.toMatchObject({
      status: 404,
      code: 'ERR_NOT_FOUND',
      message: "Key 'b' not found: cannot resolve a key on a string (device message@1.0)",
      key: 'b',
      device: 'message@1.0',
    });
    expect(get('a/b', { a: 'x' })).toBeUndefined();
  });

  it('give a plain 404 for a missing key', async () => {
    await expect(resolve({ a: 'x' }, 'b')).rejects.toMatchObject({
      status: 404,
      code: 'ERR_NOT_FOUND',
      message: "Key 'b' not found (device message@1.0)",
    });
  });
});

describe('cycles in messages', () => {
  const cyclic = (): Message => {
    const m: Message = { a: 1 };
    m.self = m;
    return m;
  };

  it('are a 400 when cached, never a stack overflow', async () => {
    await expect(cacheWrite(cyclic(), { store: new MemoryStore() })).rejects.toMatchObject({
      status: 400,
      code: 'ERR_BAD_REQUEST',
      message: "Cannot encode message at 'self': the message contains a cycle",
      key: 'self',
    });
  });

  it('are a 400 when a message ID is needed', async () => {
    await expect(resolve(cyclic(), 'id')).rejects.toMatchObject({
      status: 400,
      message: "Cannot encode message at 'self': the message contains a cycle",
      device: 'message@1.0',
    });
    await expect(resolve(cyclic(), 'a', { hashpath: 'update' })).resolves.toBe(1);
    await expect(resolve(cyclic(), 'self', { hashpath: 'update' })).rejects.toMatchObject({ status: 400 });
  });

  it('are a 400 when deep-merged by set', () => {
    const base: Message = { x: {} };
    base.x.x = base.x;
    const update: Message = { x: {} };
    update.x.x = update.x;
    expect(() => set(base, update)).toThrow(
      expect.objectContaining({ status: 400, code: 'ERR_BAD_REQUEST', message: 'set(): the update contains a cycle' }),
    );
  });

  it('are fine for a finite path through them', async () => {
    expect(await resolve(cyclic(), 'self/self/self/a')).toBe(1);
  });
});

describe('devices that throw', () => {
  it('give a 500 naming the key and device, keeping the original as cause', async () => {
    const err = await resolve(onBoom, 'explode', opts).catch((e) => e);
    expect(err).toBeInstanceOf(AoError);
    expect(err).toMatchObject({
      status: 500,
      code: 'ERR_DEVICE_FAULT',
      message: "Device 'boom@1.0' failed on key 'explode': kaboom",
      key: 'explode',
      device: 'boom@1.0',
    });
    expect(err.cause).toBeInstanceOf(Error);
    expect(err.cause.message).toBe('kaboom');
  });

  it('give the same 500 for a rejected promise', async () => {
    const err = await resolve(onBoom, 'later', opts).catch((e) => e);
    expect(err).toMatchObject({ status: 500, message: "Device 'boom@1.0' failed on key 'later': late" });
    expect(err.cause).toBeInstanceOf(RangeError);
  });

  it('keep the status of an AoError they throw', async () => {
    await expect(resolve(onBoom, 'teapot', opts)).rejects.toMatchObject({
      status: 418,
      code: 'ERR_TEAPOT',
      message: 'short and stout',
      key: 'teapot',
      device: 'boom@1.0',
    });
  });

  it('make get throw too', () => {
    expect(() => get('explode', onBoom, opts)).toThrow(
      expect.objectContaining({ status: 500, message: "Device 'boom@1.0' failed on key 'explode': kaboom" }),
    );
  });

  it('are reported with their stack position', async () => {
    const msg = { device: 'stack@1.0', 'device-stack': ['message@1.0', 'boom@1.0'] };
    await expect(resolve(msg, 'explode', opts)).rejects.toMatchObject({
      status: 500,
      code: 'ERR_DEVICE_FAULT',
      message: "stack@1.0 entry 2 (boom@1.0): Device 'boom@1.0' failed on key 'explode': kaboom",
      key: 'explode',
      device: 'boom@1.0',
      stackKey: '2',
    });
  });
});

describe('devices returning malformed results', () => {
  it('give a 500 for undefined', async () => {
    await expect(resolve(onBoom, 'nothing', opts)).rejects.toMatchObject({
      status: 500,
      code: 'ERR_DEVICE_FAULT',
      message: "Device 'boom@1.0' returned a malformed result for key 'nothing': undefined",
      key: 'nothing',
      device: 'boom@1.0',
    });
  });

  it('give a 500 for a status without a value', async () => {
    await expect(resolve(onBoom, 'skipless', opts)).rejects.toMatchObject({
      status: 500,
      message: "Device 'boom@1.0' returned a malformed result for key 'skipless': status 'skip' without a value",
    });
  });

  it('cannot make up a status', () => {
    expect(() => status('maybe' as 'ok', 1)).toThrow(
      expect.objectContaining({ status: 400, message: "Unknown status 'maybe': expected ok, error, skip or pass" }),
    );
  });
});

describe('error answers from devices', () => {
  it('keep the status they carry', async () => {
    await expect(resolve(onBoom, 'refused', opts)).rejects.toMatchObject({
      status: 403,
      code: 'ERR_BAD_REQUEST',
      message: "Device 'boom@1.0' returned an error for key 'refused': nope",
      body: { status: 403, body: 'nope' },
    });
  });

  it('are a 500 without one', async () => {
    await expect(resolve(onBoom, 'plain', opts)).rejects.toMatchObject({
      status: 500,
      code: 'ERR_DEVICE_ERROR',
      message: "Device 'boom@1.0' returned an error for key 'plain': bad thing",
      body: 'bad thing',
    });
  });

  it('read as absent through get', () => {
    expect(get('refused', onBoom, opts)).toBeUndefined();
  });
});

describe('asynchronous devices under get', () => {
  it('are a clear 400 asking for resolve', () => {
    expect(() => get('later', onBoom, opts)).toThrow(
      expect.objectContaining({
        status: 400,
        code: 'ERR_ASYNC_DEVICE',
        message: "get(): resolving 'later' reached a device (or store) that answered asynchronously; use resolve() for asynchronous devices",
      }),
    );
  });
});

describe('failures leave nothing partially applied', () => {
  it('set returns nothing and leaves its input untouched when a later write fails', () => {
    const picky: Device = {
      set: (m: Message, req: Message) => {
        if ('bad' in req) throw new Error('refused');
        return { ...m, ...req, path: undefined };
      },
    };
    const msg = Object.freeze({ device: picky, a: 1 });
    expect(() => set(msg, { good: 1, bad: 2 })).toThrow(
      expect.objectContaining({ status: 500, message: "Device 'inline device' failed on key 'set': refused" }),
    );
    expect(msg).toEqual({ device: picky, a: 1 });
  });

  it('a message that cannot be encoded is not cached at all', async () => {
    const store = new MemoryStore();
    await expect(cacheWrite({ ok: 1, f: () => 1 } as Message, { store })).rejects.toMatchObject({
      status: 400,
      message: "Cannot encode message at 'f': a function is not a message value",
    });
    expect(store.size).toBe(0);
  });

  it('a failed directory write leaves no entry and no temp file', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'hb-ao-err-'));
    try {
      const store = new DirectoryStore(root);
      const id = await cacheWrite({ probe: 1 }, { store: new MemoryStore() });
      fs.writeFileSync(path.join(root, id.slice(0, 2)), 'a file where the shard directory should be');
      await expect(cacheWrite({ probe: 1 }, { store })).rejects.toMatchObject({ status: 500, code: 'ERR_CACHE_IO', key: id });
      expect(fs.readdirSync(root)).toEqual([id.slice(0, 2)]);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
