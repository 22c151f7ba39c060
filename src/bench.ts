/**
 * `hb-runtimes bench`: quick benchmarks of an installed copy, without the peers of the full suite
 * (`npm run bench` in a checkout of the repository measures fengari, wasmoon, V8 and ao-loader in
 * the same run). Medians of timed rounds; markdown out.
 */
import { resolve } from './ao/resolve';
import { LuaVM } from './lua';
import { FAC_MODULE, MEMORY_64MIB_MODULE } from './embedded';
import { WasmInstance, WasmModule } from './wasm';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Median seconds per call of `fn`, over `rounds` rounds of `n` calls. */
function perCall(fn: () => unknown, n: number, rounds = 7): number {
  fn();
  const times: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) fn();
    times.push(Number(process.hrtime.bigint() - t0) / 1e9 / n);
  }
  return median(times);
}

async function perCallAsync(fn: () => Promise<unknown>, n: number, rounds = 7): Promise<number> {
  await fn();
  const times: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) await fn();
    times.push(Number(process.hrtime.bigint() - t0) / 1e9 / n);
  }
  return median(times);
}

const rate = (s: number) => (1 / s >= 1e6 ? `${(1 / s / 1e6).toFixed(2)}M/s` : `${(1 / s / 1e3).toFixed(1)}k/s`);
const ms = (s: number) => `${(s * 1000).toFixed(2)} ms`;

export async function quickBench(out: (line: string) => void): Promise<void> {
  const rows: Array<[string, string]> = [];
  const fac = new WasmInstance(WasmModule.compile(FAC_MODULE));
  rows.push(["WasmInstance#call('fac', [5])", rate(perCall(() => fac.call('fac', [5]), 100_000))]);
  fac.dispose();

  const mem = new WasmInstance(WasmModule.compile(MEMORY_64MIB_MODULE));
  mem.memory.write(0, Buffer.alloc(1 << 20, 7));
  let snap = mem.snapshot();
  rows.push(['64 MiB snapshot', ms(perCall(() => (snap = mem.snapshot()), 1, 5))]);
  rows.push(['64 MiB restore (same instance)', ms(perCall(() => mem.restore(snap), 1, 5))]);
  mem.dispose();

  const vm = new LuaVM();
  vm.load('function fib(n) if n < 2 then return n end return fib(n - 1) + fib(n - 2) end function add(a, b) return a + b end', 'bench');
  rows.push(['Lua fib(27)', ms(perCall(() => vm.call('fib', [27]), 1, 5))]);
  rows.push(['JS → Lua calls of add(a, b)', rate(perCall(() => vm.call('add', [1, 2]), 100_000))]);
  vm.dispose();

  const msg = { a: { b: { c: 1 } } };
  rows.push(['AO-Core resolve(msg, "a/b/c")', rate(await perCallAsync(() => resolve(msg, 'a/b/c'), 20_000))]);

  out(`| benchmark (hb-runtimes, node ${process.version}, medians) | result |`);
  out('|---|---|');
  for (const [k, v] of rows) out(`| ${k} | ${v} |`);
}
