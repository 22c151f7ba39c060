'use strict';
// Builds the native addon from source: Wasmtime (cached), Lua sources (cached), then cmake-js.
// Output: build/Release/hb_runtimes.node (found by node-gyp-build after prebuilds/).
//
// Switches (environment or npm config, i.e. `npm_config_<name>` / `npm install --<name>`):
//   hb_sanitize=1     ASan + UBSan build (stress lane)
//   hb_lua_seed=0x..  the fixed Lua string-hash seed
//   HB_RUNTIMES_CACHE the cache directory (default ~/.cache/hb-runtimes)
const fs = require('node:fs');
const path = require('node:path');
const { ROOT, log, run } = require('./deps');
const { buildWasmtime } = require('./build-wasmtime');
const { fetchLua } = require('./fetch-lua');

function setting(name) {
  return process.env[`npm_config_${name}`] ?? process.env[name.toUpperCase()];
}

async function buildNative() {
  const started = Date.now();
  const wasmtimeDir = await buildWasmtime();
  const luaDir = await fetchLua();
  const defines = [`HB_WASMTIME_DIR=${wasmtimeDir}`, `HB_LUA_SRC_DIR=${luaDir}`];
  if (setting('hb_sanitize')) defines.push('HB_SANITIZE=ON');
  if (setting('hb_lua_seed')) defines.push(`HB_LUA_SEED=${setting('hb_lua_seed')}`);
  // cmake-js only configures a fresh build directory: when the cache entries changed (a new Lua
  // recipe), drop the stale CMake cache so that the -D values above take effect.
  const cacheFile = path.join(ROOT, 'build', 'CMakeCache.txt');
  if (fs.existsSync(cacheFile)) {
    const cached = fs.readFileSync(cacheFile, 'utf8');
    if (!cached.includes(`HB_LUA_SRC_DIR:PATH=${luaDir}\n`) || !cached.includes(`HB_WASMTIME_DIR:PATH=${wasmtimeDir}\n`)) {
      log('addon: dependency paths changed, reconfiguring');
      fs.rmSync(cacheFile);
    }
  }
  log(`addon: cmake-js with ${defines.join(' ')}`);
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [ROOT] });
  await run(process.execPath, [cmakeJs, 'build', '--parallel', '2', '-l', 'warn', ...defines.map((d) => `--CD${d}`)], {
    cwd: ROOT,
  });
  log(`addon: built ${path.join('build', 'Release', 'hb_runtimes.node')} in ${Math.round((Date.now() - started) / 1000)}s`);
}

module.exports = { buildNative };
if (require.main === module) {
  buildNative().catch((e) => {
    log(`native build failed: ${e.message}`);
    process.exit(1);
  });
}
