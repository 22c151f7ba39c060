'use strict';
// Wasmtime recipe (deps/wasmtime): builds the static library `libhb_wasmtime.a` (Wasmtime's C API
// from the crates.io crate `wasmtime-c-api-impl`, pinned in Cargo.lock) and assembles its headers.
//
// Steps:
//   1. key = sha256(Cargo.toml, Cargo.lock, src/lib.rs, rustc -V); a hit in
//      <cache>/wasmtime/<version>-<key> skips everything else
//   2. cargo build --release --locked, target dir <cache>/cargo-target (shared across clones, so a
//      change to the recipe recompiles only what changed), printing [n/total] progress
//   3. copy the library and the crate's include/ into the cache entry; generate
//      include/wasmtime/conf.h from conf.h.in with exactly the enabled features
// Prints the cache entry's path (the CMake variable HB_WASMTIME_DIR) on stdout.
const fs = require('node:fs');
const path = require('node:path');
const { ROOT, CACHE, log, sha256, run, tool, cargoPackageDir, publishDir } = require('./deps');

const RECIPE = path.join(ROOT, 'deps', 'wasmtime');

function enabledFeatures(cargoToml) {
  const m = /package = "wasmtime-c-api-impl".*features = \[([^\]]*)\]/.exec(cargoToml);
  if (!m) throw new Error('deps/wasmtime/Cargo.toml: cannot find the wasmtime-c-api-impl features');
  return m[1].split(',').map((s) => s.trim().replace(/"/g, '')).filter(Boolean);
}

async function buildWasmtime() {
  const files = ['Cargo.toml', 'Cargo.lock', 'src/lib.rs'].map((f) => fs.readFileSync(path.join(RECIPE, f)));
  const rustc = tool('rustc', ['-V']);
  if (!rustc) throw new Error('rustc not found: building Wasmtime from source needs Rust (https://rustup.rs)');
  const cargoToml = files[0].toString();
  const version = /wasmtime-c-api-impl", version = "=([^"]+)"/.exec(cargoToml)[1];
  const key = sha256(...files, rustc).slice(0, 16);
  const entry = path.join(CACHE, 'wasmtime', `${version}-${key}`);
  if (fs.existsSync(path.join(entry, 'lib', 'libhb_wasmtime.a'))) {
    log(`Wasmtime ${version}: cached at ${entry}`);
    return entry;
  }

  const lock = fs.readFileSync(path.join(RECIPE, 'Cargo.lock'), 'utf8');
  const total = (lock.match(/^\[\[package\]\]/gm) || []).length;
  let n = 0;
  const started = Date.now();
  log(`Wasmtime ${version}: building from crates.io sources (${total} crates; ~3-20 min on 2 cores, cached afterwards)`);
  const targetDir = path.join(CACHE, 'cargo-target');
  await run('cargo', ['build', '--release', '--locked', '--manifest-path', path.join(RECIPE, 'Cargo.toml')], {
    env: { ...process.env, CARGO_TARGET_DIR: targetDir, CARGO_TERM_COLOR: 'never', CARGO_TERM_PROGRESS_WHEN: 'never' },
    onLine: (line) => {
      const t = line.trim();
      if (t.startsWith('Compiling')) {
        n += 1;
        const secs = Math.round((Date.now() - started) / 1000);
        process.stderr.write(`  [wasmtime ${Math.min(n, total)}/${total} ${secs}s] ${t}\n`);
      } else if (t && !t.startsWith('Downloaded') && !t.startsWith('Downloading')) {
        process.stderr.write(`  ${t}\n`);
      }
    },
  });

  const tmp = `${entry}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(path.join(tmp, 'lib'), { recursive: true });
  fs.copyFileSync(path.join(targetDir, 'release', 'libhb_wasmtime.a'), path.join(tmp, 'lib', 'libhb_wasmtime.a'));
  const crate = cargoPackageDir(RECIPE, 'wasmtime-c-api-impl');
  fs.cpSync(path.join(crate.dir, 'include'), path.join(tmp, 'include'), { recursive: true });
  const features = new Set(enabledFeatures(cargoToml).map((f) => `WASMTIME_FEATURE_${f.toUpperCase().replace(/-/g, '_')}`));
  const confIn = fs.readFileSync(path.join(tmp, 'include', 'wasmtime', 'conf.h.in'), 'utf8');
  const conf = confIn.replace(/^#cmakedefine (\w+)$/gm, (_, name) =>
    features.has(name) ? `#define ${name}` : `/* #undef ${name} */`,
  );
  fs.writeFileSync(path.join(tmp, 'include', 'wasmtime', 'conf.h'), conf);
  fs.writeFileSync(path.join(tmp, 'recipe.json'), JSON.stringify({ version, rustc, features: [...features] }, null, 2));
  publishDir(tmp, entry);
  log(`Wasmtime ${version}: built in ${Math.round((Date.now() - started) / 1000)}s, cached at ${entry}`);
  return entry;
}

module.exports = { buildWasmtime };
if (require.main === module) {
  buildWasmtime().then(
    (dir) => process.stdout.write(`${dir}\n`),
    (e) => {
      log(e.message);
      process.exit(1);
    },
  );
}
