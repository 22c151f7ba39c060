// SPEC §10.8: HyperBEAM's AO-Core vectors (hb_ao_test_vectors, hb_private, dev_message), ported
// through the public API. Each `it` names the HyperBEAM test it ports.
import { describe, expect, it } from 'vitest';
import {
  as,
  cacheWrite,
  get,
  getPriv,
  keys,
  normalizeKey,
  resolve,
  resolveSingleton,
  set,
  setPriv,
  UNSET,
  type Device,
  type Message,
} from '../../src/ao';

/** A device whose keys use one, two and three of the arguments (generate_device_with_keys_using_args). */
function argsDevice(): Device {
  return {
    key_using_only_state: (state: Message) => state.state_key,
    key_using_state_and_msg: (state: Message, msg: Message) => state.state_key + msg.msg_key,
    key_using_all: (state: Message, msg: Message, opts: Message) => state.state_key + msg.msg_key + opts.opts_key,
  };
}

/** gen_default_device: `state_key` is its own function, every other key the default. */
function defaultDevice(): Device {
  return {
    info: () => ({ default: () => 'DEFAULT' }),
    state_key: () => 'STATE',
  };
}

/** gen_handler_device: the handler answers every key, except `set` which goes to message@1.0. */
function handlerDevice(): Device {
  return {
    info: () => ({
      handler: (key: string, m1: Message, m2: Message, opts: Message) =>
        key === 'set' ? resolve(as('message@1.0', m1), m2, opts) : 'HANDLER VALUE',
    }),
  };
}

const NESTED = {
  key1: 'value1',
  key2: {
    key3: 'value3',
    key4: {
      key5: 'value5',
      key6: { key7: 'value7' },
    },
  },
};

