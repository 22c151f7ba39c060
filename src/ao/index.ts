/**
 * AO-Core in TypeScript: messages, resolution through devices, private state, hashpaths and the
 * content-addressed cache. See docs/ao-core.md.
 */

export { resolve, resolveStatus, resolveSingleton, get, set, getFirst, keys, as } from './resolve';
export type { StatusValue } from './resolve';
export { privateOf, getPriv, setPriv, resetPriv } from './private';
export { cacheWrite, cacheRead, messageId, MemoryStore, DirectoryStore, defaultStore } from './cache';
export type { Store } from './cache';
export { encode as canonicalEncode, decode as canonicalDecode } from './codec';
export { hashpathOf } from './hashpath';
export { defineDevice } from './device';
export type { Device, DeviceFn, DeviceInfo, HandlerFn, InfoFn } from './device';
export { status } from './result';
export type { Status } from './result';
export { UNSET, isId, isCacheId, isPrivateKey, normalizeKey } from './message';
export type { Message, Value } from './message';
export { pathParts, parseSingleton } from './path';
export type { Opts, HashpathMode } from './opts';
