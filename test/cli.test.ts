/** The `hb-runtimes` command line, run as users run it (bin/ over the built lib/). */
import { spawnSync } from 'node:child_process';
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

describeShared('hb-runtimes run and aos on shared fixtures', () => {
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
