/** Lifecycle of the native WASM handles across GC, workers and process exit (child processes). */
import { describe, expect, it } from 'vitest';
import { RSS_AFTER_GC, runChild } from '../helpers/child';

// fac(f64) -> f64, made from WAT by wabt (the same source as wasm-instance.test.ts).
const FAC = `const fac = Buffer.from('AGFzbQEAAAABBgFgAXwBfAMCAQAHBwEDZmFjAAAKLgEsACAARAAAAAAAAPA/YwR8RAAAAAAAAPA/BSAAIABEAAAAAAAA8D+hEACiCws=', 'base64');`;

// (module (func (export "spin") (loop (br 0)))), made by wabt.
const SPIN = `const spin = Buffer.from('AGFzbQEAAAABBAFgAAADAgEABwgBBHNwaW4AAAoJAQcAA0AMAAsL', 'base64');`;

describe('WasmModule and WasmInstance lifecycle', () => {
  it('frees instances collected by GC: RSS stays flat over many created and dropped', () => {
    const r = runChild(
      `${FAC}
      const m = addon.WasmModule.compile(fac);
      // The first round sets the allocator's high-water mark; the later rounds must not add to it.
      ${RSS_AFTER_GC}
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

  it('a bound caller() outlives its instance safely, and both are freed: RSS stays flat', () => {
    const r = runChild(
      `${FAC}
      const m = addon.WasmModule.compile(fac);
      ${RSS_AFTER_GC}
      (async () => {
        const i = new addon.WasmInstance(m, [], {});
        const call = i.caller();
        const first = call(0, 5);
        i.dispose();
        let closed;
        try { call(0, 5); } catch (e) { closed = e.message; }
        // The function kept, its instance dropped and collected: it throws instead of running.
        let kept = new addon.WasmInstance(m, [], {}).caller();
        const before = kept(0, 4);
        await rss();
        let gone;
        try { kept(0, 4); } catch (e) { gone = e.name + ': ' + e.message; }
        kept = undefined;
        const round = () => { for (let n = 0; n < 10000; n++) { const x = new addon.WasmInstance(m, [], {}); x.caller()(0, 3); } };
        round();
        const base = await rss();
        for (let k = 0; k < 3; k++) { round(); await rss(); }
        const after = await rss();
        console.log(JSON.stringify({ first, closed, before, gone, growthMB: (after - base) / 1048576 }));
      })();`,
      ['--expose-gc'],
    );
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ first: 120, closed: 'WasmInstance is closed', before: 24, gone: 'TypeError: WasmInstance is closed' });
    expect(out.growthMB).toBeLessThan(16);
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

  it('exits on its own after calls with deadlines: the epoch ticker keeps nothing alive', () => {
    const r = runChild(`${SPIN}
      const i = new addon.WasmInstance(addon.WasmModule.compile(spin), [], { timeLimit: 20 });
      try { i.call(0); } catch (e) { console.log(e.limit, e.message); }`);
    expect(r).toMatchObject({ status: 0, signal: null, stdout: 'time call exceeded its time limit of 20 ms\n', stderr: '' });
  });

  it('terminates a worker in the middle of a call with a deadline: the call ends, then the ticker is joined', () => {
    const r = runChild(`${SPIN}
      const { Worker } = require('node:worker_threads');
      const gyp = require.resolve('node-gyp-build', { paths: [process.cwd()] });
      const src = ${JSON.stringify(`
        const { parentPort, workerData } = require('node:worker_threads');
        const addon = require(workerData.gyp)(workerData.root);
        addon.setErrorClasses({ AoError: Error, LimitError: Error, WasmError: Error, WasmTrap: Error });
        const i = new addon.WasmInstance(addon.WasmModule.compile(Buffer.from(workerData.spin)), [], { timeLimit: workerData.ms });
        parentPort.postMessage('calling');
        try { i.call(0); } catch (e) { parentPort.postMessage(e.message); }
      `)};
      const run = (ms, terminate) => new Promise((res, rej) => {
        const w = new Worker(src, { eval: true, workerData: { gyp, root: process.cwd(), spin: [...spin], ms } });
        const seen = [];
        w.on('message', (m) => { seen.push(m); if (terminate && m === 'calling') w.terminate(); });
        w.once('error', rej);
        w.once('exit', (code) => res({ code, seen }));
      });
      (async () => {
        const done = await run(20, false);
        const cut = await run(300, true);
        console.log(JSON.stringify({ done, cut: cut.seen[0] }));
      })();`);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ done: { code: 0, seen: ['calling', 'call exceeded its time limit of 20 ms'] }, cut: 'calling' });
  });
});
