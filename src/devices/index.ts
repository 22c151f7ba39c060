/**
 * The built-in devices, by `name@version`, handed to the registry (src/ao/registry.ts) when this
 * module loads: the one place where AO-Core meets the devices. Adding a device is one entry here
 * (plus its import).
 */

import type { Device } from '../ao/device';
import { registerBuiltinDevices } from '../ao/registry';
import { MESSAGE_DEVICE, messageDevice } from './message';
import { MULTIPASS_DEVICE, multipassDevice } from './multipass';
import { STACK_DEVICE, stackDevice } from './stack';
import { TEST_DEVICE, testDevice } from './test-device';
import { WASM64_DEVICE, wasm64Device } from './wasm-64';
import { JSON_IFACE_DEVICE, jsonIfaceDevice } from './json-iface';
import { WASI_DEVICE, wasiDevice } from './wasi';
import { PROCESS_DEVICE, processDevice } from './process';
import { LUA_DEVICE, luaDevice } from './lua';
import { CU_DEVICE, cuDevice, DELEGATED_COMPUTE_DEVICE, delegatedComputeDevice } from './cu';

export const BUILTIN_DEVICES: Readonly<Record<string, Device>> = {
  [MESSAGE_DEVICE]: messageDevice,
  [STACK_DEVICE]: stackDevice,
  [MULTIPASS_DEVICE]: multipassDevice,
  [TEST_DEVICE]: testDevice,
  [WASM64_DEVICE]: wasm64Device,
  [JSON_IFACE_DEVICE]: jsonIfaceDevice,
  [WASI_DEVICE]: wasiDevice,
  [PROCESS_DEVICE]: processDevice,
  [LUA_DEVICE]: luaDevice,
  [CU_DEVICE]: cuDevice,
  [DELEGATED_COMPUTE_DEVICE]: delegatedComputeDevice,
};

registerBuiltinDevices(BUILTIN_DEVICES);

export { MESSAGE_DEVICE, messageDevice, RESERVED_KEYS } from './message';
export { MULTIPASS_DEVICE, multipassDevice, DEFAULT_MULTIPASS_KEYS } from './multipass';
export { STACK_DEVICE, stackDevice, prefix, inputPrefix, outputPrefix } from './stack';
export { TEST_DEVICE, testDevice, appendDevice, prefixSetDevice } from './test-device';
export { WASM64_DEVICE, wasm64Device, wasm, IMPORT_PROVIDERS, WasmRuntime } from './wasm-64';
export type { ImportProvider, ProvidedImports } from './wasm-64';
export { JSON_IFACE_DEVICE, jsonIfaceDevice, jsonStruct, aosWasmStack } from './json-iface';
export { PROCESS_DEVICE, processDevice } from './process';
export { WASI_DEVICE, wasiDevice, wasi } from './wasi';
export { LUA_DEVICE, luaDevice, lua, aosLuaProcess, rsaCommitment, DEFAULT_LUA_SANDBOX, DEFAULT_LUA_MEMORY_LIMIT, DEFAULT_LUA_INSTRUCTION_LIMIT } from './lua';
export { CU_DEVICE, cuDevice, cu, DELEGATED_COMPUTE_DEVICE, delegatedComputeDevice, FetchComputeUnitClient, COMMIT_NOT_FOUND, cuError } from './cu';
export type { ComputeUnitClient, LegacyJson } from './cu';
