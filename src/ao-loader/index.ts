/**
 * `hb-runtimes/ao-loader`: a drop-in for @permaweb/ao-loader 0.0.49 on Wasmtime.
 * `AoLoader(binary, options)` resolves to `handle(memory | null, msg, env)`, which resolves to
 * `{ Memory, Output, Messages, Spawns, Assignments, Patches, Error, GasUsed }`.
 *
 * One instance per loader, as in ao-loader: `handle(null, …)` continues from the instance's
 * current memory; `handle(memory, …)` first writes `memory` over it (growing it when needed).
 */
import { AoError, LimitError, badArg } from '../errors';
import { WasmInstance, imageHash, type WasmValue } from '../wasm';
import { loadImage } from '../wasm-image';
import { GAS_GET, GAS_LIMIT_SET, GAS_SET, meterModule } from '../wasm-meter/module';
import { Clock } from './clock';
import { emscripten2Imports } from './emscripten2';
import { emscripten4Imports } from './emscripten4';
import { formatOf } from './formats';
import { EmFS } from './fs';
import { DEFAULT_GAS_LIMIT, ExitStatus, Gas, OutOfGas } from './gas';
import { Runtime, causeIs } from './runtime';
import { NO_DRIVE, weaveDrive, type WeaveDriveOptions } from './weavedrive';

export { ExitStatus, OutOfGas };

export interface AoLoaderOptions {
  format?: string;
  inputEncoding?: string;
  outputEncoding?: string;
  /** Bytes (number or numeric string): a cap on linear memory, enforced. */
  memoryLimit?: number | string;
  /** Gas budget per message (metered formats and images with built-in metering). */
  computeLimit?: number | string;
  extensions?: unknown[];
  /** Return the live memory (an ArrayBuffer) instead of a copy. */
  UNSAFE_MEMORY?: boolean;
  /** hb-runtimes: wall-clock limit per message in ms (default 10 s; Infinity: none). */
  timeLimit?: number;
  /**
   * hb-runtimes: the program's argv for emscripten2 images (`argv[0]` is also the `_`
   * environment variable). Default `['./this.program']`; ao-loader uses the host process's
   * `process.argv.slice(1)`, which makes its memory depend on the host.
   */
  argv?: string[];
  /**
   * hb-runtimes: WeaveDrive (AOS 2 images), files `/data/<tx id>` read from a gateway:
   * `{ gateway, fetch, admissible }` (docs/ao-loader.md). ao-loader's `WeaveDrive(Module, FS)`
   * factory needs emscripten's JavaScript objects and is refused.
   */
  weaveDrive?: WeaveDriveOptions;
  WeaveDrive?: unknown;
  [k: string]: unknown;
}

export interface HandleResult {
  Memory: Uint8Array | ArrayBuffer;
  Output: unknown;
  Messages: unknown;
  Spawns: unknown;
  Assignments: unknown;
  Patches: unknown[];
  Error: unknown;
  GasUsed: number;
}

export type Handle = (memory: ArrayBuffer | ArrayBufferView | null, msg: unknown, env: unknown) => Promise<HandleResult>;

function toBytes(b: unknown, where: string): Uint8Array {
  if (b instanceof Uint8Array) return b;
  if (b instanceof ArrayBuffer) return new Uint8Array(b);
  if (ArrayBuffer.isView(b)) return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  throw badArg(`${where}: expected an ArrayBuffer or a typed array`);
}

function limitNumber(v: unknown, name: string): number | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  const x = typeof v === 'string' ? Number(v) : v;
  if (typeof x !== 'number' || !(x > 0)) throw badArg(`AoLoader: ${name} must be a positive number`);
  return x;
}

