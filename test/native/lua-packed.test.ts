// Packed marshalling (src/lua-packed.ts, native/lua_packed.cc): random JS values round-trip
// through `echo` and random Lua tables come back exactly as docs/lua-vm.md "Values" maps them
// (each mapping written as a small reference function below), plus the error cases.
import fc from 'fast-check';
import vm from 'node:vm';
import { describe, expect, it } from 'vitest';
import { AoError, LuaMemoryError, LuaRuntimeError } from '../../src/errors';
import { LuaVM } from '../../src/lua';
import { native } from '../../src/native';
import { thrown } from '../helpers/thrown';

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The JS form of Lua string bytes: a string when strictly UTF-8, else a Buffer. */
function bytesToJs(b: Uint8Array): string | Buffer {
  try {
    return strictUtf8.decode(b);
  } catch {
    return Buffer.from(b);
  }
}

/** A plain object with these entries (`__proto__` as an own property). */
function objectOf(entries: [string, unknown][]): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const [k, v] of entries) Object.defineProperty(o, k, { value: v, writable: true, enumerable: true, configurable: true });
  return o;
}

/** Reference: what `echo(v)` returns for a JS value v, JS -> Lua -> JS, per docs/lua-vm.md. */
function echoed(v: unknown): unknown {
  if (v === null || v === undefined) return null;
  if (typeof v === 'bigint') return v >= -MAX_SAFE && v <= MAX_SAFE ? Number(v) : v;
  if (typeof v === 'string') return Buffer.from(v, 'utf8').toString('utf8'); // lone surrogates: U+FFFD
  if (v instanceof Uint8Array) return bytesToJs(v);
  if (Array.isArray(v)) {
    // A sequence with nil holes: an array only when the non-nil indices are exactly 1..n.
    const entries: [number, unknown][] = [];
    for (let i = 0; i < v.length; i++) if (v[i] !== null && v[i] !== undefined) entries.push([i + 1, echoed(v[i])]);
    if (entries.length > 0 && entries[entries.length - 1][0] === entries.length) return entries.map((e) => e[1]);
    return objectOf(entries.map(([k, x]) => [String(k), x]));
  }
  if (typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return objectOf(Object.keys(o).filter((k) => o[k] !== null && o[k] !== undefined).map((k) => [k, echoed(o[k])]));
  }
  return v; // booleans, numbers (integers and floats alike come back as the same number)
}

const key = fc.oneof(fc.string({ maxLength: 6 }), fc.constantFrom('__proto__', '1', '', 'a.b', 'length', 'é'));
const scalar = fc.oneof(
  fc.constantFrom(null, undefined, true, false, -0, 0, NaN, Infinity, -Infinity, 2 ** 31, -(2 ** 31), 2 ** 31 - 1, 2 ** 53, 2 ** 53 - 1, -(2 ** 53 - 1)),
  fc.integer(),
  fc.maxSafeInteger(),
  fc.double(),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  fc.string({ unit: 'binary', maxLength: 12 }),
  fc.string({ maxLength: 60 }),
  fc.constantFrom('\ud800', 'a\udfffb', '\u{1f600}', 'x'.repeat(100), 'é'.repeat(40)),
  fc.uint8Array({ maxLength: 10 }),
  fc.constantFrom(new Uint8Array([0xef, 0xbb, 0xbf]), new Uint8Array([0xed, 0xa0, 0x80]), new Uint8Array([0xc0, 0x80]), Buffer.from('ok')),
);
const { value: jsValue } = fc.letrec<{ value: unknown; array: unknown[]; object: Record<string, unknown> }>((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, scalar, tie('array'), tie('object')),
  array: fc.oneof(fc.array(tie('value'), { maxLength: 6 }), fc.sparseArray(tie('value'), { maxLength: 6 })),
  object: fc.dictionary(key, tie('value'), { maxKeys: 6 }),
}));

function echoVM(): LuaVM {
  const v = new LuaVM();
  v.load('function echo(...) return ... end\nfunction count(t) local n = 0 for _ in pairs(t) do n = n + 1 end return n end', 'echo');
  return v;
}

