/**
 * The `hb-runtimes` command line (commander for parsing). `run` with no file runs the embedded
 * default module, so a fresh install can be checked with one command.
 */
import * as fs from 'node:fs';
import * as readline from 'node:readline';
import { Command } from 'commander';
import { cacheWrite } from './ao/cache';
import { isMessage, withoutPrivate, type Message } from './ao/message';
import { resolve } from './ao/resolve';
import { aosWasmStack } from './devices/json-iface';
import { aosLuaProcess, rsaCommitment } from './devices/lua';
import { AoError } from './errors';
import { FAC_MODULE } from './embedded';
import { quickBench } from './bench';
import { versions } from './index';
import { WasmInstance, WasmModule, type WasmImports } from './wasm';
import { WasiPreview1, exitCodeOf, wasiImportsFor } from './wasi';

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
      const bytes = file ? fs.readFileSync(file) : FAC_MODULE;
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
    .command('lua')
    .description('run a Lua file on the lua@5.3a device, then (optionally) call one of its functions and print the result')
    .argument('<file.lua>', 'Lua source')
    .argument('[function]', 'global function to call')
    .argument('[args...]', 'arguments: JSON values (5, true, "x", {"a":1}), anything else as a string')
    .option('--sandbox', "apply lua@5.3a's default sandbox list")
    .option('--instruction-limit <n>', 'instructions per call')
    .option('--memory-limit <bytes>', 'memory cap of the VM')
    .option('--time-limit <ms>', "wall-clock limit per call in ms, or 'infinity' (default 10000)")
    .action(async (file: string, fn: string | undefined, args: string[], opts: { sandbox?: boolean; instructionLimit?: string; memoryLimit?: string; timeLimit?: string }) => {
      const base: Message = {
        device: 'lua@5.3a',
        module: { 'content-type': 'application/lua', name: file, body: fs.readFileSync(file) },
        ...(opts.sandbox ? { sandbox: true } : {}),
        ...(opts.instructionLimit ? { 'instruction-limit': opts.instructionLimit } : {}),
        ...(opts.memoryLimit ? { 'memory-limit': opts.memoryLimit } : {}),
        ...(opts.timeLimit ? { 'time-limit': opts.timeLimit } : {}),
      };
      const aoOpts = { luaPrint: (line: string) => process.stdout.write(`${line}\n`) };
      const initialized = await resolve(base, 'init', aoOpts);
      if (fn === undefined) return;
      const parameters = args.map((a) => {
        try {
          return JSON.parse(a) as unknown;
        } catch {
          return a;
        }
      });
      const out = await resolve(initialized, { path: fn, function: fn, parameters }, aoOpts);
      // A returned table becomes the new message: show what the function returned, not the bookkeeping.
      const shown = isMessage(out) ? withoutPrivate({ ...out, module: undefined, device: undefined }) : out;
      process.stdout.write(`${fn}(${args.join(', ')}) = ${formatLua(shown)}\n`);
    });

  program
    .command('aos')
    .description('an AOS session: each line read (prompt on a terminal, or piped stdin) is an Eval; prints Output.data')
    .argument('<module>', 'an AOS image (e.g. aos-2-pure-xs.wasm) or AOS written in Lua (e.g. hyper-aos.lua)')
    .option('--owner <address>', 'process owner, also the sender of the Evals', 'OWNER')
    .action(async (file: string, opts: { owner: string }) => {
      if (file.endsWith('.lua')) return luaAosSession(fs.readFileSync(file), file, opts.owner);
      if (!file.endsWith('.wasm')) throw new AoError(`aos: ${file} is neither a .wasm image nor a .lua process`, { status: 400 });
      await aosSession(fs.readFileSync(file), opts.owner);
    });

  program
    .command('serve')
    .description('a Compute Unit over HTTP (with the MU, SU and gateway routes AO clients use): WASM AOS images and Lua processes')
    .option('--port <n>', 'TCP port (0: any free port)', '8734')
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .option('--store <dir|url>', 'store: a directory (processes, message logs, snapshots, the generated wallet), or a postgres:// URL shared by several nodes', '.hb-serve')
    .option('--wallet <jwk.json>', 'Arweave JWK to sign with (default: <store>/wallet.json, generated when missing)')
    .option('--snapshot-interval <slots>', 'slots between persisted snapshots', '64')
    .option('--body-limit <bytes>', 'largest request body (413 above)', String(16 * 1024 * 1024))
    .option('--request-timeout <ms>', 'time a client has to send a whole request (408 after)', '30000')
    .option('--delegate <url...>', 'compute every process on these CUs (routed by process ID) instead of locally')
    .option('--workers <n>', 'worker threads computing the processes (default: one per core; 0: on the HTTP thread)')
    .option('--compute-limit <n>', 'fuel (WASM) or Lua steps per message for processes without a Compute-Limit tag (default: 1e10 fuel / 1e8 steps)')
    .option('--memory-limit <bytes>', "memory cap for processes without a Memory-Limit tag (bytes, or e.g. '1-gb')")
    .option('--time-limit <ms>', 'wall-clock deadline per message, the host safety net; its failures are flagged Nondeterministic (default: 10000)')
    .option('--node-id <id>', 'this node in a shared (postgres://) store (default: a random UUID per start)')
    .option('--public-url <url>', 'URL other nodes forward requests to (default: http://<host>:<port>)')
    .option('--lease-ms <ms>', 'how long a node holds a process without renewing its lease (shared store); a dead node is taken over after this', '10000')
    .option('--retain-slots <n>', "slots of history (assignments, results) kept behind each process's latest snapshot; 'Infinity' keeps all", '10000')
    .option('--memory-budget <bytes>', "process state held in memory before idle processes are evicted, least recently used first (bytes, or e.g. '2-gb'; default: no limit)")
    .option('--cache-dir <dir>', 'compiled-module cache (default: <store>/compiled; with postgres://, ~/.cache/hb-runtimes/serve-compiled)')
    .option('--max-queue <n>', "messages waiting in one process's queue before new ones get 503 + Retry-After (202 from half of it)", '1000')
    .option('--dry-run-rate-limit <n>', 'dry runs per minute per client IP (429 above; 0: no limit)', '600')
    .option('--result-timeout <ms>', 'longest wait for a result before 503 + Retry-After', '60000')
    .option('--checkpoint-authority <address...>', "addresses whose signed checkpoints POST /state loads, besides this node's own wallet")
    .option('--log', 'log every request (fastify logger)')
    .action(async (o: { checkpointAuthority?: string[]; maxQueue: string; dryRunRateLimit: string; resultTimeout: string; log?: boolean; nodeId?: string; publicUrl?: string; leaseMs: string; retainSlots: string; memoryBudget?: string; cacheDir?: string; port: string; host: string; store: string; wallet?: string; snapshotInterval: string; bodyLimit: string; requestTimeout: string; delegate?: string[]; workers?: string; computeLimit?: string; memoryLimit?: string; timeLimit?: string }) => {
      // fastify and arbundles load only for this command.
      const { startServer } = require('./serve/app') as typeof import('./serve/app');
      const { parseSize } = require('./serve/limits') as typeof import('./serve/limits');
      const server = await startServer({
        port: Number(o.port),
        host: o.host,
        store: o.store,
        wallet: o.wallet,
        snapshotInterval: Number(o.snapshotInterval),
        bodyLimit: Number(o.bodyLimit),
        requestTimeout: Number(o.requestTimeout),
        delegate: o.delegate,
        ...(o.nodeId !== undefined ? { nodeId: o.nodeId } : {}),
        ...(o.publicUrl !== undefined ? { publicUrl: o.publicUrl } : {}),
        leaseMs: Number(o.leaseMs),
        retainSlots: o.retainSlots === 'Infinity' ? Infinity : Number(o.retainSlots),
        ...(o.memoryBudget !== undefined ? { memoryBudget: /^[0-9]+$/.test(o.memoryBudget) ? Number(o.memoryBudget) : parseSize(o.memoryBudget, '--memory-budget') } : {}),
        ...(o.cacheDir !== undefined ? { cacheDir: o.cacheDir } : {}),
        maxQueue: Number(o.maxQueue),
        dryRunRateLimit: Number(o.dryRunRateLimit),
        resultTimeout: Number(o.resultTimeout),
        ...(o.checkpointAuthority !== undefined ? { checkpointAuthorities: o.checkpointAuthority } : {}),
        logger: o.log === true,
        ...(o.workers !== undefined ? { workers: Number(o.workers) } : {}),
        limits: {
          ...(o.computeLimit !== undefined ? { computeLimit: Number(o.computeLimit) } : {}),
          ...(o.memoryLimit !== undefined ? { memoryLimit: /^[0-9]+$/.test(o.memoryLimit) ? Number(o.memoryLimit) : parseSize(o.memoryLimit, '--memory-limit') } : {}),
          ...(o.timeLimit !== undefined ? { timeLimit: Number(o.timeLimit) } : {}),
        },
      });
      process.stdout.write(`hb-runtimes serve: listening on ${server.url} (address ${server.signer.address}, store ${server.registry.store.where})\n`);
      const stop = () => {
        void server.close().then(() => process.exit(0));
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });

  program
    .command('bench')
    .description('quick benchmarks of this installation (WASM calls and snapshots, Lua, AO-Core); the full suite with peer runtimes is `npm run bench` in a checkout')
    .action(async () => {
      await quickBench((line) => process.stdout.write(`${line}\n`));
    });

  await program.parseAsync(argv);
}

