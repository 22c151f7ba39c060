/**
 * Checkpoints: a process's state at a slot, signed, for `POST /snapshot/:process` (made) and
 * `POST /state` (loaded, on this node or a fresh one). A checkpoint is an ANS-104 data item with
 * the tags the legacy CU puts on the checkpoints it uploads (`Type: Checkpoint`, `Process`,
 * `Module`, `Epoch`, `Nonce` (the slot), `Timestamp`, `Block-Height`, `Hash-Chain`, `SHA-256`,
 * `Content-Encoding: gzip`) plus `Message` (the ID of the message at that slot). Its data,
 * gzipped, is this package's own: a header line, the process record (spawn item and tags: a node
 * that never saw the process can carry it on) and the engine's state bytes.
 *
 * Two forms are accepted by `POST /state`: the item itself (`Content-Type: application/ans104`),
 * or its data as the body with the tags as headers plus `signature` and `owner` (what
 * `checkpointHeaders` gives). Both are verified, and the signer must be trusted: this node's
 * wallet (a fleet's shared one) or an address given with `--checkpoint-authority`. A state is
 * never loaded from an unsigned or untrusted request.
 */

import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import { AoError } from '../errors';
import { itemBytes, rsaItemParts, tagValue, unauthorized, verifyItem, type ItemSigner, type SignedItem, type Tag } from './signing';
import type { ProcessRecord } from './store';

const gzip = promisify(zlib.gzip);
const gunzip = promisify(zlib.gunzip);

export const ANS104 = 'application/ans104';
const MAGIC = Buffer.from('hb-runtimes checkpoint 1\n');
/** Largest state a checkpoint may inflate to. */
export const MAX_CHECKPOINT_BYTES = 1 << 30;

/** The tags of a checkpoint in the order they are signed; the header form rebuilds them in it. */
const TAG_ORDER = ['Data-Protocol', 'Variant', 'Type', 'Process', 'Module', 'Epoch', 'Nonce', 'Message', 'Timestamp', 'Block-Height', 'Hash-Chain', 'SHA-256', 'Content-Type', 'Content-Encoding'];
const FIXED: Record<string, string> = {
  'Data-Protocol': 'ao',
  Variant: 'ao.TN.1',
  Type: 'Checkpoint',
  Epoch: '0',
  'Content-Type': 'application/octet-stream',
  'Content-Encoding': 'gzip',
};

export interface Checkpoint {
  id: string;
  signer: string;
  process: string;
  module: string;
  slot: number;
  message: string;
  timestamp: number;
  blockHeight: number;
  hashChain: string;
  record: ProcessRecord;
  state: Uint8Array;
}

function bad(message: string): AoError {
  return new AoError(message, { status: 400, code: 'ERR_BAD_CHECKPOINT' });
}

/** What a checkpoint describes. */
export interface CheckpointOf {
  record: ProcessRecord;
  slot: number;
  message: string;
  timestamp: number;
  blockHeight: number;
  hashChain: string;
  state: Uint8Array;
}

/** A signed checkpoint item. */
export async function makeCheckpoint(signer: ItemSigner, c: CheckpointOf): Promise<{ id: string; raw: Buffer; tags: Tag[] }> {
  const header = Buffer.from(JSON.stringify(c.record));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(header.length);
  const content = Buffer.concat([MAGIC, len, header, c.state]);
  const values: Record<string, string> = {
    ...FIXED,
    Process: c.record.id,
    Module: c.record.module,
    Nonce: String(c.slot),
    Message: c.message,
    Timestamp: String(c.timestamp),
    'Block-Height': String(c.blockHeight),
    'Hash-Chain': c.hashChain,
    'SHA-256': createHash('sha256').update(content).digest('base64url'),
  };
  const tags = TAG_ORDER.map((name) => ({ name, value: values[name] }));
  // Level 1: a fourth of level 6's time on AOS memories (mostly zeros), for a slightly larger item.
  const { id, raw } = await signer.sign(await gzip(content, { level: 1 }), tags);
  return { id, raw, tags };
}

