/**
 * `GET /metrics`: Prometheus metrics of a `serve` node, with prom-client on a registry of the
 * server's own (several servers in one process do not share counters).
 *
 * Per process (label `process`):
 * - `hb_process_eval_seconds` (histogram): time to compute each message;
 * - `hb_process_messages_total{outcome="ok"|"error"}`: messages computed;
 * - `hb_process_gas_used_total`: the `GasUsed` its results report (what the guest says);
 * - `hb_process_fuel_used_total`: WASM fuel its messages spent (deterministic; Lua: not measured);
 * - `hb_process_memory_bytes`: its guest memory after its last message (WASM linear memory, the
 *   Lua VM's allocation);
 * - `hb_process_state_bytes`: its state's size at its last snapshot (what eviction counts);
 * - `hb_process_snapshot_bytes`: the same, for the snapshot in the store (0 before the first);
 * - `hb_process_queue_length`: assigned messages not computed yet;
 * - `hb_process_resident`: 1 while its engine is in memory, 0 once evicted.
 *
 * Per node: `hb_http_requests_total{method,route,status}`, `hb_http_request_duration_seconds`
 * `{method,route}`, `hb_processes_held`, `hb_evictions_total`, `hb_resident_state_bytes`,
 * `hb_leases_held` (shared store), and prom-client's default process metrics (`process_*`,
 * `nodejs_*`).
 */
import type { FastifyInstance } from 'fastify';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Assignment, Engine, LegacyResult, Usage } from './engine';
import type { EngineFactory, ProcessRegistry } from './registry';

const EVAL_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const HTTP_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class ServeMetrics {
  readonly register = new Registry();
  private readonly evalSeconds: Histogram<'process'>;
  private readonly messages: Counter<'process' | 'outcome'>;
  private readonly gas: Counter<'process'>;
  private readonly fuel: Counter<'process'>;
  /** Guest memory after each process's last message. */
  private readonly memory = new Map<string, number>();
  private readonly requests: Counter<'method' | 'route' | 'status'>;
  private readonly latency: Histogram<'method' | 'route'>;
  /** Exponentially weighted mean evaluation time per process, in seconds (backpressure's estimate). */
  private readonly meanEval = new Map<string, number>();
  private registry?: ProcessRegistry;

  constructor() {
    const register = this.register;
    collectDefaultMetrics({ register });
    this.evalSeconds = new Histogram({ name: 'hb_process_eval_seconds', help: 'Time to compute one message', labelNames: ['process'], buckets: EVAL_BUCKETS, registers: [register] });
    this.messages = new Counter({ name: 'hb_process_messages_total', help: 'Messages computed, by outcome', labelNames: ['process', 'outcome'], registers: [register] });
    this.gas = new Counter({ name: 'hb_process_gas_used_total', help: "GasUsed reported by the process's results", labelNames: ['process'], registers: [register] });
    this.fuel = new Counter({ name: 'hb_process_fuel_used_total', help: 'WASM fuel spent by the process\'s messages (deterministic)', labelNames: ['process'], registers: [register] });
    this.requests = new Counter({ name: 'hb_http_requests_total', help: 'HTTP requests answered', labelNames: ['method', 'route', 'status'], registers: [register] });
    this.latency = new Histogram({ name: 'hb_http_request_duration_seconds', help: 'HTTP request latency', labelNames: ['method', 'route'], buckets: HTTP_BUCKETS, registers: [register] });
    const self = this;
    const perProcess = (name: string, help: string, value: (p: import('./served-process').ServedProcess) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['process'],
        registers: [register],
        collect() {
          this.reset();
          for (const p of self.registry?.processes.values() ?? []) this.set({ process: p.id }, value(p));
        },
      });
    perProcess('hb_process_state_bytes', "The process state's size at its last snapshot", (p) => Math.max(0, p.stateBytes));
    perProcess('hb_process_snapshot_bytes', 'Size of the snapshot in the store (0 before the first)', (p) => (p.snapshotSlot >= 0 ? Math.max(0, p.stateBytes) : 0));
    perProcess('hb_process_memory_bytes', 'Guest memory after its last message (WASM linear memory, Lua VM allocation)', (p) => self.memory.get(p.id) ?? 0);
    perProcess('hb_process_queue_length', 'Assigned messages not computed yet', (p) => Math.max(0, p.queueLength));
    perProcess('hb_process_resident', '1 while the engine is in memory, 0 once evicted', (p) => (p.resident ? 1 : 0));
    const node = (name: string, help: string, value: (r: ProcessRegistry) => number) =>
      new Gauge({
        name,
        help,
        registers: [register],
        collect() {
          if (self.registry) this.set(value(self.registry));
        },
      });
    node('hb_processes_held', 'Processes this node holds', (r) => r.processes.size);
    node('hb_evictions_total', 'Processes evicted under the memory budget', (r) => r.evictions);
    node('hb_resident_state_bytes', 'State bytes of the processes in memory', (r) => r.residentBytes());
    node('hb_leases_held', 'Process leases held (shared store)', (r) => r.leases?.count ?? 0);
  }

  /** Mean evaluation seconds of a process (undefined before its first message). */
  meanEvalSeconds(pid: string): number | undefined {
    return this.meanEval.get(pid);
  }

  /** An engine factory whose engines report each compute here. */
  wrap(factory: EngineFactory): EngineFactory {
    return async (def, snapshot) => new MeteredEngine(await factory(def, snapshot), def.id, this);
  }

  observe(pid: string, seconds: number, result: LegacyResult, usage?: Usage): void {
    this.evalSeconds.observe({ process: pid }, seconds);
    this.messages.inc({ process: pid, outcome: result.Error === undefined ? 'ok' : 'error' });
    if (Number.isFinite(result.GasUsed) && result.GasUsed > 0) this.gas.inc({ process: pid }, result.GasUsed);
    if (usage?.fuel !== undefined && usage.fuel > 0) this.fuel.inc({ process: pid }, usage.fuel);
    if (usage?.memory !== undefined) this.memory.set(pid, usage.memory);
    const prev = this.meanEval.get(pid);
    this.meanEval.set(pid, prev === undefined ? seconds : prev * 0.8 + seconds * 0.2);
  }

  /** Counts requests, serves `GET /metrics`. */
  install(app: FastifyInstance, registry: ProcessRegistry): void {
    this.registry = registry;
    app.addHook('onResponse', async (req, reply) => {
      const route = req.routeOptions.url ?? 'unmatched';
      this.requests.inc({ method: req.method, route, status: String(reply.statusCode) });
      this.latency.observe({ method: req.method, route }, reply.elapsedTime / 1000);
    });
    app.get('/metrics', async (_req, reply) => reply.header('content-type', this.register.contentType).send(await this.register.metrics()));
  }
}

class MeteredEngine implements Engine {
  constructor(
    private readonly inner: Engine,
    private readonly pid: string,
    private readonly metrics: ServeMetrics,
  ) {}
  get kind() {
    return this.inner.kind;
  }
  async compute(a: Assignment): Promise<LegacyResult> {
    const t0 = performance.now();
    const result = await this.inner.compute(a);
    this.metrics.observe(this.pid, (performance.now() - t0) / 1000, result, this.inner.usage);
    return result;
  }
  dryRun(a: Assignment): Promise<LegacyResult> {
    return this.inner.dryRun(a);
  }
  snapshot(): Uint8Array | Promise<Uint8Array> {
    return this.inner.snapshot();
  }
  dispose(): void | Promise<void> {
    return this.inner.dispose();
  }
}