describe('packed marshalling: JS -> Lua -> JS', () => {
  it('round-trips random values through echo as the documented mapping says', () => {
    const v = echoVM();
    fc.assert(
      fc.property(fc.array(jsValue, { minLength: 1, maxLength: 3 }), (args) => {
        expect(v.call('echo', args)).toStrictEqual(args.map(echoed));
      }),
      { numRuns: 400 },
    );
  });

  it('gives Lua the documented types: integers, floats, -0, strings and bytes', () => {
    const v = new LuaVM();
    v.load(
      `function types(t) local out = {} for i, x in ipairs(t) do
         out[i] = math.type(x) or type(x) end
         out[#out + 1] = tostring(1 / t[3]) return out end`,
      'types',
    );
    expect(v.call('types', [[1, 2 ** 40, -0, 1.5, 2n ** 62n, 2 ** 53, 'é', new Uint8Array([255])]])).toEqual([
      ['integer', 'integer', 'float', 'float', 'integer', 'float', 'string', 'string', '-inf'],
    ]);
  });

  it('skips null and undefined properties, keeps object keys strings and arrays 1-based', () => {
    const v = echoVM();
    v.load('function probe(t) return t["1"], t[1], rawlen(t.list), t.list[1], t.list[2], t.list[3], count(t) end', 'p');
    expect(v.call('probe', [{ '1': 'one', list: ['a', null, 'c'], gone: null, alsoGone: undefined }])).toEqual([
      'one',
      null,
      3,
      'a',
      null,
      'c',
      2,
    ]);
  });

  it('accepts null-prototype and other-realm plain objects, and Buffer subclasses', () => {
    const v = echoVM();
    const bare = Object.create(null) as Record<string, unknown>;
    bare.a = 1;
    const foreign = vm.runInNewContext('({ b: [1, 2], c: { d: "x" } })');
    expect(v.call('echo', [bare, foreign, { buf: Buffer.from([0xff]) }])).toStrictEqual([{ a: 1 }, { b: [1, 2], c: { d: 'x' } }, { buf: Buffer.from([0xff]) }]);
  });

  it('copies own enumerable string keys only: no inherited, non-enumerable or symbol keys', () => {
    const v = echoVM();
    const base = Object.create(null) as Record<string, unknown>;
    base.inherited = 2;
    const o = Object.create(base) as Record<string | symbol, unknown>;
    o.own = 3;
    o[Symbol('s')] = 4;
    Object.defineProperty(o, 'hidden', { value: 5, enumerable: false });
    const proto = Object.prototype as Record<string, unknown>;
    proto.polluted = 1;
    try {
      expect(v.call('echo', [o, { a: 1 }])).toStrictEqual([{ own: 3 }, { a: 1 }]);
    } finally {
      delete proto.polluted;
    }
  });

  it('reads getters once, and a getter may call back into the same VM with a table', () => {
    const v = echoVM();
    let reads = 0;
    const arg = {
      get nested() {
        reads++;
        return v.call('echo', [{ inner: [1, 2, 3] }])[0];
      },
      after: 'x'.repeat(20_000), // grows the buffer of the outer encoding after the nested call
    };
    expect(v.call('echo', [arg])).toStrictEqual([{ nested: { inner: [1, 2, 3] }, after: 'x'.repeat(20_000) }]);
    expect(reads).toBe(1);
  });

  it('handles values larger than the reused buffers, both ways', () => {
    const v = echoVM();
    const big = { list: Array.from({ length: 50_000 }, (_, i) => i * 1.5), text: 'ü'.repeat(300_000), bytes: new Uint8Array(200_000).fill(0xff) };
    const [back] = v.call('echo', [big]) as [typeof big];
    expect(back.list.length).toBe(50_000);
    expect(back.list[49_999]).toBe(49_999 * 1.5);
    expect(back.text).toBe(big.text);
    expect(Buffer.from(back.bytes as unknown as Buffer).equals(Buffer.from(big.bytes))).toBe(true);
    // A small argument with a large result, and then a small call again.
    v.load('function make(o) local t = {} for i = 1, o.n do t[i] = {i = i, s = "v" .. i} end return t end', 'make');
    const [made] = v.call('make', [{ n: 40_000 }]) as [unknown[]];
    expect(made.length).toBe(40_000);
    expect(made[39_999]).toEqual({ i: 40_000, s: 'v40000' });
    expect(v.call('echo', [{ a: [1] }])).toEqual([{ a: [1] }]);
  });

  it('keeps scalar-only calls on native arguments and still packs table results', () => {
    const v = echoVM();
    v.load('function pair(a, b) return {a, b}, a end', 'pair');
    expect(v.call('pair', [1, 'x'])).toEqual([[1, 'x'], 1]);
    expect(v.call('pair', [null, 2n ** 60n])).toEqual([{ '2': 2n ** 60n }, null]);
  });
});

