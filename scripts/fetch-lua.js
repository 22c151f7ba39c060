'use strict';
// Lua 5.3 recipe (deps/lua): `cargo fetch --locked` downloads the crates.io package `lua-src`
// (pinned with its checksum in deps/lua/Cargo.lock), which carries Lua's official C sources.
// The lua-5.3.6 directory is copied into <cache>/lua/5.3.6-<key> and its path printed on stdout
// (the CMake variable HB_LUA_SRC_DIR). CMakeLists.txt compiles it; nothing is compiled here.
const fs = require('node:fs');
const path = require('node:path');
const { ROOT, CACHE, log, sha256, run, cargoPackageDir, publishDir } = require('./deps');

const RECIPE = path.join(ROOT, 'deps', 'lua');
const LUA_VERSION = '5.3.6';

async function fetchLua() {
  const key = sha256(fs.readFileSync(path.join(RECIPE, 'Cargo.lock'))).slice(0, 16);
  const entry = path.join(CACHE, 'lua', `${LUA_VERSION}-${key}`);
  if (fs.existsSync(path.join(entry, 'lua.h'))) return entry;
  log(`Lua ${LUA_VERSION}: fetching the pinned lua-src crate`);
  await run('cargo', ['fetch', '--locked', '--manifest-path', path.join(RECIPE, 'Cargo.toml')]);
  const crate = cargoPackageDir(RECIPE, 'lua-src');
  const src = path.join(crate.dir, `lua-${LUA_VERSION}`);
  const header = fs.readFileSync(path.join(src, 'lua.h'), 'utf8');
  if (!header.includes(`#define LUA_VERSION_RELEASE\t"${LUA_VERSION.split('.')[2]}"`)) {
    throw new Error(`lua-src ${crate.version} does not carry Lua ${LUA_VERSION}`);
  }
  const tmp = `${entry}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.cpSync(src, tmp, { recursive: true });
  publishDir(tmp, entry);
  log(`Lua ${LUA_VERSION}: sources from lua-src ${crate.version} at ${entry}`);
  return entry;
}

module.exports = { fetchLua, LUA_VERSION };
if (require.main === module) {
  fetchLua().then(
    (dir) => process.stdout.write(`${dir}\n`),
    (e) => {
      log(e.message);
      process.exit(1);
    },
  );
}
