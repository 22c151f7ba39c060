// Lua workloads (lua@5.3a benchmarks): VM-bound library work on hb-runtimes' native Lua 5.3,
// fengari (Lua 5.3 in JS) and wasmoon (Lua 5.4 in WebAssembly), all measured in the same run.
// (Message round trips are in bench/lua.mjs.) Medians, markdown out. Needs lib/.
import { createRequire } from 'node:module';
import { medianMs, table } from './util.mjs';

const require = createRequire(import.meta.url);
const { LuaVM } = require('../lib/lua.js');
const fengari = require('fengari');
const { LuaFactory } = require('wasmoon');

const PROGRAM = `
  function concat1mb() local t = {} for i = 1, 131072 do t[i] = "abcdefgh" end return #table.concat(t) end
  function sort200k() local t = {} local x = 42 for i = 1, 200000 do x = (x * 1103515245 + 12345) % 2147483648 t[i] = x end table.sort(t) return #t end
`;
// ---- hb-runtimes ----
const vm = new LuaVM();
vm.load(PROGRAM, 'bench');
const ours = {
  concat: () => vm.call('concat1mb', [])[0],
  sort: () => vm.call('sort200k', [])[0],
};

// ---- fengari (the C API, transliterated to JS) ----
const { lua, lauxlib, lualib, to_luastring } = fengari;
const L = lauxlib.luaL_newstate();
lualib.luaL_openlibs(L);
if (lauxlib.luaL_dostring(L, to_luastring(PROGRAM)) !== lua.LUA_OK) throw new Error('fengari: program failed');
function fcall(name) {
  lua.lua_getglobal(L, to_luastring(name));
  lua.lua_call(L, 0, 1);
  const r = lua.lua_tonumber(L, -1);
  lua.lua_pop(L, 1);
  return r;
}
const theirsFengari = {
  concat: () => fcall('concat1mb'),
  sort: () => fcall('sort200k'),
};

// ---- wasmoon (its own JS <-> Lua conversion) ----
const engine = await new LuaFactory().createEngine();
await engine.doString(PROGRAM);
const [wConcat, wSort] = ['concat1mb', 'sort200k'].map((n) => engine.global.get(n));
const theirsWasmoon = {
  concat: () => wConcat(),
  sort: () => wSort(),
};

// Same answers everywhere before timing anything.
const impls = [
  ['hb-runtimes', ours],
  ['fengari', theirsFengari],
  ['wasmoon', theirsWasmoon],
];
for (const [name, impl] of impls) {
  if (Number(impl.concat()) !== 1 << 20) throw new Error(`${name}: concat`);
  if (Number(impl.sort()) !== 200000) throw new Error(`${name}: sort`);
}

const rows = [];
for (const [key, label, rounds, per] of [
  ['concat', '1 MB table.concat (131,072 pieces)', 7, 1],
  ['sort', '200k inserts + table.sort', 5, 1],
]) {
  const ms = impls.map(([, impl]) => {
    impl[key]();
    return medianMs(impl[key], rounds);
  });
  const show = (t) => `${(t / per).toFixed(1)} ms`;
  rows.push([label, show(ms[0]), show(ms[1]), show(ms[2]), `${(ms[1] / ms[0]).toFixed(1)}×`, `${(ms[2] / ms[0]).toFixed(1)}×`]);
}
table(`Lua workloads (medians; node ${process.version}, ${process.arch})`, ['benchmark', 'hb-runtimes (native Lua 5.3)', 'fengari 0.1.5', 'wasmoon 1.16.0', 'vs fengari', 'vs wasmoon'], rows);
console.log('\n"vs" columns: how many times faster hb-runtimes is (time of the other / time of hb-runtimes).');
engine.global.close();
