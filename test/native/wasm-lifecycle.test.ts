/** Lifecycle of the native WASM handles across GC, workers and process exit (child processes). */
import { describe, expect, it } from 'vitest';
import { runChild } from '../helpers/child';

// fac(f64) -> f64, made from WAT by wabt (the same source as wasm-instance.test.ts).
const FAC = `const fac = Buffer.from('AGFzbQEAAAABBgFgAXwBfAMCAQAHBwEDZmFjAAAKLgEsACAARAAAAAAAAPA/YwR8RAAAAAAAAPA/BSAAIABEAAAAAAAA8D+hEACiCws=', 'base64');`;

describe('WasmModule and WasmInstance lifecycle', () => {
  it('frees instances collected by GC: RSS stays flat over many created and dropped', () => {
    const r = runChild(
      `${FAC}
      const m = addon.WasmModule.compile(fac);
      // Finalizers run after GC; let them, then read RSS. The first round sets the allocator's
      // high-water mark; the later rounds must not add to it.
      const rss = async () => {
        for (let k = 0; k < 3; k++) { global.gc(); await new Promise((r) => setImmediate(r)); }
        return process.memoryUsage().rss;
      };
      (async () => {
        for (let i = 0; i < 10000; i++) new addon.WasmInstance(m, [], {}).call(0, 3);
        const base = await rss();
        for (let round = 0; round < 3; round++) {
          for (let i = 0; i < 10000; i++) new addon.WasmInstance(m, [], {}).call(0, 3);
          await rss();
        }
        const after = await rss();
        console.log(JSON.stringify({ base, after, growthMB: (after - base) / 1048576 }));
      })();`,
      ['--expose-gc'],
    );
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const { growthMB } = JSON.parse(r.stdout);
    expect(growthMB).toBeLessThan(16);
  });

  it('loads in a worker thread and in four workers at once', () => {
    const r = runChild(`${FAC}
      const { Worker } = require('node:worker_threads');
      const src = ${JSON.stringify(`
        const { parentPort, workerData } = require('node:worker_threads');
        const addon = require(workerData.gyp)(workerData.root);
        addon.setErrorClasses({ AoError: Error });
        const m = addon.WasmModule.compile(Buffer.from(workerData.fac));
        const i = new addon.WasmInstance(m, [], {});
        parentPort.postMessage(i.call(0, workerData.n));
      `)};
      const gyp = require.resolve('node-gyp-build', { paths: [process.cwd()] });
      const run = (n) => new Promise((res, rej) => {
        const w = new Worker(src, { eval: true, workerData: { gyp, root: process.cwd(), fac: [...fac], n } });
        w.once('message', res); w.once('error', rej);
      });
      (async () => {
        const one = await run(5);
        const four = await Promise.all([3, 4, 5, 6].map(run));
        console.log(JSON.stringify({ one, four }));
      })();`);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ one: 120, four: [6, 24, 120, 720] });
  });

  it('exits cleanly with live modules and instances (teardown closes them)', () => {
    const r = runChild(`${FAC}
      const m = addon.WasmModule.compile(fac);
      globalThis.keep = Array.from({ length: 50 }, () => new addon.WasmInstance(m, [], {}));
      console.log('ok');`);
    expect(r).toMatchObject({ status: 0, signal: null, stdout: 'ok\n', stderr: '' });
  });

  it('terminates a worker holding live instances without crashing the process', () => {
    const r = runChild(`${FAC}
      const { Worker } = require('node:worker_threads');
      const gyp = require.resolve('node-gyp-build', { paths: [process.cwd()] });
      const w = new Worker(${JSON.stringify(`
        const { parentPort, workerData } = require('node:worker_threads');
        const addon = require(workerData.gyp)(workerData.root);
        const m = addon.WasmModule.compile(Buffer.from(workerData.fac));
        globalThis.keep = Array.from({ length: 20 }, () => new addon.WasmInstance(m, [], {}));
        parentPort.postMessage('ready');
        setInterval(() => {}, 1000);
      `)}, { eval: true, workerData: { gyp, root: process.cwd(), fac: [...fac] } });
      w.once('message', async () => { await w.terminate(); console.log('terminated'); });`);
    expect(r).toMatchObject({ status: 0, stdout: 'terminated\n', stderr: '' });
  });
});
