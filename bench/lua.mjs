// LuaVM benchmarks: hb-runtimes' native Lua 5.3 next to fengari (Lua 5.3 in JS) and wasmoon
// (Lua 5.4 in WebAssembly), all measured in the same run. Medians of >= 5 rounds, markdown out.
// Needs the TS build: `npx tsc -p tsconfig.json` (lib/ is generated).
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { LuaVM } = require('../lib/lua.js');
const fengari = require('fengari');
const { LuaFactory } = require('wasmoon');

const ROUNDS = 7;
const CALLS = 100_000;
const FIB_N = 27;
const STR_N = 2_000;
const PROGRAM = `
  function fib(n) if n < 2 then return n end return fib(n - 1) + fib(n - 2) end
  function add(a, b) return a + b end
  function callHost(n) local s = 0 for i = 1, n do s = s + host(i) end return s end
  function strings(n)
    local c = 0
    for i = 1, n do
      local s = string.rep("ab", 50, ",")
      local r, k = s:gsub("a(b)", "%1x")
      c = c + k + #r + (s:find("b,a", 60, true) or 0)
    end
    return c
  end
`;

/** Median of `rounds` timings of `fn()`, in milliseconds (after one warm-up run). */
function medianMs(fn, rounds = ROUNDS) {
  fn();
  const times = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = process.hrtime.bigint();
    fn();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

// ---- hb-runtimes ----
const vm = new LuaVM();
vm.load(PROGRAM, 'bench');
vm.setGlobalFunction('host', (i) => i);
const ours = {
  fib: () => vm.call('fib', [FIB_N]),
  calls: () => {
    for (let i = 0; i < CALLS; i++) vm.call('add', [i, 1]);
  },
  host: () => vm.call('callHost', [CALLS]),
  strings: () => vm.call('strings', [STR_N]),
};

// ---- fengari (the C API, transliterated to JS) ----
const { lua, lauxlib, lualib, to_luastring } = fengari;
const L = lauxlib.luaL_newstate();
lualib.luaL_openlibs(L);
if (lauxlib.luaL_dostring(L, to_luastring(PROGRAM)) !== lua.LUA_OK) throw new Error('fengari: program failed');
lua.lua_pushcfunction(L, (Ls) => {
  lua.lua_pushinteger(Ls, lua.lua_tointeger(Ls, 1));
  return 1;
});
lua.lua_setglobal(L, to_luastring('host'));
const [FIB, ADD, CALL_HOST, STRINGS] = ['fib', 'add', 'callHost', 'strings'].map((s) => to_luastring(s));
function fengariCall(name, a, b) {
  lua.lua_getglobal(L, name);
  lua.lua_pushinteger(L, a);
  const n = b === undefined ? 1 : (lua.lua_pushinteger(L, b), 2);
  lua.lua_call(L, n, 1);
  const r = lua.lua_tointeger(L, -1);
  lua.lua_pop(L, 1);
  return r;
}
const theirsFengari = {
  fib: () => fengariCall(FIB, FIB_N),
  calls: () => {
    for (let i = 0; i < CALLS; i++) fengariCall(ADD, i, 1);
  },
  host: () => fengariCall(CALL_HOST, CALLS),
  strings: () => fengariCall(STRINGS, STR_N),
};

// ---- wasmoon ----
const engine = await new LuaFactory().createEngine();
engine.global.set('host', (i) => i);
await engine.doString(PROGRAM);
const wFib = engine.global.get('fib');
const wAdd = engine.global.get('add');
const wCallHost = engine.global.get('callHost');
const wStrings = engine.global.get('strings');
const theirsWasmoon = {
  fib: () => wFib(FIB_N),
  calls: () => {
    for (let i = 0; i < CALLS; i++) wAdd(i, 1);
  },
  host: () => wCallHost(CALLS),
  strings: () => wStrings(STR_N),
};

// Same answers everywhere before timing anything.
const fib27 = 196418;
for (const [name, impl] of [['hb-runtimes', ours], ['fengari', theirsFengari], ['wasmoon', theirsWasmoon]]) {
  const got = Number(name === 'hb-runtimes' ? impl.fib()[0] : impl.fib());
  if (got !== fib27) throw new Error(`${name}: fib(${FIB_N}) = ${got}`);
}

const rows = [];
const results = {};
for (const [key, label, unit] of [
  ['fib', `fib(${FIB_N}) inside the VM`, 'ms'],
  ['calls', `${CALLS / 1000}k JS→Lua calls of add(a, b)`, 'calls/s'],
  ['host', `${CALLS / 1000}k Lua→JS host function calls`, 'calls/s'],
  ['strings', `${STR_N / 1000}k rounds of string.rep + gsub + find`, 'ms'],
]) {
  const ms = [ours, theirsFengari, theirsWasmoon].map((impl) => medianMs(impl[key], key === 'calls' || key === 'host' ? ROUNDS : 5));
  results[key] = ms;
  const show = (t) => (unit === 'ms' ? `${t.toFixed(1)} ms` : `${((CALLS / t) * 1000 / 1e6).toFixed(2)}M/s`);
  rows.push([label, show(ms[0]), show(ms[1]), show(ms[2]), `${(ms[1] / ms[0]).toFixed(1)}×`, `${(ms[2] / ms[0]).toFixed(1)}×`]);
}

const header = ['benchmark', 'hb-runtimes (native Lua 5.3)', 'fengari 0.1.5', 'wasmoon 1.16.0', 'vs fengari', 'vs wasmoon'];
console.log(`\n### LuaVM (medians of ${ROUNDS} rounds; fib: 5; node ${process.version}, ${process.arch})\n`);
console.log(`| ${header.join(' | ')} |`);
console.log(`|${header.map(() => '---').join('|')}|`);
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
console.log('\n"vs" columns: how many times faster hb-runtimes is (time of the other / time of hb-runtimes).');
engine.global.close();
