/**
 * WASI preview1 (`wasi_snapshot_preview1`, and `wasi_unstable`) over a `Vfs`, in TypeScript.
 *
 * All 46 preview1 functions are implemented for two ABIs:
 * - `wasm32`: pointers and sizes are i32 parameters; `size` fields in memory are u32; iovecs are
 *   8 bytes `{u32 buf, u32 len}`; a prestat is 8 bytes `{u8 tag, u32 name_len @4}`.
 * - `wasm64` (emscripten's memory64 ABI, `size_t` = 8 bytes): pointers and sizes are i64
 *   parameters; `size` fields are u64; iovecs are 16 bytes `{u64 buf, u64 len}`; a prestat is 16
 *   bytes `{u8 tag, u64 name_len @8}`; `args_get`/`environ_get` write 8-byte pointers.
 * Every other struct (fdstat, filestat, dirent, subscription, event) is the same in both.
 *
 * Guest faults never escape as host crashes: a pointer or length outside linear memory gives
 * EFAULT (21) with nothing written; `proc_exit` throws `WasiExit` (the caller sees a `WasmTrap`
 * whose `cause` is it); anything else thrown is a host bug and becomes a trap.
 *
 * Determinism (the default): clocks read `startTime + elapsed`, where `elapsed` grows by
 * `clockStep` on each `clock_time_get` and jumps to the deadline when `poll_oneoff` sleeps;
 * `random_get` is a SHA-256 counter-mode stream keyed by `seed`. `clock: 'wall'` and
 * `random: 'os'` switch to the host clock (and real sleeps) and to `crypto.randomFillSync`.
 */
import { badArg } from '../errors';
import type { WasmInstance } from '../wasm';
import { argsCalls } from './args';
import { clockCalls } from './clocks';
import { fdCalls } from './fd';
import { guard, Guest } from './guest';
import { pathCalls } from './path';
import { procCalls } from './proc';
import { randomCalls } from './random';
import { WASI_FUNCTIONS, type WasiAbi, type WasiCalls, type WasiFlavor, type WasiFunction, type WasiFunctionName } from './signatures';
import { WasiState, type CallContext, type WasiCounters, type WasiOptions } from './state';
import type { Vfs } from './vfs';

export { WasiExit, exitCodeOf } from './proc';
export type { WasiCounters, WasiOptions } from './state';
export { WASI_FUNCTIONS, WASI_SIGNATURES, wasiFuncType } from './signatures';
export type { WasiAbi, WasiFlavor, WasiFunction, WasiFunctionName, WasiParam } from './signatures';

/** The call families, each a file of this folder. */
const FAMILIES: ReadonlyArray<(ctx: CallContext) => WasiCalls> = [argsCalls, clockCalls, fdCalls, pathCalls, randomCalls, procCalls];

/**
 * A WASI preview1 environment: file descriptors over a `Vfs`, args, env, clocks and randomness.
 * One object serves one guest instance; `imports()` gives its host functions.
 */
export class WasiPreview1 {
  readonly #st: WasiState;

  constructor(opts: WasiOptions = {}) {
    this.#st = new WasiState(opts);
  }

  get vfs(): Vfs {
    return this.#st.vfs;
  }

  get args(): readonly string[] {
    return this.#st.args;
  }

  get env(): Readonly<Record<string, string>> {
    return this.#st.env;
  }

  /** Set when the guest called `proc_exit`. */
  get exitCode(): number | undefined {
    return this.#st.exitCode;
  }

  set exitCode(code: number | undefined) {
    this.#st.exitCode = code;
  }

  /** Bytes the guest wrote to `/dev/stdout` (a copy; empty if the file is gone). */
  get stdout(): Uint8Array {
    return this.#st.devFile('stdout');
  }

  /** Bytes the guest wrote to `/dev/stderr` (a copy; empty if the file is gone). */
  get stderr(): Uint8Array {
    return this.#st.devFile('stderr');
  }

  /** Position of the deterministic clock and random stream, to resume them after a snapshot. */
  get counters(): WasiCounters {
    return { elapsedNs: this.#st.elapsed, randomBytes: this.#st.drbg?.position ?? 0 };
  }

  /**
   * The 46 host functions for one guest. `getInstance` is called on each use (so the table can
   * be built before the instance exists); `abi` fixes the memory layouts; `flavor: 'unstable'`
   * switches `fd_seek` whence numbering and the filestat / subscription layouts to snapshot 0.
   */
  imports(getInstance: () => WasmInstance, abi: WasiAbi, flavor: WasiFlavor = 'preview1'): Record<WasiFunctionName, WasiFunction> {
    if (typeof getInstance !== 'function') throw badArg('WasiPreview1.imports: getInstance must be a function');
    if (abi !== 'wasm32' && abi !== 'wasm64') throw badArg(`WasiPreview1.imports: abi must be 'wasm32' or 'wasm64'`);
    if (flavor !== 'preview1' && flavor !== 'unstable') throw badArg(`WasiPreview1.imports: flavor must be 'preview1' or 'unstable'`);
    const wide = abi === 'wasm64';
    let cachedFor: WasmInstance | undefined;
    let cached: Guest | undefined;
    const guest = (): Guest => {
      const inst = getInstance();
      if (inst !== cachedFor || !cached) {
        cachedFor = inst;
        cached = new Guest(inst.memory, wide);
      }
      return cached.reset();
    };
    const ctx: CallContext = { st: this.#st, guest, unstable: flavor === 'unstable' };
    const fns: WasiCalls = {};
    for (const family of FAMILIES) Object.assign(fns, family(ctx));
    const out = {} as Record<WasiFunctionName, WasiFunction>;
    for (const name of WASI_FUNCTIONS) out[name] = guard(fns[name]!);
    return out;
  }
}
