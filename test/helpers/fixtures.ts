/**
 * Third-party fixtures live in `../shared/fixtures` beside the repository (never copied into it).
 * Conformance suites use `describeShared`, which skips with a message naming the missing folder.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe } from 'vitest';

export const REPO_ROOT = path.resolve(__dirname, '..', '..');
export const SHARED_FIXTURES = process.env.HB_SHARED_FIXTURES ?? path.resolve(REPO_ROOT, '..', 'shared', 'fixtures');
export const HAVE_SHARED = fs.existsSync(SHARED_FIXTURES);

if (!HAVE_SHARED) {
  console.warn(`[hb-runtimes tests] ${SHARED_FIXTURES} not found: conformance suites on shared fixtures are skipped`);
}

export function sharedFixture(name: string): Buffer {
  return fs.readFileSync(path.join(SHARED_FIXTURES, name));
}

/** `describe` for suites needing ../shared/fixtures; skipped (with a reason in the name) when absent. */
export const describeShared = (name: string, fn: () => void): void =>
  HAVE_SHARED ? describe(name, fn) : describe.skip(`${name} (skipped: ${SHARED_FIXTURES} not found)`, fn);
