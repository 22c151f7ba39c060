import { it } from 'vitest';

/**
 * @permaweb/ao-loader 0.0.49 (the oracle) grows a wasm64 heap with `memory.grow(<Number>)`; the V8
 * of Node 24 (memory64 shipped) requires a BigInt there, so on Node ≥ 24 the oracle fails
 * ("Failed to grow the heap … not enough memory!", then emscripten's Aborted) as soon as a wasm64
 * heap grows. Comparisons with it on wasm64 images therefore run on Node 20 and 22 (CI runs
 * both lanes); on Node 24, test/ao-loader/differential.test.ts proves the oracle fails while ours
 * computes the same sequence.
 */
export const ORACLE_GROWS_WASM64 = Number(process.versions.node.split('.')[0]) < 24;

/** `it` for a comparison with the oracle on `format`; skipped where the oracle cannot run it (above). */
export function itVsOracle(format: string): typeof it {
  return format.startsWith('wasm64') && !ORACLE_GROWS_WASM64 ? it.skip : it;
}
