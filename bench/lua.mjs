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
  function echo(m) return m end
`;
const ROUND_TRIPS = 10_000;
/** A nested message of 100 keys: 10 groups of 10 entries (numbers, strings, lists), as in lua-workloads.mjs. */
const MESSAGE = Object.fromEntries(
  Array.from({ length: 10 }, (_, g) => [
    `group-${g}`,
    Object.fromEntries(Array.from({ length: 10 }, (_, k) => [`key-${k}`, k % 3 === 0 ? k * g : k % 3 === 1 ? `value-${g}-${k}` : [g, k, 'x']])),
  ]),
);

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
  trip: () => {
    let r;
    for (let i = 0; i < ROUND_TRIPS; i++) r = vm.call('echo', [MESSAGE])[0];
    return r;
  },
};

// ---- fengari (the C API, transliterated to JS) ----
const { lua, lauxlib, lualib, to_luastring, to_jsstring } = fengari;
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
// Values marshalled through fengari's C API, as an embedder would (from lua-workloads.mjs).
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
const ECHO = to_luastring('echo');
function fengariEcho(m) {
  lua.lua_getglobal(L, ECHO);
  fpush(m);
  lua.lua_call(L, 1, 1);
  const r = fread(lua.lua_gettop(L));
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
  trip: () => {
    let r;
    for (let i = 0; i < ROUND_TRIPS; i++) r = fengariEcho(MESSAGE);
    return r;
  },
};

// ---- wasmoon ----
const engine = await new LuaFactory().createEngine();
engine.global.set('host', (i) => i);
await engine.doString(PROGRAM);
const wFib = engine.global.get('fib');
const wAdd = engine.global.get('add');
const wCallHost = engine.global.get('callHost');
const wStrings = engine.global.get('strings');
const wEcho = engine.global.get('echo');
const theirsWasmoon = {
  fib: () => wFib(FIB_N),
  calls: () => {
    for (let i = 0; i < CALLS; i++) wAdd(i, 1);
  },
  host: () => wCallHost(CALLS),
  strings: () => wStrings(STR_N),
  trip: () => {
    let r;
    for (let i = 0; i < ROUND_TRIPS; i++) r = wEcho(MESSAGE);
    return r;
  },
};

// Same answers everywhere before timing anything.
const fib27 = 196418;
for (const [name, impl] of [['hb-runtimes', ours], ['fengari', theirsFengari], ['wasmoon', theirsWasmoon]]) {
  const got = Number(name === 'hb-runtimes' ? impl.fib()[0] : impl.fib());
  if (got !== fib27) throw new Error(`${name}: fib(${FIB_N}) = ${got}`);
  const back = impl.trip();
  if (JSON.stringify(back['group-3']['key-4']) !== JSON.stringify(MESSAGE['group-3']['key-4'])) {
    throw new Error(`${name}: round trip gave ${JSON.stringify(back).slice(0, 200)}`);
  }
}

const rows = [];
const results = {};
for (const [key, label, unit] of [
  ['fib', `fib(${FIB_N}) inside the VM`, 'ms'],
  ['calls', `${CALLS / 1000}k JS→Lua calls of add(a, b)`, 'calls/s'],
  ['host', `${CALLS / 1000}k Lua→JS host function calls`, 'calls/s'],
  ['strings', `${STR_N / 1000}k rounds of string.rep + gsub + find`, 'ms'],
  ['trip', `${ROUND_TRIPS / 1000}k round trips of a nested 100-key message`, 'µs'],
]) {
  const ms = [ours, theirsFengari, theirsWasmoon].map((impl) => medianMs(impl[key], key === 'calls' || key === 'host' ? ROUNDS : 5));
  results[key] = ms;
  const show = (t) =>
    unit === 'ms' ? `${t.toFixed(1)} ms` : unit === 'µs' ? `${((t * 1000) / ROUND_TRIPS).toFixed(1)} µs each` : `${((CALLS / t) * 1000 / 1e6).toFixed(2)}M/s`;
  rows.push([label, show(ms[0]), show(ms[1]), show(ms[2]), `${(ms[1] / ms[0]).toFixed(1)}×`, `${(ms[2] / ms[0]).toFixed(1)}×`]);
}

const header = ['benchmark', 'hb-runtimes (native Lua 5.3)', 'fengari 0.1.5', 'wasmoon 1.16.0', 'vs fengari', 'vs wasmoon'];
console.log(`\n### LuaVM (medians of ${ROUNDS} rounds; fib: 5; node ${process.version}, ${process.arch})\n`);
console.log(`| ${header.join(' | ')} |`);
console.log(`|${header.map(() => '---').join('|')}|`);
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
console.log('\n"vs" columns: how many times faster hb-runtimes is (time of the other / time of hb-runtimes).');
engine.global.close();

