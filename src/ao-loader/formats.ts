/**
 * The `format` option of @permaweb/ao-loader 0.0.49: which emscripten runtime generation an
 * image was built for, whether it is 64-bit, and whether the loader meters it.
 */
import { badArg } from '../errors';

export type Generation = 'emscripten2' | 'emscripten4' | 'wasm64';

export interface Format {
  name: string;
  generation: Generation;
  /** Gas metering injected by the loader (the `-metering` formats). */
  metering: boolean;
  /** emscripten's `getHeapMax()` for the generation. */
  heapMax: number;
  /** The process clock (ms) when the first message arrives: ao-loader's runtime reads it at start-up. */
  clockAtStart: number;
  /** Whether the loader creates `/data` (WeaveDrive's mount point). */
  dataDir: boolean;
}

const E2 = { generation: 'emscripten2', metering: false, heapMax: 524_288_000, clockAtStart: 10_003, dataDir: false } as const;
const E4 = { generation: 'emscripten4', metering: false, heapMax: 4_294_901_760, clockAtStart: 10_003, dataDir: true } as const;
const W64 = { generation: 'wasm64', metering: false, heapMax: 17_179_869_184, clockAtStart: 10_003, dataDir: true } as const;

export const FORMATS: Readonly<Record<string, Omit<Format, 'name'>>> = Object.freeze({
  'wasm32-unknown-emscripten2': E2,
  'wasm32-unknown-emscripten4': E4,
  'wasm32-unknown-emscripten-metering': { ...E4, metering: true },
  'wasm64-unknown-emscripten-draft_2024_02_15': W64,
  'wasm64-unknown-emscripten-draft_2024_10_16-metering': { ...W64, metering: true },
  // Not accepted by ao-loader 0.0.49 (it fails on it), but named by the fixtures' README: the
  // metered variant of the draft_2024_02_15 format.
  'wasm64-unknown-emscripten-draft_2024_02_15-metering': { ...W64, metering: true },
});

/** ao-loader formats with no image to test against; refused with a clear message. */
const UNSUPPORTED = new Set(['wasm32-unknown-emscripten', 'wasm32-unknown-emscripten3']);

export function formatOf(name: unknown): Format {
  const n = name === undefined || name === null ? 'wasm32-unknown-emscripten' : name;
  if (typeof n !== 'string') throw badArg('AoLoader: format must be a string');
  const f = FORMATS[n];
  if (!f) {
    if (UNSUPPORTED.has(n)) throw badArg(`AoLoader: format '${n}' is not supported by hb-runtimes (supported: ${Object.keys(FORMATS).join(', ')})`);
    throw badArg(`AoLoader: unknown format '${n}' (supported: ${Object.keys(FORMATS).join(', ')})`);
  }
  return { name: n, ...f };
}
