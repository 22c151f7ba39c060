'use strict';
// `npm install` hook: use the prebuilt binary when it loads on this machine; compile from source
// only when it does not, or when a source build was asked for (`npm install --build-from-source`
// or HB_RUNTIMES_BUILD_FROM_SOURCE=1). Same policy as node-gyp-build's own install step.
const { ROOT, log } = require('./deps');

function prebuiltLoads() {
  try {
    const binding = require('node-gyp-build')(ROOT);
    return typeof binding.versions === 'function' ? binding.versions() : null;
  } catch {
    return null;
  }
}

const fromSource =
  process.env.npm_config_build_from_source === 'true' || process.env.HB_RUNTIMES_BUILD_FROM_SOURCE === '1';
const loaded = fromSource ? null : prebuiltLoads();
if (loaded) {
  log(`native addon ready (Wasmtime ${loaded.wasmtime}, ${loaded.lua}); nothing to compile`);
} else {
  log(fromSource ? 'building the native addon from source (requested)' : 'no usable prebuilt binary: building from source');
  require('./build-native')
    .buildNative()
    .catch((e) => {
      log(`native build failed: ${e.message}`);
      log('Building from source needs Rust (cargo), CMake >= 3.15 and a C++17 compiler.');
      process.exit(1);
    });
}