describe('packed marshalling: errors', () => {
  const v = echoVM();
  const message = (args: unknown[]) => {
    const e = thrown(() => v.call('echo', args));
    expect(e).toBeInstanceOf(AoError);
    expect(e).toMatchObject({ status: 400, code: 'ERR_INVALID_ARG' });
    return e.message as string;
  };

  it('names the place of a JS value with no Lua form', () => {
    expect(message([1, { a: { f() {} } }])).toBe(
      'LuaVM#call(): a function has no Lua form (register host functions with setGlobalFunction) (at args[1].a.f)',
    );
    expect(message([{ s: [0, Symbol('x')] }])).toBe('LuaVM#call(): a symbol or external value has no Lua form (at args[0].s[1])');
    expect(message([{ m: new Map() }])).toBe(
      'LuaVM#call(): only plain objects and arrays convert to Lua tables (got a class instance, Map, Date, ...) (at args[0].m)',
    );
    expect(message([[new Date(0)]])).toMatch(/only plain objects and arrays .* \(at args\[0\]\[0\]\)$/);
    expect(message([{ view: new DataView(new ArrayBuffer(2)) }])).toMatch(/only plain objects and arrays .* \(at args\[0\]\.view\)$/);
    expect(message([{ x: new Uint16Array(2) }])).toBe('LuaVM#call(): only Uint8Array (or Buffer) converts to a Lua string (at args[0].x)');
    expect(message([{ n: [2n ** 63n] }])).toBe('LuaVM#call(): BigInt outside the int64 range (at args[0].n[0])');
    expect(message([{ n: -(2n ** 63n) - 1n }])).toBe('LuaVM#call(): BigInt outside the int64 range (at args[0].n)');
    class Point {
      x = 1;
    }
    expect(message([{ p: new Point() }])).toMatch(/only plain objects .* \(at args\[0\]\.p\)$/);
  });

  it('detects cycles through arrays and objects, with the path of the repeated value', () => {
    const a: unknown[] = [1];
    a.push({ back: a });
    expect(message(['x', a])).toBe('LuaVM#call(): cycle detected (the value contains itself) (at args[1][1].back)');
    const o: Record<string, unknown> = {};
    o.o = o;
    expect(message([o])).toBe('LuaVM#call(): cycle detected (the value contains itself) (at args[0].o)');
  });

  it('refuses nesting deeper than 200 levels and accepts 200', () => {
    const nest = (n: number) => {
      let d: unknown = 'leaf';
      for (let i = 0; i < n; i++) d = { k: d };
      return d;
    };
    expect(message([nest(201)])).toBe(`LuaVM#call(): value nested deeper than 200 levels (at args[0]${'.k'.repeat(200)})`);
    const [back] = v.call('echo', [nest(200)]);
    let depth = 0;
    for (let x = back as { k?: unknown }; typeof x === 'object'; x = x.k as { k?: unknown }) depth++;
    expect(depth).toBe(200);
  });

  it('leaves the VM and the shared buffer usable after an encoding error', () => {
    const bad = { big: 'y'.repeat(50_000), f: () => 1 };
    expect(message([bad])).toMatch(/a function has no Lua form .*\(at args\[0\]\.f\)$/);
    expect(v.call('echo', [{ ok: [1, 2] }])).toEqual([{ ok: [1, 2] }]);
  });

  it('fails Lua results without a JS form with ERR_LUA_CONVERT, deep inside tables too', () => {
    const convert = (code: string) => {
      const e = thrown(() => v.load(code, 'm'));
      expect(e).toBeInstanceOf(AoError);
      expect(e).toMatchObject({ status: 500, code: 'ERR_LUA_CONVERT' });
      return e.message as string;
    };
    expect(convert('local t = {1, 2} t[3] = {x = {t}} return t')).toBe('cannot convert a Lua value to JS: cycle detected (the table contains itself)');
    expect(convert('return {a = {[{}] = 1}}')).toBe('cannot convert a Lua value to JS: a table key of type table has no JS form');
    expect(convert('return 1, {[print] = 1}')).toBe('cannot convert a Lua value to JS: a table key of type function has no JS form');
    expect(convert('return {{["\\xff"] = 1}}')).toBe('cannot convert a Lua value to JS: a table key is not valid UTF-8');
    expect(convert('local t = {} for i = 1, 201 do t = {t} end return t')).toBe(
      'cannot convert a Lua value to JS: table nested deeper than 200 levels',
    );
    expect(v.load('local t = {} for i = 1, 199 do t = {t} end return t', 'm')).toHaveLength(1);
  });

  it('turns running out of Lua memory while unpacking arguments into LuaMemoryError', () => {
    const small = new LuaVM({ memoryLimit: 200_000 });
    small.load('function echo(x) return x end', 'e');
    const e = thrown(() => small.call('echo', [{ list: Array.from({ length: 20_000 }, (_, i) => `s${i}`) }]));
    expect(e).toBeInstanceOf(LuaMemoryError);
    expect(e.message).toBe('not enough memory (memoryLimit of 200000 bytes reached)');
    expect(small.call('echo', [{ a: [1] }])).toEqual([{ a: [1] }]);
  });

  it('refuses malformed packed streams given to the native handle without crashing', () => {
    const h = new native.LuaVM({});
    h.load('function echo(...) return ... end', 'e');
    const run = (bytes: number[], nargs: number) => thrown(() => h.callPacked('echo', Uint8Array.from(bytes), bytes.length, nargs));
    for (const [bytes, nargs] of [
      [[10, 5, 0, 0, 0, 0], 1], // array of 5 with one element's worth of bytes
      [[7, 255, 255, 255, 255, 65], 1], // string longer than the stream
      [[11, 1, 0, 0, 0, 3, 1, 0, 0, 0, 0], 1], // object key that is not a string
      [[99], 1], // unknown tag
      [[3, 1, 0], 1], // truncated i32
      [[7, 1, 0, 0, 0, 65], 2], // fewer values than nargs
      [[6, ...new Uint8Array(new Float64Array([2 ** 60]).buffer)], 1], // integer tag with an unsafe value
    ] as [number[], number][]) {
      const e = run(bytes, nargs);
      expect(e).toBeInstanceOf(LuaRuntimeError);
      expect(e.message).toBe('malformed packed value');
    }
    // Random streams (mostly valid tags and small lengths): a value or a typed error, never a crash.
    const byte = fc.oneof(fc.integer({ min: 0, max: 15 }), fc.integer({ min: 0, max: 255 }), fc.constant(0), fc.constant(1));
    fc.assert(
      fc.property(fc.array(byte, { maxLength: 40 }), fc.integer({ min: 0, max: 3 }), (bytes, nargs) => {
        if (nargs > bytes.length) return;
        try {
          const r = h.callPacked('echo', Uint8Array.from(bytes), bytes.length, nargs);
          expect(Array.isArray(r) || typeof r === 'number' || Buffer.isBuffer(r)).toBe(true);
        } catch (e) {
          if (e instanceof LuaRuntimeError) expect(e.message).toBe('malformed packed value');
          else expect(e).toMatchObject({ status: 500, code: 'ERR_LUA_CONVERT' }); // e.g. a key that is not UTF-8
        }
      }),
      { numRuns: 3000 },
    );
    let deep: number[] = [0];
    for (let i = 0; i < 300; i++) deep = [10, 1, 0, 0, 0, ...deep];
    expect(run(deep, 1).message).toBe('malformed packed value');
    expect(thrown(() => h.callPacked('echo', Uint8Array.from([0]), 2, 1))).toMatchObject({ status: 400, code: 'ERR_INVALID_ARG' });
    expect(thrown(() => h.callPacked('echo', [0] as never, 1, 1))).toMatchObject({ status: 400, code: 'ERR_INVALID_ARG' });
    expect(h.callPacked('echo', Uint8Array.from([3, 7, 0, 0, 0]), 5, 1)).toEqual([7]);
  });
});

