/**
 * Devices and their registry. A device is an object of functions `(base, req, opts)`, plus an
 * optional `info` (an object, or a function `(base, opts)` returning one) with `exports`,
 * `excludes`, a `handler` and a `default` (HyperBEAM §1.4). Devices are found by
 * case-insensitive `name@version` in the built-ins merged with `opts.devices`, or given inline as
 * the `device` value of a message.
 *
 * AO-Core knows no device: the built-ins are handed over by `registerBuiltinDevices`, which
 * src/devices/index.ts calls when it loads (the package entry loads it). message@1.0 must be
 * among them: it is dispatch's fallback.
 */

import { AoError } from '../errors';
import { defineDevice, Device, DeviceFn, DeviceInfo, deviceName, InfoFn } from './device';
import { describe, isCacheId, isMessage, normalizeKey } from './message';
import type { Opts } from './opts';

export type { Device, DeviceFn, DeviceInfo, HandlerFn, InfoFn } from './device';

/** A device prepared for dispatch. */
export interface CompiledDevice {
  readonly name: string;
  readonly source: Device;
  /** Functions by normalised key. */
  readonly fns: ReadonlyMap<string, DeviceFn>;
  readonly info: DeviceInfo | InfoFn | undefined;
}

const compiled = new WeakMap<object, CompiledDevice>();

function normalizeDeviceName(name: string): string {
  return name.toLowerCase();
}

/** Prepare a device object for dispatch (cached per object). */
export function compileDevice(device: Device, fallbackName = 'inline device'): CompiledDevice {
  const hit = compiled.get(device);
  if (hit !== undefined) return hit;
  const fns = new Map<string, DeviceFn>();
  // Own functions first, then methods of a class-based device (never Object.prototype's).
  for (let o: object | null = device; o !== null && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
    for (const k of Object.getOwnPropertyNames(o)) {
      if (k === 'info' || k === 'constructor') continue;
      const desc = Object.getOwnPropertyDescriptor(o, k);
      if (desc === undefined || typeof desc.value !== 'function') continue;
      if (o === device && !desc.enumerable) continue;
      const key = normalizeKey(k);
      if (!fns.has(key)) fns.set(key, desc.value);
    }
  }
  // `import_resolver` also answers `import-resolver` (HyperBEAM converts `-` to `_`).
  for (const [k, fn] of [...fns]) {
    if (k.includes('_')) {
      const dashed = k.replace(/_/g, '-');
      if (!fns.has(dashed)) fns.set(dashed, fn);
    }
  }
  const info = device.info;
  if (info !== undefined && typeof info !== 'function' && !isMessage(info)) {
    throw new AoError(`Device '${deviceName(device) ?? fallbackName}' has an invalid info: ${describe(info)}`, {
      status: 500,
      code: 'ERR_DEVICE_FAULT',
      device: deviceName(device) ?? fallbackName,
    });
  }
  const c: CompiledDevice = { name: deviceName(device) ?? fallbackName, source: device, fns, info };
  compiled.set(device, c);
  return c;
}

const FALLBACK_DEVICE = 'message@1.0';

let builtins: Map<string, CompiledDevice> | undefined;
let messageDevice: CompiledDevice | undefined;
let merged = new WeakMap<object, Map<string, CompiledDevice>>();

/**
 * Hand the built-in devices (by `name@version`) to the registry, replacing any earlier table.
 * The table must hold message@1.0. Devices without a recorded name get their table name.
 */
export function registerBuiltinDevices(table: Readonly<Record<string, Device>>): void {
  const m = new Map<string, CompiledDevice>();
  for (const [name, dev] of Object.entries(table)) {
    const id = normalizeDeviceName(name);
    if (deviceName(dev) === undefined) defineDevice(id, dev);
    m.set(id, compileDevice(dev, id));
  }
  const fallback = m.get(FALLBACK_DEVICE);
  if (fallback === undefined) {
    throw new AoError(`registerBuiltinDevices: the built-in devices must include ${FALLBACK_DEVICE}`, {
      status: 500,
      code: 'ERR_DEVICE_FAULT',
      device: FALLBACK_DEVICE,
    });
  }
  builtins = m;
  messageDevice = fallback;
  merged = new WeakMap();
}

