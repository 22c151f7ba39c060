/** Test fixtures made at test time: WAT compiled with the `wabt` package. */
import wabtInit from 'wabt';

let wabt: Awaited<ReturnType<typeof wabtInit>> | undefined;

/** Compiles WAT text to a binary module (memory64, multi-memory, exceptions and multi-value enabled). */
export async function wat(text: string): Promise<Uint8Array> {
  wabt ??= await wabtInit();
  const mod = wabt.parseWat('test.wat', text, {
    memory64: true,
    exceptions: true,
    multi_value: true,
    bulk_memory: true,
    reference_types: true,
    multi_memory: true,
  });
  try {
    mod.resolveNames();
    mod.validate();
    return new Uint8Array(mod.toBinary({ write_debug_names: true }).buffer);
  } finally {
    mod.destroy();
  }
}

/**
 * Compiles WAT with Binaryen (every feature on): for what wabt cannot parse, such as the GC
 * proposal's reference types (`anyref`, `(ref $t)`, `exnref`).
 */
export async function watAll(text: string): Promise<Uint8Array> {
  const { default: binaryen } = (await import('binaryen')) as { default: any };
  const mod = binaryen.parseText(text);
  try {
    mod.setFeatures(binaryen.Features.All);
    if (!mod.validate()) throw new Error('invalid module');
    return mod.emitBinary();
  } finally {
    mod.dispose();
  }
}
