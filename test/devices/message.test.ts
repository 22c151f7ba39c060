import { describe, expect, it } from 'vitest';
import { get, keys, messageId, resolve, set, UNSET, type Device, type Message } from '../../src/ao';

describe('message@1.0 reads', () => {
  it('return stored values, exact key first', async () => {
    expect(await resolve({ a: 1, A: 2 }, 'a')).toBe(1);
    expect(await resolve({ a: 1 }, 'A')).toBe(1);
    expect(await resolve({ 'Content-Type': 'text/plain' }, 'content-type')).toBe('text/plain');
  });

  it('are the default for a message without a device, and for message@1.0 named in any case', async () => {
    expect(await resolve({ device: 'Message@1.0', a: 1 }, 'a')).toBe(1);
  });

  it('never expose inherited object properties', async () => {
    await expect(resolve({}, 'constructor')).rejects.toMatchObject({ status: 404 });
    await expect(resolve({}, 'tostring')).rejects.toMatchObject({ status: 404 });
    await expect(resolve({}, '__proto__')).rejects.toMatchObject({ status: 404 });
  });

  it('read lists by 1-based position', async () => {
    expect(await resolve({ l: ['x', 'y'] }, 'l/2')).toBe('y');
    await expect(resolve({ l: ['x', 'y'] }, 'l/0')).rejects.toMatchObject({ status: 404 });
    await expect(resolve({ l: ['x', 'y'] }, 'l/3')).rejects.toMatchObject({ status: 404 });
  });
});

describe('message@1.0 keys', () => {
  it('lists public keys, lowercased', async () => {
    expect(await resolve({ A: 1, b: 2, priv: {}, private: 3 }, 'keys')).toEqual(['a', 'b']);
  });

  it('lists 1..n for a list', () => {
    expect(keys(['x', 'y', 'z'])).toEqual(['1', '2', '3']);
  });
});

describe('message@1.0 set', () => {
  it('deep-merges nested messages', async () => {
    const base = { a: { x: 1, deep: { p: 1 } }, b: 2 };
    expect(await resolve(base, { path: 'set', a: { y: 2, deep: { q: 2 } } })).toEqual({
      a: { x: 1, y: 2, deep: { p: 1, q: 2 } },
      b: 2,
    });
  });

  it('overwrites shallowly with set-mode explicit', async () => {
    const base = { a: { x: 1 }, b: 2 };
    expect(await resolve(base, { path: 'set', a: { y: 2 }, 'set-mode': 'explicit' })).toEqual({ a: { y: 2 }, b: 2 });
  });

  it('replaces a key differing only in case instead of duplicating it', async () => {
    expect(await resolve({ 'Test-Key': 1, other: 0 }, { path: 'set', 'test-key': 2 })).toEqual({ 'test-key': 2, other: 0 });
  });

  it('ignores reserved keys', async () => {
    const base = { a: 1 };
    expect(await resolve(base, { path: 'set', id: 'x', keys: 'x', remove: 'x', verify: 'x', commitments: 'x', b: 2 })).toEqual({
      a: 1,
      b: 2,
    });
  });

  it('keeps the priv part and cannot write it', async () => {
    const base = { a: 1, priv: { live: 'handle' } };
    expect(await resolve(base, { path: 'set', b: 2, priv: { other: 1 } })).toEqual({ a: 1, b: 2, priv: { live: 'handle' } });
  });

  it('gives back the base itself when nothing changes', async () => {
    const base = { a: 1 };
    expect(await resolve(base, { path: 'set', a: 1 })).toBe(base);
  });

  it('turns a list into a message keyed 1..n', async () => {
    expect(await resolve(['x', 'y'], { path: 'set', 3: 'z' })).toEqual({ 1: 'x', 2: 'y', 3: 'z' });
  });

  it('deep-merges through the nested message device', () => {
    const counting: Device = { set: (m: Message, req: Message) => ({ ...m, ...req, path: undefined, sets: (m.sets ?? 0) + 1 }) };
    const base = { inner: { device: counting, v: 1 } };
    const out = set(base, { inner: { v: 2 } });
    expect(get('inner/sets', out)).toBe(1);
    expect(get('inner/v', out)).toBe(2);
  });
});

describe('message@1.0 set-path', () => {
  it('sets the reserved path key from value', async () => {
    expect(await resolve({ a: 1 }, { path: 'set-path', value: 'x/y' })).toEqual({ a: 1, path: 'x/y' });
    expect(await resolve({ a: 1 }, { path: 'set_path', value: 'z' })).toEqual({ a: 1, path: 'z' });
  });

  it('needs a value', async () => {
    await expect(resolve({ a: 1 }, 'set-path')).rejects.toMatchObject({
      status: 400,
      code: 'ERR_BAD_REQUEST',
      message: "set-path needs a 'value'",
      device: 'message@1.0',
    });
  });
});

describe('message@1.0 remove', () => {
  it('removes keys case-insensitively', async () => {
    expect(await resolve({ Key1: 1, key2: 2 }, { path: 'remove', item: 'KEY1' })).toEqual({ key2: 2 });
  });

  it('ignores keys that are not there', async () => {
    const base = { a: 1 };
    expect(await resolve(base, { path: 'remove', items: ['b', 'c'] })).toBe(base);
  });

  it('needs item or items', async () => {
    await expect(resolve({ a: 1 }, 'remove')).rejects.toMatchObject({
      status: 400,
      message: "remove needs an 'item' or a list of 'items'",
    });
  });
});

describe('message@1.0 id', () => {
  it('is the 43-character message ID, independent of key order and private keys', async () => {
    const id = await resolve({ a: 1, b: [2] }, 'id');
    expect(id).toBe(messageId({ a: 1, b: [2] }));
    expect(await resolve({ b: [2], a: 1, priv: { x: 1 } }, 'id')).toBe(id);
    expect(id).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('differs when a value type differs', async () => {
    expect(await resolve({ a: 1 }, 'id')).not.toBe(await resolve({ a: '1' }, 'id'));
  });
});

describe('set() through message@1.0', () => {
  it('ignores undefined, deletes UNSET and drops hashpath', () => {
    expect(set({ a: 1, b: 2 }, { a: undefined, b: UNSET, c: 3, hashpath: 'h' })).toEqual({ a: 1, c: 3 });
  });

  it('replaces a plain value on the way with new nested messages', () => {
    expect(set({ a: 'text' }, 'a/b/c', 1)).toEqual({ a: { b: { c: 1 } } });
  });

  it('does nothing when unsetting a path that does not exist', () => {
    const base = { a: 1 };
    expect(set(base, 'x/y', UNSET)).toBe(base);
  });

  it('rejects an empty path', () => {
    expect(() => set({}, '/', 1)).toThrow(expect.objectContaining({ status: 400, message: 'set(): empty path' }));
  });
});
