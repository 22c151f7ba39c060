/**
 * Requests from the pool to a worker and the worker's replies, over the worker's MessagePort
 * (structured clone; checkpoint bytes are transferred from the worker, copied to it).
 */
import { AoError, ERROR_CLASSES } from '../errors';
import type { Assignment, LegacyResult, ProcessDefinition } from '../serve/engine';
import type { ComputeReply } from './aos';

export type Request =
  | { op: 'open'; pid: string; def: ProcessDefinition; checkpoint?: Uint8Array; log: Assignment[]; checkpointEvery: number }
  | { op: 'compute'; pid: string; a: Assignment }
  | { op: 'dryRun'; pid: string; a: Assignment }
  | { op: 'snapshot'; pid: string }
  | { op: 'close'; pid: string }
  /** Testing aid: the worker dies inside the next compute (`process.exit(3)`, an uncaught exception) or hangs in it. */
  | { op: 'crash'; how: 'exit' | 'throw' | 'hang' };

export type Op = Request['op'];

export interface ReplyValues {
  open: { checkpoint?: Uint8Array };
  compute: ComputeReply;
  dryRun: LegacyResult;
  snapshot: Uint8Array;
  close: null;
  crash: null;
}

export interface SerializedError {
  name: string;
  message: string;
  status?: number;
  code?: string;
  limit?: string;
}

export type Reply = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: SerializedError };

export function serializeError(e: unknown): SerializedError {
  const err = e as AoError & { limit?: string };
  return {
    name: typeof err?.name === 'string' ? err.name : 'Error',
    message: typeof err?.message === 'string' ? err.message : String(e),
    ...(typeof err?.status === 'number' ? { status: err.status } : {}),
    ...(typeof err?.code === 'string' ? { code: err.code } : {}),
    ...(typeof err?.limit === 'string' ? { limit: err.limit } : {}),
  };
}

/** The error a worker reported, as the same class on this side. */
export function deserializeError(s: SerializedError): AoError {
  const Cls = (ERROR_CLASSES as Record<string, typeof AoError>)[s.name] ?? AoError;
  return new Cls(s.message, { ...(s.status !== undefined ? { status: s.status } : {}), ...(s.code ? { code: s.code } : {}), ...(s.limit ? { limit: s.limit } : {}) });
}

/** The buffers of `bytes` that can be moved rather than copied (whole, unshared ArrayBuffers). */
export function transferable(bytes: Uint8Array | undefined): ArrayBuffer[] {
  if (!bytes || !(bytes.buffer instanceof ArrayBuffer)) return [];
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? [bytes.buffer] : [];
}
