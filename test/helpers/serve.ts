/** Helpers for tests of `hb-runtimes serve`: wallets, module uploads, servers in child processes. */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { generateJwk, type Jwk } from '../../src/serve/signing';
import { REPO_ROOT } from './fixtures';

const WALLETS = path.join(os.tmpdir(), 'hb-runtimes-test-wallets');

/**
 * A throwaway 4096-bit test key, generated once per machine (RSA generation takes seconds) and
 * kept in the temp directory. Never a real wallet.
 */
export function testWallet(name: string): { jwk: Jwk; file: string } {
  const file = path.join(WALLETS, `${name}.json`);
  if (!fs.existsSync(file)) {
    fs.mkdirSync(WALLETS, { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(generateJwk()), { mode: 0o600 });
    // link, not rename: the first test file to finish wins and every other keeps that key
    // (test files run in parallel processes and must all sign with the same one).
    try {
      fs.linkSync(tmp, file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  }
  return { jwk: JSON.parse(fs.readFileSync(file, 'utf8')) as Jwk, file };
}

export function tempStore(prefix = 'hb-serve-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Uploads module bytes; resolves with the module ID. */
export async function uploadModule(url: string, bytes: Uint8Array, contentType: 'application/wasm' | 'application/lua'): Promise<string> {
  const res = await fetch(`${url}/modules`, { method: 'POST', headers: { 'content-type': contentType }, body: bytes });
  if (!res.ok) throw new Error(`upload failed: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { id: string }).id;
}

export interface ChildServer {
  child: ChildProcess;
  url: string;
  stderr: () => string;
}

/** `hb-runtimes serve` (bin/ over lib/) in a child process, on a free loopback port. */
export function startChildServer(args: string[]): Promise<ChildServer> {
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin', 'hb-runtimes.js'), 'serve', '--port', '0', '--host', '127.0.0.1', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${err}`)), 60_000);
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/[^\s]+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1], stderr: () => err });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}: ${err}`));
    });
  });
}

export type Tag = { name: string; value: string };
/** Tags of an AOS `Eval` message. */
export const EVAL_TAGS: Tag[] = [{ name: 'Type', value: 'Message' }, { name: 'Action', value: 'Eval' }];

let clientSigner: import('@dha-team/arbundles').ArweaveSigner | undefined;

/** An ANS-104 item signed with the `client` test wallet. */
export async function signedItem(data: string, tags: Tag[], target?: string): Promise<{ id: string; raw: Buffer }> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { ArweaveSigner, createData } = require('@dha-team/arbundles') as typeof import('@dha-team/arbundles');
  clientSigner ??= new ArweaveSigner(testWallet('client').jwk as never);
  const d = createData(data, clientSigner, { tags, ...(target ? { target } : {}) });
  await d.sign(clientSigner);
  return { id: d.id, raw: d.getRaw() };
}

/** POSTs raw item bytes to a server's MU route; the answer's status, headers and JSON body. */
export async function postItem(url: string, raw: Buffer): Promise<{ status: number; headers: Headers; body: Record<string, unknown> }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: raw });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
}

/** Uploads hyper-aos.lua (from ../shared/fixtures) and spawns a process of it; its ID. */
export async function spawnLuaProcess(url: string, lua: Uint8Array): Promise<string> {
  const module = await uploadModule(url, lua, 'application/lua');
  const s = await signedItem(' ', [{ name: 'Type', value: 'Process' }, { name: 'Module', value: module }]);
  const r = await postItem(url, s.raw);
  if (r.status !== 200) throw new Error(`spawn failed: ${r.status} ${JSON.stringify(r.body)}`);
  return s.id;
}
