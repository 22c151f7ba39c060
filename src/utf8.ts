/**
 * Strict UTF-8 decoding, shared by the canonical codec (src/ao/codec.ts), json-iface's `Data` and
 * WASI path names: invalid bytes throw a TypeError, and a leading U+FEFF is kept (`ignoreBOM`),
 * since in all three it is content, not a byte-order mark.
 */
const strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** `bytes` as text; throws TypeError when they are not valid UTF-8. */
export function decodeUtf8Strict(bytes: Uint8Array): string {
  return strict.decode(bytes);
}
