'use strict';
// Lua 5.3 recipe (deps/lua): `cargo fetch --locked` downloads the crates.io package `lua-src`
// (pinned with its checksum in deps/lua/Cargo.lock), which carries Lua's official C sources.
// The lua-5.3.6 directory is copied into <cache>/lua/5.3.6-<key> and its path printed on stdout
// (the CMake variable HB_LUA_SRC_DIR). CMakeLists.txt and binding.gyp compile it; nothing is
// compiled here.
//
// One source change, for determinism: Lua 5.3 seeds its string hash from addresses and the time
// (lstate.c, makeseed). hb-lstate.c is lstate.c with `g->seed = HB_LUA_SEED;` instead, a fixed
// constant (overridable with -DHB_LUA_SEED), so table iteration order is the same in every process.
// `node scripts/fetch-lua.js --sources` prints the list of C files to compile, one per line.
const fs = require('node:fs');
const path = require('node:path');
const { ROOT, CACHE, log, sha256, run, cargoPackageDir, publishDir } = require('./deps');

const RECIPE = path.join(ROOT, 'deps', 'lua');
const LUA_VERSION = '5.3.6';
// Lua's own src/Makefile: CORE_O and LIB_O (lua.c and luac.c are the executables), with lstate.c
// replaced by the seeded copy.
const SOURCES = [
  'lapi', 'lcode', 'lctype', 'ldebug', 'ldo', 'ldump', 'lfunc', 'lgc', 'llex', 'lmem', 'lobject', 'lopcodes',
  'lparser', 'hb-lstate', 'lstring', 'ltable', 'ltm', 'lundump', 'lvm', 'lzio',
  'lauxlib', 'lbaselib', 'lbitlib', 'lcorolib', 'ldblib', 'liolib', 'lmathlib', 'loslib', 'lstrlib', 'ltablib',
  'lutf8lib', 'loadlib', 'linit',
].map((f) => `${f}.c`);
const RECIPE_VERSION = 2; // bump when the way the cache entry is made changes

function seededLstate(src) {
  const line = 'g->seed = makeseed(L);';
  if (!src.includes(line)) throw new Error('lstate.c: the seed line to replace was not found');
  return (
    '/* hb-runtimes: lstate.c with a fixed string-hash seed (see scripts/fetch-lua.js). */\n' +
    '#ifndef HB_LUA_SEED\n#define HB_LUA_SEED 0x2545F491u\n#endif\n' +
    src.replace(line, 'g->seed = (unsigned int)(HB_LUA_SEED); (void)makeseed;')
  );
}

async function fetchLua() {
  // The key covers this script too: two branches that both bump RECIPE_VERSION to the same number
  // with different patches must not share a cache entry.
  const key = sha256(fs.readFileSync(path.join(RECIPE, 'Cargo.lock')), String(RECIPE_VERSION), fs.readFileSync(__filename))
    .slice(0, 16);
  const entry = path.join(CACHE, 'lua', `${LUA_VERSION}-${key}`);
  if (fs.existsSync(path.join(entry, 'hb-lstate.c'))) return entry;
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
  fs.writeFileSync(path.join(tmp, 'hb-lstate.c'), seededLstate(fs.readFileSync(path.join(src, 'lstate.c'), 'utf8')));
  publishDir(tmp, entry);
  log(`Lua ${LUA_VERSION}: sources from lua-src ${crate.version} at ${entry}`);
  return entry;
}

module.exports = { fetchLua, LUA_VERSION, SOURCES };
if (require.main === module) {
  fetchLua().then(
    (dir) => {
      // --sources: absolute paths (CMake); --sources-relative: relative to the current directory
      // (gyp's make generator only handles sources given relative to the project).
      const rel = process.argv.includes('--sources-relative');
      if (rel || process.argv.includes('--sources')) {
        const files = SOURCES.map((f) => (rel ? path.relative(process.cwd(), path.join(dir, f)) : path.join(dir, f)));
        process.stdout.write(`${files.join('\n')}\n`);
      } else {
        process.stdout.write(`${dir}\n`);
      }
    },
    (e) => {
      log(e.message);
      process.exit(1);
    },
  );
}
