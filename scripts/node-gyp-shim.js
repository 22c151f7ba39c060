#!/usr/bin/env node
'use strict';
// Stand-in for node-gyp when prebuildify calls `node-gyp rebuild …`: runs hb-runtimes' cmake-js
// build (scripts/build-native.js), which leaves build/Release/hb_runtimes.node where prebuildify
// expects it. The node-gyp arguments (target, devdir, arch) do not apply to an N-API build.
require('./build-native')
  .buildNative()
  .catch((e) => {
    process.stderr.write(`${e.message}\n`);
    process.exit(1);
  });