function noBuiltins(): AoError {
  return new AoError(
    "No built-in devices are registered: load the package entry ('hb-runtimes') or src/devices, which registers them",
    { status: 500, code: 'ERR_DEVICE_FAULT', device: FALLBACK_DEVICE },
  );
}

function builtinRegistry(): Map<string, CompiledDevice> {
  if (builtins === undefined) throw noBuiltins();
  return builtins;
}

/** The registry for a call: built-ins, overridden and extended by `opts.devices`. */
export function registryFor(opts: Opts): ReadonlyMap<string, CompiledDevice> {
  const extra = opts.devices;
  if (extra === undefined) return builtinRegistry();
  const hit = merged.get(extra);
  if (hit !== undefined) return hit;
  const m = new Map(builtinRegistry());
  // Entries were checked by checkOpts (every public entry point validates its options).
  for (const [name, dev] of Object.entries(extra)) {
    const id = normalizeDeviceName(name);
    m.set(id, compileDevice(dev, id));
  }
  merged.set(extra, m);
  return m;
}

/** The compiled message@1.0 device (dispatch's fallback). */
export function compiledMessageDevice(): CompiledDevice {
  if (messageDevice === undefined) throw noBuiltins();
  return messageDevice;
}

/**
 * The device a `device` value names: a `name@version` string (case-insensitive) or an inline
 * device object. Throws a 404 for unknown names and remote device IDs, a 400 for other values.
 */
export function lookupDevice(value: unknown, opts: Opts, key: string): CompiledDevice {
  if (typeof value === 'string') {
    if (opts.allowedDevices !== undefined && !allowedSet(opts.allowedDevices).has(normalizeDeviceName(value))) {
      throw new AoError(
        `Device '${value}' is not allowed here (resolving key '${key}'; allowed: ${opts.allowedDevices.join(', ') || 'none'})`,
        { status: 403, code: 'ERR_DEVICE_NOT_ALLOWED', key, device: value },
      );
    }
    const reg = registryFor(opts);
    const found = reg.get(value) ?? reg.get(normalizeDeviceName(value));
    if (found !== undefined) return found;
    if (isCacheId(value)) {
      throw new AoError(
        `Device '${value}' not found (resolving key '${key}'): loading remote devices by ID is not supported`,
        { status: 404, code: 'ERR_NOT_FOUND', key, device: value },
      );
    }
    throw new AoError(`Device '${value}' not found (resolving key '${key}')`, {
      status: 404,
      code: 'ERR_NOT_FOUND',
      key,
      device: value,
    });
  }
  if (typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array)) {
    return compileDevice(value as Device);
  }
  throw new AoError(
    `Invalid device value (resolving key '${key}'): expected a 'name@version' string or a device object, got ${describe(value)}`,
    { status: 400, code: 'ERR_BAD_REQUEST', key, device: String(value) },
  );
}

const allowedSets = new WeakMap<readonly string[], ReadonlySet<string>>();

function allowedSet(list: readonly string[]): ReadonlySet<string> {
  let s = allowedSets.get(list);
  if (s === undefined) {
    s = new Set(list.map(normalizeDeviceName));
    allowedSets.set(list, s);
  }
  return s;
}

const keySets = new WeakMap<readonly string[], ReadonlySet<string>>();

/** The normalised key set of an `exports`/`excludes` list (cached per array). */
export function keySet(list: readonly string[], device: string, field: string): ReadonlySet<string> {
  const hit = keySets.get(list);
  if (hit !== undefined) return hit;
  if (!Array.isArray(list)) {
    throw new AoError(`Device '${device}' info.${field} must be a list of keys, got ${describe(list)}`, {
      status: 500,
      code: 'ERR_DEVICE_FAULT',
      device,
    });
  }
  const s = new Set(list.map((k) => normalizeKey(k)));
  keySets.set(list, s);
  return s;
}