// ---- Lua -> JS: random Lua values, built by generated Lua code ------------------------------------

type LuaKey = { t: 'int'; v: bigint } | { t: 'float'; v: number } | { t: 'bool'; v: boolean } | { t: 'str'; v: string };
type Lua = { t: 'nil' } | LuaKey | { t: 'bytes'; v: Uint8Array } | { t: 'table'; entries: [LuaKey, Lua][] };

const f64Bytes = (d: number) => new Uint8Array(new Float64Array([d]).buffer);
const escape = (b: Uint8Array) => `"${[...b].map((x) => `\\x${x.toString(16).padStart(2, '0')}`).join('')}"`;

function luaSource(x: Lua): string {
  switch (x.t) {
    case 'nil':
      return 'nil';
    case 'bool':
      return String(x.v);
    case 'int':
      return `0x${BigInt.asUintN(64, x.v).toString(16)}`; // hex integer literals wrap around: exact int64
    case 'float':
      return `(string.unpack("<d", ${escape(f64Bytes(x.v))}))`;
    case 'str':
      return escape(Buffer.from(x.v, 'utf8'));
    case 'bytes':
      return escape(x.v);
    case 'table':
      return `(function() local t = {} ${x.entries.map(([k, v]) => `t[${luaSource(k)}] = ${luaSource(v)}`).join(' ')} return t end)()`;
  }
}

