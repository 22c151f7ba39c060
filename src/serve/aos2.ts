/**
 * The AOS-2 JSON forms HyperBEAM speaks to a compute unit (its `dev_scheduler_formats` and
 * `dev_json_iface`), converted to and from serve's legacy messages:
 *
 * - a *JSON struct* of a message: `{Id, Anchor, Owner, From, Tags: [{name, value}], Target, Data,
 *   Signature, PublicKey}`, where `Owner` is the signer's address and `Data` is `null` when the
 *   bytes are not printable;
 * - an *AOS-2 page*: `{page_info: {process, has_next_page, timestamp, block-height, block-hash},
 *   edges: [{cursor: slot, node: {message, assignment}}]}`, the body of `POST /result/:slot`
 *   (`delegated-compute@1.0`) and of a schedule read with `accept=application/aos-2`;
 * - an *assignment struct*: the assignment without its body, its fields as header-case tags
 *   (`Process`, `Slot` (HyperBEAM) or `Nonce` (the legacy SU), `Timestamp`, `Block-Height`,
 *   `Hash-Chain`, ...).
 *
 * The hash chain is HyperBEAM's (`dev_scheduler_server:next_hashchain/2`): the chain after slot
 * N is sha256(chain after N−1 ‖ ID of the message at N), starting from the empty string.
 */

import { createHash } from 'node:crypto';
import { AoError } from '../errors';
import type { Assignment, LegacyMessage } from './engine';
import { rsaItemParts, type Tag } from './signing';

export const AOS2 = 'application/aos-2';

function bad(message: string): AoError {
  return new AoError(message, { status: 400, code: 'ERR_BAD_REQUEST' });
}

/** What an assignment struct says of its slot. */
export interface AssignmentMeta {
  slot?: number;
  timestamp?: number;
  blockHeight?: number;
  hashChain?: string;
}

