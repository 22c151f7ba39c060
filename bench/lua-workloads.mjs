// Lua workloads (issue: lua@5.3a benchmarks): VM-bound work and message round trips on
// hb-runtimes' native Lua 5.3, fengari (Lua 5.3 in JS) and wasmoon (Lua 5.4 in WebAssembly), all
// measured in the same run. Medians, markdown out. Needs lib/ (`npm run bench` builds it).
import { createRequire } from 'node:module';
import { medianMs, table } from './util.mjs';

const require = createRequire(import.meta.url);
const { LuaVM } = require('../lib/lua.js');
const fengari = require('fengari');
const { LuaFactory } = require('wasmoon');

const PROGRAM = `
  function concat1mb() local t = {} for i = 1, 131072 do t[i] = "abcdefgh" end return #table.concat(t) end
  function sort200k() local t = {} local x = 42 for i = 1, 200000 do x = (x * 1103515245 + 12345) % 2147483648 t[i] = x end table.sort(t) return #t end
  function echo(m) return m end
`;
const ROUND_TRIPS = 10_000;
/** A nested message of 100 keys: 10 groups of 10 entries (numbers, strings, lists). */
const MESSAGE = Object.fromEntries(
  Array.from({ length: 10 }, (_, g) => [
    `group-${g}`,
    Object.fromEntries(Array.from({ length: 10 }, (_, k) => [`key-${k}`, k % 3 === 0 ? k * g : k % 3 === 1 ? `value-${g}-${k}` : [g, k, 'x']])),
  ]),
);

// ---- hb-runtimes ----
const vm = new LuaVM();
vm.load(PROGRAM, 'bench');
const ours = {
  concat: () => vm.call('concat1mb', [])[0],
  sort: () => vm.call('sort200k', [])[0],
  trip: () => {
    let r;
    for (let i = 0; i < ROUND_TRIPS; i++) r = vm.call('echo', [MESSAGE])[0];
    return r;
  },
};

// ---- fengari: values marshalled through its C API, as an embedder would ----
const { lua, lauxlib, lualib, to_luastring, to_jsstring } = fengari;
const L = lauxlib.luaL_newstate();
lualib.luaL_openlibs(L);
if (lauxlib.luaL_dostring(L, to_luastring(PROGRAM)) !== lua.LUA_OK) throw new Error('fengari: program failed');
function fpush(v) {
  if (typeof v === 'number') Number.isInteger(v) ? lua.lua_pushinteger(L, v) : lua.lua_pushnumber(L, v);
  else if (typeof v === 'string') lua.lua_pushstring(L, to_luastring(v));
  else if (Array.isArray(v)) {
    lua.lua_createtable(L, v.length, 0);
    v.forEach((x, i) => {
      fpush(x);
      lua.lua_rawseti(L, -2, i + 1);
    });
  } else {
    lua.lua_createtable(L, 0, 8);
    for (const k of Object.keys(v)) {
      fpush(v[k]);
      lua.lua_setfield(L, -2, to_luastring(k));
    }
  }
}
function fread(i) {
  const t = lua.lua_type(L, i);
  if (t === lua.LUA_TNUMBER) return lua.lua_tonumber(L, i);
  if (t === lua.LUA_TSTRING) return to_jsstring(lua.lua_tostring(L, i));
  if (t !== lua.LUA_TTABLE) return null;
  const n = lua.lua_rawlen(L, i);
  if (n > 0) {
    const out = [];
    for (let k = 1; k <= n; k++) {
      lua.lua_rawgeti(L, i, k);
      out.push(fread(lua.lua_gettop(L)));
      lua.lua_pop(L, 1);
    }
    return out;
  }
  const out = {};
  lua.lua_pushnil(L);
  while (lua.lua_next(L, i) !== 0) {
    out[to_jsstring(lua.lua_tostring(L, -2))] = fread(lua.lua_gettop(L));
    lua.lua_pop(L, 1);
  }
  return out;
}
function fcall(name, arg) {
  lua.lua_getglobal(L, to_luastring(name));
  if (arg !== undefined) fpush(arg);
  lua.lua_call(L, arg === undefined ? 0 : 1, 1);
  const r = fread(lua.lua_gettop(L));
  lua.lua_pop(L, 1);
  return r;
}
const theirsFengari = {
  concat: () => fcall('concat1mb'),
  sort: () => fcall('sort200k'),
  trip: () => {
    let r;
    for (let i = 0; i < ROUND_TRIPS; i++) r = fcall('echo', MESSAGE);
    return r;
  },
};

// ---- wasmoon (its own JS <-> Lua conversion) ----
const engine = await new LuaFactory().createEngine();
await engine.doString(PROGRAM);
const [wConcat, wSort, wEcho] = ['concat1mb', 'sort200k', 'echo'].map((n) => engine.global.get(n));
const theirsWasmoon = {
  concat: () => wConcat(),
  sort: () => wSort(),
  trip: () => {
    let r;
    for (let i = 0; i < ROUND_TRIPS; i++) r = wEcho(MESSAGE);
    return r;
  },
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
  const back = impl.trip();
  if (JSON.stringify(back['group-3']['key-4']) !== JSON.stringify(MESSAGE['group-3']['key-4'])) throw new Error(`${name}: round trip gave ${JSON.stringify(back).slice(0, 200)}`);
}

const rows = [];
for (const [key, label, rounds, per] of [
  ['concat', '1 MB table.concat (131,072 pieces)', 7, 1],
  ['sort', '200k inserts + table.sort', 5, 1],
  ['trip', `${ROUND_TRIPS / 1000}k round trips of a nested 100-key message`, 5, ROUND_TRIPS],
]) {
  const ms = impls.map(([, impl]) => {
    impl[key]();
    return medianMs(impl[key], rounds);
  });
  const show = (t) => (per === 1 ? `${t.toFixed(1)} ms` : `${((t * 1000) / per).toFixed(1)} µs each`);
  rows.push([label, show(ms[0]), show(ms[1]), show(ms[2]), `${(ms[1] / ms[0]).toFixed(1)}×`, `${(ms[2] / ms[0]).toFixed(1)}×`]);
}
table(`Lua workloads (medians; node ${process.version}, ${process.arch})`, ['benchmark', 'hb-runtimes (native Lua 5.3)', 'fengari 0.1.5', 'wasmoon 1.16.0', 'vs fengari', 'vs wasmoon'], rows);
console.log('\n"vs" columns: how many times faster hb-runtimes is (time of the other / time of hb-runtimes).');
engine.global.close();
