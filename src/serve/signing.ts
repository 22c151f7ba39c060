/**
 * Signing and verification for `hb-runtimes serve`: the server's Arweave JWK (given, or generated
 * into the store), ANS-104 data items parsed and verified with @dha-team/arbundles, and the
 * server's own signed items (commitments).
 */

import { createHash, generateKeyPairSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ArweaveSigner, DataItem } from '@dha-team/arbundles';
import { AoError } from '../errors';
import { writeFileAtomic } from './wal';

/** An Arweave RSA key in JWK form (`kty: RSA`, `n`, `e`, `d`, `p`, `q`, `dp`, `dq`, `qi`). */
type Arbundles = typeof import('@dha-team/arbundles');
let arbundlesModule: Arbundles | undefined;
/** @dha-team/arbundles, loaded on first use (it takes most of a second to load). */
function arbundles(): Arbundles {
  arbundlesModule ??= require('@dha-team/arbundles') as Arbundles;
  return arbundlesModule;
}

export interface Jwk {
  kty: string;
  n: string;
  e: string;
  d?: string;
  [k: string]: unknown;
}

export interface Tag {
  name: string;
  value: string;
}

/** A verified ANS-104 data item, reduced to what the server uses. */
export interface SignedItem {
  id: string;
  /** Arweave address of the signer: base64url(sha256(owner public key)). */
  owner: string;
  /** The signer's public key (base64url), for verification by others. */
  ownerKey: string;
  target: string;
  anchor: string;
  tags: Tag[];
  data: Buffer;
  raw: Buffer;
}

/** The address of a public key modulus (base64url): base64url(sha256(n)). */
export function addressOf(publicKey: string | Uint8Array): string {
  const bytes = typeof publicKey === 'string' ? Buffer.from(publicKey, 'base64url') : publicKey;
  return createHash('sha256').update(bytes).digest('base64url');
}

/** A fresh 4096-bit Arweave key (RSA, e = 65537), as Arweave wallets are. */
export function generateJwk(): Jwk {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 4096, publicExponent: 65537 });
  return privateKey.export({ format: 'jwk' }) as Jwk;
}

function checkJwk(v: unknown, where: string): Jwk {
  const j = v as Jwk;
  if (typeof j !== 'object' || j === null || j.kty !== 'RSA' || typeof j.n !== 'string' || typeof j.d !== 'string') {
    throw new AoError(`${where} is not an Arweave RSA private key in JWK form (kty, n, e, d, ...)`, { status: 400, code: 'ERR_INVALID_ARG' });
  }
  return j;
}

/**
 * The server's key: read from `walletFile` when given, else `<store>/wallet.json`, generated
 * (and written atomically, mode 0600) the first time.
 */
export function loadOrCreateWallet(walletFile: string | undefined, storeDir: string): Jwk {
  if (walletFile !== undefined) return checkJwk(JSON.parse(fs.readFileSync(walletFile, 'utf8')), walletFile);
  const file = path.join(storeDir, 'wallet.json');
  if (fs.existsSync(file)) return checkJwk(JSON.parse(fs.readFileSync(file, 'utf8')), file);
  const jwk = generateJwk();
  writeFileAtomic(file, JSON.stringify(jwk), 0o600);
  return jwk;
}

/** Signs data items with one JWK. */
export class ItemSigner {
  readonly address: string;
  readonly publicKey: string;
  private readonly signer: ArweaveSigner;

  constructor(jwk: Jwk) {
    this.signer = new (arbundles().ArweaveSigner)(jwk as never);
    this.publicKey = jwk.n;
    this.address = addressOf(jwk.n);
  }

  /** A signed ANS-104 item; resolves with its raw bytes and ID. */
  async sign(data: string | Uint8Array, tags: Tag[], target?: string): Promise<{ id: string; raw: Buffer }> {
    const item = arbundles().createData(typeof data === 'string' ? data : Buffer.from(data), this.signer, { tags, ...(target ? { target } : {}) });
    await item.sign(this.signer);
    return { id: item.id, raw: item.getRaw() };
  }
}

/**
 * The bytes of an Arweave-signed (type 1) data item with no target or anchor, from its parts:
 * what a signature given apart from its item (a checkpoint's headers) is verified against.
 */
