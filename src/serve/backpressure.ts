/**
 * Backpressure of a `serve` node, per process queue (assigned messages not computed yet):
 *
 * - queue at or above `maxQueue` (default 1,000): a new message for the process is refused with
 *   503 `ERR_BUSY` and `Retry-After`, and nothing is scheduled;
 * - queue at or above half of it: the message is scheduled (durable, as always) and answered
 *   202 instead of 200, with `Retry-After` (when its result is likely ready) and `queue-length`;
 * - a result not computed within the wait (`resultTimeout`): 503 `ERR_NOT_READY` with
 *   `Retry-After`.
 *
 * `Retry-After` is whole seconds, estimated from the queue length times the process's mean
 * evaluation time (metrics.ts), at least 1 and at most 60.
 *
 * Dry runs are rate limited per client IP (`dryRunRateLimit` per minute, default 600; 0 turns it
 * off) with @fastify/rate-limit: 429 `ERR_RATE_LIMIT` with `Retry-After`.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import rateLimit from '@fastify/rate-limit';
import { AoError } from '../errors';
import type { ServeMetrics } from './metrics';
import type { ServedProcess } from './served-process';

export const DEFAULT_MAX_QUEUE = 1000;
export const DEFAULT_DRY_RUN_RATE_LIMIT = 600;

/** An AoError that answers with a `Retry-After` header (the error handler sets it). */
export class RetryLater extends AoError {
  constructor(
    message: string,
    code: string,
    readonly retryAfter: number,
  ) {
    super(message, { status: 503, code });
  }
}

export class Backpressure {
  constructor(
    readonly maxQueue: number,
    private readonly metrics: ServeMetrics,
  ) {
    if (!(Number.isSafeInteger(maxQueue) && maxQueue >= 1)) throw new AoError('maxQueue must be a positive integer', { status: 400, code: 'ERR_BAD_REQUEST' });
  }

  /** Seconds until `queued` more messages of `p` are likely computed. */
  retryAfter(p: ServedProcess, queued = p.queueLength): number {
    const mean = this.metrics.meanEvalSeconds(p.id) ?? 0.01;
    return Math.max(1, Math.min(60, Math.ceil(queued * mean)));
  }

  /** Throws 503 ERR_BUSY when `p`'s queue is full. */
  admit(p: ServedProcess): void {
    const q = p.queueLength;
    if (q >= this.maxQueue) {
      throw new RetryLater(`process ${p.id} has ${q} messages waiting (the limit is ${this.maxQueue}); retry later`, 'ERR_BUSY', this.retryAfter(p));
    }
  }

  /** The status of an accepted message's answer: 202 (with hints) once the queue is half full. */
  accepted(p: ServedProcess, reply: FastifyReply): number {
    const q = p.queueLength;
    if (q < Math.ceil(this.maxQueue / 2)) return 200;
    void reply.header('retry-after', String(this.retryAfter(p))).header('queue-length', String(q));
    return 202;
  }
}

/** Registers the dry-run rate limiter (applied by the `/dry-run` route's config). */
export async function registerRateLimit(app: FastifyInstance, perMinute: number): Promise<void> {
  if (perMinute === 0) return;
  await app.register(rateLimit, {
    global: false,
    max: perMinute,
    timeWindow: 60_000,
    errorResponseBuilder: (_req, ctx) =>
      new AoError(`too many dry runs from this address: ${ctx.max} per minute; retry in ${ctx.after}`, { status: 429, code: 'ERR_RATE_LIMIT' }),
  });
}

/** The `/dry-run` route's options: its rate limit. */
export function dryRunRouteConfig(perMinute: number): { config?: { rateLimit: { max: number; timeWindow: number } } } {
  return perMinute === 0 ? {} : { config: { rateLimit: { max: perMinute, timeWindow: 60_000 } } };
}
