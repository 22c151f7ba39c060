import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hashpathOf, messageId, resolve, resolveStatus, status, type Message } from '../../src/ao';

/** The documented compression of `P1/P2` (docs/ao-core.md). */
function compress(hp: string): string {
  const [p1, p2] = hp.split('/');
  const right = /^[A-Za-z0-9_-]{43}$/.test(p2) ? Buffer.from(p2, 'base64url') : Buffer.from(p2, 'utf8');
  return createHash('sha256').update(Buffer.concat([Buffer.from(p1, 'base64url'), right])).digest('base64url');
}

const update = { hashpath: 'update' } as const;
const base = { a: { b: { c: 'leaf' }, x: 1 }, y: 2 };

describe('hashpaths', () => {
  it('are not computed by default', async () => {
    const out = await resolve(base, 'a');
    expect(out).toBe(base.a);
    expect(hashpathOf(out)).toBeUndefined();
  });

  it('link a first result to the base ID and the key', async () => {
    const out = await resolve(base, 'a', update);
    expect(hashpathOf(out)).toBe(`${messageId(base)}/a`);
    expect({ ...out, priv: undefined }).toEqual({ ...base.a, priv: undefined });
  });

  it('chain: each step compresses the previous hashpath', async () => {
    const out = await resolve(base, 'a/b', update);
    expect(hashpathOf(out)).toBe(`${compress(`${messageId(base)}/a`)}/b`);
  });

  it('use the request ID when the request has more than AO-Core keys', async () => {
    const out = await resolve(base, { path: 'a', extra: 1 }, update);
    expect(hashpathOf(out)).toBe(`${messageId(base)}/${messageId({ path: 'a', extra: 1 })}`);
  });

  it('continue from a hashpath the base already carries', async () => {
    const first = await resolve(base, 'a', update);
    const second = await resolve(first, 'b', update);
    expect(hashpathOf(second)).toBe(`${compress(hashpathOf(first)!)}/b`);
  });

  it('are deterministic', async () => {
    expect(hashpathOf(await resolve(base, 'a/b', update))).toBe(hashpathOf(await resolve(base, 'a/b', update)));
  });

  it('leave non-message results alone', async () => {
    expect(await resolve(base, 'a/b/c', update)).toBe('leaf');
  });

  it('are removed from skip and pass results', async () => {
    const device = { halt: (m: Message) => status('skip', { ...m, priv: { hashpath: 'X/Y', keep: 1 } }) };
    const res = await resolveStatus({ device }, 'halt', update);
    expect(res.status).toBe('skip');
    expect(res.value.priv).toEqual({ keep: 1 });
  });

  it('are not part of the message ID', async () => {
    const out = await resolve(base, 'a', update);
    expect(messageId(out)).toBe(messageId(base.a));
  });

  it('link stack folds too', async () => {
    const append = { append: (m: Message, r: Message) => ({ ...m, result: m.result + r.bin }) };
    const msg = { device: 'stack@1.0', 'device-stack': [append, append], result: '' };
    const req = { path: 'append', bin: 'x' };
    const out = await resolve(msg, req, update);
    expect(out.result).toBe('xx');
    expect(hashpathOf(out)).toBe(`${messageId(msg)}/${messageId(req)}`);
  });
});
