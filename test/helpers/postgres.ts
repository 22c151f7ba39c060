/**
 * PostgreSQL for the tests of the PostgreSQL store (scripts/postgres.js starts a throwaway server
 * from Debian's `postgresql` package). Without one the suites skip with the reason in their
 * name, unless HB_RUNTIMES_REQUIRE_PG=1 (set by `.ci/run`), where they fail instead.
 */
import { describe } from 'vitest';
import { HAVE_SHARED, SHARED_FIXTURES } from './fixtures';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const pg = require('../../scripts/postgres.js') as {
  startTempPostgres(): Promise<{ url: string; serverUrl: string; database(): Promise<string>; stop(): Promise<void> }>;
  unavailable(): string | undefined;
};

export const startTempPostgres = pg.startTempPostgres;
export const PG_UNAVAILABLE = process.env.HB_RUNTIMES_REQUIRE_PG ? undefined : pg.unavailable();

/** A suite that needs PostgreSQL and the shared fixtures. */
export const describePg = (name: string, fn: () => void): void => {
  if (PG_UNAVAILABLE) describe.skip(`${name} (skipped: ${PG_UNAVAILABLE})`, fn);
  else if (!HAVE_SHARED) describe.skip(`${name} (skipped: shared fixtures not found at ${SHARED_FIXTURES})`, fn);
  else describe(name, fn);
};
