/**
 * Delegation: a server started with `delegate` (CLI `--delegate <url>...`) keeps the MU/SU role
 * for its processes (intake, slots, durable log) and has each slot computed by a remote CU
 * through cu@1.0 `push` (`POST /result/<slot>?process-id=`), routed by process ID over the
 * given CUs. The remote CU gets the module (its signed item, or its bytes), then the spawn item
 * as slot 0, then every message as the signed item the client sent. Pushing a slot again is
 * idempotent on the CU, so after a restart the slots since the last (empty) snapshot are simply
 * pushed again.
 */

import { resolve } from '../ao/resolve';
import { FetchComputeUnitClient, routeFor } from '../devices/cu';
import { failure, legacyResult, type Assignment, type Engine, type LegacyResult, type ProcessDefinition } from './engine';

function parse(results: unknown): LegacyResult {
  const json = (results as { json?: { body?: unknown } } | undefined)?.json?.body;
  if (typeof json !== 'string') throw new Error('the compute unit gave no JSON result');
  return legacyResult(JSON.parse(json) as Partial<LegacyResult>);
}

class RemoteEngine implements Engine {
  constructor(
    readonly kind: ProcessDefinition['kind'],
    private readonly def: ProcessDefinition,
    private readonly units: string[],
    private readonly client: FetchComputeUnitClient,
  ) {}

  private get url(): string {
    return routeFor(this.def.id, { 'compute-units': this.units });
  }

  /** Makes sure the CU has the module (idempotent on the CU). */
  async prepare(): Promise<void> {
    const url = this.url;
    const res = this.def.moduleItem
      ? await fetch(`${url}/`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: Buffer.from(this.def.moduleItem) })
      : await fetch(`${url}/modules`, {
          method: 'POST',
          headers: { 'content-type': this.kind === 'wasm' ? 'application/wasm' : 'application/lua' },
          body: Buffer.from(this.def.moduleBytes),
        });
    if (!res.ok) throw new Error(`compute unit ${url} refused the module: ${res.status} ${await res.text()}`);
  }

  async compute(a: Assignment): Promise<LegacyResult> {
    try {
      const body = a.raw ? Buffer.from(a.raw, 'base64url') : a.message;
      const state = { assignment: { process: this.def.id, slot: a.slot }, 'compute-units': this.units };
      const out = await resolve({ device: 'cu@1.0', body: body as never }, { path: 'push', ...state }, { cuClient: this.client } as never);
      return parse((out as { results?: unknown }).results);
    } catch (e) {
      return failure(e);
    }
  }

  async dryRun(a: Assignment): Promise<LegacyResult> {
    try {
      return legacyResult((await this.client.dryRun(this.url, this.def.id, a.message)) as Partial<LegacyResult>);
    } catch (e) {
      return failure(e);
    }
  }

  snapshot(): Uint8Array {
    return new Uint8Array(0);
  }

  dispose(): void {}
}

/** An engine factory delegating every process to `units` (base URLs of CUs). */
export function remoteEngineFactory(units: string[], timeoutMs = 60_000) {
  const client = new FetchComputeUnitClient(timeoutMs);
  return async (def: ProcessDefinition): Promise<Engine> => {
    const e = new RemoteEngine(def.kind, def, units, client);
    await e.prepare();
    return e;
  };
}
