/** Runs a Node script in a child process (for GC, worker and exit tests) and returns its output. */
import { spawnSync } from 'node:child_process';
import { REPO_ROOT } from './fixtures';

export interface ChildResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** `code` runs as CommonJS with `addon` = the native binding (loaded like native.ts does). */
/** `env`: variables set (or, when undefined, removed) in the child's environment only. */
export function runChild(code: string, nodeArgs: string[] = [], timeoutMs = 120_000, env: Record<string, string | undefined> = {}): ChildResult {
  const prelude =
    `const addon = require(${JSON.stringify(require.resolve('node-gyp-build'))})(${JSON.stringify(REPO_ROOT)});\n` +
    `class AoError extends Error { constructor(m, p = {}) { super(m); Object.assign(this, p); } }\n` +
    `addon.setErrorClasses({ AoError, WasmError: AoError, WasmTrap: AoError, LimitError: AoError, SnapshotError: AoError,` +
    ` LuaError: AoError, LuaSyntaxError: AoError, LuaRuntimeError: AoError, LuaMemoryError: AoError });\n`;
  const childEnv = { ...process.env, ...env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete childEnv[k];
  const r = spawnSync(process.execPath, [...nodeArgs, '-e', prelude + code], { encoding: 'utf8', timeout: timeoutMs, env: childEnv });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** For child scripts run with --expose-gc: `rss()` lets finalizers run after GC, then reads RSS. */
export const RSS_AFTER_GC = `const rss = async () => {
  for (let k = 0; k < 3; k++) { global.gc(); await new Promise((r) => setImmediate(r)); }
  return process.memoryUsage().rss;
};`;
