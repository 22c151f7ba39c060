/** The `hb-runtimes` command line, run as users run it (bin/ over the built lib/). */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, SHARED_FIXTURES, describeShared } from './helpers/fixtures';

const BIN = path.join(REPO_ROOT, 'bin', 'hb-runtimes.js');
function cli(args: string[], input?: string) {
  return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', input, timeout: 60_000 });
}

describe('hb-runtimes run', () => {
  it('runs the embedded default module: fac(5) = [120]', () => {
    expect(cli(['run'])).toMatchObject({ status: 0, stdout: 'fac(5) = [120]\n', stderr: '' });
  });

  it('documents itself with --help', () => {
    expect(cli(['run', '--help']).stdout).toContain('call an exported function of a WebAssembly module');
  });
});

describe('hb-runtimes serve', () => {
  it('is also startServer() in the package, loading fastify only when called', () => {
    const store = fs.mkdtempSync(path.join(os.tmpdir(), 'hb-cli-serve-'));
    const code = `
      const hb = require(${JSON.stringify(path.join(REPO_ROOT, 'lib', 'index.js'))});
      const loaded = () => Object.keys(require.cache).some((f) => f.includes('/node_modules/fastify/'));
      const before = loaded();
      hb.startServer({ store: ${JSON.stringify(store)} }).then(async (s) => {
        const info = await fetch(s.url + '/').then((r) => r.json());
        console.log(JSON.stringify({ before, after: loaded(), same: info.address === s.signer.address }));
        await s.close();
      });`;
    const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ before: false, after: true, same: true });
  });

  it('documents itself with --help', () => {
    const r = cli(['serve', '--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('a Compute Unit over HTTP');
    for (const o of ['--port', '--host', '--store', '--wallet', '--snapshot-interval', '--body-limit', '--request-timeout', '--delegate']) expect(r.stdout).toContain(o);
  });
});

describe('hb-runtimes bench', () => {
  it('prints a markdown table of quick benchmarks with a result in every row', () => {
    const r = cli(['bench']);
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^\| benchmark \(hb-runtimes, node v\d+\.\d+\.\d+, medians\) \| result \|$/);
    const rows = lines.slice(2).map((l) => l.split('|').map((c) => c.trim()).filter(Boolean));
    expect(rows.map((r) => r[0])).toEqual([
      "WasmInstance#call('fac', [5])",
      '64 MiB snapshot',
      '64 MiB restore (same instance)',
      'Lua fib(27)',
      'JS → Lua calls of add(a, b)',
      'AO-Core resolve(msg, "a/b/c")',
    ]);
    for (const [, v] of rows) expect(v).toMatch(/^\d+(\.\d+)?(M\/s|k\/s| ms)$/);
  });
});

describe('hb-runtimes lua', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hb-cli-lua-'));
  const file = path.join(dir, 'calc.lua');
  fs.writeFileSync(file, 'print("loading", 1, true)\nfunction add(a, b) return a + b end\nfunction info(t) return { n = #t, first = t[1] } end\nfunction env() return os.getenv("HOME") end\n');

  it('runs the file, prints its output, then calls a function with JSON arguments', () => {
    expect(cli(['lua', file, 'add', '5', '3'])).toMatchObject({ status: 0, stdout: 'loading\t1\ttrue\nadd(5, 3) = 8\n', stderr: '' });
    expect(cli(['lua', file, 'info', '[4,5,6]']).stdout).toBe('loading\t1\ttrue\ninfo([4,5,6]) = {"n":3,"first":4}\n');
    expect(cli(['lua', file])).toMatchObject({ status: 0, stdout: 'loading\t1\ttrue\n' });
  });

  it('reports a missing function (exit 2) and a sandboxed call (exit 1)', () => {
    const missing = cli(['lua', file, 'nope']);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toBe("hb-runtimes: Key 'nope' not found: no Lua function 'nope'\n");
    const sandboxed = cli(['lua', '--sandbox', file, 'env']);
    expect(sandboxed.status).toBe(1);
    expect(sandboxed.stderr).toBe(`hb-runtimes: [string "${file}"]:4: attempt to call a string value (field 'getenv')\n`);
  });
});

describeShared('hb-runtimes run and aos on shared fixtures', () => {
  it('evaluates piped lines in an AOS session over hyper-aos.lua', () => {
    const r = cli(['aos', path.join(SHARED_FIXTURES, 'hyper-aos.lua')], 'X = 41\nerror("x")\nX = X + 1\nreturn X\n');
    expect(r.status).toBe(0);
    expect(r.stdout.split('\n')).toEqual(['', '', '42', '']);
    // hyper-aos's compute cannot handle an Eval error (it reads Messages of an Error result): that message is dropped
    expect(r.stderr).toContain("compute failed at slot 1: [string \"");
    expect(r.stderr).toContain("attempt to get length of a nil value (field 'Messages')");
  });

  it('runs fac 6 from test.wasm', () => {
    expect(cli(['run', path.join(SHARED_FIXTURES, 'test.wasm'), 'fac', '6'])).toMatchObject({ status: 0, stdout: 'fac(6) = [720]\n' });
    const missing = cli(['run', path.join(SHARED_FIXTURES, 'test.wasm'), 'nope']);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toBe('hb-runtimes: function not found: nope (exports: fac)\n');
  });

  it('gives WASI programs a filesystem and shows what they print', () => {
    const r = cli(['run', path.join(SHARED_FIXTURES, 'test-print.wasm'), 'hello']);
    expect(r).toMatchObject({ status: 0, stdout: 'Hello, World!\nHowdy!\n\0hello() = [22]\n' });
  });

  it('evaluates piped lines in an AOS session', () => {
    const r = cli(['aos', path.join(SHARED_FIXTURES, 'aos-2-pure-xs.wasm')], 'return 1 + 1\nX = 21\nreturn X * 2\nerror("nope")\n');
    expect(r.status).toBe(0);
    expect(r.stdout.split('\n')).toEqual(['2', '', '42', '[string ".handlers"]:559: [string "aos"]:1: nope', '']);
  });
});