function formatLua(v: unknown): string {
  // Buffers reach the replacer already turned into {type: 'Buffer', data} by their toJSON.
  return JSON.stringify(v, (_k, x: unknown) =>
    typeof x === 'bigint' ? `${x}n` : isMessage(x) && x.type === 'Buffer' && Array.isArray(x.data) ? `<${x.data.length} bytes>` : x,
  );
}

/** Each input line, until the input ends; `handle` answers it. A prompt on a terminal. */
async function eachLine(handle: (line: string, n: number) => Promise<string>): Promise<void> {
  const interactive = Boolean(process.stdin.isTTY);
  const rl = readline.createInterface({ input: process.stdin, output: interactive ? process.stdout : undefined, terminal: interactive });
  if (interactive) rl.setPrompt('aos> ');
  if (interactive) rl.prompt();
  let n = 0;
  for await (const line of rl) {
    if (line.trim() !== '') {
      n += 1;
      try {
        process.stdout.write(`${await handle(line, n)}\n`);
      } catch (e) {
        process.stderr.write(`error: ${(e as Error).message}\n`);
      }
    }
    if (interactive) rl.prompt();
  }
}

/** AOS in Lua (hyper-aos.lua) as a process@1.0 on lua@5.3a, one Eval per input line. */
async function luaAosSession(source: Uint8Array, name: string, owner: string): Promise<void> {
  let proc = aosLuaProcess(source, { owner, id: 'LOCAL-AOS-PROCESS', name, 'snapshot-interval': 0 });
  await eachLine(async (line, n) => {
    const scheduled = await resolve(proc, {
      path: 'schedule',
      body: { action: 'Eval', body: { 'content-type': 'application/lua', body: line }, commitments: rsaCommitment(owner, `LOCAL-MESSAGE-${n}`) },
      'block-height': n,
    });
    // Only a computed message stays scheduled: a failing one is dropped with its error shown.
    proc = await resolve(scheduled, 'now');
    const output = (proc as { results?: { output?: Message } }).results?.output ?? {};
    const out = output.data ?? output.error ?? '';
    return typeof out === 'string' ? out : formatLua(out);
  });
}

/** AOS over wasm-64: a json-iface stack, one Eval per input line. */
async function aosSession(image: Uint8Array, owner: string): Promise<void> {
  const imageId = await cacheWrite(image);
  let proc: Message = await resolve(aosWasmStack({ image: imageId, owner, id: 'LOCAL-AOS', name: 'aos' }), 'init');
  await eachLine(async (line, n) => {
    proc = await resolve(proc, {
      path: 'compute',
      'block-height': n,
      body: { action: 'Eval', data: line, target: 'LOCAL-AOS', owner, from: owner, id: String(n) },
    });
    const results = (proc as { results?: Message }).results ?? {};
    // AOS prefixes its error texts with blank lines.
    const out = results.error !== undefined ? String(results.error).replace(/^\n+/, '') : results.data;
    return typeof out === 'string' ? out : JSON.stringify(out);
  });
}