/** One edge of an AOS-2 page, read. */
export interface Aos2Edge extends AssignmentMeta {
  message: LegacyMessage;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Whether a JSON body is an AOS-2 page (`edges` is a list). */
export function isAos2Page(body: unknown): body is { edges: unknown[] } {
  return isObject(body) && Array.isArray(body.edges);
}

function str(v: unknown): string {
  if (v === undefined || v === null) return '';
  return typeof v === 'string' ? v : String(v);
}

/** Tags of a struct: a list of `{name, value}` (values that are numbers are written as text). */
function tagsOf(v: unknown, where: string): Tag[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw bad(`${where}: 'Tags' must be a list of {name, value}`);
  return v.map((t, i) => {
    if (!isObject(t) || typeof t.name !== 'string' || !['string', 'number', 'boolean'].includes(typeof t.value)) {
      throw bad(`${where}: tag ${i} must be {name, value} with a string name and a string or number value`);
    }
    return { name: t.name, value: String(t.value) };
  });
}

/**
 * A JSON message's `Data` as text: `null` (bytes HyperBEAM could not print: the message is
 * computed without them) and absent are empty, other JSON values their JSON text.
 */
export function dataText(v: unknown): string {
  return typeof v === 'string' ? v : v === undefined || v === null ? '' : JSON.stringify(v);
}

/** A JSON struct (HyperBEAM's `message_to_json_struct`) as a legacy message. */
export function structToLegacy(struct: unknown, where: string, target = ''): LegacyMessage {
  if (!isObject(struct)) throw bad(`${where} must be a JSON object (a message struct)`);
  const id = str(struct.Id);
  if (id === '') throw bad(`${where} has no 'Id'`);
  const owner = str(struct.Owner);
  const from = str(struct.From);
  return {
    Id: id,
    Owner: owner,
    From: from === '' ? owner : from,
    Target: str(struct.Target) || target,
    Anchor: str(struct.Anchor),
    Data: dataText(struct.Data),
    Tags: tagsOf(struct.Tags, where),
  };
}

function tagNumber(tags: Tag[], name: string, where: string): number | undefined {
  const v = tags.find((t) => t.name.toLowerCase() === name.toLowerCase())?.value;
  if (v === undefined || v === '') return undefined;
  if (!/^[0-9]{1,16}$/.test(v)) throw bad(`${where}: '${name}' must be a non-negative integer, got '${v}'`);
  return Number(v);
}

/** Slot, timestamp, height and hash chain from an assignment struct's tags. */
export function assignmentMeta(struct: unknown, where: string): AssignmentMeta {
  if (struct === undefined || struct === null) return {};
  if (!isObject(struct)) throw bad(`${where} must be a JSON object (an assignment struct)`);
  const tags = tagsOf(struct.Tags, where);
  const slot = tagNumber(tags, 'Slot', where) ?? tagNumber(tags, 'Nonce', where);
  const timestamp = tagNumber(tags, 'Timestamp', where);
  const blockHeight = tagNumber(tags, 'Block-Height', where);
  const hashChain = tags.find((t) => t.name.toLowerCase() === 'hash-chain')?.value;
  return {
    ...(slot !== undefined ? { slot } : {}),
    ...(timestamp !== undefined ? { timestamp } : {}),
    ...(blockHeight !== undefined ? { blockHeight } : {}),
    ...(hashChain ? { hashChain } : {}),
  };
}

/** The edges of an AOS-2 page, each with its slot (from its assignment, else its cursor). */
export function readAos2Page(body: { edges: unknown[] }, pid: string): Aos2Edge[] {
  return body.edges.map((e, i) => {
    const where = `edge ${i}`;
    if (!isObject(e) || !isObject(e.node)) throw bad(`${where} must be {cursor, node: {message, assignment}}`);
    const meta = assignmentMeta(e.node.assignment, `${where}: assignment`);
    if (meta.slot === undefined && e.cursor !== undefined && /^[0-9]{1,16}$/.test(String(e.cursor))) meta.slot = Number(e.cursor);
    return { ...meta, message: structToLegacy(e.node.message, `${where}: message`, pid) };
  });
}

/** Signature and public key of a message that came as a signed item (base64url), else empty. */
function itemSignature(raw: string | undefined): { Signature: string; PublicKey: string } {
  const parts = raw ? rsaItemParts(Buffer.from(raw, 'base64url')) : undefined;
  return { Signature: parts?.signature ?? '', PublicKey: parts?.owner ?? '' };
}

/** The JSON struct of a scheduled message. */
export function messageStruct(a: Assignment): Record<string, unknown> {
  const m = a.message;
  return {
    Id: m.Id,
    Anchor: m.Anchor ?? '',
    Owner: m.Owner,
    From: m.From ?? m.Owner,
    Tags: m.Tags,
    Target: m.Target,
    Data: m.Data,
    ...itemSignature(a.raw),
  };
}

/** The assignment struct of a slot, as HyperBEAM's scheduler writes it (plus the legacy `Nonce` and `Message`). */
export function assignmentStruct(pid: string, a: Assignment, server: string, hashChain: string): Record<string, unknown> {
  return {
    Id: createHash('sha256').update(`${pid}/${a.slot}`).digest('base64url'),
    Anchor: '',
    Owner: server,
    From: server,
    Target: '',
    Data: '',
    Signature: '',
    PublicKey: '',
    Tags: [
      { name: 'Block-Height', value: String(a['block-height']) },
      { name: 'Data-Protocol', value: 'ao' },
      { name: 'Epoch', value: '0' },
      { name: 'Hash-Chain', value: hashChain },
      { name: 'Message', value: a.message.Id },
      { name: 'Nonce', value: String(a.slot) },
      { name: 'Path', value: 'compute' },
      { name: 'Process', value: pid },
      { name: 'Slot', value: String(a.slot) },
      { name: 'Timestamp', value: String(a.timestamp) },
      { name: 'Variant', value: 'ao.N.1' },
    ],
  };
}

/** An AOS-2 page of assignments. */
export function aos2Page(
  pid: string,
  assignments: Assignment[],
  more: boolean,
  server: string,
  chainOf: (slot: number) => string,
  now: { timestamp: number; blockHeight: number },
): Record<string, unknown> {
  return {
    page_info: {
      process: pid,
      has_next_page: more,
      timestamp: String(now.timestamp),
      'block-height': String(now.blockHeight),
      'block-hash': Buffer.alloc(32).toString('base64url'),
    },
    edges: assignments.map((a) => ({ cursor: a.slot, node: { message: messageStruct(a), assignment: assignmentStruct(pid, a, server, chainOf(a.slot)) } })),
  };
}

/** The bytes of a message ID in a hash chain: its 32 bytes when it is a base64url ID, else its text. */
function idBytes(id: string): Buffer {
  return /^[A-Za-z0-9_-]{43}$/.test(id) ? Buffer.from(id, 'base64url') : Buffer.from(id, 'utf8');
}

/** The hash chain after a message: sha256(previous chain ‖ message ID), base64url. */
export function nextHashChain(previous: string, messageId: string): string {
  return createHash('sha256').update(Buffer.from(previous, 'base64url')).update(idBytes(messageId)).digest('base64url');
}
