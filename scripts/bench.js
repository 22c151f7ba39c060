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
// `--node <major>` runs the benchmarks (and the V8 peers inside them) on a pinned Node lane
// (scripts/node-lanes.js) instead of this Node.
const args = process.argv.slice(2);
const at = args.indexOf('--node');
const nodeMajor = at >= 0 ? args.splice(at, 2)[1] : undefined;
const node = nodeMajor
  ? path.join(execFileSync(process.execPath, [path.join(__dirname, 'node-lanes.js'), 'bin', nodeMajor], { encoding: 'utf8' }).trim(), 'node')
  : process.execPath;
const nodeVersion = execFileSync(node, ['--version'], { encoding: 'utf8' }).trim();
const only = args;
const files = fs
  .readdirSync(path.join(ROOT, 'bench'))
  .filter((f) => f.endsWith('.mjs') && f !== 'util.mjs')
  .filter((f) => only.length === 0 || only.includes(f.replace(/\.mjs$/, '')))
  .sort();
console.log(`# hb-runtimes benchmarks\n\n${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, Node ${nodeVersion}, ${new Date().toISOString()}`);
let failed = 0;
for (const f of files) {
  console.log(`\n## ${f}`);
  // A bench may ask for Node flags on its first line: `// node-flags: --flag …`.
  const first = fs.readFileSync(path.join(ROOT, 'bench', f), 'utf8').split('\n', 1)[0];
  const wanted = first.startsWith('// node-flags:') ? first.slice('// node-flags:'.length).trim().split(/\s+/) : [];
  // Flags a newer Node no longer has (Node 24 runs memory64 without --experimental-wasm-memory64).
  const flags = wanted.filter((flag) => spawnSync(node, [flag, '-e', '0']).status === 0);
  const r = spawnSync(node, ['--expose-gc', ...flags, path.join(ROOT, 'bench', f)], { stdio: 'inherit', cwd: ROOT });
  if (r.status !== 0) {
    failed++;
    console.log(`\n(${f} failed with status ${r.status})`);
  }
}
process.exit(failed ? 1 : 0);
