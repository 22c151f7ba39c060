/** Small WebAssembly modules embedded in the package (the CLI's default, quick benchmarks). */

/** fac(f64) -> f64, recursive factorial; compiled from WAT (see test/native/wasm-instance.test.ts). */
export const FAC_MODULE = Buffer.from(
  'AGFzbQEAAAABBgFgAXwBfAMCAQAHBwEDZmFjAAAKLgEsACAARAAAAAAAAPA/YwR8RAAAAAAAAPA/BSAAIABEAAAAAAAA8D+hEACiCws=',
  'base64',
);

/** `(module (memory (export "memory") 1024 1024))`: a 64 MiB memory. */
export const MEMORY_64MIB_MODULE = Buffer.from('AGFzbQEAAAAFBgEBgAiACAcKAQZtZW1vcnkCAA==', 'base64');
