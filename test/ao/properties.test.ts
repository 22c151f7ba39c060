// Property tests: path splitting, set/get round trips, canonical-encoding round trips, and that no
// operation ever modifies its inputs.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  cacheRead,
  cacheWrite,
  get,
  getPriv,
  keys,
  MemoryStore,
  messageId,
  pathParts,
  resetPriv,
  resolve,
  set,
  setPriv,
  type Message,
} from '../../src/ao';
import { appendDevice } from '../../src/devices';

const RESERVED = new Set([
  'id',
  'keys',
  'path',
  'set',
  'remove',
  'verify',
  'commitments',
  'committers',
  'set-mode',
  'set-path',
  'set_path',
  'hashpath',
  'device',
]);

/** Keys safe for set/get round trips: no reserved names, no private prefix, no case twins. */
const safeKey = fc
  .stringMatching(/^[a-z][a-z0-9_-]{0,7}$/)
  .filter((k) => !RESERVED.has(k) && !k.startsWith('priv'));

const segment = fc.string({ unit: 'binary', minLength: 1, maxLength: 6 }).filter((s) => !s.includes('/'));

const leaf = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 8 }),
  fc.integer(),
  fc.maxSafeInteger(),
  fc.double(),
  fc.bigInt(),
  fc.boolean(),
  fc.constant(null),
  fc.uint8Array({ maxLength: 8 }),
);

const anyKey = fc.string({ unit: 'binary', maxLength: 6 });

/** Arbitrary messages: nested maps and lists of leaves. */
const { message: messageArb } = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, tie('list'), tie('message')),
  list: fc.array(tie('value'), { maxLength: 4 }),
  message: fc.dictionary(anyKey, tie('value'), { maxKeys: 5 }),
}));

/** Messages with safe keys, for set/get. */
const { message: safeMessage } = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small' }, leaf, fc.array(leaf, { maxLength: 3 }), tie('message')),
  message: fc.dictionary(safeKey, tie('value'), { maxKeys: 5 }),
}));

const plainValue = fc.oneof(leaf, fc.array(leaf, { maxLength: 3 }));

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v) && !(v instanceof Uint8Array)) {
    Object.freeze(v);
    for (const k of Object.keys(v)) deepFreeze((v as Record<string, unknown>)[k]);
  }
  return v;
}

describe('path splitting', () => {
  it('splits a joined path back into its segments', () => {
    fc.assert(
      fc.property(fc.array(segment, { maxLength: 6 }), (segs) => {
        expect(pathParts(segs.join('/'))).toEqual(segs);
      }),
    );
  });

  it('ignores leading, trailing and repeated slashes', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(segment, fc.integer({ min: 1, max: 3 })), { maxLength: 6 }),
        fc.integer({ min: 0, max: 2 }),
        (parts, lead) => {
          const path = '/'.repeat(lead) + parts.map(([s, n]) => s + '/'.repeat(n)).join('');
          expect(pathParts(path)).toEqual(parts.map(([s]) => s));
        },
      ),
    );
  });

  it('flattens nested lists to the same parts as the joined string', () => {
    const nested: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
      node: fc.oneof({ depthSize: 'small' }, segment, fc.array(tie('node'), { maxLength: 3 })),
    })).node;
    const flat = (n: unknown): string[] => (Array.isArray(n) ? n.flatMap(flat) : [n as string]);
    fc.assert(
      fc.property(fc.array(nested, { maxLength: 4 }), (list) => {
        expect(pathParts(list)).toEqual(pathParts(flat(list).join('/')));
      }),
    );
  });

  it('turns integers into their decimal string', () => {
    fc.assert(
      fc.property(fc.maxSafeInteger(), (n) => {
        expect(pathParts(n)).toEqual([String(n)]);
      }),
    );
  });
});

