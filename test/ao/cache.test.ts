import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  cacheRead,
  cacheWrite,
  canonicalDecode,
  canonicalEncode,
  DirectoryStore,
  get,
  MemoryStore,
  messageId,
  resolve,
  type Store,
} from '../../src/ao';

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'hb-ao-cache-'));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));
let dirCount = 0;
const freshDir = () => path.join(tmpRoot, `store-${++dirCount}`);

const SAMPLE = {
  s: 'text',
  b: new Uint8Array([0, 1, 254, 255]),
  i: 42,
  neg: -7,
  f: 1.5,
  big: 12345678901234567890n,
  t: true,
  n: null,
  l: ['a', 1, [2, { x: 'y' }]],
  m: { nested: { deep: 'value' }, empty: {} },
  e: [],
  u: 'ü€😀',
};

const stores: Array<[string, () => Store]> = [
  ['MemoryStore', () => new MemoryStore()],
  ['DirectoryStore', () => new DirectoryStore(freshDir())],
];

describe.each(stores)('cache with a %s', (_name, makeStore) => {
  it('round-trips a message with every value type', async () => {
    const store = makeStore();
    const id = await cacheWrite(SAMPLE, { store });
    expect(id).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(await cacheRead(id, { store })).toEqual(SAMPLE);
  });

  it('keeps types apart: string vs bytes, integer vs float vs bigint, null, lists and maps', async () => {
    const store = makeStore();
    const values = ['1', new Uint8Array([49]), 1, 1.25, 1n, true, null, ['1'], { 1: '1' }];
    const ids = await Promise.all(values.map((v) => cacheWrite({ v }, { store })));
    expect(new Set(ids).size).toBe(values.length);
    for (let i = 0; i < values.length; i++) {
      expect(await cacheRead(ids[i], { store })).toEqual({ v: values[i] });
    }
    const read = (await cacheRead(ids[4], { store })) as { v: unknown };
    expect(typeof read.v).toBe('bigint');
  });

  it('keeps a leading U+FEFF (byte order mark) in keys and strings', async () => {
    // found by the property test below: a decoder that strips the BOM read '\uFEFF' back as ''
    const store = makeStore();
    const m = { '\uFEFF': false, k: '\uFEFFtext', nested: { '\uFEFFa': ['\uFEFF'] } };
    const id = await cacheWrite(m, { store });
    expect(await cacheRead(id, { store })).toEqual(m);
    expect(canonicalDecode(canonicalEncode(m))).toEqual(m);
  });

  it('round-trips special floats', async () => {
    const store = makeStore();
    const msg = { nan: NaN, inf: Infinity, ninf: -Infinity, negzero: -0, tiny: 5e-324, big: 1e300 };
    const back = (await cacheRead(await cacheWrite(msg, { store }), { store })) as Record<string, number>;
    expect(back.nan).toBeNaN();
    expect(back.inf).toBe(Infinity);
    expect(back.ninf).toBe(-Infinity);
    expect(Object.is(back.negzero, -0)).toBe(true);
    expect(back.tiny).toBe(5e-324);
    expect(back.big).toBe(1e300);
  });

  it('stores raw bytes under the SHA-256 of the bytes', async () => {
    const store = makeStore();
    const bytes = new TextEncoder().encode('hello');
    const id = await cacheWrite(bytes, { store });
    expect(id).toBe(createHash('sha256').update(bytes).digest('base64url'));
    expect(await cacheRead(id, { store })).toEqual(bytes);
  });

  it('gives the same ID whatever the key order', async () => {
    const store = makeStore();
    expect(await cacheWrite({ a: 1, b: { c: 2, d: 3 } }, { store })).toBe(
      await cacheWrite({ b: { d: 3, c: 2 }, a: 1 }, { store }),
    );
  });

  it('strips private keys at every level', async () => {
    const store = makeStore();
    const id = await cacheWrite({ a: 1, priv: { h: 1 }, sub: { private: 2, b: 3 } }, { store });
    expect(id).toBe(await cacheWrite({ a: 1, sub: { b: 3 } }, { store }));
    expect(await cacheRead(id, { store })).toEqual({ a: 1, sub: { b: 3 } });
  });

  it('rejects an unknown ID with a 404 and a malformed one with a 400', async () => {
    const store = makeStore();
    const absent = 'A'.repeat(43);
    await expect(cacheRead(absent, { store })).rejects.toMatchObject({
      status: 404,
      code: 'ERR_NOT_FOUND',
      message: `Cache entry '${absent}' not found`,
    });
    await expect(cacheRead('../../etc/passwd', { store })).rejects.toMatchObject({
      status: 400,
      code: 'ERR_INVALID_ARG',
      message: 'Invalid cache ID "../../etc/passwd": expected 43 base64url characters',
    });
  });

  it('loads an ID used as a resolution base', async () => {
    const store = makeStore();
    const id = await cacheWrite({ a: { b: 'found' } }, { store });
    expect(await resolve(id, 'a/b', { store })).toBe('found');
    expect(get('a/b', id, { store })).toBe('found');
    await expect(resolve('B'.repeat(43), 'a', { store })).rejects.toMatchObject({ status: 404 });
    expect(get('a', 'B'.repeat(43), { store })).toBeUndefined();
  });

  it('writes the same message twice without complaint', async () => {
    const store = makeStore();
    const [a, b] = await Promise.all([cacheWrite({ x: 1 }, { store }), cacheWrite({ x: 1 }, { store })]);
    expect(a).toBe(b);
    expect(await cacheRead(a, { store })).toEqual({ x: 1 });
  });
});

