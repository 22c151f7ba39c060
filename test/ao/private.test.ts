import { describe, expect, it } from 'vitest';
import {
  cacheRead,
  cacheWrite,
  get,
  getPriv,
  keys,
  MemoryStore,
  messageId,
  privateOf,
  resetPriv,
  resolve,
  set,
  setPriv,
  UNSET,
} from '../../src/ao';

describe('privateOf()', () => {
  it('gives the priv part, or an empty message', () => {
    expect(privateOf({ a: 1, priv: { b: 2 } })).toEqual({ b: 2 });
    expect(privateOf({ a: 1 })).toEqual({});
    expect(privateOf('not a message')).toEqual({});
  });

  it('holds live handles as they are', () => {
    const handle = { call: () => 42 };
    const read = (p: number) => p;
    const msg = setPriv({ a: 1 }, { instance: handle, read });
    expect(privateOf(msg).instance).toBe(handle);
    expect(privateOf(msg).read).toBe(read);
  });
});

describe('getPriv()', () => {
  it('reads private paths with or without a leading priv/', () => {
    const msg = { a: 1, priv: { wasm: { instance: 'I' } } };
    expect(getPriv('wasm/instance', msg)).toBe('I');
    expect(getPriv('priv/wasm/instance', msg)).toBe('I');
    expect(getPriv('priv', msg)).toEqual({ wasm: { instance: 'I' } });
  });

  it('gives undefined for absent private keys', () => {
    expect(getPriv('missing', { priv: { a: 1 } })).toBeUndefined();
    expect(getPriv('a', { a: 1 })).toBeUndefined();
  });
});

describe('setPriv()', () => {
  it('sets a private path and keeps the public part', () => {
    expect(setPriv({ a: 1 }, 'b', 2)).toEqual({ a: 1, priv: { b: 2 } });
    expect(setPriv({ a: 1 }, 'x/y', 3)).toEqual({ a: 1, priv: { x: { y: 3 } } });
    expect(setPriv({ a: 1, priv: { x: { z: 1 } } }, 'priv/x/y', 3)).toEqual({ a: 1, priv: { x: { z: 1, y: 3 } } });
  });

  it('deep-merges a map of private values', () => {
    const msg = { priv: { a: { b: 1 }, c: 2 } };
    expect(setPriv(msg, { a: { d: 3 }, e: 4 })).toEqual({ priv: { a: { b: 1, d: 3 }, c: 2, e: 4 } });
  });

  it('deletes private keys set to UNSET', () => {
    expect(setPriv({ priv: { a: 1, b: 2 } }, 'a', UNSET)).toEqual({ priv: { b: 2 } });
    expect(setPriv({ priv: { a: { b: 1 } } }, { a: { b: UNSET } })).toEqual({ priv: { a: {} } });
  });

  it('leaves a message without priv unchanged when setting nothing', () => {
    const msg = { a: 1 };
    expect(setPriv(msg, {})).toBe(msg);
  });

  it('never modifies its input', () => {
    const msg = Object.freeze({ a: 1, priv: Object.freeze({ b: Object.freeze({ c: 1 }) }) });
    const out = setPriv(msg, 'b/d', 2);
    expect(out).toEqual({ a: 1, priv: { b: { c: 1, d: 2 } } });
    expect(msg).toEqual({ a: 1, priv: { b: { c: 1 } } });
  });
});

describe('resetPriv()', () => {
  it('removes private keys at every level', () => {
    const msg = { a: 1, priv: { x: 1 }, private_key: 2, sub: { priv_y: 3, b: [{ privy: 4, c: 5 }] } };
    expect(resetPriv(msg)).toEqual({ a: 1, sub: { b: [{ c: 5 }] } });
  });

  it('gives back the same object when there is nothing to remove', () => {
    const msg = { a: { b: [1, 2] } };
    expect(resetPriv(msg)).toBe(msg);
  });
});

describe('private keys in AO-Core', () => {
  const msg = { a: 1, priv: { secret: 's' }, privilege: 'p', Private: 'P' };

  it('are hidden from get and keys', () => {
    expect(get('priv', msg)).toBeUndefined();
    expect(get('priv/secret', msg)).toBeUndefined();
    expect(get('privilege', msg)).toBeUndefined();
    expect(get('private', msg)).toBeUndefined();
    expect(keys(msg)).toEqual(['a']);
  });

  it('cannot be resolved publicly', async () => {
    await expect(resolve(msg, 'priv/secret')).rejects.toMatchObject({
      status: 404,
      code: 'ERR_NOT_FOUND',
      message: "Key 'priv' not found: private keys cannot be resolved (device message@1.0)",
      key: 'priv',
      device: 'message@1.0',
    });
  });

  it('are not part of the message ID', () => {
    expect(messageId(msg)).toBe(messageId({ a: 1 }));
  });

  it('are never cached', async () => {
    const store = new MemoryStore();
    const id = await cacheWrite(msg, { store });
    expect(await cacheRead(id, { store })).toEqual({ a: 1 });
  });

  it('are kept through set, which cannot write priv', () => {
    const out = set(msg, { b: 2, priv: { evil: true } });
    expect(out.priv).toEqual({ secret: 's' });
    expect(out.b).toBe(2);
  });
});
