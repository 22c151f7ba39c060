/**
 * Loading WebAssembly images as devices receive them: legacy exception handling translated once,
 * compiled modules cached by the SHA-256 of the image the user passed.
 *
 * AOS images built by emscripten use the legacy exception opcodes (`try`/`catch`/`rethrow`), which
 * Wasmtime does not run. Such images are translated with Binaryen's `translate-to-exnref` pass
 * (the `binaryen` npm package) to the standard exception-handling form, once per image and
 * process (and once per machine with a cache directory). SPEC decision 4.
 *
 * A memory64 whose declared maximum is below 4 GiB (AOS declares 2 GiB) is then lowered to a
 * 32-bit memory by src/wasm-lower.ts, keeping every out-of-bounds access a trap with the same
 * code and message (`lowerMemory64: false` turns it off). Wasmtime bounds a 32-bit memory with
 * guard pages instead of explicit checks, which is most of memory64's cost (docs/wasm.md).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from './atomic-file';
import { WasmError } from './errors';
import { LOWER_VERSION, lowerMemory64 } from './wasm-lower';
import { WasmModule, imageHash, markMemory64Lowered, type CompileOptions } from './wasm';

export interface LoadImageOptions extends CompileOptions {
  /**
   * Runs a memory64 whose declared maximum is below 4 GiB on a 32-bit memory, with the same
   * results and traps (default true; never with `fuel`, whose counts would change; docs/wasm.md
   * "memory64 lowering").
   */
  lowerMemory64?: boolean;
}

const loaded = new Map<string, WasmModule>();
const translating = new Map<string, Promise<Uint8Array>>();


/** Binaryen features for AOS images (SPEC §0.5; not --all-features, whose output Wasmtime rejects). */
function features(binaryen: any): number {
  const F = binaryen.Features;
  return (
    F.ExceptionHandling |
    F.Memory64 |
    F.BulkMemory |
    F.SignExt |
    F.MutableGlobals |
    F.NontrappingFPToInt |
    F.ReferenceTypes |
    F.Multivalue
  );
}

/** Translates legacy exception opcodes to the standard (exnref) form. */
export async function translateLegacyExceptions(image: Uint8Array): Promise<Uint8Array> {
  // binaryen is an ES module with top-level await; under module: node16 tsc keeps this a real
  // dynamic import in the CommonJS build.
  const { default: binaryen } = (await import('binaryen')) as { default: any };
  const mod = binaryen.readBinary(image);
  try {
    mod.setFeatures(features(binaryen));
    mod.runPasses(['translate-to-exnref']);
    return mod.emitBinary();
  } finally {
    mod.dispose();
  }
}

function usesLegacyExceptions(err: unknown): boolean {
  return err instanceof WasmError && /legacy_exceptions feature required/.test(err.message);
}

/**
 * Compiles an image, translating legacy exception handling when the engine reports it and
 * lowering its memory64 when it qualifies. The result is cached by the hash of `image`, the
 * compile options and the lowering version. With `cacheDir`, the disk keeps the translated image
 * (`<sha256>.exnref.wasm`), the lowered one (`<sha256>.lower<version>.bin`: the SHA-256 of the
 * unlowered image, then the lowered image) and the lowered module's compiled code, named by the
 * user's image alone (`<sha256>-L<version>-<profile>.wasmtime-<version>.cwasm`), so that a hit
 * hashes `image` once and maps that code, reading 32 bytes of the `.bin` for the module's hash.
 * A lowered module's `hash` is the unlowered image's, so that snapshots move between lowered and
 * unlowered instances.
 */
