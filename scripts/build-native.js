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
  defines.push(`HB_SANITIZE=${setting('hb_sanitize') ? 'ON' : 'OFF'}`); // explicit, so that turning it off reconfigures
  if (setting('hb_lua_seed')) defines.push(`HB_LUA_SEED=${setting('hb_lua_seed')}`);
  log(`addon: cmake-js with ${defines.join(' ')}`);
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [ROOT] });
  // `cmake-js build` reuses an existing configuration and ignores changed --CD values: configure
  // again when the cache entries (e.g. a new Lua source directory after a recipe change) differ.
  const cacheFile = path.join(ROOT, 'build', 'CMakeCache.txt');
  const cache = fs.existsSync(cacheFile) ? fs.readFileSync(cacheFile, 'utf8') : '';
  const stale = defines.some((d) => {
    const [name, value] = [d.slice(0, d.indexOf('=')), d.slice(d.indexOf('=') + 1)];
    return !cache.split('\n').some((line) => line.startsWith(`${name}:`) && line.endsWith(`=${value}`));
  });
  if (cache !== '' && stale) {
    log('addon: configuration changed, configuring again');
    await run(process.execPath, [cmakeJs, 'configure', '-l', 'warn', ...defines.map((d) => `--CD${d}`)], { cwd: ROOT });
  }
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
