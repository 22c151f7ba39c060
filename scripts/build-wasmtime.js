'use strict';
// Wasmtime recipe (deps/wasmtime): builds the static library `libhb_wasmtime.a` (Wasmtime's C API
// from the crates.io crate `wasmtime-c-api-impl`, pinned in Cargo.lock) and assembles its headers.
//
// Steps:
//   1. key = sha256(Cargo.toml, Cargo.lock, src/lib.rs, the patches, rustc -V); a hit in
//      <cache>/wasmtime/<version>-<key> skips everything else
//   2. the patched crates (PATCHES, deps/wasmtime/patches/README.md): each crate's .crate file
//      from cargo's registry cache or crates.io, checked against its pinned SHA-256, unpacked into
//      <cache>/wasmtime-patched/ and patched (`git apply`); cargo takes them as [patch.crates-io]
//      entries given on its command line (Cargo.lock is written with them, so --locked holds)
//   3. cargo build --release --locked, target dir <cache>/cargo-target (shared across clones, so a
//      change to the recipe recompiles only what changed), printing [n/total] progress
//   4. copy the library and the crate's include/ into the cache entry; generate
//      include/wasmtime/conf.h from conf.h.in with exactly the enabled features
// Prints the cache entry's path (the CMake variable HB_WASMTIME_DIR) on stdout.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { ROOT, CACHE, log, sha256, run, tool, cargoPackageDir, publishDir } = require('./deps');

const RECIPE = path.join(ROOT, 'deps', 'wasmtime');

// Crates of Wasmtime that hb-runtimes builds with a patch of its own (deps/wasmtime/patches).
const PATCHES = [
  {
    crate: 'wasmtime-internal-cranelift',
    version: '48.0.8',
    sha256: '478c09af53c545d96227b349d35c70fc78e99816923f41428ffff00974bcd145',
    patch: 'wasmtime-internal-cranelift-epoch.patch',
  },
];

/** The .crate archive of `p`: cargo's registry cache if it holds it, else crates.io; checked. */
async function crateArchive(p) {
  const name = `${p.crate}-${p.version}.crate`;
  const registry = path.join(process.env.CARGO_HOME || path.join(os.homedir(), '.cargo'), 'registry', 'cache');
  const cached = fs.existsSync(registry)
    ? fs.readdirSync(registry).map((d) => path.join(registry, d, name)).find((f) => fs.existsSync(f))
    : undefined;
  let bytes;
  if (cached) {
    bytes = fs.readFileSync(cached);
  } else {
    const url = `https://static.crates.io/crates/${p.crate}/${name}`;
    log(`Wasmtime: fetching ${url}`);
    const res = await fetch(url);
    if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
    bytes = Buffer.from(await res.arrayBuffer());
  }
  const got = sha256(bytes);
  if (got !== p.sha256) throw new Error(`${name}: SHA-256 ${got}, expected ${p.sha256}`);
  return bytes;
}

/** Unpacks and patches each crate of PATCHES (once per patch); cargo's --config arguments for them. */
async function patchedCrates() {
  const args = [];
  for (const p of PATCHES) {
    const patch = path.join(RECIPE, 'patches', p.patch);
    const dir = path.join(CACHE, 'wasmtime-patched', `${p.crate}-${p.version}-${sha256(fs.readFileSync(patch)).slice(0, 16)}`);
    if (!fs.existsSync(path.join(dir, 'Cargo.toml'))) {
      const tmp = `${dir}.tmp-${process.pid}`;
      fs.rmSync(tmp, { recursive: true, force: true });
      fs.mkdirSync(tmp, { recursive: true });
      const archive = path.join(tmp, '..', `${path.basename(tmp)}.crate`);
      fs.writeFileSync(archive, await crateArchive(p));
      try {
        await run('tar', ['-xzf', archive, '-C', tmp, '--strip-components=1']);
        await run('git', ['apply', '-p1', patch], { cwd: tmp });
      } finally {
        fs.rmSync(archive, { force: true });
      }
      publishDir(tmp, dir);
      log(`Wasmtime: ${p.crate} ${p.version} patched with ${p.patch}`);
    }
    args.push('--config', `patch.crates-io.${p.crate}.path=${JSON.stringify(dir)}`);
  }
  return args;
}

function enabledFeatures(cargoToml) {
  const m = /package = "wasmtime-c-api-impl".*features = \[([^\]]*)\]/.exec(cargoToml);
  if (!m) throw new Error('deps/wasmtime/Cargo.toml: cannot find the wasmtime-c-api-impl features');
  return m[1].split(',').map((s) => s.trim().replace(/"/g, '')).filter(Boolean);
}

async function buildWasmtime() {
  const files = ['Cargo.toml', 'Cargo.lock', 'src/lib.rs', ...PATCHES.map((p) => `patches/${p.patch}`)].map((f) =>
    fs.readFileSync(path.join(RECIPE, f)),
  );
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

  const patchArgs = await patchedCrates();
  const lock = fs.readFileSync(path.join(RECIPE, 'Cargo.lock'), 'utf8');
  const total = (lock.match(/^\[\[package\]\]/gm) || []).length;
  let n = 0;
  const started = Date.now();
  log(`Wasmtime ${version}: building from crates.io sources (${total} crates; ~3-20 min on 2 cores, cached afterwards)`);
  const targetDir = path.join(CACHE, 'cargo-target');
  await run('cargo', ['build', '--release', '--locked', ...patchArgs, '--manifest-path', path.join(RECIPE, 'Cargo.toml')], {
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
  const crate = cargoPackageDir(RECIPE, 'wasmtime-c-api-impl', patchArgs);
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
