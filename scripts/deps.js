'use strict';
// Shared helpers of the build scripts: where things are cached, how child processes are run,
// and how the pinned dependency recipes in deps/ are located. Node built-ins only: these
// scripts run at `npm install` time, before any devDependency exists.
const { spawn, execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const CACHE =
  process.env.HB_RUNTIMES_CACHE || path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'hb-runtimes');

function log(msg) {
  process.stderr.write(`[hb-runtimes] ${msg}\n`);
}

function sha256(...parts) {
  const h = crypto.createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

/** Runs a command, streaming each output line through `onLine` (default: log it). */
function run(cmd, args, { cwd = ROOT, env = process.env, onLine } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const tail = [];
    const feed = (stream) => {
      let buf = '';
      stream.on('data', (chunk) => {
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          tail.push(line);
          if (tail.length > 60) tail.shift();
          (onLine || ((l) => process.stderr.write(`  ${l}\n`)))(line);
        }
      });
    };
    feed(child.stdout);
    feed(child.stderr);
    child.on('error', (e) =>
      reject(new Error(`could not start ${cmd}: ${e.message}. Is it installed and on the PATH?`)),
    );
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}\n${tail.join('\n')}`));
    });
  });
}

function tool(cmd, args) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8' }).trim();
  } catch {
    return null;
  }
}

/** `cargo metadata` of a recipe crate: the source directory of a named registry package. */
function cargoPackageDir(manifestDir, pkg, extraArgs = []) {
  const out = execFileSync(
    'cargo',
    ['metadata', '--locked', ...extraArgs, '--format-version', '1', '--manifest-path', path.join(manifestDir, 'Cargo.toml')],
    { encoding: 'utf8', maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const meta = JSON.parse(out);
  const found = meta.packages.find((p) => p.name === pkg);
  if (!found) throw new Error(`${pkg} is not a dependency of ${manifestDir}`);
  return { dir: path.dirname(found.manifest_path), version: found.version };
}

/** Writes a directory atomically: build into a temp sibling, then rename into place. */
function publishDir(tmp, final) {
  fs.rmSync(final, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(final), { recursive: true });
  fs.renameSync(tmp, final);
}

module.exports = { ROOT, CACHE, log, sha256, run, tool, cargoPackageDir, publishDir };
