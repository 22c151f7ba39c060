/**
 * The `hb-runtimes` command line (commander for parsing). `run` with no file runs the embedded
 * default module, so a fresh install can be checked with one command.
 */
import * as fs from 'node:fs';
import { Command } from 'commander';
import { AoError } from './errors';
import { versions } from './index';
import { WasmInstance, WasmModule, type WasmImports } from './wasm';

/** fac(f64) -> f64, recursive factorial; compiled from WAT (see test/native/wasm-instance.test.ts). */
const DEFAULT_MODULE = Buffer.from(
  'AGFzbQEAAAABBgFgAXwBfAMCAQAHBwEDZmFjAAAKLgEsACAARAAAAAAAAPA/YwR8RAAAAAAAAPA/BSAAIABEAAAAAAAA8D+hEACiCws=',
  'base64',
);

function formatValue(v: unknown): string {
  return typeof v === 'bigint' ? `${v}n` : JSON.stringify(v);
}

/** Converts command-line strings to the export's parameter types. */
function parseArgs(module: WasmModule, fn: string, raw: string[]): Array<number | bigint> {
  const type = module.exportType(fn);
  if (!type) {
    const names = module.exports.filter((e) => e.kind === 'func').map((e) => e.name);
    throw new AoError(`function not found: ${fn} (exports: ${names.join(', ') || 'none'})`, { status: 404 });
  }
  if (raw.length !== type.params.length) {
    throw new AoError(`${fn} takes ${type.params.length} argument(s) (${type.params.join(', ')}), got ${raw.length}`, {
      status: 400,
    });
  }
  return raw.map((s, i) => {
    const t = type.params[i];
    if (t === 'i64') return BigInt(s);
    const n = Number(s);
    if (Number.isNaN(n)) throw new AoError(`argument ${i} ('${s}') is not a number`, { status: 400 });
    return n;
  });
}

/** Imports the CLI does not provide trap with a message naming them. */
function unprovidedImports(module: WasmModule): WasmImports {
  const imports: WasmImports = {};
  for (const imp of module.imports) {
    if (imp.kind !== 'func') continue;
    const mod = (imports[imp.module ?? ''] ??= {});
    mod[imp.name] = () => {
      throw new AoError(`import ${imp.module}.${imp.name} is not provided by 'hb-runtimes run'`);
    };
  }
  return imports;
}

export async function main(argv: string[]): Promise<void> {
  const program = new Command();
  const v = versions();
  program
    .name('hb-runtimes')
    .description('AO/HyperBEAM runtimes for Node.js: Wasmtime (memory64) and Lua 5.3 in a native addon')
    .version(`hb-runtimes ${require('../package.json').version} (Wasmtime ${v.wasmtime}, ${v.lua})`);

  program
    .command('run')
    .description('call an exported function of a WebAssembly module (default: the embedded fac module, fac 5)')
    .argument('[file.wasm]', 'module to run (omit to run the embedded default)')
    .argument('[function]', 'exported function', 'fac')
    .argument('[args...]', 'arguments, converted to the function signature')
    .option('--fuel <n>', 'fuel budget for the call')
    .action((file: string | undefined, fn: string, args: string[], opts: { fuel?: string }) => {
      const bytes = file ? fs.readFileSync(file) : DEFAULT_MODULE;
      const module = WasmModule.compile(bytes);
      const params = file ? parseArgs(module, fn, args) : parseArgs(module, fn, args.length ? args : ['5']);
      const inst = new WasmInstance(module, unprovidedImports(module), opts.fuel ? { fuel: BigInt(opts.fuel) } : undefined);
      const results = inst.call(fn, params);
      process.stdout.write(`${fn}(${params.map(formatValue).join(', ')}) = [${results.map(formatValue).join(', ')}]\n`);
      inst.dispose();
    });

  await program.parseAsync(argv);
}
