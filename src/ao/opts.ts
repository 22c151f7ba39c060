/**
 * Options of every AO-Core call. Unknown keys are allowed and passed through to devices (they see
 * the same object as their third argument); known keys are validated once per options object.
 */

import { AoError } from '../errors';
import type { Store } from './cache';
import { describe } from './message';
import type { Device } from './registry';

/** `update` attaches a hashpath to every message result; `ignore` (the default) leaves it alone. */
export type HashpathMode = 'update' | 'ignore';

export interface Opts {
  /** Hashpath bookkeeping (default `ignore`: hashpaths are opt-in, see docs/ao-core.md). */
  hashpath?: HashpathMode;
  /** Cache store for `cacheWrite`/`cacheRead` and ID bases (default: one process-wide MemoryStore). */
  store?: Store;
  /** Extra devices by `name@version` (case-insensitive), merged over the built-ins. */
  devices?: Record<string, Device>;
  /** Upper bound on stack passes per resolution (default 1000), a guard against endless `pass`. */
  maxPasses?: number;
  /**
   * When set, only these devices (`name@version`, case-insensitive) may be loaded by name; any
   * other name is refused with a 403. lua@5.3a sets it from a base's `device-sandbox`.
   */
  allowedDevices?: readonly string[];
  /** Anything else is handed to devices untouched. */
  [key: string]: unknown;
}

/** The options used when none are given. */
export const DEFAULT_OPTS: Readonly<Opts> = Object.freeze({});

export const DEFAULT_MAX_PASSES = 1000;

const KNOWN = ['hashpath', 'store', 'devices', 'maxPasses', 'allowedDevices'] as const;
const KNOWN_BY_SQUASHED = new Map<string, string>(
  KNOWN.map((k) => [k.toLowerCase().replace(/[-_]/g, ''), k]),
);
const validated = new WeakSet<object>();

function bad(message: string): AoError {
  return new AoError(message, { status: 400, code: 'ERR_INVALID_ARG' });
}

/**
 * Check an options object (once; later calls with the same object are a set lookup). Catches
 * misspelled known options (`hashPath`, `Store`, `max_passes`) and wrong value types.
 */
export function checkOpts(opts: Opts | undefined): Opts {
  if (opts === undefined || opts === DEFAULT_OPTS) return DEFAULT_OPTS;
  if (validated.has(opts)) return opts;
  if (typeof opts !== 'object' || opts === null || Array.isArray(opts)) {
    throw bad(`opts must be an object, got ${opts === null ? 'null' : typeof opts}`);
  }
  for (const k of Object.keys(opts)) {
    const known = KNOWN_BY_SQUASHED.get(k.toLowerCase().replace(/[-_]/g, ''));
    if (known !== undefined && known !== k) throw bad(`Unknown option '${k}': did you mean '${known}'?`);
  }
  const { hashpath, store, devices, maxPasses, allowedDevices } = opts;
  if (allowedDevices !== undefined && !(Array.isArray(allowedDevices) && allowedDevices.every((d) => typeof d === 'string'))) {
    throw bad(`opts.allowedDevices must be a list of 'name@version' strings, got ${describe(allowedDevices)}`);
  }
  if (hashpath !== undefined && hashpath !== 'update' && hashpath !== 'ignore') {
    throw bad(`opts.hashpath must be 'update' or 'ignore', got ${JSON.stringify(hashpath)}`);
  }
  if (
    store !== undefined &&
    (typeof store !== 'object' || store === null || typeof store.read !== 'function' || typeof store.write !== 'function')
  ) {
    throw bad('opts.store must be a store (an object with read(id) and write(id, bytes))');
  }
  if (devices !== undefined) {
    if (typeof devices !== 'object' || devices === null || Array.isArray(devices)) {
      throw bad("opts.devices must be an object mapping 'name@version' to devices");
    }
    for (const [name, dev] of Object.entries(devices)) {
      if (typeof dev !== 'object' || dev === null || Array.isArray(dev)) {
        throw new AoError(`opts.devices['${name}'] must be a device object, got ${describe(dev)}`, {
          status: 400,
          code: 'ERR_INVALID_ARG',
          device: name,
        });
      }
    }
  }
  if (maxPasses !== undefined && !(Number.isSafeInteger(maxPasses) && maxPasses >= 1)) {
    throw bad(`opts.maxPasses must be a positive integer, got ${String(maxPasses)}`);
  }
  validated.add(opts);
  return opts;
}
