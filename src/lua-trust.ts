/**
 * Trust for Lua snapshots (docs/lua-vm.md, "Trust"). A Lua snapshot holds compiled bytecode, which
 * Lua cannot verify: crafted bytecode can read and write outside the VM. So every snapshot that
 * `LuaVM#snapshot()` returns is sealed with an HMAC-SHA256 under the node's key, and
 * `LuaVM.restore()` accepts only snapshots sealed under that key, unless the caller passes
 * `{ trusted: true }` for one whose origin it vouches for.
 *
 * Layout: the native snapshot, then a 32-byte tag (HMAC-SHA256 of the native snapshot under the
 * key), then the 8 bytes `hb-seal1`.
 *
 * The key is process-wide (shared with worker threads through the native addon): random for each
 * process unless set with `setLuaSnapshotKey()` or the `HB_RUNTIMES_SNAPSHOT_KEY` environment
 * variable (hex, at least 16 bytes), which a node sets to restore its own snapshots after a restart.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { badArg, SnapshotError } from './errors';
import { native } from './native';

const MARK = Buffer.from('hb-seal1');
const TAG_BYTES = 32;
/** Bytes a seal adds to a native snapshot. */
export const SEAL_BYTES = TAG_BYTES + MARK.length;
const MIN_KEY_BYTES = 16;

// This thread's proposal for the process key (used if no thread has set one yet). The key itself
// is read from the addon each time, so a key set on another thread applies here too.
let candidate: Buffer | undefined;

function envKey(): Buffer | undefined {
  const hex = process.env.HB_RUNTIMES_SNAPSHOT_KEY;
  if (hex === undefined || hex === '') return undefined;
  if (!/^([0-9a-fA-F]{2})+$/.test(hex) || hex.length < 2 * MIN_KEY_BYTES) {
    throw badArg(`HB_RUNTIMES_SNAPSHOT_KEY must be at least ${MIN_KEY_BYTES} bytes in hex`);
  }
  return Buffer.from(hex, 'hex');
}

function nodeKey(): Buffer {
  candidate ??= envKey() ?? randomBytes(32);
  return native.snapshotKey(candidate);
}

/**
 * Sets the key that seals and authenticates Lua snapshots in this process (all threads), e.g.
 * derived from the node's wallet so that its checkpoints restore after a restart. At least 16 bytes.
 */
export function setLuaSnapshotKey(k: Uint8Array): void {
  if (!(k instanceof Uint8Array) || k.length < MIN_KEY_BYTES) throw badArg(`setLuaSnapshotKey(key): key must be a Uint8Array of at least ${MIN_KEY_BYTES} bytes`);
  native.snapshotKey(Uint8Array.from(k), true);
}

function tagOf(body: Uint8Array): Buffer {
  return createHmac('sha256', nodeKey()).update(body).digest();
}

/**
 * Seals in place: `blob` is a native snapshot followed by SEAL_BYTES of room (the native
 * `snapshot(SEAL_BYTES)`), which receive the tag and the mark.
 */
export function sealInPlace(blob: Buffer): Buffer {
  const n = blob.length - SEAL_BYTES;
  tagOf(blob.subarray(0, n)).copy(blob, n);
  MARK.copy(blob, n + TAG_BYTES);
  return blob;
}

/** True when `bytes` ends with a seal (whatever its key). */
function sealed(bytes: Uint8Array): boolean {
  return bytes.length >= SEAL_BYTES && Buffer.from(bytes.buffer, bytes.byteOffset + bytes.length - MARK.length, MARK.length).equals(MARK);
}

/**
 * The native snapshot inside `bytes`: its seal checked under the node key, or, with `trusted`,
 * taken as it is (sealed or not). Anything else is refused with a SnapshotError (403).
 */
export function unseal(bytes: Uint8Array, trusted: boolean): Uint8Array {
  const isSealed = sealed(bytes);
  const body = isSealed ? bytes.subarray(0, bytes.length - SEAL_BYTES) : bytes;
  // The format's own checks are safe on any input (nothing is created): a damaged or foreign blob
  // gets their precise message.
  native.LuaVM.check(body);
  if (trusted) return body;
  if (!isSealed) {
    throw new SnapshotError(
      'untrusted snapshot: it is not sealed by this node (restore it with { trusted: true } only if you trust where it came from)',
      { status: 403, code: 'ERR_SNAPSHOT_UNTRUSTED' },
    );
  }
  const tag = bytes.subarray(body.length, body.length + TAG_BYTES);
  if (!timingSafeEqual(tagOf(body), tag)) {
    throw new SnapshotError(
      "untrusted snapshot: its seal does not match this node's key (altered, or sealed by another node; restore it with { trusted: true } only if you trust where it came from)",
      { status: 403, code: 'ERR_SNAPSHOT_UNTRUSTED' },
    );
  }
  return body;
}

/**
 * A snapshot sealed elsewhere (another node's key), sealed again under this node's key: for a
 * snapshot whose origin the caller has verified otherwise (a signed checkpoint from a trusted
 * signer). Its format is checked as `unseal` checks it.
 */
export function reseal(bytes: Uint8Array): Buffer {
  const body = unseal(bytes, true);
  const out = Buffer.alloc(body.length + SEAL_BYTES);
  out.set(body);
  return sealInPlace(out);
}
