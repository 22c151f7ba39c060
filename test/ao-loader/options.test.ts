/**
 * Options: UNSAFE_MEMORY (the live memory, no copy, as ao-loader's HEAPU8.buffer), and the
 * options ao-loader accepts without acting on them (inputEncoding, outputEncoding, extensions).
 */
import { setFlagsFromString } from 'node:v8';
import { expect, it } from 'vitest';
import AoLoader from '../../src/ao-loader/index';
import { describeShared, sharedFixture } from '../helpers/fixtures';
import { itVsOracle } from '../helpers/ao-loader-oracle';

setFlagsFromString('--experimental-wasm-memory64');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const Ref = require('@permaweb/ao-loader') as (b: unknown, o: unknown) => Promise<(m: unknown, msg: unknown, env: unknown) => Promise<any>>;

const env = { Process: { Id: 'PROCESS', Owner: 'OWNER', Tags: [{ name: 'Name', value: 'test' }] } };
const msg = (data: string) => ({
  Id: 'M1', Owner: 'OWNER', Target: 'PROCESS', From: 'OWNER', Tags: [{ name: 'Action', value: 'Eval' }], Data: data,
  Module: 'MODULE', 'Block-Height': '100', Timestamp: '1700000000000',
});
const FORMAT = 'wasm64-unknown-emscripten-draft_2024_02_15';
const FILE = 'ao-loader/aos2-wasm64-emscripten.wasm';

describeShared('ao-loader options (aos2 wasm64)', () => {
  itVsOracle(FORMAT)('UNSAFE_MEMORY returns the live memory: an ArrayBuffer equal to ao-loader\'s, that later messages change in place', async () => {
    const binary = sharedFixture(FILE);
    const ours = await AoLoader(binary, { format: FORMAT, UNSAFE_MEMORY: true });
    const ref = await Ref(binary, { format: FORMAT, UNSAFE_MEMORY: true });
    const b1 = await ours(null, msg('x = 1 return x'), env);
    const a1 = await ref(null, msg('x = 1 return x'), env);
    expect(b1.Memory).toBeInstanceOf(ArrayBuffer);
    expect(Buffer.from(b1.Memory as ArrayBuffer).equals(Buffer.from(a1.Memory))).toBe(true);
    const before = Buffer.from((b1.Memory as ArrayBuffer).slice(0)); // a copy, to compare with
    const b2 = await ours(b1.Memory, msg('x = x + 1 return x'), env);
    const a2 = await ref(a1.Memory, msg('x = x + 1 return x'), env);
    expect(b2.Output).toEqual(a2.Output);
    expect(JSON.stringify(b2.Output)).toContain('2');
    if ((b1.Memory as ArrayBuffer).byteLength) {
      // not grown: the same buffer, changed in place by the second message
      expect(b2.Memory).toBe(b1.Memory);
      expect(Buffer.from(b1.Memory as ArrayBuffer).equals(before)).toBe(false);
    }
    expect(Buffer.from(b2.Memory as ArrayBuffer).equals(Buffer.from(a2.Memory))).toBe(true);
  });

  it('without UNSAFE_MEMORY, each Memory is a copy that later messages leave alone', async () => {
    const binary = sharedFixture(FILE);
    const ours = await AoLoader(binary, { format: FORMAT });
    const b1 = await ours(null, msg('y = 1 return y'), env);
    const copy = Buffer.from(b1.Memory as Uint8Array);
    await ours(null, msg('y = 2 return y'), env);
    expect(Buffer.from(b1.Memory as Uint8Array).equals(copy)).toBe(true);
  });

  it('without UNSAFE_MEMORY, the Memory handed back runs on as it is: the last one unchanged, an older one, or the last one rewritten by its holder', async () => {
    const binary = sharedFixture(FILE);
    const ours = await AoLoader(binary, { format: FORMAT });
    const out = (r: { Output: unknown }) => JSON.stringify(r.Output);
    const m1 = (await ours(null, msg('z = 1 return z'), env)).Memory as Uint8Array;
    const held = Buffer.from(m1); // what m1 holds, to compare with later
    const m2 = (await ours(m1, msg('z = z + 1 return z'), env)).Memory as Uint8Array; // the last Memory: no copy in
    const m3 = (await ours(m2, msg('z = z + 1 return z'), env)).Memory as Uint8Array;
    expect(Buffer.from(m1).equals(held)).toBe(true); // later messages leave earlier Memories alone
    const older = await ours(m1, msg('z = z + 10 return z'), env); // an older Memory: copied in
    expect(out(older)).toContain('"data":"11"');
    m3.set(m1); // the holder rewrites the last Memory in place: the next message must run on what it holds now
    const rewritten = await ours(m3, msg('z = z + 100 return z'), env);
    expect(out(rewritten)).toContain('"data":"101"');
    const fresh = await AoLoader(binary, { format: FORMAT });
    const ref = await fresh(m1, msg('z = z + 100 return z'), env); // the same state and message on another loader
    expect(Buffer.from(rewritten.Memory as Uint8Array).equals(Buffer.from(ref.Memory as Uint8Array))).toBe(true);
  });

  it('runs concurrent calls one after the other, as if awaited in order', async () => {
    const binary = sharedFixture(FILE);
    const seq = await AoLoader(binary, { format: FORMAT });
    const a1 = await seq(null, msg('n = (n or 0) + 1 return n'), env);
    const a2 = await seq(null, msg('n = (n or 0) + 10 return n'), env);
    const par = await AoLoader(binary, { format: FORMAT });
    const [b1, b2] = await Promise.all([par(null, msg('n = (n or 0) + 1 return n'), env), par(null, msg('n = (n or 0) + 10 return n'), env)]);
    expect(b1.Output).toEqual(a1.Output);
    expect(b2.Output).toEqual(a2.Output);
    expect(JSON.stringify(b2.Output)).toContain('11');
    expect(Buffer.from(b2.Memory as Uint8Array).equals(Buffer.from(a2.Memory as Uint8Array))).toBe(true);
  });

  it('inputEncoding, outputEncoding and extensions are accepted and change nothing, as in ao-loader', async () => {
    const binary = sharedFixture(FILE);
    const plain = await (await AoLoader(binary, { format: FORMAT }))(null, msg('return 6 * 7'), env);
    const withOpts = await (await AoLoader(binary, { format: FORMAT, inputEncoding: 'JSON-1', outputEncoding: 'JSON-1', extensions: [], memoryLimit: '524288000', computeLimit: (9e12).toString() }))(null, msg('return 6 * 7'), env);
    expect(withOpts.Output).toEqual(plain.Output);
    expect(Buffer.from(withOpts.Memory as Uint8Array).equals(Buffer.from(plain.Memory as Uint8Array))).toBe(true);
    expect(JSON.stringify(plain.Output)).toContain('42');
  });
});