/** The header form of a checkpoint item: its tags (lower case) and its signature, owner and ID. */
export function checkpointHeaders(item: { id: string; raw: Buffer; tags: Tag[] }, signer: ItemSigner): Record<string, string> {
  const h: Record<string, string> = {};
  for (const t of item.tags) if (!(t.name in FIXED)) h[t.name.toLowerCase()] = t.value;
  const parts = rsaItemParts(item.raw)!;
  h.id = item.id;
  h.signature = parts.signature;
  h.owner = parts.owner;
  h['committed-by'] = signer.address;
  return h;
}

/** The item a header-form request describes (its bytes, to verify). */
function itemFromHeaders(headers: Record<string, string | string[] | undefined>, body: Buffer): Buffer {
  const get = (name: string): string | undefined => {
    const v = headers[name.toLowerCase()];
    return Array.isArray(v) ? v[0] : v;
  };
  const signature = get('signature');
  const owner = get('owner');
  if (!signature || !owner) {
    throw unauthorized("a checkpoint must be signed: send the ANS-104 item (Content-Type: application/ans104), or its data with its tags and the 'signature' and 'owner' headers");
  }
  const tags = TAG_ORDER.map((name) => {
    const value = FIXED[name] ?? get(name);
    if (value === undefined) throw bad(`the checkpoint has no '${name.toLowerCase()}' header`);
    return { name, value };
  });
  try {
    return itemBytes(body, tags, owner, signature);
  } catch (e) {
    throw unauthorized(`the checkpoint's owner or signature is malformed: ${(e as Error).message}`);
  }
}

function int(tags: Tag[], name: string): number {
  const v = tagValue(tags, name);
  if (v === undefined || !/^[0-9]{1,16}$/.test(v)) throw bad(`the checkpoint's '${name}' must be a non-negative integer, got '${v ?? ''}'`);
  return Number(v);
}

/** Reads, verifies and unpacks a checkpoint posted to `POST /state`. */
export async function readCheckpoint(contentType: string, headers: Record<string, string | string[] | undefined>, body: Buffer, trusted: Set<string>): Promise<Checkpoint> {
  let item: SignedItem;
  if (contentType === ANS104) item = await verifyItem(body);
  else item = await verifyItem(itemFromHeaders(headers, body));
  if (!trusted.has(item.owner)) throw new AoError(`the checkpoint is signed by ${item.owner}, which this node does not trust (see --checkpoint-authority)`, { status: 403, code: 'ERR_UNTRUSTED' });
  if (tagValue(item.tags, 'Type') !== 'Checkpoint') throw bad("the item is not a checkpoint (its 'Type' is not 'Checkpoint')");
  let content: Buffer;
  try {
    content = tagValue(item.tags, 'Content-Encoding') === 'gzip' ? await gunzip(item.data, { maxOutputLength: MAX_CHECKPOINT_BYTES }) : item.data;
  } catch (e) {
    throw bad(`the checkpoint's data does not inflate: ${(e as Error).message}`);
  }
  if (createHash('sha256').update(content).digest('base64url') !== tagValue(item.tags, 'SHA-256')) throw bad("the checkpoint's data does not match its SHA-256 tag");
  if (content.length < MAGIC.length + 4 || !content.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw bad('the checkpoint was not made by hb-runtimes (a legacy CU memory image cannot be loaded into these engines)');
  }
  const len = content.readUInt32BE(MAGIC.length);
  const start = MAGIC.length + 4;
  if (start + len > content.length) throw bad('the checkpoint is truncated');
  let record: ProcessRecord;
  try {
    record = JSON.parse(content.subarray(start, start + len).toString('utf8')) as ProcessRecord;
  } catch {
    throw bad("the checkpoint's process record is not JSON");
  }
  const process = tagValue(item.tags, 'Process') ?? '';
  if (record.id !== process || record.module !== tagValue(item.tags, 'Module')) throw bad("the checkpoint's process record does not match its Process and Module tags");
  return {
    id: item.id,
    signer: item.owner,
    process,
    module: record.module,
    slot: int(item.tags, 'Nonce'),
    message: tagValue(item.tags, 'Message') ?? '',
    timestamp: int(item.tags, 'Timestamp'),
    blockHeight: int(item.tags, 'Block-Height'),
    hashChain: tagValue(item.tags, 'Hash-Chain') ?? '',
    record,
    state: content.subarray(start + len),
  };
}
