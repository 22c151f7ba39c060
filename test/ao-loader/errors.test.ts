/**
 * Errors as @permaweb/ao-loader gives them (checked against it), options, and the process
 * clock and randomness: deterministic per loader, with Date.now and Math.random left alone.
 */
import { setFlagsFromString } from 'node:v8';
import { beforeAll, expect, it } from 'vitest';
import AoLoader, { ExitStatus } from '../../src/ao-loader/index';
import { AoError, LimitError } from '../../src/errors';
import { describeShared, sharedFixture } from '../helpers/fixtures';
import { rejected } from '../helpers/thrown';

setFlagsFromString('--experimental-wasm-memory64');

const env = { Process: { Id: 'PROCESS', Owner: 'OWNER', Tags: [{ name: 'Name', value: 'test' }] } };
const msg = (data: string) => ({
  Id: 'M1', Owner: 'OWNER', Target: 'PROCESS', From: 'OWNER', Tags: [{ name: 'Action', value: 'Eval' }], Data: data,
  Module: 'MODULE', 'Block-Height': '100', Timestamp: '1700000000000',
});
const FORMAT = 'wasm32-unknown-emscripten4';

describeShared('ao-loader errors and determinism (aos2 wasm32)', () => {
  let binary: Buffer;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  let Ref: (b: unknown, o: unknown) => Promise<(m: unknown, msg: unknown, env: unknown) => Promise<any>>;
  beforeAll(() => {
    binary = sharedFixture('ao-loader/aos2-wasm32-emscripten4.wasm');
  });

  it('leaves Date.now and Math.random alone, and gives every loader the same 1970 clock and random sequence', async () => {
    const now = Date.now;
    const random = Math.random;
    const code = 'return os.date("%Y-%m-%dT%H:%M:%S") .. " " .. tostring(math.random()) .. " " .. tostring(math.random(100))';
    const outs: unknown[] = [];
    for (let i = 0; i < 2; i++) {
      const h = await AoLoader(binary, { format: FORMAT });
      outs.push((await h(null, msg(code), env)).Output);
    }
    expect(Date.now).toBe(now);
    expect(Math.random).toBe(random);
    expect(Date.now()).toBeGreaterThan(1_600_000_000_000);
    expect(outs[1]).toEqual(outs[0]);
    expect(JSON.stringify(outs[0])).toMatch(/1970-01-01T00:00:10 0\.\d+ \d+/);
  });

  it('a response with ok: false throws that response, as ao-loader does', async () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    Ref = require('@permaweb/ao-loader');
    const ours = await rejected((await AoLoader(binary, { format: FORMAT }))(null, msg('return 1'), {}));
    const ref = await rejected((await Ref(binary, { format: FORMAT }))(null, msg('return 1'), {}));
    expect(typeof ours).toBe('string');
    expect(ours).toEqual(ref);
    expect(ours).toContain("attempt to index a nil value (local 'env')");
  });

  it('exit() rejects with an ExitStatus equal to ao-loader\'s', async () => {
    const ours = await rejected((await AoLoader(binary, { format: FORMAT }))(null, msg('os.exit(3)'), env));
    const ref = await rejected((await Ref(binary, { format: FORMAT }))(null, msg('os.exit(3)'), env));
    expect(ours).toBeInstanceOf(ExitStatus);
    expect({ ...(ours as object) }).toEqual({ ...(ref as object) });
    expect((ours as ExitStatus).status).toBe(3);
  });

  it('memoryLimit is enforced: memory never grows past it, and the message that needs more fails', async () => {
    const limit = 160 * 1024 * 1024;
    const h = await AoLoader(binary, { format: FORMAT, memoryLimit: String(limit) });
    const ok = await h(null, msg('return 1'), env);
    expect(ok.Memory.byteLength).toBeLessThanOrEqual(limit);
    let failure: unknown;
    try {
      const r = await h(null, msg('big = {} for i = 1, 200 do big[i] = string.rep("y", 1048576) .. i end return #big'), env);
      failure = r.Error ?? r.Output; // AOS may catch the failed allocation as a Lua error
      expect(r.Memory.byteLength).toBeLessThanOrEqual(limit);
    } catch (e) {
      failure = e;
    }
    if (failure instanceof LimitError) {
      expect(failure.limit).toBe('memory');
      expect(failure.code).toBe('ERR_LIMIT_MEMORY');
    } else expect(JSON.stringify(failure)).toMatch(/not enough memory|memory/i);
    // without the limit the same message succeeds
    const free = await AoLoader(binary, { format: FORMAT });
    const r = await free(null, msg('big = {} for i = 1, 200 do big[i] = string.rep("y", 1048576) .. i end return #big'), env);
    expect(JSON.stringify(r.Output)).toContain('200');
    expect(r.Memory.byteLength).toBeGreaterThan(limit);
  });

  it('refuses unknown formats with a typed error', async () => {
    await expect(AoLoader(binary, { format: 'wasm99' })).rejects.toMatchObject({ status: 400, code: 'ERR_INVALID_ARG' });
    expect(AoError).toBeDefined();
  });

  it('falls back to @permaweb/ao-loader (V8) for the instantiate-callback form', async () => {
    const instantiated: string[] = [];
    const instantiate = (imports: WebAssembly.Imports, receive: (i: WebAssembly.Instance) => void) => {
      instantiated.push(Object.keys(imports).sort().join(','));
      void WebAssembly.instantiate(binary, imports).then(({ instance }) => receive(instance));
      return {};
    };
    const ours = await (await AoLoader(instantiate, { format: FORMAT }))(null, msg('return 40 + 2'), env);
    expect(instantiated).toEqual(['env,metering,wasi_snapshot_preview1']); // V8 instantiated it, through the callback
    expect(JSON.stringify(ours.Output)).toContain('42');
  });
});
