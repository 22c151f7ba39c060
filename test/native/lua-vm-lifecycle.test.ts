/** Lifecycle of the native LuaVM across GC, workers and process exit (child processes). */
import { describe, expect, it } from 'vitest';
import { RSS_AFTER_GC, runChild } from '../helpers/child';

describe('LuaVM lifecycle across GC, workers and exit', () => {
  it('frees VMs collected by GC, including VMs whose host functions capture them: RSS stays bounded', () => {
    const r = runChild(
      `${RSS_AFTER_GC}
      const churn = () => {
        for (let i = 0; i < 2000; i++) {
          const vm = new addon.LuaVM({ memoryLimit: 1 << 20 });
          vm.setGlobalFunction('host.self', () => vm.memoryUsed());
          vm.load('t = {} for i = 1, 100 do t[i] = tostring(i) end function f(x) return host.self() + x end', 'm');
          vm.call('f', 1);
        }
      };
      (async () => {
        churn();
        const base = await rss();
        for (let round = 0; round < 3; round++) { churn(); await rss(); }
        const after = await rss();
        console.log(JSON.stringify({ growthMB: (after - base) / 1048576 }));
      })();`,
      ['--expose-gc'],
    );
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout).growthMB).toBeLessThan(100);
  });

  it('a bound caller() outlives its VM safely, and both are freed: RSS stays bounded', () => {
    const r = runChild(
      `${RSS_AFTER_GC}
      (async () => {
        const vm = new addon.LuaVM({});
        vm.load('function add(a, b) return a + b end', 'm');
        const call = vm.caller();
        const first = call('add', 2, 3);
        vm.dispose();
        let closed;
        try { call('add', 1, 1); } catch (e) { closed = e.message; }
        // The function kept, its VM dropped and collected: it throws instead of running.
        let kept = (() => { const v = new addon.LuaVM({}); v.load('function add(a, b) return a + b end', 'm'); return v.caller(); })();
        const before = kept('add', 20, 22);
        await rss();
        let gone;
        try { kept('add', 1, 1); } catch (e) { gone = e.name + ': ' + e.message; }
        kept = undefined;
        const churn = () => {
          for (let i = 0; i < 2000; i++) {
            const v = new addon.LuaVM({ memoryLimit: 1 << 20 });
            v.load('function add(a, b) return a + b end', 'm');
            v.caller()('add', i, 1);
          }
        };
        churn();
        const base = await rss();
        for (let round = 0; round < 3; round++) { churn(); await rss(); }
        const after = await rss();
        console.log(JSON.stringify({ first, closed, before, gone, growthMB: (after - base) / 1048576 }));
      })();`,
      ['--expose-gc'],
    );
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ first: 5, closed: 'LuaVM is closed', before: 42, gone: 'TypeError: LuaVM is closed' });
    expect(out.growthMB).toBeLessThan(100);
  });

  it('loads in a worker thread and in four workers at once', () => {
    const r = runChild(`
      const { Worker } = require('node:worker_threads');
      const src = ${JSON.stringify(`
        const { parentPort, workerData } = require('node:worker_threads');
        const addon = require(workerData.gyp)(workerData.root);
        addon.setErrorClasses({ AoError: Error });
        const vm = new addon.LuaVM({ instructionLimit: 1e7 });
        vm.setGlobalFunction('mul', (a, b) => a * b);
        vm.load('function fac(n) if n <= 1 then return 1 end return mul(n, fac(n - 1)) end', 'w');
        const again = addon.LuaVM.restore(vm.snapshot());
        again.setGlobalFunction('mul', (a, b) => a * b);
        parentPort.postMessage([vm.call('fac', workerData.n), again.call('fac', workerData.n)]); // one number: bare
      `)};
      const gyp = require.resolve('node-gyp-build', { paths: [process.cwd()] });
      const run = (n) => new Promise((res, rej) => {
        const w = new Worker(src, { eval: true, workerData: { gyp, root: process.cwd(), n } });
        w.once('message', res); w.once('error', rej);
      });
      (async () => {
        const one = await run(5);
        const four = await Promise.all([3, 4, 5, 6].map(run));
        console.log(JSON.stringify({ one, four }));
      })();`);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ one: [120, 120], four: [[6, 6], [24, 24], [120, 120], [720, 720]] });
  });

  it('exits cleanly with live VMs (teardown closes them, host functions are not called)', () => {
    const r = runChild(`
      globalThis.keep = Array.from({ length: 50 }, (_, i) => {
        const vm = new addon.LuaVM({ libs: ['io'] });
        vm.setGlobalFunction('shout', () => { console.log('host function called at exit'); });
        vm.load('f = io.tmpfile() f:write("x") data = {n = ' + i + '}', 'm');
        return vm;
      });
      console.log('ok');`);
    expect(r).toMatchObject({ status: 0, signal: null, stdout: 'ok\n', stderr: '' });
  });

  it('terminates a worker holding live VMs without crashing the process', () => {
    const r = runChild(`
      const { Worker } = require('node:worker_threads');
      const gyp = require.resolve('node-gyp-build', { paths: [process.cwd()] });
      const w = new Worker(${JSON.stringify(`
        const { parentPort, workerData } = require('node:worker_threads');
        const addon = require(workerData.gyp)(workerData.root);
        globalThis.keep = Array.from({ length: 20 }, () => new addon.LuaVM());
        parentPort.postMessage('ready');
        setInterval(() => {}, 1000);
      `)}, { eval: true, workerData: { gyp, root: process.cwd() } });
      w.once('message', async () => { await w.terminate(); console.log('terminated'); });`);
    expect(r).toMatchObject({ status: 0, signal: null, stdout: 'terminated\n', stderr: '' });
  });

  it('terminates a worker whose Lua loop keeps calling host functions under pcall', () => {
    const r = runChild(`
      const { Worker } = require('node:worker_threads');
      const gyp = require.resolve('node-gyp-build', { paths: [process.cwd()] });
      const w = new Worker(${JSON.stringify(`
        const { parentPort, workerData } = require('node:worker_threads');
        const addon = require(workerData.gyp)(workerData.root);
        const vm = new addon.LuaVM();
        let n = 0;
        vm.setGlobalFunction('tick', () => { if (++n === 1000) parentPort.postMessage('spinning'); return n; });
        vm.load('while true do pcall(tick) end', 'spin');
      `)}, { eval: true, workerData: { gyp, root: process.cwd() } });
      w.once('message', async () => { await w.terminate(); console.log('terminated'); });`);
    expect(r).toMatchObject({ status: 0, signal: null, stdout: 'terminated\n', stderr: '' });
  });

  it('stops a worker spinning in Lua through its instruction limit, not through terminate()', () => {
    const r = runChild(`
      const { Worker } = require('node:worker_threads');
      const gyp = require.resolve('node-gyp-build', { paths: [process.cwd()] });
      const w = new Worker(${JSON.stringify(`
        const { parentPort, workerData } = require('node:worker_threads');
        const addon = require(workerData.gyp)(workerData.root);
        addon.setErrorClasses({ AoError: Error, LimitError: class LimitError extends Error {} });
        const vm = new addon.LuaVM({ instructionLimit: 5e7 });
        try { vm.load('while true do end', 'spin'); } catch (e) { parentPort.postMessage(e.constructor.name); }
      `)}, { eval: true, workerData: { gyp, root: process.cwd() } });
      w.once('message', (m) => console.log(m));`);
    expect(r).toMatchObject({ status: 0, stdout: 'LimitError\n', stderr: '' });
  });
});
