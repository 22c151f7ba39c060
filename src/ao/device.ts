/**
 * The shape of a device, and `defineDevice`. A leaf module (no imports of devices or the
 * registry), so device files can call `defineDevice` while the registry is still loading.
 */

import type { Opts } from './opts';

/** A device function: `(base, req, opts)`; trailing parameters may be left out. */
export type DeviceFn = (base: any, req: any, opts: Opts) => unknown;
/** A handler or default function: receives the key first. */
export type HandlerFn = (key: string, base: any, req: any, opts: Opts) => unknown;

/** What a device's `info` gives (HyperBEAM §1.4). */
export interface DeviceInfo {
  /** Allow-list of keys this device handles (others go to message@1.0). */
  exports?: readonly string[];
  /** Deny-list of keys, always handled by message@1.0. */
  excludes?: readonly string[];
  /** Called for every exported key, before the device's own functions. */
  handler?: HandlerFn;
  /** Called (function) or dispatched to (device or device name) for keys the device lacks. */
  default?: HandlerFn | Device | string;
}

export type InfoFn = (base: any, opts: Opts) => DeviceInfo | undefined;

/** A device: functions by key (`import-resolver` may also be spelt `import_resolver`) plus `info`. */
export interface Device {
  info?: DeviceInfo | InfoFn;
  [key: string]: any;
}

const DEVICE_ID = Symbol.for('hb-runtimes.ao.deviceId');

/**
 * Name a device: records `id` (lowercased) on it, used in error messages and as its registry key,
 * and returns the same object.
 */
export function defineDevice<T extends Device>(id: string, device: T): T {
  Object.defineProperty(device, DEVICE_ID, { value: id.toLowerCase(), enumerable: false, configurable: true });
  return device;
}

/** The recorded name of a device object, if any. */
export function deviceName(device: unknown): string | undefined {
  if (typeof device !== 'object' || device === null) return undefined;
  return (device as { [DEVICE_ID]?: string })[DEVICE_ID];
}