export function itemBytes(data: Uint8Array, tags: Tag[], ownerKey: string, signature: string): Buffer {
  const owner = Buffer.from(ownerKey, 'base64url');
  const sig = Buffer.from(signature, 'base64url');
  if (owner.length !== 512) throw new Error(`the owner must be a 512-byte RSA modulus, got ${owner.length} bytes`);
  if (sig.length !== 512) throw new Error(`the signature must be 512 bytes, got ${sig.length}`);
  const shape = { publicKey: owner, signatureType: 1, signatureLength: 512, ownerLength: 512 };
  const raw = Buffer.from(arbundles().createData(Buffer.from(data), shape as never, { tags }).getRaw());
  sig.copy(raw, 2);
  return raw;
}

/**
 * The signature and owner (public key) of an Arweave-signed (type 1) item's bytes, base64url;
 * undefined for anything else. `itemBytes` is the inverse.
 */
export function rsaItemParts(raw: Uint8Array): { signature: string; owner: string } | undefined {
  const b = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  if (b.length < 2 + 512 + 512 || b.readUInt16LE(0) !== 1) return undefined;
  return { signature: b.subarray(2, 514).toString('base64url'), owner: b.subarray(514, 1026).toString('base64url') };
}

/** Thrown for bytes that are not a validly signed data item: HTTP 401. */
export function unauthorized(message: string): AoError {
  return new AoError(message, { status: 401, code: 'ERR_UNAUTHORIZED' });
}

/**
 * Parses and verifies an ANS-104 data item. Anything that is not one, is unsigned (a zero
 * signature) or whose signature does not match is a 401 `AoError`.
 */
export async function verifyItem(raw: Uint8Array): Promise<SignedItem> {
  const buf = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  let item: DataItem;
  try {
    item = new (arbundles().DataItem)(buf);
    // The accessors throw on a malformed header: read them all before verifying.
    void item.tags;
    void item.rawData;
  } catch (e) {
    throw unauthorized(`not an ANS-104 data item: ${(e as Error).message.split('\n')[0]}`);
  }
  if (item.signatureType !== 1) throw unauthorized(`unsupported signature type ${item.signatureType} (only Arweave RSA items, type 1)`);
  if (item.rawSignature.every((b) => b === 0)) throw unauthorized('the data item is not signed');
  let ok = false;
  try {
    ok = await quietly(() => arbundles().DataItem.verify(buf));
  } catch {
    ok = false;
  }
  if (!ok) throw unauthorized('the data item signature does not verify');
  return {
    id: item.id,
    owner: addressOf(item.rawOwner),
    ownerKey: item.owner,
    target: item.target ?? '',
    anchor: item.anchor ?? '',
    tags: item.tags.map((t) => ({ name: t.name, value: t.value })),
    data: Buffer.from(item.rawData),
    raw: Buffer.from(buf),
  };
}

let quiet = 0;
let savedWarn: typeof console.warn | undefined;

/**
 * Runs `f` with console.warn silenced: arweave-js warns with a banner for every failed RSA
 * verification, which would let any client write to the server's output. Overlapping calls
 * (verification is asynchronous) share one silencing, undone when the last one ends.
 */
async function quietly<T>(f: () => Promise<T>): Promise<T> {
  if (quiet++ === 0) {
    savedWarn = console.warn;
    console.warn = () => undefined;
  }
  try {
    return await f();
  } finally {
    if (--quiet === 0) console.warn = savedWarn!;
  }
}

/**
 * True when `raw` is a data item validly signed by the key whose address is `address` (or whose
 * modulus is `address`, given as a public key). Never throws.
 */
export async function verifySignedBy(raw: Uint8Array, address: string): Promise<boolean> {
  try {
    const item = await verifyItem(raw);
    return item.owner === address || item.ownerKey === address;
  } catch {
    return false;
  }
}

/** The first value of a tag, by case-insensitive name. */
export function tagValue(tags: Tag[], name: string): string | undefined {
  const lower = name.toLowerCase();
  return tags.find((t) => t.name.toLowerCase() === lower)?.value;
}