describe('the default store', () => {
  it('is one process-wide MemoryStore', async () => {
    const id = await cacheWrite({ shared: 'default' });
    expect(await cacheRead(id)).toEqual({ shared: 'default' });
    expect(await resolve(id, 'shared')).toBe('default');
  });
});

describe('DirectoryStore', () => {
  it('keeps entries across a restart (a new store on the same directory)', async () => {
    const dir = freshDir();
    const id = await cacheWrite(SAMPLE, { store: new DirectoryStore(dir) });
    expect(await cacheRead(id, { store: new DirectoryStore(dir) })).toEqual(SAMPLE);
  });

  it('lays entries out as <dir>/<first two ID characters>/<ID>, with no temp file left', async () => {
    const dir = freshDir();
    const id = await cacheWrite({ layout: true }, { store: new DirectoryStore(dir) });
    expect(fs.readdirSync(dir)).toEqual([id.slice(0, 2)]);
    expect(fs.readdirSync(path.join(dir, id.slice(0, 2)))).toEqual([id]);
    const file = fs.readFileSync(path.join(dir, id.slice(0, 2), id));
    expect(file[0]).toBe(1);
    expect(createHash('sha256').update(file.subarray(1)).digest('base64url')).toBe(id);
  });

  it('ignores a temp file left by a crash mid-write', async () => {
    const dir = freshDir();
    const msg = { crashed: 'write' };
    const id = messageId(msg);
    const sub = path.join(dir, id.slice(0, 2));
    fs.mkdirSync(sub, { recursive: true });
    fs.writeFileSync(path.join(sub, `.${id}.4242.deadbeef0000.tmp`), Buffer.from([1, 0x6d, 0x01]));
    const restarted = new DirectoryStore(dir);
    await expect(cacheRead(id, { store: restarted })).rejects.toMatchObject({ status: 404 });
    expect(await cacheWrite(msg, { store: restarted })).toBe(id);
    expect(await cacheRead(id, { store: restarted })).toEqual(msg);
  });

  it('refuses an entry whose bytes do not hash to its ID', async () => {
    const dir = freshDir();
    const store = new DirectoryStore(dir);
    const id = await cacheWrite({ intact: true }, { store });
    const file = path.join(dir, id.slice(0, 2), id);
    const bytes = fs.readFileSync(file);
    fs.writeFileSync(file, bytes.subarray(0, bytes.length - 1));
    await expect(cacheRead(id, { store })).rejects.toMatchObject({
      status: 500,
      code: 'ERR_CACHE_CORRUPT',
      message: `Cache entry '${id}' is corrupt (its bytes do not hash to its ID)`,
    });
  });
});

describe('the canonical encoding', () => {
  it('reproduces the documented example byte for byte', () => {
    expect(canonicalEncode({ b: 1, a: 'x' }).toString('hex')).toBe('6d0201617301780162690131');
    expect(messageId({ b: 1, a: 'x' })).toBe('OIayE6TkSgBpf26qjiCp705UzV_fDhGvR2kL7yvvDEo');
  });

  it('reproduces the documented example of every type', () => {
    const msg = {
      list: [null, true, false, 1.5, -7, 10n, new Uint8Array([0, 255])],
      é: 'ü',
      A: '',
      priv: { x: 1 },
    };
    expect(canonicalEncode(msg).toString('hex')).toBe(
      '6d0301417300046c6973746c074e5446643ff800000000000069022d376e023130620200ff02c3a97302c3bc',
    );
    expect(messageId(msg)).toBe('SuGaWFaPza0CJ9A_Ff_SHTKjueLWCPy8dxhbJh44bvQ');
  });

  it('sorts keys by UTF-8 bytes, not UTF-16 code units', () => {
    // U+FF5E sorts before U+1F600 in UTF-8 but after it in UTF-16.
    const enc = canonicalEncode({ '😀': 1, '～': 2 });
    expect(canonicalDecode(enc)).toEqual({ '～': 2, '😀': 1 });
    expect(Object.keys(canonicalDecode(enc) as object)).toEqual(['～', '😀']);
  });

  it('rejects bytes that are not a canonical encoding', () => {
    expect(() => canonicalDecode(Buffer.from('6d02016173017801', 'hex'))).toThrow(
      expect.objectContaining({ status: 500, code: 'ERR_CACHE_CORRUPT', message: 'Corrupt canonical encoding: truncated' }),
    );
    expect(() => canonicalDecode(Buffer.from('6d020162690131016173017', 'hex'))).toThrow(
      expect.objectContaining({ code: 'ERR_CACHE_CORRUPT' }),
    );
    expect(() => canonicalDecode(Buffer.from('4e4e', 'hex'))).toThrow(
      expect.objectContaining({ message: 'Corrupt canonical encoding: trailing bytes' }),
    );
  });
});
