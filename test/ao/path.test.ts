import { describe, expect, it } from 'vitest';
import { get, parseSingleton, pathParts, resolve, resolveSingleton } from '../../src/ao';

describe('pathParts()', () => {
  it('splits on slashes', () => {
    expect(pathParts('a/b/c')).toEqual(['a', 'b', 'c']);
  });

  it('drops empty segments', () => {
    expect(pathParts('x//y')).toEqual(['x', 'y']);
    expect(pathParts('/image')).toEqual(['image']);
    expect(pathParts('a/b/')).toEqual(['a', 'b']);
  });

  it('gives no parts for the root and the empty path', () => {
    expect(pathParts('/')).toEqual([]);
    expect(pathParts('')).toEqual([]);
    expect(pathParts([])).toEqual([]);
  });

  it('turns integers into strings', () => {
    expect(pathParts(1)).toEqual(['1']);
    expect(pathParts(['a', 2, 3n])).toEqual(['a', '2', '3']);
  });

  it('flattens nested lists and splits the strings inside them', () => {
    expect(pathParts(['a', ['b', ['c/d']], 'e'])).toEqual(['a', 'b', 'c', 'd', 'e']);
  });

  it('keeps the case of parts', () => {
    expect(pathParts('Results/Output')).toEqual(['Results', 'Output']);
  });

  it('rejects segments of other types with a 400', () => {
    expect(() => pathParts({ a: 1 })).toThrow(
      expect.objectContaining({
        status: 400,
        code: 'ERR_BAD_REQUEST',
        message: 'Malformed path: segment of type a message; expected a string, an integer or a list of them',
      }),
    );
    expect(() => pathParts(1.5)).toThrow(
      expect.objectContaining({ status: 400, message: 'Malformed path: 1.5 is not an integer or string segment' }),
    );
    expect(() => pathParts(['a', null])).toThrow(expect.objectContaining({ status: 400 }));
  });

  it('rejects cyclic or absurdly nested path lists with a 400', () => {
    const cyclic: unknown[] = ['a'];
    cyclic.push(cyclic);
    expect(() => pathParts(cyclic)).toThrow(
      expect.objectContaining({
        status: 400,
        message: 'Malformed path: lists nested deeper than 32 levels (or a cycle)',
      }),
    );
  });
});

describe('path keys in resolution', () => {
  it('lowercases keys but leaves 43-character IDs alone', async () => {
    const id = 'AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdE';
    const msg = { [id]: 'by id', lower: 'by key' };
    expect(await resolve(msg, id)).toBe('by id');
    expect(await resolve(msg, 'LOWER')).toBe('by key');
  });

  it('resolves a multi-step path step by step', async () => {
    expect(await resolve({ a: { b: { c: 'deep' } } }, '/a//b/c/')).toBe('deep');
  });

  it('gives the base itself for an empty path', async () => {
    const base = { a: 1 };
    expect(await resolve(base, '/')).toBe(base);
    expect(get('', base)).toBe(base);
  });

  it('carries the request keys into every step', async () => {
    const seen: string[] = [];
    const device = {
      step: (m: Record<string, unknown>, req: Record<string, unknown>) => {
        seen.push(`${req.path}:${req.extra}`);
        return { device, n: ((m.n as number) ?? 0) + 1 };
      },
    };
    const out = await resolve({ device }, { path: 'step/step/step', extra: 'x' });
    expect(out.n).toBe(3);
    expect(seen).toEqual(['step:x', 'step:x', 'step:x']);
  });
});

describe('parseSingleton()', () => {
  it('builds the base from the request keys when the path has no ID', () => {
    expect(parseSingleton({ path: '/hello', hello: 'Hi' })).toEqual([
      { hello: 'Hi' },
      { hello: 'Hi', path: 'hello' },
    ]);
  });

  it('applies query keys to every message and N.key to step N only', () => {
    expect(parseSingleton('/a/b?x=1&2.y=2&0.z=base')).toEqual([
      { x: '1', z: 'base' },
      { x: '1', path: 'a' },
      { x: '1', y: '2', path: 'b' },
    ]);
  });

  it('types key+int values', () => {
    expect(parseSingleton('/a?n+int=42')).toEqual([{ n: 42 }, { n: 42, path: 'a' }]);
  });

  it('inlines &k=v keys into their segment', () => {
    expect(parseSingleton('/a&k=v/b')).toEqual([{}, { path: 'a', k: 'v' }, { path: 'b' }]);
  });

  it('takes a leading ~device segment as the base device', () => {
    expect(parseSingleton('/~message@1.0&hello=world&k=v/k')).toEqual([
      { hello: 'world', k: 'v', device: 'message@1.0' },
      { path: 'k' },
    ]);
  });

  it('keeps a leading ID as the base', () => {
    const id = 'AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdE';
    expect(parseSingleton(`/${id}/a`)).toEqual([id, { path: 'a' }]);
  });

  it('rejects sub-resolutions and unknown types with a 400', () => {
    expect(() => parseSingleton('/(a/b)/c')).toThrow(expect.objectContaining({ status: 400 }));
    expect(() => parseSingleton('/a?k+res=/x')).toThrow(
      expect.objectContaining({ status: 400, message: "Malformed path: sub-resolution 'k+res' is not supported" }),
    );
    expect(() => parseSingleton('/a?k+int=x')).toThrow(
      expect.objectContaining({ status: 400, message: `Malformed path: 'k+int' expects an integer, got "x"` }),
    );
  });
});

describe('resolveSingleton()', () => {
  it('resolves a request whose keys apply to every step', async () => {
    expect(await resolveSingleton({ path: '/hello', hello: 'Hi' })).toBe('Hi');
  });

  it('resolves on a base device given as ~device', async () => {
    expect(await resolveSingleton('/~message@1.0&hello=world&k=v/k')).toBe('v');
    expect(await resolveSingleton('/~test-device@1.0/test_func')).toBe('GOOD_FUNCTION');
  });

  it('switches device mid-path with key~device', async () => {
    const req = { path: '/inner/test_func~test-device@1.0', inner: { x: 1 } };
    expect(await resolveSingleton(req)).toBe('GOOD_FUNCTION');
  });
});