describe('set/get round trips', () => {
  it('get returns what set wrote, at any depth', () => {
    fc.assert(
      fc.property(safeMessage, fc.array(safeKey, { minLength: 1, maxLength: 3 }), plainValue, (base, path, v) => {
        const out = set(base, path.join('/'), v);
        expect(get(path.join('/'), out)).toEqual(v);
        expect(get(path, out)).toEqual(v);
      }),
    );
  });

  it('set leaves the other top-level keys as they were', () => {
    fc.assert(
      fc.property(safeMessage, safeKey, plainValue, (base, key, v) => {
        const out = set(base, key, v);
        for (const k of keys(base)) {
          if (k !== key) expect(get(k, out)).toEqual(get(k, base));
        }
      }),
    );
  });

  it('setPriv and getPriv round-trip without touching public keys', () => {
    fc.assert(
      fc.property(safeMessage, fc.array(safeKey, { minLength: 1, maxLength: 3 }), plainValue, (base, path, v) => {
        const out = setPriv(base, path.join('/'), v);
        expect(getPriv(path.join('/'), out)).toEqual(v);
        expect(keys(out)).toEqual(keys(base));
      }),
    );
  });

  it('resolve agrees with get for every key path of a message', async () => {
    await fc.assert(
      fc.asyncProperty(safeMessage, async (base) => {
        for (const k of keys(base)) {
          expect(await resolve(base, k)).toEqual(get(k, base));
          expect(await resolve(base, k.toUpperCase())).toEqual(get(k, base));
        }
      }),
    );
  });
});

describe('canonical encoding', () => {
  it('round-trips any message through the cache, without its private keys', async () => {
    const store = new MemoryStore();
    await fc.assert(
      fc.asyncProperty(messageArb, async (m) => {
        const id = await cacheWrite(m, { store });
        expect(await cacheRead(id, { store })).toEqual(resetPriv(m));
      }),
    );
  });

  it('gives an ID independent of key insertion order', () => {
    fc.assert(
      fc.property(messageArb, (m) => {
        const reversed = Object.fromEntries(Object.entries(m).reverse());
        expect(messageId(reversed)).toBe(messageId(m));
      }),
    );
  });
});

describe('inputs are never modified', () => {
  it('by set, get, keys, setPriv, resetPriv and cacheWrite', async () => {
    const store = new MemoryStore();
    await fc.assert(
      fc.asyncProperty(safeMessage, fc.array(safeKey, { minLength: 1, maxLength: 3 }), plainValue, async (base, path, v) => {
        const before = structuredClone(base);
        deepFreeze(base);
        set(base, path.join('/'), v);
        set(base, { [path.join('/')]: v, extra: v });
        get(path.join('/'), base);
        keys(base);
        resetPriv(setPriv(base, path.join('/'), v));
        await cacheWrite(base, { store });
        expect(base).toEqual(before);
      }),
    );
  });

  it('by resolve, with and without hashpaths', async () => {
    await fc.assert(
      fc.asyncProperty(safeMessage, fc.constantFrom('ignore', 'update'), async (base, hashpath) => {
        const before = structuredClone(base);
        deepFreeze(base);
        for (const k of keys(base)) {
          await resolve(base, { path: k, note: 'x' }, { hashpath: hashpath as 'ignore' | 'update' }).catch(() => undefined);
        }
        expect(base).toEqual(before);
      }),
    );
  });

  it('by stack folds and maps over frozen messages and requests', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.string({ maxLength: 3 }), { minLength: 1, maxLength: 5 }),
        fc.string({ maxLength: 3 }),
        fc.constantFrom('fold', 'map'),
        async (seps, bin, mode) => {
          const stack = deepFreeze({
            device: 'stack@1.0',
            'device-stack': seps.map((s) => appendDevice(s)),
            result: 'INIT',
            'output-prefix': 'out',
          });
          const req = deepFreeze({ path: 'append', bin, mode });
          const out = await resolve(stack, req);
          expect(stack.result).toBe('INIT');
          expect(Object.keys(stack)).toEqual(['device', 'device-stack', 'result', 'output-prefix']);
          expect(req).toEqual({ path: 'append', bin, mode });
          if (mode === 'fold') expect(out.result).toBe('INIT' + seps.map((s) => s + bin).join(''));
        },
      ),
    );
  });
});
