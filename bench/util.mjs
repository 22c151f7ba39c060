// Shared helpers of the benchmarks: medians over timed rounds, and markdown tables.

/** Runs `fn(iterations)` until each round takes ≥ `minMs`; returns per-round ops/s, median first. */
export function measure(fn, { rounds = 7, minMs = 150, iterations = 1000 } = {}) {
  let n = iterations;
  for (;;) {
    const t0 = process.hrtime.bigint();
    fn(n);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (ms >= minMs / 4) break;
    n *= 4;
  }
  const rates = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = process.hrtime.bigint();
    fn(n);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    rates.push(n / s);
  }
  rates.sort((a, b) => a - b);
  return { median: rates[Math.floor(rates.length / 2)], min: rates[0], max: rates[rates.length - 1], rounds };
}

/**
 * Rates of several variants measured in interleaved rounds (each round runs every variant once),
 * so that a change in the machine's load affects them all alike: `{ name: median ops/s }`.
 * `run(fn)` performs one round of `fn` and returns the number of operations it did.
 */
export function interleaved(variants, run, rounds = 15) {
  const rates = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
  for (let r = 0; r < rounds; r++) {
    for (const [name, fn] of Object.entries(variants)) {
      const t0 = process.hrtime.bigint();
      const ops = run(fn);
      rates[name].push(ops / (Number(process.hrtime.bigint() - t0) / 1e9));
    }
  }
  const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  return Object.fromEntries(Object.entries(rates).map(([k, xs]) => [k, median(xs)]));
}

/** Times `fn()` `rounds` times; returns the median duration in milliseconds. */
export function medianMs(fn, rounds = 9) {
  const times = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = process.hrtime.bigint();
    fn();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

export function fmt(n, digits = 0) {
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return n.toFixed(digits);
}

export function table(title, header, rows) {
  const out = [`\n### ${title}\n`, `| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`];
  for (const r of rows) out.push(`| ${r.join(' | ')} |`);
  console.log(out.join('\n'));
}
