/**
 * WeaveDrive on AOS 2 images: `/data/<tx id>` files read from a local fake gateway through the
 * Asyncify imports, only for admissible ids, with an injectable client; against ao-loader given
 * a WeaveDrive of the same behaviour over the same gateway.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { afterAll, beforeAll, expect, it } from 'vitest';
import AoLoader from '../../src/ao-loader/index';
import { describeShared, sharedFixture } from '../helpers/fixtures';
import { itVsOracle } from '../helpers/ao-loader-oracle';

setFlagsFromString('--experimental-wasm-memory64');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const Ref = require('@permaweb/ao-loader') as (b: unknown, o: unknown) => Promise<(m: unknown, msg: unknown, env: unknown) => Promise<any>>;

const TX = 'dGVzdC10cmFuc2FjdGlvbi1pZC0wMDAwMDAwMDAwMDA';
const OTHER = 'b3RoZXItdHJhbnNhY3Rpb24taWQtMDAwMDAwMDAwMDA';
const CONTENT = Buffer.from('weave data: ' + 'abcdefghij'.repeat(500)); // 5,012 bytes
const env = { Process: { Id: 'PROCESS', Owner: 'OWNER', Tags: [{ name: 'Name', value: 'test' }] } };
const msg = (data: string) => ({
  Id: 'M1', Owner: 'OWNER', Target: 'PROCESS', From: 'OWNER', Tags: [{ name: 'Action', value: 'Eval' }], Data: data,
  Module: 'MODULE', 'Block-Height': '100', Timestamp: '1700000000000',
});
const READ = (id: string) =>
  `local f = io.open("/data/${id}") if not f then return "no file" end
   local n = f:seek("end") f:seek("set", 12) local a = f:read(10) f:seek("set", n - 5) local b = f:read(5) f:close()
   return n .. "|" .. a .. "|" .. b`;

let server: http.Server;
let gateway = '';
const requests: string[] = [];
beforeAll(async () => {
  server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url} ${req.headers.range ?? ''}`);
    const id = (req.url ?? '').slice(1);
    const body = id === TX || id === OTHER ? CONTENT : undefined;
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    const range = /bytes=(\d+)-(\d+)/.exec(req.headers.range ?? '');
    if (req.method === 'HEAD') res.writeHead(200, { 'content-length': body.length }).end();
    else if (range) {
      const part = body.subarray(Number(range[1]), Number(range[2]) + 1);
      res.writeHead(206, { 'content-length': part.length }).end(part);
    } else res.writeHead(200, { 'content-length': body.length }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  gateway = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

/** A WeaveDrive for ao-loader (emscripten's Module and FS) that behaves as ours does. */
function refDrive(admissible: string[]) {
  return (mod: any, FS: any) => ({
    async open(filename: string) {
      const [, category, id] = filename.split('/');
      if (category !== 'data' || !id || !admissible.includes(id)) return 0;
      const head = await fetch(`${gateway}/${id}`, { method: 'HEAD' });
      if (!head.ok) return 0;
      const node = FS.createFile('/', `data/${id}`, { isDevice: false, contents: null }, true, false);
      const size = Number(head.headers.get('content-length'));
      Object.defineProperty(node, 'usedBytes', { get: () => size });
      return FS.open(`/data/${id}`, 'r').fd;
    },
    async read(fd: number, dst: number, length: number) {
      const s = FS.streams[fd];
      const end = Math.min(s.node.usedBytes, s.position + Number(length));
      if (end <= s.position) return 0;
      const res = await fetch(`${gateway}/${s.node.name}`, { headers: { Range: `bytes=${s.position}-${end - 1}` } });
      const bytes = new Uint8Array(await res.arrayBuffer());
      mod.HEAP8.set(bytes, Number(dst));
      s.position += bytes.length;
      return bytes.length;
    },
    async close(fd: number) {
      FS.close(FS.streams[fd]);
      return 0;
    },
  });
}

for (const [file, format] of [
  ['aos2-wasm32-emscripten4.wasm', 'wasm32-unknown-emscripten4'],
  ['aos2-wasm64-emscripten.wasm', 'wasm64-unknown-emscripten-draft_2024_02_15'],
] as const) {
  describeShared(`WeaveDrive on ${format}`, () => {
    itVsOracle(format)('reads an admissible transaction through the gateway (seek, ranged reads), as ao-loader does', async () => {
      const binary = sharedFixture(`ao-loader/${file}`);
      requests.length = 0;
      const ours = await AoLoader(binary, { format, weaveDrive: { gateway, admissible: [TX] } });
      const b = await ours(null, msg(READ(TX)), env);
      const text = `${CONTENT.length}|${CONTENT.subarray(12, 22)}|${CONTENT.subarray(CONTENT.length - 5)}`;
      expect(JSON.stringify(b.Output)).toContain(text);
      expect(requests).toEqual([`HEAD /${TX} `, `GET /${TX} bytes=12-21`, `GET /${TX} bytes=5007-5011`]);
      const ref = await Ref(binary, { format, WeaveDrive: refDrive([TX]) });
      const a = await ref(null, msg(READ(TX)), env);
      expect(b.Output).toEqual(a.Output);
      expect(Buffer.from(b.Memory as Uint8Array).equals(Buffer.from(a.Memory))).toBe(true);
    });

    it('refuses ids that are not admissible (no request is made) and paths outside /data', async () => {
      const binary = sharedFixture(`ao-loader/${file}`);
      requests.length = 0;
      const ours = await AoLoader(binary, { format, weaveDrive: { gateway, admissible: (id) => id === TX } });
      const r = await ours(null, msg(`${READ(OTHER).replace('return n', 'return n')}`), env);
      expect(JSON.stringify(r.Output)).toContain('no file');
      const r2 = await ours(null, msg('return tostring(io.open("/etc/passwd"))'), env);
      expect(JSON.stringify(r2.Output)).toContain('nil');
      expect(requests).toEqual([]);
    });

    it('uses the injected client', async () => {
      const binary = sharedFixture(`ao-loader/${file}`);
      const seen: string[] = [];
      const client = async (url: string, init?: { method?: string; headers?: Record<string, string> }) => {
        seen.push(`${init?.method ?? 'GET'} ${url} ${init?.headers?.Range ?? ''}`);
        return fetch(url.replace('https://gateway.test', gateway), init);
      };
      const ours = await AoLoader(binary, { format, weaveDrive: { gateway: 'https://gateway.test', fetch: client, admissible: [TX] } });
      const r = await ours(null, msg(READ(TX)), env);
      expect(JSON.stringify(r.Output)).toContain(`${CONTENT.length}|`);
      expect(seen[0]).toBe(`HEAD https://gateway.test/${TX} `);
      expect(seen).toHaveLength(3);
    });
  });
}

describeShared('WeaveDrive option forms', () => {
  it("refuses ao-loader's WeaveDrive(Module, FS) factory with a typed error", async () => {
    const binary = sharedFixture('ao-loader/aos2-wasm32-emscripten4.wasm');
    await expect(AoLoader(binary, { format: 'wasm32-unknown-emscripten4', WeaveDrive: () => ({}) })).rejects.toMatchObject({ status: 400, code: 'ERR_UNSUPPORTED' });
  });
});