// ---- Snapshots (format v2): time and size, medians ----
const fs = require('node:fs');
const path = require('node:path');
const states = [];
const big = new LuaVM();
big.load('t = {}; for i = 1, 10000 do t["key" .. i] = {i, i * 0.5} end', 'entries');
states.push(['10,000 table entries', big]);
const aosPath = process.env.HB_SHARED_FIXTURES
  ? path.join(process.env.HB_SHARED_FIXTURES, 'hyper-aos.lua')
  : path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'shared', 'fixtures', 'hyper-aos.lua');
if (fs.existsSync(aosPath)) {
  const aos = new LuaVM({ libs: ['package', 'debug'] });
  aos.load('print = function() end', 'quiet'); // hyper-aos prints a banner while it loads; keep the tables clean
  aos.load(fs.readFileSync(aosPath, 'utf8'), 'hyper-aos.lua');
  states.push(['hyper-aos loaded', aos]);
} else {
  console.log(`\n(${aosPath} not found: hyper-aos snapshot benchmark skipped)`);
}
console.log(`\n### LuaVM snapshots, format v2 (medians of ${ROUNDS} rounds)\n`);
console.log('| state | memory | snapshot size | snapshot | restore |');
console.log('|---|---|---|---|---|');
for (const [label, state] of states) {
  const snap = state.snapshot();
  const tSnap = medianMs(() => state.snapshot());
  const tRestore = medianMs(() => LuaVM.restore(snap).dispose());
  if (Buffer.compare(LuaVM.restore(snap).snapshot(), snap) !== 0) throw new Error(`${label}: snapshot not canonical`);
  const kb = (n) => `${(n / 1024).toFixed(0)} KiB`;
  console.log(`| ${label} | ${kb(state.memoryUsed)} | ${kb(snap.length)} | ${tSnap.toFixed(2)} ms | ${tRestore.toFixed(2)} ms |`);
}

// ---- Cost of the default deadline (issue #14) ----
// The same program in three VMs, interleaved rounds: the default (a 10 s deadline per call, so the
// count hook and the meter tick), timeLimit: Infinity (no hook: hb-runtimes before deadlines), and
// an instructionLimit without a deadline (the device's configuration before it). CPU time.
const variants = {
  'default (10 s deadline)': new LuaVM(),
  'timeLimit: Infinity': new LuaVM({ timeLimit: Infinity }),
  'instructionLimit 1e10, no deadline': new LuaVM({ timeLimit: Infinity, instructionLimit: 1e10 }),
};
for (const v of Object.values(variants)) v.load(PROGRAM, 'bench');
const work = { [`fib(${FIB_N})`]: (v) => v.call('fib', [FIB_N]), [`strings(${STR_N})`]: (v) => v.call('strings', [STR_N]) };
console.log(`\n### Cost of the default time limit (CPU ms, medians of ${ROUNDS * 2} interleaved rounds)\n`);
console.log(`| workload | ${Object.keys(variants).join(' | ')} |`);
console.log(`|---|${Object.keys(variants).map(() => '---').join('|')}|`);
for (const [label, fn] of Object.entries(work)) {
  const times = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
  for (const v of Object.values(variants)) fn(v);
  for (let r = 0; r < ROUNDS * 2; r++) {
    for (const [k, v] of Object.entries(variants)) {
      const t0 = process.cpuUsage();
      fn(v);
      const d = process.cpuUsage(t0);
      times[k].push((d.user + d.system) / 1000);
    }
  }
  const med = (a) => a.sort((x, y) => x - y)[Math.floor(a.length / 2)];
  const base = med(times['timeLimit: Infinity']);
  const cells = Object.keys(variants).map((k) => {
    const m = med(times[k]);
    return `${m.toFixed(1)} (${((m / base - 1) * 100).toFixed(0)}%)`;
  });
  console.log(`| ${label} | ${cells.join(' | ')} |`);
}