describe('resolve() on hb_ao test vectors', () => {
  it('resolves a plain key (resolve_simple)', async () => {
    expect(await resolve({ a: 'RESULT' }, 'a')).toBe('RESULT');
  });

  it('gives a 43-character ID for `id` (resolve_id)', () => {
    const id = get('id', { test_key: '1' });
    expect(id).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('resolves the same key twice (resolve_key_twice)', async () => {
    expect(await resolve({ a: '1' }, 'a')).toBe('1');
    expect(await resolve({ a: '1' }, 'a')).toBe('1');
  });

  it('lists only public keys (resolve_from_multiple_keys)', async () => {
    expect(await resolve({ a: '1', priv_a: '2' }, 'keys')).toEqual(['a']);
  });

  it('reads a list-valued path key (resolve_path_element)', async () => {
    expect(await resolve({ path: ['test_path'] }, 'path')).toEqual(['test_path']);
    expect(await resolve({ Path: ['a'] }, 'Path')).toEqual(['a']);
  });

  it('normalises keys to lowercase strings (key_to_binary)', () => {
    expect(normalizeKey('a')).toBe('a');
    expect(normalizeKey('A')).toBe('a');
    expect(normalizeKey(1)).toBe('1');
  });

  it('matches keys case-insensitively (resolve_binary_key)', async () => {
    expect(await resolve({ a: 'RESULT' }, 'a')).toBe('RESULT');
    expect(await resolve({ 'Test-Header': '1' }, 'Test-Header')).toBe('1');
  });

  it('passes 1, 2 or 3 arguments to device functions (key_from_id_device_with_args)', async () => {
    const msg = { device: argsDevice(), state_key: '1' };
    expect(await resolve(msg, { path: 'key_using_only_state', msg_key: '2' })).toBe('1');
    expect(await resolve(msg, { path: 'key_using_state_and_msg', msg_key: '3' })).toBe('13');
    expect(await resolve(msg, { path: 'key_using_all', msg_key: '3' }, { opts_key: '37' })).toBe('1337');
  });

  it('calls the handler for every key, even stored ones (device_with_handler_function)', async () => {
    expect(await resolve({ device: handlerDevice(), test_key: 'BAD' }, 'test_key')).toBe('HANDLER VALUE');
  });

  it('uses own functions first and the default for the rest (device_with_default_handler_function)', async () => {
    const msg = { device: defaultDevice() };
    expect(await resolve(msg, 'state_key')).toBe('STATE');
    expect(await resolve(msg, 'any_random_key')).toBe('DEFAULT');
  });

  it('gets plain keys (basic_get)', () => {
    const msg = { key1: 'value1', key2: 'value2' };
    expect(get('key1', msg)).toBe('value1');
    expect(get('key2', msg)).toBe('value2');
    expect(get(['key2'], msg)).toBe('value2');
  });

  it('gets nested keys by path string or list (recursive_get)', async () => {
    expect(await resolve(NESTED, { path: 'key1' })).toBe('value1');
    expect(get('key1', NESTED)).toBe('value1');
    expect(await resolve(NESTED, { path: ['key2', 'key3'] })).toBe('value3');
    expect(get(['key2', 'key3'], NESTED)).toBe('value3');
    expect(get('key2/key3', NESTED)).toBe('value3');
  });

  it('gets deeply nested keys (deep_recursive_get)', () => {
    expect(get('key2/key4/key6/key7', NESTED)).toBe('value7');
  });

  it('sets one key and keeps the others (basic_set)', () => {
    const msg = { key1: 'value1', key2: 'value2' };
    const updated = set(msg, { key1: 'new_value1' });
    expect(get('key1', updated)).toBe('new_value1');
    expect(get('key2', updated)).toBe('value2');
  });

  it('reads stored keys and device keys alike (get_with_device)', () => {
    const msg = { device: argsDevice(), state_key: 'STATE' };
    expect(get('state_key', msg)).toBe('STATE');
    expect(get('key_using_only_state', msg)).toBe('STATE');
  });

  it('bypasses the device with as(message@1.0) (get_as_with_device)', () => {
    const msg = { device: handlerDevice(), test_key: 'ACTUAL VALUE' };
    expect(get('test_key', msg)).toBe('HANDLER VALUE');
    expect(get('test_key', as('message@1.0', msg))).toBe('ACTUAL VALUE');
  });

  it('routes set through the device (set_with_device)', () => {
    const device: Device = {
      set: (state: Message) => ({ ...state, set_count: (state.set_count ?? '') + '.' }),
    };
    const msg = { device, state_key: 'STATE' };
    expect(get('state_key', msg)).toBe('STATE');
    const once = set(msg, { state_key: 'SET_ONCE' });
    expect(get('set_count', once)).toBe('.');
    const twice = set(once, { state_key: 'SET_TWICE' });
    expect(get('set_count', twice)).toBe('..');
    expect(get('state_key', twice)).toBe('STATE');
  });

  it('sets nested keys by path (deep_set)', () => {
    const msg0 = { a: { b: 'RESULT' } };
    expect(set(msg0, 'a/b', 'RESULT2')).toEqual({ a: { b: 'RESULT2' } });
    expect(set(msg0, ['a', 'b'], 'RESULT2')).toEqual({ a: { b: 'RESULT2' } });
    const msg = { a: { b: { c: '1' } } };
    expect(set(msg, ['a', 'b', 'c'], '2')).toEqual({ a: { b: { c: '2' } } });
  });

  it('creates missing levels (deep_set_new_messages)', () => {
    const msg0 = { a: { b: { c: '1' } } };
    const msg1 = set(msg0, 'd/e', '3');
    const msg2 = set(msg1, 'd/f', '4');
    expect(msg2).toEqual({ a: { b: { c: '1' } }, d: { e: '3', f: '4' } });
    const msg3 = set(msg2, { 'z/a': '0', 'z/b': '1', 'z/y/x': '2' });
    expect(msg3).toEqual({
      a: { b: { c: '1' } },
      d: { e: '3', f: '4' },
      z: { a: '0', b: '1', y: { x: '2' } },
    });
  });

  it('marks only device-backed levels of a deep set (deep_set_with_device)', () => {
    const device: Device = {
      set: (m1: Message, m2: Message) => {
        const [key, val] = Object.entries(m2).find(([k]) => k !== 'path' && k !== 'priv')!;
        return { ...m1, [key]: val, modified: true };
      },
    };
    const msg = {
      device,
      a: { b: { device, c: '1', modified: false }, modified: false },
      modified: false,
    };
    const outer = set(msg, 'a/b/c', '2');
    const a = get('a', outer);
    const b = get('b', a);
    expect(get('c', b)).toBe('2');
    expect(get('modified', outer)).toBe(true);
    expect(get('modified', a)).toBe(false);
    expect(get('modified', b)).toBe(true);
  });

  it('honours info.exports (device_exports)', () => {
    const dev2: Device = {
      info: () => ({ exports: ['test1', 'Test2'], handler: () => 'Handler-Value' }),
    };
    const msg3 = { device: dev2, Test1: 'BAD1', test3: 'GOOD3' };
    expect(get('test1', msg3)).toBe('Handler-Value');
    expect(get('test2', msg3)).toBe('Handler-Value');
    expect(get('test3', msg3)).toBe('GOOD3');
    expect(get('Test4', set(msg3, 'Test4', 'GOOD4'))).toBe('GOOD4');
    expect(get('test5', msg3)).toBeUndefined();
  });

  it('honours info.excludes (device_excludes)', () => {
    const dev: Device = {
      info: () => ({ excludes: ['set'], handler: () => 'Handler-Value' }),
    };
    const msg = { device: dev, 'Test-Key': 'Test-Value' };
    expect(get('test-key2', msg)).toBe('Handler-Value');
    expect(set(msg, 'test-key2', '2')).toEqual({ device: dev, 'Test-Key': 'Test-Value', 'test-key2': '2' });
  });

  it('finds a capitalised Device key (denormalized_device_key)', async () => {
    const msg = { Device: 'test-device@1.0' };
    expect(get('device', msg)).toBe('test-device@1.0');
    expect(await resolve(msg, 'test_func')).toBe('GOOD_FUNCTION');
  });

  it('resolves lists as maps keyed 1..n (list_transform)', () => {
    const list = ['A', 'B', 'C', 'D', 'E'];
    expect(get(1, list)).toBe('A');
    expect(get(2, list)).toBe('B');
    expect(get(3, list)).toBe('C');
    expect(get(4, list)).toBe('D');
    expect(get(5, list)).toBe('E');
  });

  it('starts from a message seen as a device (start_as)', async () => {
    expect(await resolve(as('test-device@1.0', { path: '' }), 'test_func')).toBe('GOOD_FUNCTION');
  });

  it('starts as message@1.0 to read a stored key (start_as_with_parameters, as_path)', async () => {
    const msg = { device: 'test-device@1.0', test_func: { test_key: 'MESSAGE' } };
    expect(get('test_func', msg)).toBe('GOOD_FUNCTION');
    expect(await resolve(as('message@1.0', msg), 'test_func')).toEqual({ test_key: 'MESSAGE' });
  });

  it('continues through a path after switching device (continue_as)', async () => {
    const msg = { device: 'test-device@1.0', test_func: { test_key: 'MESSAGE' } };
    expect(await resolve(as('message@1.0', msg), 'test_func/test_key')).toBe('MESSAGE');
  });

  it('loads a cached message by ID and resolves on it (load_as)', async () => {
    const msg = { device: 'test-device@1.0', test_func: { test_key: 'MESSAGE' } };
    const id = await cacheWrite(msg);
    expect(await resolve(id, 'test_func')).toBe('GOOD_FUNCTION');
    expect(await resolve(as('message@1.0', await resolve(id, '')), 'test_func/test_key')).toBe('MESSAGE');
  });

  it('resolves a singleton request whose keys apply to every step (§1.10)', async () => {
    expect(await resolveSingleton({ path: '/hello', hello: 'Hi' })).toBe('Hi');
  });
});

describe('hb_private test vectors', () => {
  it('sets private values (set_private)', () => {
    expect(setPriv({ a: 1 }, 'b', 2)).toEqual({ a: 1, priv: { b: 2 } });
    const res = setPriv({ a: 1 }, 'a', 1);
    expect(res).toEqual({ a: 1, priv: { a: 1 } });
    expect(setPriv(res, 'a', 1)).toEqual({ a: 1, priv: { a: 1 } });
  });

  it('keeps private and public keys apart (get_private_key)', async () => {
    const m1 = { a: 1, priv: { b: 2 } };
    expect(getPriv('a', m1)).toBeUndefined();
    expect(await resolve(m1, 'keys')).toEqual(['a']);
    expect(getPriv('b', m1)).toBe(2);
    await expect(resolve(m1, 'priv/a')).rejects.toMatchObject({ status: 404, code: 'ERR_NOT_FOUND', key: 'priv' });
    await expect(resolve(m1, 'priv')).rejects.toMatchObject({ status: 404, code: 'ERR_NOT_FOUND', key: 'priv' });
  });

  it('reads deep private paths (get_deep_key)', () => {
    expect(getPriv('b/c', { a: 1, priv: { b: { c: 3 } } })).toBe(3);
  });
});

describe('dev_message test vectors', () => {
  it('lists keys (keys_from_device)', async () => {
    expect(await resolve({ a: 1 }, 'keys')).toEqual(['a']);
    expect(keys({ a: 1 })).toEqual(['a']);
  });

  it('gets keys case-insensitively both ways (case_insensitive_get)', async () => {
    expect(await resolve({ a: 1 }, 'a')).toBe(1);
    expect(await resolve({ a: 1 }, 'A')).toBe(1);
    expect(await resolve({ A: 1 }, 'a')).toBe(1);
    expect(await resolve({ A: 1 }, 'A')).toBe(1);
  });

  it('hides private keys from keys (private_keys_are_filtered)', async () => {
    expect(await resolve({ a: 1, private: 2 }, 'keys')).toEqual(['a']);
    expect(await resolve({ a: 1, priv_foo: 4 }, 'keys')).toEqual(['a']);
  });

  it('refuses to resolve private keys (cannot_get_private_keys)', async () => {
    await expect(resolve({ a: 1, private_key: 2 }, 'private_key', { hashpath: 'ignore' })).rejects.toMatchObject({
      status: 404,
      code: 'ERR_NOT_FOUND',
      message: "Key 'private_key' not found: private keys cannot be resolved (device message@1.0)",
    });
  });

  it('reads a key (key_from_device)', async () => {
    expect(await resolve({ a: 1 }, 'a')).toBe(1);
  });

  it('removes an item or items (remove)', async () => {
    const msg = { key1: 'Value1', key2: 'Value2' };
    expect(await resolve(msg, { path: 'remove', item: 'key1' })).toEqual({ key2: 'Value2' });
    expect(await resolve(msg, { path: 'remove', items: ['key1', 'key2'] })).toEqual({});
  });

  it('overwrites a key with set (set_conflicting_keys)', async () => {
    expect(await resolve({ dangerous: 'Value1' }, { path: 'set', dangerous: 'Value2' })).toEqual({ dangerous: 'Value2' });
  });

  it('deletes a key set to UNSET (unset_with_set)', async () => {
    expect(await resolve({ dangerous: 'Value1' }, { path: 'set', dangerous: UNSET })).toEqual({});
  });

  it('deletes deep keys set to UNSET (deep_unset)', () => {
    const base = { 'test-key1': 'Value1', deep: { 'test-key2': 'Value2', 'test-key3': 'Value3' } };
    const req = set(base, { 'deep/test-key2': UNSET });
    expect(req).toEqual({ 'test-key1': 'Value1', deep: { 'test-key3': 'Value3' } });
    const res = set(req, 'deep/test-key3', UNSET);
    expect(res).toEqual({ 'test-key1': 'Value1', deep: {} });
    expect(set(res, { deep: UNSET })).toEqual({ 'test-key1': 'Value1' });
  });

  it('ignores undefined values in set (set_ignore_undefined)', async () => {
    expect(await resolve({ 'test-key': 'Value1' }, { path: 'set', 'test-key': undefined })).toEqual({
      'test-key': 'Value1',
    });
  });
});

describe('device objects', () => {
  it('may be class instances, their methods being device keys', async () => {
    class Counter {
      constructor(private readonly step: number) {}
      info() {
        return { excludes: ['hidden'] };
      }
      bump(base: Message) {
        return { ...base, n: base.n + this.step };
      }
      hidden() {
        return 'never';
      }
    }
    const msg = { device: new Counter(2), n: 1, hidden: 'stored' };
    expect((await resolve(msg, 'bump')).n).toBe(3);
    expect(await resolve(msg, 'hidden')).toBe('stored');
  });

  it('answer dashed keys with underscored functions', async () => {
    const dev: Device = { import_resolver: () => 'resolver' };
    expect(await resolve({ device: dev }, 'import-resolver')).toBe('resolver');
    expect(await resolve({ device: dev }, 'import_resolver')).toBe('resolver');
  });
});
