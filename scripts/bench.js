'use strict';
// `npm run bench`: builds lib/ from src/, then runs every bench/*.mjs in its own process
// (with --expose-gc), one after the other. Each prints markdown tables with medians and ratios
// against the peer measured in the same run. `npm run bench -- wasm lua` runs only those.
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { ROOT } = require('./deps');

execFileSync(process.execPath, [path.join(__dirname, 'build-ts.js')], { stdio: 'inherit' });
const only = process.argv.slice(2);
const files = fs
  .readdirSync(path.join(ROOT, 'bench'))
  .filter((f) => f.endsWith('.mjs') && f !== 'util.mjs')
  .filter((f) => only.length === 0 || only.includes(f.replace(/\.mjs$/, '')))
  .sort();
console.log(`# hb-runtimes benchmarks\n\n${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}, ${new Date().toISOString()}`);
let failed = 0;
for (const f of files) {
  console.log(`\n## ${f}`);
  // A bench may ask for Node flags on its first line: `// node-flags: --flag …`.
  const first = fs.readFileSync(path.join(ROOT, 'bench', f), 'utf8').split('\n', 1)[0];
  const flags = first.startsWith('// node-flags:') ? first.slice('// node-flags:'.length).trim().split(/\s+/) : [];
  const r = spawnSync(process.execPath, ['--expose-gc', ...flags, path.join(ROOT, 'bench', f)], { stdio: 'inherit', cwd: ROOT });
  if (r.status !== 0) {
    failed++;
    console.log(`\n(${f} failed with status ${r.status})`);
  }
}
process.exit(failed ? 1 : 0);