/** Lua's own key normalization: floats with an exact integer value are integer keys. */
function normalizeKey(k: LuaKey): LuaKey {
  if (k.t === 'float' && Number.isInteger(k.v) && k.v >= -(2 ** 63) && k.v < 2 ** 63) return { t: 'int', v: BigInt(k.v) };
  return k;
}

const jsKey = (k: LuaKey): string => (k.t === 'str' ? k.v : String(k.v));

/** Reference: the JS form of a Lua value per docs/lua-vm.md (undefined: two keys collide, skip). */
function luaToJs(x: Lua): unknown {
  switch (x.t) {
    case 'nil':
      return null;
    case 'bool':
      return x.v;
    case 'int':
      return x.v >= -MAX_SAFE && x.v <= MAX_SAFE ? Number(x.v) : x.v;
    case 'float':
      return x.v;
    case 'str':
      return x.v;
    case 'bytes':
      return bytesToJs(x.v);
    case 'table': {
      const live = new Map<string, [LuaKey, Lua]>();
      for (const [k0, v] of x.entries) {
        const k = normalizeKey(k0);
        const id = `${k.t}:${String(k.v)}`;
        if (v.t === 'nil') live.delete(id);
        else live.set(id, [k, v]);
      }
      const entries = [...live.values()];
      const ints = entries.every(([k]) => k.t === 'int' && k.v >= 1n && k.v <= BigInt(entries.length));
      if (entries.length > 0 && ints) {
        const out = new Array<unknown>(entries.length);
        for (const [k, v] of entries) out[Number((k as { v: bigint }).v) - 1] = luaToJs(v);
        return out.includes(undefined) ? undefined : out;
      }
      const names = entries.map(([k]) => jsKey(k));
      if (new Set(names).size !== names.length) return undefined;
      const values = entries.map(([, v]) => luaToJs(v));
      if (values.includes(undefined)) return undefined;
      return objectOf(names.map((n, i) => [n, values[i]]));
    }
  }
}

