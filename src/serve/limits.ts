/**
 * The limits of a served (or pooled) AO process. A deterministic compute limit decides when a
 * message fails, the same on every CU: fuel for WASM (about one unit per instruction), VM steps
 * for Lua. It comes from the process's own `Compute-Limit` tag (AO's), else the host's
 * `limits.computeLimit`, else the default of its kind. `Memory-Limit` (bytes, or AO's `N-kb`,
 * `N-mb`, `N-gb` forms) caps its memory the same way. The wall-clock `timeLimit` (default 10 s)
 * only protects the host: a message it ends is flagged `Nondeterministic`.
 */
import { badArg } from '../errors';
import { DEFAULT_TIME_LIMIT_MS } from '../limits';
import { DEFAULT_LUA_INSTRUCTION_LIMIT } from '../devices/lua';
import type { Tag } from './signing';

/** Fuel per message of a WASM process without `Compute-Limit` (≈ 1.6 s of AOS on a 2-core VM). */
export const DEFAULT_WASM_COMPUTE_LIMIT = 10_000_000_000;
/** Lua steps per message of a Lua process without `Compute-Limit`: lua@5.3a's default (≈ 0.7 s of `while true do end` on a loaded 2-core VM). */
export const DEFAULT_LUA_COMPUTE_LIMIT = DEFAULT_LUA_INSTRUCTION_LIMIT;

export interface ComputeLimits {
  /** Fuel (WASM) or steps (Lua) per message. */
  computeLimit?: number;
  /** Bytes of memory (WASM linear memory, Lua heap). */
  memoryLimit?: number;
  /** Wall-clock milliseconds per message (`Infinity`: none). Machine-dependent. */
  timeLimit?: number;
}

export interface ResolvedLimits {
  computeLimit: number;
  memoryLimit?: number;
  timeLimit: number;
}

const UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3, tb: 1024 ** 4 };

/** `Memory-Limit` as bytes: a plain integer, or `<n>-<unit>` (`512-mb`, `1-gb`). */
export function parseSize(value: string | number, what = 'Memory-Limit'): number {
  if (typeof value === 'number') return positive(value, what);
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*-?\s*([a-z]*)\s*$/i.exec(value);
  const unit = m ? UNITS[(m[2] || 'b').toLowerCase()] : undefined;
  if (!m || unit === undefined) throw badArg(`${what}: '${value}' is not a size (bytes, or e.g. '512-mb', '1-gb')`);
  return positive(Math.floor(Number(m[1]) * unit), what);
}

function positive(n: number, what: string): number {
  if (!Number.isSafeInteger(n) || n <= 0) throw badArg(`${what} must be a positive integer, got ${n}`);
  return n;
}

function tag(tags: Tag[], name: string): string | undefined {
  const lower = name.toLowerCase();
  return tags.find((t) => t.name.toLowerCase() === lower)?.value;
}

/** The limits of a process: its tags first, then the host's, then the defaults of its kind. */
export function limitsFor(def: { kind: 'wasm' | 'lua'; tags: Tag[]; limits?: ComputeLimits }): ResolvedLimits {
  const host = def.limits ?? {};
  const computeTag = tag(def.tags, 'Compute-Limit');
  const memoryTag = tag(def.tags, 'Memory-Limit');
  const computeLimit =
    computeTag !== undefined
      ? positive(Number(computeTag), 'Compute-Limit')
      : host.computeLimit !== undefined
        ? positive(host.computeLimit, 'computeLimit')
        : def.kind === 'wasm'
          ? DEFAULT_WASM_COMPUTE_LIMIT
          : DEFAULT_LUA_COMPUTE_LIMIT;
  const memoryLimit = memoryTag !== undefined ? parseSize(memoryTag) : host.memoryLimit !== undefined ? parseSize(host.memoryLimit, 'memoryLimit') : undefined;
  const timeLimit = host.timeLimit ?? DEFAULT_TIME_LIMIT_MS;
  if (!(timeLimit > 0)) throw badArg(`timeLimit must be a positive number of milliseconds, or Infinity`);
  return { computeLimit, ...(memoryLimit !== undefined ? { memoryLimit } : {}), timeLimit };
}
