/**
 * wasi@1.0: WASI preview1 for wasm-64@1.0 guests over a virtual filesystem kept in the message
 * (HyperBEAM dev_wasi, SPEC §4, with SPEC decision 2: all 46 functions, deterministic clock and
 * randomness by default). Stack it before wasm-64@1.0: `device-stack: ['wasi@1.0', 'wasm-64@1.0']`.
 * `P` is the output prefix (HyperBEAM hard-coded `wasm`; here it is the stack's).
 *
 * Keys:
 * - `init`
 *   - Assumes: optional `vfs` (files to give the guest: nested maps of path → content, or flat
 *     `'dir/file': content`), `wasi-args`, `wasi-env`, `wasi-seed`, `wasi-clock` (`deterministic`
 *     or `wall`), `wasi-random` (`deterministic` or `os`).
 *   - Generates: the base with `vfs` (with `dev/stdin`, `dev/stdout`, `dev/stderr`),
 *     `file-descriptors` (0-2 and the root preopen) and `<P>/stdlib/wasi_snapshot_preview1`
 *     = `{device: 'wasi@1.0'}`, which makes wasm-64@1.0 bind its WASI imports here.
 *   - Side-effects: none.
 * - `compute`
 *   - Assumes: nothing.
 *   - Generates: the base unchanged (the WASI work happens during wasm-64@1.0's compute: files the
 *     program writes appear in the result's `vfs`, the deterministic clock and random positions
 *     under `wasi-counters`).
 *   - Side-effects: none.
 * - `stdout`, `stderr`
 *   - Assumes: `vfs`.
 *   - Generates: the bytes of `vfs/dev/stdout` (`stderr`), as a string when valid UTF-8.
 *   - Side-effects: none.
 */

import { defineDevice } from '../ao/device';
import { isMessage, Message, rawGet } from '../ao/message';
import { DEFAULT_OPTS, type Opts } from '../ao/opts';
import { internalOpts, set } from '../ao/resolve';
import { Vfs, WasiPreview1, wasiImportsFor, type VfsMessage, type WasiOptions } from '../wasi';
import { outputPrefix } from './stack';
import { IMPORT_PROVIDERS, joinPath, WasmRuntime } from './wasm-64';

export const WASI_DEVICE = 'wasi@1.0';

const STD_FILES: VfsMessage = { dev: { stdin: '', stdout: '', stderr: '' } };

function vfsOf(base: Message): VfsMessage {
  const v = rawGet(base, 'vfs');
  return isMessage(v) ? (v as VfsMessage) : STD_FILES;
}

function init(base: Message, _req: Message, opts: Opts = DEFAULT_OPTS): Message {
  const vfs = Vfs.fromMessage(vfsOf(base));
  for (const f of ['/dev/stdin', '/dev/stdout', '/dev/stderr']) if (!vfs.exists(f)) vfs.writeFile(f, '');
  return set(
    base,
    {
      vfs: vfs.toMessage({ nested: true }),
      'file-descriptors': {
        '0': { filename: '/dev/stdin', offset: 0 },
        '1': { filename: '/dev/stdout', offset: 0 },
        '2': { filename: '/dev/stderr', offset: 0 },
        '3': { filename: '/', preopen: true },
      },
      [joinPath(outputPrefix(base), 'stdlib', 'wasi_snapshot_preview1')]: { device: WASI_DEVICE },
    },
    undefined,
    internalOpts(opts),
  );
}

function text(v: unknown): unknown {
  if (!(v instanceof Uint8Array)) return v ?? '';
  const s = Buffer.from(v).toString('utf8');
  return Buffer.from(s, 'utf8').equals(v) ? s : v;
}

/** What the guest wrote to `/dev/stdout` (a string when valid UTF-8). */
export function stdout(msg: Message): unknown {
  const dev = rawGet(vfsOf(msg) as Message, 'dev');
  return text(isMessage(dev) ? rawGet(dev, 'stdout') : rawGet(vfsOf(msg) as Message, 'dev/stdout'));
}

/** What the guest wrote to `/dev/stderr`. */
export function stderr(msg: Message): unknown {
  const dev = rawGet(vfsOf(msg) as Message, 'dev');
  return text(isMessage(dev) ? rawGet(dev, 'stderr') : rawGet(vfsOf(msg) as Message, 'dev/stderr'));
}