const luaInt = fc.oneof(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), fc.bigInt({ min: -3n, max: 6n }), fc.constantFrom(MAX_SAFE, MAX_SAFE + 1n, -MAX_SAFE - 1n, 2n ** 31n, -(2n ** 31n) - 1n));
const luaKey: fc.Arbitrary<LuaKey> = fc.oneof(
  luaInt.map((v) => ({ t: 'int' as const, v })),
  fc.oneof(fc.double({ noNaN: true }), fc.constantFrom(1.5, -0, 2, 2 ** 63, -Infinity)).map((v) => ({ t: 'float' as const, v })),
  fc.boolean().map((v) => ({ t: 'bool' as const, v })),
  fc.oneof(fc.string({ maxLength: 5 }), fc.string({ unit: 'grapheme', maxLength: 3 }), fc.constantFrom('__proto__', 'x', '1')).map((v) => ({ t: 'str' as const, v })),
);
const { lua: luaValue } = fc.letrec<{ lua: Lua; table: Lua; list: Lua }>((tie) => ({
  lua: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant({ t: 'nil' as const }),
    luaKey,
    fc.double().map((v) => ({ t: 'float' as const, v })),
    fc.uint8Array({ maxLength: 6 }).map((v) => ({ t: 'bytes' as const, v })),
    tie('table'),
    tie('list'),
  ),
  table: fc.array(fc.tuple(luaKey, tie('lua')), { maxLength: 6 }).map((entries) => ({ t: 'table' as const, entries })),
  // Keys 1..n assigned in a random order (reversed ones land in the hash part).
  list: fc
    .array(tie('lua'), { minLength: 1, maxLength: 6 })
    .chain((vals) => fc.shuffledSubarray(vals.map((v, i) => [i, v] as const), { minLength: vals.length }))
    .map((pairs) => ({ t: 'table' as const, entries: pairs.map(([i, v]): [LuaKey, Lua] => [{ t: 'int', v: BigInt(i + 1) }, v]) })),
}));

describe('packed marshalling: Lua -> JS', () => {
  it('converts random Lua values as the documented mapping says', () => {
    const v = new LuaVM();
    fc.assert(
      fc.property(fc.array(luaValue, { minLength: 1, maxLength: 3 }), (values) => {
        const expected = values.map(luaToJs);
        fc.pre(!expected.includes(undefined));
        expect(v.load(`return ${values.map(luaSource).join(', ')}`, 'gen')).toStrictEqual(expected);
      }),
      { numRuns: 400 },
    );
  });

  it('keeps integers beyond 2^53 as bigints and floats as numbers, NaN and -0 included', () => {
    const [t] = new LuaVM().load('return {math.maxinteger, math.mininteger, 2^53 | 0, 2^53, 0/0, -0.0, 1/0, 2^31 | 0, -2^31 | 0}', 'm') as [unknown[]];
    expect(t).toStrictEqual([2n ** 63n - 1n, -(2n ** 63n), 2n ** 53n, 2 ** 53, NaN, -0, Infinity, 2 ** 31, -(2 ** 31)]);
  });
});

