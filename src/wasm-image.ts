/**
 * Loading WebAssembly images as devices receive them: legacy exception handling translated once,
 * compiled modules cached by the SHA-256 of the image the user passed.
 *
 * AOS images built by emscripten use the legacy exception opcodes (`try`/`catch`/`rethrow`), which
 * Wasmtime does not run. Such images are translated with Binaryen's `translate-to-exnref` pass
 * (the `binaryen` npm package) to the standard exception-handling form, once per image and
 * process (and once per machine with a cache directory). SPEC decision 4.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { WasmError } from './errors';
import { WasmModule, imageHash, type CompileOptions } from './wasm';

export interface LoadImageOptions extends CompileOptions {}

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
 * Compiles an image, translating legacy exception handling when the engine reports it. The result
 * is cached by the hash of `image` and the compile options (`cacheDir` also keeps the translated
 * image on disk as `<sha256>.exnref.wasm`).
 */
export async function loadImage(image: Uint8Array, opts: LoadImageOptions = {}): Promise<WasmModule> {
  const key = `${imageHash(image).toString('hex')}-${opts.fuel ? 1 : 0}-${opts.spectreMitigation === false ? 1 : 0}-${opts.interruptible === false ? 1 : 0}`;
  const hit = loaded.get(key);
  if (hit && !hit.disposed) return hit;
  let module: WasmModule;
  try {
    module = WasmModule.compile(image, opts);
  } catch (err) {
    if (!usesLegacyExceptions(err)) throw err;
    module = WasmModule.compile(await translatedImage(image, opts.cacheDir), opts);
  }
  loaded.set(key, module);
  return module;
}

async function translatedImage(image: Uint8Array, cacheDir?: string): Promise<Uint8Array> {
  const hex = imageHash(image).toString('hex');
  const file = cacheDir ? path.join(cacheDir, `${hex}.exnref.wasm`) : undefined;
  if (file && fs.existsSync(file)) return fs.readFileSync(file);
  let pending = translating.get(hex);
  if (!pending) {
    pending = translateLegacyExceptions(image);
    translating.set(hex, pending);
  }
  try {
    const out = await pending;
    if (file) {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      const tmp = `${file}.${process.pid}.tmp`;
      fs.writeFileSync(tmp, out);
      fs.renameSync(tmp, file);
    }
    return out;
  } finally {
    translating.delete(hex);
  }
}
