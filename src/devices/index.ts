/**
 * The built-in devices, by `name@version`. The registry (src/ao/registry.ts) reads this table;
 * adding a device is one entry here (plus its import).
 */

import type { Device } from '../ao/device';
import { MESSAGE_DEVICE, messageDevice } from './message';
import { MULTIPASS_DEVICE, multipassDevice } from './multipass';
import { STACK_DEVICE, stackDevice } from './stack';
import { TEST_DEVICE, testDevice } from './test-device';

export const BUILTIN_DEVICES: Readonly<Record<string, Device>> = {
  [MESSAGE_DEVICE]: messageDevice,
  [STACK_DEVICE]: stackDevice,
  [MULTIPASS_DEVICE]: multipassDevice,
  [TEST_DEVICE]: testDevice,
};

export { MESSAGE_DEVICE, messageDevice, RESERVED_KEYS } from './message';
export { MULTIPASS_DEVICE, multipassDevice, DEFAULT_MULTIPASS_KEYS } from './multipass';
export { STACK_DEVICE, stackDevice, prefix, inputPrefix, outputPrefix } from './stack';
export { TEST_DEVICE, testDevice, appendDevice, prefixSetDevice } from './test-device';
