import { createRequire } from 'node:module';
import fs from 'node:fs';
const require = createRequire('/work/wt/lowering/bench/x.mjs');
const { translateLegacyExceptions } = require('/work/wt/lowering/lib/wasm-image.js');
const { lowerMemory64 } = require('/work/wt/lowering/lib/wasm-lower.js');
const tr = await translateLegacyExceptions(fs.readFileSync('/work/shared/fixtures/aos-2-pure-xs.wasm'));
const out = lowerMemory64(tr).bytes;
fs.writeFileSync('/tmp/lw/tr.wasm', tr); fs.writeFileSync('/tmp/lw/low.wasm', out);
console.log(tr.length, out.length);
