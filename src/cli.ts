/**
 * The `hb-runtimes` command line (commander for parsing). `run` with no file runs the embedded
 * default module, so a fresh install can be checked with one command.
 */
import * as fs from 'node:fs';
import * as readline from 'node:readline';
import { Command } from 'commander';
import { cacheWrite } from './ao/cache';
import type { Message } from './ao/message';
import { resolve } from './ao/resolve';
import { AoError } from './errors';
import { versions } from './index';
import { WasmInstance, WasmModule, type WasmImports } from './wasm';
import { WasiPreview1, exitCodeOf, wasiImportsFor } from './wasi';

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
    .option('--fuel <n>', 'fuel budget for the call (compiles the module with fuel metering)')
    .action((file: string | undefined, fn: string, args: string[], opts: { fuel?: string }) => {
      const bytes = file ? fs.readFileSync(file) : DEFAULT_MODULE;
      const module = WasmModule.compile(bytes, opts.fuel ? { fuel: true } : undefined);
      const params = file ? parseArgs(module, fn, args) : parseArgs(module, fn, args.length ? args : ['5']);
      // WASI imports run over an in-memory filesystem; what the program prints is shown after it.
      const wasi = new WasiPreview1({ args: [file ?? 'default', ...args] });
      let inst: WasmInstance | undefined;
      const imports = { ...unprovidedImports(module), ...wasiImportsFor(module, wasi, () => inst!) };
      inst = new WasmInstance(module, imports, opts.fuel ? { fuel: BigInt(opts.fuel) } : undefined);
      try {
        const results = inst.call(fn, params);
        process.stdout.write(Buffer.from(wasi.stdout));
        process.stderr.write(Buffer.from(wasi.stderr));
        process.stdout.write(`${fn}(${params.map(formatValue).join(', ')}) = [${results.map(formatValue).join(', ')}]\n`);
      } catch (e) {
        process.stdout.write(Buffer.from(wasi.stdout));
        process.stderr.write(Buffer.from(wasi.stderr));
        const code = exitCodeOf(e);
        if (code === undefined) throw e;
        process.exitCode = code;
      } finally {
        inst.dispose();
      }
    });

  program
    .command('aos')
    .description('an AOS session: each line read (prompt on a terminal, or piped stdin) is an Eval; prints Output.data')
    .argument('<module.wasm>', 'an AOS image (e.g. aos-2-pure-xs.wasm)')
    .option('--owner <address>', 'process owner, also the sender of the Evals', 'OWNER')
    .action(async (file: string, opts: { owner: string }) => {
      if (!file.endsWith('.wasm')) {
        throw new AoError(`aos: ${file} is not a .wasm image (AOS in Lua runs once the lua@5.3a device is available)`, { status: 400 });
      }
      await aosSession(fs.readFileSync(file), opts.owner);
    });

  await program.parseAsync(argv);
}

/** AOS over wasm-64: a json-iface stack, one Eval per input line. */
async function aosSession(image: Uint8Array, owner: string): Promise<void> {
  const imageId = await cacheWrite(image);
  let proc: Message = await resolve(
    {
      device: 'stack@1.0',
      'device-stack': ['json-iface@1.0', 'wasm-64@1.0', 'multipass@1.0'],
      'input-prefix': 'process',
      'output-prefix': 'wasm',
      passes: 2,
      'stack-keys': ['init', 'compute', 'snapshot', 'normalize'],
      process: { type: 'Process', image: imageId, owner, id: 'LOCAL-AOS', name: 'aos' },
    },
    'init',
  );
  const interactive = Boolean(process.stdin.isTTY);
  const rl = readline.createInterface({ input: process.stdin, output: interactive ? process.stdout : undefined, terminal: interactive });
  if (interactive) rl.setPrompt('aos> ');
  if (interactive) rl.prompt();
  let n = 0;
  for await (const line of rl) {
    if (line.trim() === '') {
      if (interactive) rl.prompt();
      continue;
    }
    n += 1;
    try {
      proc = await resolve(proc, {
        path: 'compute',
        'block-height': n,
        body: { action: 'Eval', data: line, target: 'LOCAL-AOS', owner, from: owner, id: String(n) },
      });
      const results = (proc as { results?: Message }).results ?? {};
      // AOS prefixes its error texts with blank lines.
      const out = results.error !== undefined ? String(results.error).replace(/^\n+/, '') : results.data;
      process.stdout.write(`${typeof out === 'string' ? out : JSON.stringify(out)}\n`);
    } catch (e) {
      process.stderr.write(`error: ${(e as Error).message}\n`);
    }
    if (interactive) rl.prompt();
  }
}