describe('packed marshalling: host functions', () => {
  it('passes random table arguments to host functions and takes their results back, as documented', () => {
    const v = echoVM();
    let received: unknown;
    v.setGlobalFunction('hostId', (x: unknown) => (received = x));
    v.load('function viaHost(x) return hostId(x) end', 'via');
    fc.assert(
      fc.property(jsValue, (x) => {
        const once = echoed(x);
        expect(v.call('viaHost', [[x]])).toStrictEqual([echoed([once])]);
        expect(received).toStrictEqual(echoed([x]));
      }),
      { numRuns: 300 },
    );
  });

  it('takes random results of host functions called with scalar arguments, as documented', () => {
    const v = new LuaVM();
    let next: unknown;
    v.setGlobalFunction('give', () => next);
    v.load('function take(n) return give(n) end', 'take');
    fc.assert(
      fc.property(jsValue, (x) => {
        next = x;
        expect(v.call('take', [1])).toStrictEqual([echoed(x)]);
      }),
      { numRuns: 300 },
    );
  });

  it('gives every argument, nil ones included, and one result', () => {
    const v = new LuaVM();
    const seen: unknown[][] = [];
    v.setGlobalFunction('ao.resolve', (...args: unknown[]) => {
      seen.push(args);
      return { status: 200, body: { echo: args[1] }, list: [1, 2] };
    });
    v.load('function go() local r = ao.resolve(nil, {path = "x", n = {1, 2}}, nil) return r.status, r.body.echo.path, #r.list, r end', 'go');
    expect(v.call('go', [])).toEqual([200, 'x', 2, { status: 200, body: { echo: { path: 'x', n: [1, 2] } }, list: [1, 2] }]);
    expect(seen).toEqual([[null, { path: 'x', n: [1, 2] }, null]]);
  });

  it('turns a result with no Lua form into a Lua error naming the place, with or without table arguments', () => {
    const v = new LuaVM();
    v.setGlobalFunction('bad', () => ({ ok: 1, f: () => 1 }));
    v.load('function try(...) local ok, e = pcall(bad, ...) return ok, e end', 'try');
    const msg = 'host function result: a function has no Lua form (register host functions with setGlobalFunction) (at .f)';
    expect(v.call('try', [{ table: true }])).toEqual([false, msg]);
    expect(v.call('try', [1])).toEqual([false, msg]);
    const e = thrown(() => v.load('bad({})', 'm'));
    expect(e).toBeInstanceOf(LuaRuntimeError);
    expect(e.message).toBe(msg);
    expect(e.cause).toBeInstanceOf(AoError);
    expect(e.cause).toMatchObject({ status: 400, code: 'ERR_INVALID_ARG', message: msg });
  });

  it('keeps a JS exception as the cause, and Lua values without a JS form fail the call', () => {
    const v = new LuaVM();
    const boom = new Error('boom');
    v.setGlobalFunction('thrower', () => {
      throw boom;
    });
    v.setGlobalFunction('id', (x: unknown) => x);
    const e = thrown(() => v.load('thrower({1, 2})', 'm'));
    expect(e).toBeInstanceOf(LuaRuntimeError);
    expect(e.message).toBe('boom');
    expect(e.cause).toBe(boom);
    v.load('function cyc() local t = {} t.t = t local ok, err = pcall(id, t) return ok, err end', 'c');
    expect(v.call('cyc', [])).toEqual([false, 'cannot convert a Lua value to JS: cycle detected (the table contains itself)']);
  });

  it('works the same in a restored VM', () => {
    const v = new LuaVM();
    v.load('function go(t) return host.sum(t), t end', 'go');
    const again = LuaVM.restore(v.snapshot());
    again.setGlobalFunction('host.sum', (t: { xs: number[] }) => ({ total: t.xs.reduce((a, b) => a + b, 0) }));
    expect(again.call('go', [{ xs: [1, 2, 3] }])).toEqual([{ total: 6 }, { xs: [1, 2, 3] }]);
  });

  it('lets a host function called with a table call back into the VM with tables', () => {
    const v = echoVM();
    v.setGlobalFunction('relay', (t: { items: number[] }) => {
      const [back] = v.call('echo', [{ items: t.items.map((x) => x * 2), pad: 'p'.repeat(10_000) }]) as [{ items: number[] }];
      return { doubled: back.items };
    });
    v.load('function go(t) local r = relay(t) return r.doubled end', 'go');
    expect(v.call('go', [{ items: [1, 2, 3] }])).toEqual([[2, 4, 6]]);
  });
});
