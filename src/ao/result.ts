/**
 * The status model. Every resolution step yields a `Result`: `ok` (the value), `skip` (stop the
 * current stack pass), `pass` (re-run the stack from its first device) or `error`. Device
 * functions return plain values (meaning `ok`) or a `Result` made with `status(...)`; the public
 * functions resolve with the value (ok, skip, pass) or reject with an `AoError` (error).
 *
 * Error results carry either a `NotFound` (cheap, no stack trace: it is the common "this device
 * lacks that key" case inside stacks) or an `AoError`.
 */

import { AoError } from '../errors';

/** The four statuses of AO-Core. */
export type Status = 'ok' | 'error' | 'skip' | 'pass';

const STATUSES: ReadonlySet<string> = new Set(['ok', 'error', 'skip', 'pass']);

/** A step's outcome. `fault` marks errors that came from a throw or a broken input, not a device's answer. */
export class Result {
  constructor(
    readonly status: Status,
    readonly value: any,
    readonly fault: boolean = false,
  ) {}
}

/** What a device returns to give an explicit status, e.g. `status('skip', msg)` or `status('error', body)`. */
export function status(kind: Status, value?: unknown): Result {
  if (!STATUSES.has(kind)) {
    throw new AoError(`Unknown status '${String(kind)}': expected ok, error, skip or pass`, {
      status: 400,
      code: 'ERR_INVALID_ARG',
    });
  }
  return new Result(kind, value);
}

/** A key that a message (or device) does not have. Turned into a 404 `AoError` at the API boundary. */
export class NotFound {
  constructor(
    readonly key: string,
    readonly device: string,
    readonly reason?: string,
  ) {}

  get message(): string {
    return this.reason !== undefined
      ? `Key '${this.key}' not found: ${this.reason} (device ${this.device})`
      : `Key '${this.key}' not found (device ${this.device})`;
  }

  toError(): AoError {
    return new AoError(this.message, {
      status: 404,
      code: 'ERR_NOT_FOUND',
      key: this.key,
      device: this.device,
    });
  }
}

export function okResult(value: unknown): Result {
  return new Result('ok', value);
}

export function notFound(key: string, device: string, reason?: string): Result {
  return new Result('error', new NotFound(key, device, reason));
}

/** An error result from a broken input or a fault (not a device's own answer). */
export function faultResult(err: AoError): Result {
  return new Result('error', err, true);
}

/** True when an error result means "not found" (a NotFound or a 404 AoError). */
export function isNotFound(r: Result): boolean {
  if (r.status !== 'error') return false;
  const v = r.value;
  return v instanceof NotFound || (v instanceof AoError && v.status === 404);
}

/** The AoError an error result stands for. */
export function errorOf(r: Result): AoError {
  const v = r.value;
  if (v instanceof AoError) return v;
  if (v instanceof NotFound) return v.toError();
  return new AoError(String(v), { status: 500, code: 'ERR_DEVICE_ERROR', body: v });
}

/** A thenable check that never trips on messages (whose `then` would not be a function). */
export function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

/** A value or a promise of it: internal steps stay synchronous until a device goes async. */
export type Maybe<T> = T | Promise<T>;

/** Apply `f` now, or when the promise settles (not named `then`: a module exporting `then` is a thenable). */
export function andThen<T, U>(v: Maybe<T>, f: (x: T) => Maybe<U>): Maybe<U> {
  return v instanceof Promise ? v.then(f) : f(v);
}