export default async function AoLoader(binary: unknown, options?: AoLoaderOptions | null): Promise<Handle> {
  const opts: AoLoaderOptions = options && typeof options === 'object' ? options : { format: 'wasm32-unknown-emscripten' };
  const format = formatOf(opts.format);
  if (typeof binary === 'function') return v8Fallback(binary, opts);
  const bytes = toBytes(binary, 'AoLoader');
  const memoryLimit = limitNumber(opts.memoryLimit, 'memoryLimit');
  const gas = new Gas(limitNumber(opts.computeLimit, 'computeLimit') ?? DEFAULT_GAS_LIMIT);
  const clock = new Clock(format.clockAtStart);
  const fs = new EmFS(clock);
  const heapMax = Math.min(format.heapMax, memoryLimit ?? Infinity);
  const rt = new Runtime(format.generation, heapMax);
  if (opts.WeaveDrive !== undefined) {
    throw new AoError("AoLoader: ao-loader's WeaveDrive(Module, FS) factory needs emscripten's JavaScript runtime; use the weaveDrive option ({ gateway, fetch, admissible })", {
      status: 400,
      code: 'ERR_UNSUPPORTED',
    });
  }
  const drive = opts.weaveDrive ? weaveDrive(opts.weaveDrive, rt, fs) : NO_DRIVE;

  const module = await loadImage(meteredImage(bytes, format.metering));
  const metered = module.exports.some((e) => e.name === GAS_GET);
  let imports: Record<string, Record<string, (...a: WasmValue[]) => unknown>>;
  if (format.generation === 'emscripten2') {
    const { env, metering } = emscripten2Imports(rt, fs, gas, (opts.argv?.[0] ?? './this.program').replace(/\\/g, '/'));
    imports = { env, wasi_snapshot_preview1: env, metering };
  } else {
    const env = emscripten4Imports(rt, fs, clock, gas, drive);
    imports = { env, wasi_snapshot_preview1: env, metering: { usegas: (a: WasmValue) => gas.use(Number(a)) } };
  }
  const inst = new WasmInstance(module, imports, {
    ...(memoryLimit === undefined ? {} : { maxMemoryBytes: memoryLimit }),
    ...(opts.timeLimit === undefined ? {} : { timeLimit: opts.timeLimit }),
  });
  rt.inst = inst;
  if (metered) {
    inst.call(GAS_LIMIT_SET, [BigInt(Math.min(Math.floor(gas.limit), 2 ** 63 - 1024))]);
    gas.read = () => Number(inst.call(GAS_GET)[0]);
  }
  try {
    start(rt, format.generation, opts.argv);
  } catch (e) {
    if (metered && gas.sync() > gas.limit) throw new OutOfGas();
    throw unwrap(e);
  }
  if (format.dataDir) fs.createPath('/', 'data');

  let live: ArrayBuffer | undefined; // the view handed out by the last UNSAFE_MEMORY result
  const isCopy = (m: unknown) => (m instanceof ArrayBuffer || m instanceof Uint8Array) && inst.memory.isCopy(m);
  const one: Handle = async (memory, msg, env) => {
    // The Memory handed out last, unchanged on both sides (memory.isCopy proves it), needs no copy in.
    if (memory !== null && memory !== undefined && !(memory instanceof ArrayBuffer && memory === live) && !isCopy(memory)) {
      const image = toBytes(memory, 'handle');
      if (rt.size < image.byteLength) rt.resizeHeap(image.byteLength);
      if (rt.size < image.byteLength) {
        throw new LimitError(`handle: a Memory of ${image.byteLength} bytes does not fit (memory limit ${heapMax} bytes)`, { limit: 'memory' });
      }
      rt.heap().set(image, 0);
    }
    gas.refill();
    if (metered) inst.call(GAS_SET, [0n]);
    const out = await runAsync(
      () => callHandle(rt, JSON.stringify(msg), JSON.stringify(env)),
      () => (metered ? gas.sync() > gas.limit : false),
    );
    if (metered) gas.sync();
    const { ok, response } = JSON.parse(out) as { ok: boolean; response: Record<string, unknown> };
    if (!ok) throw response;
    // UNSAFE_MEMORY: the memory itself (detached when it next grows), as ao-loader's HEAPU8.buffer
    let Memory: Uint8Array | ArrayBuffer;
    if (opts.UNSAFE_MEMORY === true) {
      live = rt.heap().buffer as ArrayBuffer;
      Memory = live;
    } else Memory = new Uint8Array(inst.memory.copy()); // copy-on-write: costs the pages written
    return {
      Memory,
      Error: response.Error,
      Output: response.Output,
      Messages: response.Messages,
      Spawns: response.Spawns,
      Assignments: response.Assignments,
      Patches: (response.Patches as unknown[] | undefined) || [],
      GasUsed: gas.used,
    };
  };
  // One message at a time: a handle called again before the last one settled waits its turn
  // (the instance is suspended across awaits while WeaveDrive reads).
  let queue: Promise<unknown> = Promise.resolve();
  return (memory, msg, env) => {
    const run = queue.then(() => one(memory, msg, env));
    queue = run.catch(() => undefined);
    return run;
  };
}