function wasiOptions(state: Message, req: Message, counters: WasiOptions['counters']): WasiOptions {
  const o: WasiOptions = { vfs: Vfs.fromMessage(vfsOf(state)), counters };
  const args = rawGet(state, 'wasi-args');
  if (Array.isArray(args)) o.args = args.map(String);
  const env = rawGet(state, 'wasi-env');
  if (isMessage(env)) o.env = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v)]));
  const proc = rawGet(state, 'process');
  const seed = rawGet(state, 'wasi-seed') ?? (isMessage(proc) ? rawGet(proc, 'id') : undefined);
  if (seed !== undefined) o.seed = typeof seed === 'string' || seed instanceof Uint8Array ? seed : String(seed);
  if (rawGet(state, 'wasi-clock') === 'wall') o.clock = 'wall';
  if (rawGet(state, 'wasi-random') === 'os') o.random = 'os';
  // Deterministic time starts at the message's block timestamp (ms) when it has one.
  // Without one, the clock continues from where the state's last compute left it.
  const ts = rawGet(req, 'block-timestamp') ?? rawGet(isMessage(req.body) ? req.body : {}, 'block-timestamp');
  const saved = rawGet(state, 'wasi-counters');
  if (ts !== undefined && Number.isFinite(Number(ts))) {
    // A new block timestamp restarts the clock at it; the random stream continues.
    o.startTime = BigInt(Math.trunc(Number(ts))) * 1_000_000n;
    if (o.counters) o.counters = { ...o.counters, elapsedNs: 0n };
  } else if (isMessage(saved) && saved['start-ns'] !== undefined) o.startTime = BigInt(String(saved['start-ns']));
  return o;
}

/**
 * The fast path wasm-64@1.0 takes for a `{device: 'wasi@1.0'}` stdlib: WASI runs in-process over
 * a `Vfs` loaded from the state before each call and written back after it, instead of one
 * AO-Core resolution per import.
 */
IMPORT_PROVIDERS.set(WASI_DEVICE, (rt: WasmRuntime, module: string, _imports, wasmModule) => {
  let wasi = new WasiPreview1({ vfs: Vfs.fromMessage(STD_FILES) });
  let tables = wasiImportsFor(wasmModule, wasi, () => rt.instance);
  let startNs = 0n;
  // Indirection: the import functions are made once, the WASI state per call.
  const functions: Record<string, (...args: Array<number | bigint>) => unknown> = {};
  for (const name of Object.keys(tables[module] ?? {})) {
    functions[name] = (...args) => tables[module]![name]!(...args);
  }
  return {
    functions: functions as never,
    beforeCall: (state, req) => {
      // The clock and random positions come from the state only: computing twice on the same
      // message gives the same answer.
      const saved = rawGet(state, 'wasi-counters');
      const counters = isMessage(saved)
        ? { elapsedNs: BigInt(String(saved['elapsed-ns'] ?? 0)), randomBytes: Number(saved['random-bytes'] ?? 0) }
        : undefined;
      const o = wasiOptions(state, req, counters);
      startNs = o.startTime ?? 0n;
      wasi = new WasiPreview1(o);
      tables = wasiImportsFor(wasmModule, wasi, () => rt.instance);
    },
    afterCall: (state) => {
      const c = wasi.counters;
      return set(
        state,
        {
          vfs: wasi.vfs.toMessage({ nested: true }),
          'wasi-counters': { 'start-ns': startNs, 'elapsed-ns': c.elapsedNs, 'random-bytes': c.randomBytes },
        },
        undefined,
        internalOpts(rt.opts),
      );
    },
  };
});

export const wasiDevice = defineDevice(WASI_DEVICE, {
  init,
  compute: (base: Message) => base,
  stdout: (base: Message) => stdout(base),
  stderr: (base: Message) => stderr(base),
});

/** The public `wasi` namespace of API.md. */
export const wasi = {
  init: (base: Message = {}, req: Message = {}, opts: Opts = DEFAULT_OPTS) => Promise.resolve(init(base, req, opts)),
  stdout,
  stderr,
};
