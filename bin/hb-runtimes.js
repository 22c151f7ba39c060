#!/usr/bin/env node
'use strict';
require('../lib/cli.js')
  .main(process.argv)
  .catch((err) => {
    process.stderr.write(`hb-runtimes: ${err && err.message ? err.message : err}\n`);
    process.exit(typeof err?.status === 'number' && err.status < 500 ? 2 : 1);
  });
