'use strict';
// `npm run test:pack`: proves the published package works on a machine without build tools.
//   1. npm pack (the prebuilt binary must already be in prebuilds/: `npm run build:prebuilt`)
//   2. install the tarball into an empty temporary project with a PATH that holds only node, npm
//      and sh: no compiler, no cmake, no cargo/rustc. The install script must find the prebuild.
//   3. use it there through require(), import and the CLI, and print `N passed, N failed`.
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { ROOT, log } = require('./deps');

const prebuilds = path.join(ROOT, 'prebuilds', `${process.platform}-${process.arch}`);
if (!fs.existsSync(prebuilds) || !fs.readdirSync(prebuilds).some((f) => f.endsWith('.node'))) {
  log(`no prebuilt binary in ${prebuilds}: run \`npm run build:prebuilt\` first`);
  process.exit(1);
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'hb-runtimes-pack-'));
const npmCli = process.env.npm_execpath && process.env.npm_execpath.endsWith('.js') ? process.env.npm_execpath : null;
const tarball = execFileSync(npmCli ? process.execPath : 'npm', [...(npmCli ? [npmCli] : []), 'pack', '--silent', '--pack-destination', work], {
  cwd: ROOT,
  encoding: 'utf8',
})
  .trim()
  .split('\n')
  .pop();
log(`packed ${tarball} (${(fs.statSync(path.join(work, tarball)).size / 1048576).toFixed(1)} MiB)`);

// A bin directory with nothing but node, npm and a shell.
const bin = path.join(work, 'bin');
fs.mkdirSync(bin);
const which = (cmd) => execFileSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim();
for (const cmd of ['node', 'npm', 'npx', 'sh']) fs.symlinkSync(fs.realpathSync(which(cmd)), path.join(bin, cmd));
const env = { ...process.env, PATH: bin, npm_config_build_from_source: '' };
for (const k of Object.keys(env)) if (k.startsWith('npm_') || k.startsWith('HB_RUNTIMES_')) delete env[k];
for (const tool of ['cc', 'gcc', 'g++', 'c++', 'cmake', 'cargo', 'rustc', 'make']) {
  const r = spawnSync('sh', ['-c', `command -v ${tool}`], { env, encoding: 'utf8' });
  if (r.status === 0) throw new Error(`${tool} is still reachable on the test PATH: ${r.stdout}`);
}

const app = path.join(work, 'app');
fs.mkdirSync(app);
fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'pack-test', version: '1.0.0', private: true }));
const npm = path.join(bin, 'npm');
const install = spawnSync(npm, ['install', '--no-audit', '--no-fund', path.join(work, tarball)], {
  cwd: app,
  env,
  encoding: 'utf8',
});
process.stderr.write(install.stdout + install.stderr);
if (install.status !== 0) {
  log('npm install of the tarball failed');
  process.exit(1);
}

const checks = [
  [
    'require() loads the prebuilt addon and runs wasm',
    ['-e', `const h = require('hb-runtimes'); const m = h.WasmModule.compile(Buffer.from('AGFzbQEAAAABBgFgAXwBfAMCAQAHBwEDZmFjAAAKLgEsACAARAAAAAAAAPA/YwR8RAAAAAAAAPA/BSAAIABEAAAAAAAA8D+hEACiCws=', 'base64')); console.log(JSON.stringify(new h.WasmInstance(m).call('fac', [5])), h.versions().wasmtime);`],
    '[120] 48.0.8\n',
  ],
  [
    'import works from an ES module',
    ['--input-type=module', '-e', `import { versions, AoError } from 'hb-runtimes'; console.log(versions().lua, typeof AoError);`],
    'Lua 5.3.6 function\n',
  ],
  ['the CLI runs the embedded default', [path.join(app, 'node_modules', '.bin', 'hb-runtimes'), 'run'], 'fac(5) = [120]\n'],
  [
    'the addon was not compiled here',
    ['-e', `console.log(require('fs').existsSync(require('path').join(require.resolve('hb-runtimes'), '..', '..', 'build')))`],
    'false\n',
  ],
];
let passed = 0;
let failed = 0;
for (const [name, args, expected] of checks) {
  const r = spawnSync(path.join(bin, 'node'), args, { cwd: app, env, encoding: 'utf8' });
  if (r.status === 0 && r.stdout === expected) {
    passed++;
    log(`ok: ${name}`);
  } else {
    failed++;
    log(`FAILED: ${name}\n  expected ${JSON.stringify(expected)}\n  got ${JSON.stringify(r.stdout)} (status ${r.status})\n${r.stderr}`);
  }
}
fs.rmSync(work, { recursive: true, force: true });
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