export async function loadImage(image: Uint8Array, opts: LoadImageOptions = {}): Promise<WasmModule> {
  const { lowerMemory64, ...copts } = opts;
  // Fuel counts instructions, and the lowering's guards are instructions: a metered module keeps
  // its memory64 so that it burns the same fuel as on any other CU.
  const lower = lowerMemory64 !== false && !copts.fuel;
  const hex = imageHash(image).toString('hex');
  const key = `${hex}-${copts.fuel ? 1 : 0}-${copts.spectreMitigation === false ? 1 : 0}-${copts.interruptible === false ? 1 : 0}-L${lower ? LOWER_VERSION : 0}`;
  const hit = loaded.get(key);
  if (hit && !hit.disposed) return hit;
  const dir = copts.cacheDir;
  let module = lower && dir ? mappedLowered(hex, dir, copts) : undefined;
  if (!module) {
    const stored = lower ? storedLowered(hex, dir) : undefined;
    if (stored) {
      try {
        module = WasmModule.compile(stored.subarray(32), loweredOptions(copts), Buffer.from(stored.subarray(0, 32)));
        markMemory64Lowered(module);
      } catch {
        module = undefined; // a damaged entry: lowered again and replaced below
      }
    }
    if (!module) {
      try {
        module = lower ? lowerAndCompile(image, hex, copts) : WasmModule.compile(image, copts);
      } catch (err) {
        if (!usesLegacyExceptions(err)) throw err;
        const translated = await translatedImage(image, hex, dir);
        module = lower ? lowerAndCompile(translated, hex, copts) : WasmModule.compile(translated, copts);
      }
    }
    if (dir && module.memory64Lowered) module.toCache(dir, loweredName(hex));
  }
  loaded.set(key, module);
  return module;
}

/** Lowers `bytes` when it qualifies and compiles it (`hex`, the user's image hash, names the disk cache). */
function lowerAndCompile(bytes: Uint8Array, hex: string, opts: CompileOptions): WasmModule {
  const out = lowerMemory64(bytes);
  if (!out.lowered) return WasmModule.compile(bytes, opts);
  const m = compileLowered(out.bytes, bytes, opts);
  if (m.memory64Lowered) storeLowered(hex, opts.cacheDir, Buffer.concat([imageHash(bytes), out.bytes]));
  return m;
}

/**
 * Compiles a lowered image. Should the engine refuse it, `original` is compiled instead: its own
 * error (legacy exceptions, say) or module is what the caller gets.
 */
function compileLowered(bytes: Uint8Array, original: Uint8Array, opts: CompileOptions): WasmModule {
  let m: WasmModule;
  try {
    m = WasmModule.compile(bytes, loweredOptions(opts), imageHash(original)); // snapshots bind to the unlowered image
  } catch {
    return WasmModule.compile(original, opts);
  }
  markMemory64Lowered(m);
  return m;
}

const loweredName = (hex: string): string => `${hex}-L${LOWER_VERSION}`;

/**
 * Options for compiling lowered bytes: no `cacheDir`, since loadImage stores the lowered module's
 * code by the user's image (`loweredName`), not also by the lowered bytes' hash.
 */
const loweredOptions = (opts: CompileOptions): CompileOptions => ({ ...opts, cacheDir: undefined });

function loweredFile(hex: string, cacheDir: string): string {
  return path.join(cacheDir, `${hex}.lower${LOWER_VERSION}.bin`);
}

/** The lowered module's compiled code from the disk cache, its hash read from the `.bin`'s first 32 bytes. */
function mappedLowered(hex: string, dir: string, opts: CompileOptions): WasmModule | undefined {
  const hash = Buffer.alloc(32);
  let fd: number;
  try {
    fd = fs.openSync(loweredFile(hex, dir), 'r');
  } catch {
    return undefined;
  }
  try {
    if (fs.readSync(fd, hash, 0, 32, 0) !== 32) return undefined;
  } finally {
    fs.closeSync(fd);
  }
  const m = WasmModule.fromCache(dir, loweredName(hex), hash, opts);
  if (m) markMemory64Lowered(m);
  return m;
}

function storedLowered(hex: string, cacheDir?: string): Uint8Array | undefined {
  const file = cacheDir ? loweredFile(hex, cacheDir) : undefined;
  return file && fs.existsSync(file) ? fs.readFileSync(file) : undefined;
}

function storeLowered(hex: string, cacheDir: string | undefined, bytes: Uint8Array): void {
  if (cacheDir) writeFileAtomic(loweredFile(hex, cacheDir), bytes);
}

async function translatedImage(image: Uint8Array, hex: string, cacheDir?: string): Promise<Uint8Array> {
  const file = cacheDir ? path.join(cacheDir, `${hex}.exnref.wasm`) : undefined;
  if (file && fs.existsSync(file)) return fs.readFileSync(file);
  let pending = translating.get(hex);
  if (!pending) {
    pending = translateLegacyExceptions(image);
    translating.set(hex, pending);
  }
  try {
    const out = await pending;
    if (file) writeFileAtomic(file, out);
    return out;
  } finally {
    translating.delete(hex);
  }
}
