/**
 * Hashpaths: a cheap chained hash linking a result to the base and request that produced it.
 * With `opts.hashpath === 'update'`, every successful message result carries
 * `priv.hashpath = "<base>/<step>"`:
 *
 * - `step` is the key when the request holds nothing but AO-Core keys (`path`, `hashpath`,
 *   private keys), else the request's message ID;
 * - `base` is the message ID of the base when it has no hashpath yet; when it has one, `P1/P2`,
 *   it is compressed to `b64url(sha256(raw(P1) ++ P2'))`, where `raw` is base64url decoding and
 *   `P2'` is `raw(P2)` when P2 is a 43-character base64url ID, else the UTF-8 bytes of P2.
 *
 * Each step costs one SHA-256 of at most 64 bytes, plus one message ID for a fresh root or a
 * request with extra keys (IDs are cached per object). Nothing is computed in `ignore` mode.
 */

import { messageId, sha256Id } from './cache';
import { copyMessage, isCacheId, isMessage, isPrivateKey, Message } from './message';

/** The hashpath a message carries, if any. */
export function hashpathOf(msg: unknown): string | undefined {
  if (!isMessage(msg)) return undefined;
  const priv = msg.priv;
  if (!isMessage(priv)) return undefined;
  const hp = priv.hashpath;
  return typeof hp === 'string' ? hp : undefined;
}

let scratch = Buffer.allocUnsafe(256);

/** Compress a two-part hashpath `P1/P2` into one 43-character ID. */
export function compressHashpath(hp: string): string {
  const slash = hp.indexOf('/');
  if (slash < 0) return hp;
  const p1 = hp.slice(0, slash);
  const p2 = hp.slice(slash + 1);
  const need = p1.length + 3 * p2.length;
  if (scratch.length < need) scratch = Buffer.allocUnsafe(need);
  let n = scratch.write(p1, 0, 'base64url');
  n += scratch.write(p2, n, isCacheId(p2) ? 'base64url' : 'utf8');
  return sha256Id(scratch.subarray(0, n));
}

function onlyCoreKeys(req: Message): boolean {
  for (const k in req) {
    if (k !== 'path' && k !== 'hashpath' && !isPrivateKey(k) && k.toLowerCase() !== 'path') return false;
  }
  return true;
}

/** The hashpath of the result of resolving `key` (request `req`) on `base`. */
export function nextHashpath(base: unknown, req: Message, key: string): string {
  const prev = hashpathOf(base);
  const left = prev !== undefined ? compressHashpath(prev) : messageId(base);
  const right = onlyCoreKeys(req) ? key : messageId(req);
  return `${left}/${right}`;
}

/** A copy of `msg` whose `priv.hashpath` is `hp`. */
export function withHashpath(msg: Message, hp: string): Message {
  const priv = msg.priv;
  const out = copyMessage(msg);
  if (isMessage(priv)) {
    const p = copyMessage(priv);
    p.hashpath = hp;
    out.priv = p;
  } else {
    out.priv = { hashpath: hp };
  }
  return out;
}

/** A copy of `msg` without `priv.hashpath` (the same object when it has none). */
export function withoutHashpath(msg: Message): Message {
  const priv = msg.priv;
  if (!isMessage(priv) || priv.hashpath === undefined) return msg;
  const { hashpath: _dropped, ...rest } = priv;
  const out = { ...msg };
  if (Object.keys(rest).length === 0) delete out.priv;
  else out.priv = rest;
  return out;
}
