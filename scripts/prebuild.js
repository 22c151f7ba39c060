'use strict';
// `npm run build:prebuilt`: prebuildify writes prebuilds/<platform>-<arch>/hb-runtimes.napi.node (N-API,
// so one binary serves every Node version). prebuildify drives node-gyp; we hand it a stand-in
// (node-gyp-shim.js) that runs our own cached build instead, then prebuildify names, strips and
// places the binary as usual.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { ROOT, log } = require('./deps');

const prebuildify = require.resolve('prebuildify/bin.js', { paths: [ROOT] });
const shim = path.join(__dirname, 'node-gyp-shim.js'); // executable (shebang)
const r = spawnSync(process.execPath, [prebuildify, '--napi', '--strip', '--tag-libc', '--node-gyp', shim], {
  cwd: ROOT,
  stdio: 'inherit',
});
if (r.status !== 0) process.exit(r.status ?? 1);
const dir = path.join(ROOT, 'prebuilds', `${process.platform}-${process.arch}`);
const files = fs.readdirSync(dir).filter((f) => f.endsWith('.node'));
if (files.length === 0) {
  log(`no binary in ${dir}`);
  process.exit(1);
}
for (const f of files) log(`prebuilt ${path.join('prebuilds', path.basename(dir), f)} (${(fs.statSync(path.join(dir, f)).size / 1048576).toFixed(1)} MiB)`);