/**
 * The instantiate-callback form hands the loader a V8 instance, which Wasmtime cannot run: it is
 * delegated to @permaweb/ao-loader itself when the host has it installed (V8 then runs it, with
 * ao-loader's behaviour, global patches included); otherwise it is refused.
 */
async function v8Fallback(fn: unknown, opts: AoLoaderOptions): Promise<Handle> {
  let ref: (b: unknown, o: unknown) => Promise<Handle>;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    ref = require('@permaweb/ao-loader');
  } catch {
    throw new AoError('AoLoader: the instantiate-callback form hands the loader a V8 instance; hb-runtimes runs module bytes (install @permaweb/ao-loader to fall back to it for this form)', {
      status: 400,
      code: 'ERR_UNSUPPORTED',
    });
  }
  return ref(fn, opts);
}

/** The guest's errors as ao-loader gives them: `Error('out of gas!')`, `ExitStatus`, or the trap. */
function unwrap(e: unknown): unknown {
  return causeIs(e, OutOfGas) ?? causeIs(e, ExitStatus) ?? causeIs(e, LimitError) ?? e;
}
async function runAsync<T>(f: () => Promise<T>, outOfGas: () => boolean): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (outOfGas()) throw new OutOfGas();
    throw unwrap(e);
  }
}

const meteredCache = new Map<string, Uint8Array>();

/**
 * The image with its gas counted inside: wasm-metering's injection for the `-metering` formats,
 * and the built-in `metering.usegas` calls of AOS 1 images turned into the same counter.
 */
function meteredImage(bytes: Uint8Array, inject: boolean): Uint8Array {
  const key = `${imageHash(bytes).toString('hex')}-${inject}`;
  let out = meteredCache.get(key);
  if (!out) {
    out = meterModule(bytes, { inject, replaceImport: { module: 'metering', name: 'usegas' } });
    meteredCache.set(key, out);
  }
  return out;
}

/** emscripten's start-up: stack, stack cookie, constructors, and `main` for emscripten2. */
function start(rt: Runtime, gen: string, argv: string[] | undefined): void {
  rt.call('emscripten_stack_init');
  let end = Number(rt.call('emscripten_stack_get_end'));
  if (end === 0 && gen !== 'emscripten2') end += 4;
  rt.setU32(end, 34821223);
  rt.setU32(end + 4, 2310721022);
  rt.setU32(0, 1668509029);
  rt.call('__wasm_call_ctors');
  if (gen !== 'emscripten2') return;
  const args = (argv?.length ? argv : ['./this.program']).map((a, i) => (i === 0 ? a.replace(/\\/g, '/') : a));
  const table = rt.stackAlloc((args.length + 1) * 4);
  args.forEach((a, i) => {
    const size = Buffer.byteLength(a) + 1;
    const p = rt.stackAlloc(size);
    rt.writeString(a, p, size);
    rt.setI32(table + i * 4, p);
  });
  rt.setI32(table + args.length * 4, 0);
  try {
    rt.call('main', [args.length, table]);
  } catch (e) {
    if (!causeIs(e, ExitStatus)) throw e;
  }
}

/** `cwrap('handle', 'string', ['string', 'string'])`, strings on the C stack. */
async function callHandle(rt: Runtime, msg: string, env: string): Promise<string> {
  const sp = rt.stackSave();
  const onStack = (s: string): number => {
    // emscripten2 reserves 4 bytes per UTF-16 unit; later generations the exact UTF-8 size.
    const size = rt.gen === 'emscripten2' ? (s.length << 2) + 1 : Buffer.byteLength(s) + 1;
    const p = rt.stackAlloc(size);
    rt.writeString(s, p, size);
    return p;
  };
  const a = onStack(msg);
  const b = onStack(env);
  const ret = await rt.callAsync('handle', [rt.arg(a), rt.arg(b)]);
  rt.stackRestore(sp);
  return rt.cstr(Number(ret));
}


