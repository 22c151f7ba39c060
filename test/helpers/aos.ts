/** AO process definitions and messages for pool tests: aos-2-pure-xs (WASM AOS) and hyper-aos. */
import type { Assignment, ProcessDefinition } from '../../src/serve/engine';
import type { ComputeLimits } from '../../src/serve/limits';
import { sharedFixture } from './fixtures';

export const OWNER = 'O'.repeat(43);

export function aosDef(kind: 'wasm' | 'lua', n: number, limits?: ComputeLimits, tags: Array<{ name: string; value: string }> = []): ProcessDefinition {
  return {
    id: `${kind}-${n}`.padEnd(43, 'P'),
    kind,
    module: 'M'.repeat(43),
    moduleBytes: sharedFixture(kind === 'wasm' ? 'aos-2-pure-xs.wasm' : 'hyper-aos.lua'),
    owner: OWNER,
    tags: [{ name: 'Type', value: 'Process' }, ...tags],
    ...(limits ? { limits } : {}),
  };
}

/** Slot 0: the process's own spawn message. */
export function spawnOf(def: ProcessDefinition): Assignment {
  return { slot: 0, timestamp: 1_000, 'block-height': 0, message: { Id: def.id, Owner: OWNER, From: OWNER, Target: def.id, Data: '', Tags: def.tags } };
}

/** An `Eval` of `code` at `slot`. */
export function evalAt(def: ProcessDefinition, slot: number, code: string): Assignment {
  return {
    slot,
    timestamp: 1_000 + slot,
    'block-height': slot,
    message: { Id: `m${slot}`.padEnd(43, 'x'), Owner: OWNER, From: OWNER, Target: def.id, Data: code, Tags: [{ name: 'Action', value: 'Eval' }] },
  };
}

/** What an Eval answered: its output data, or its error. */
export function dataOf(r: { Output?: unknown; Error?: string }): unknown {
  if (r.Error !== undefined) return { Error: r.Error };
  const out = r.Output as { data?: unknown } | undefined;
  return out?.data;
}
