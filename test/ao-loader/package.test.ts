/** The `hb-runtimes/ao-loader` subpath: CommonJS gives the function itself (as @permaweb/ao-loader does), ESM its default. */
import { createRequire } from 'node:module';
import { expect, it } from 'vitest';

const require = createRequire(__filename);

it('require("hb-runtimes/ao-loader") is the AoLoader function, import gives it as default', async () => {
  const cjs = require('hb-runtimes/ao-loader');
  expect(typeof cjs).toBe('function');
  expect(cjs.name).toBe('AoLoader');
  expect(cjs.default).toBe(cjs);
  const esm = await import('hb-runtimes/ao-loader');
  expect(esm.default).toBe(cjs);
  expect(require('hb-runtimes/package.json').exports['./ao-loader']).toEqual({
    types: './lib/ao-loader.d.ts',
    import: './lib/ao-loader.mjs',
    require: './lib/ao-loader.js',
  });
});
