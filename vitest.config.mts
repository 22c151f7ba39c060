import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Registers the built-in devices (src/ao knows none; the package entry hands them over).
    setupFiles: ['./test/helpers/setup.ts'],
    // Native handles and worker threads: forks isolate a crashing test file from the others.
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ['default', './test/helpers/summary-reporter.ts'],
  },
});
