/** lua@5.3a through resolve (SPEC §7, §10.6) and the `lua` namespace of API.md. */
import { describe, expect, it } from 'vitest';
import { cacheWrite, privateOf, resolve } from '../../src/ao';
import type { Message } from '../../src/ao';
import { AoError, LimitError, LuaMemoryError, LuaRuntimeError, LuaSyntaxError, SnapshotError } from '../../src/errors';
import { aosLuaProcess, DEFAULT_LUA_INSTRUCTION_LIMIT, DEFAULT_LUA_SANDBOX, lua, rsaCommitment } from '../../src/devices/lua';
import { DEFAULT_TIME_LIMIT_MS } from '../../src/limits';
import { SEAL_BYTES } from '../../src/lua-trust';
import { describeShared, sharedFixture } from '../helpers/fixtures';
import { rejection } from '../helpers/thrown';

const luaModule = (body: string, name?: string): Message => ({
  'content-type': 'application/lua',
  body,
  ...(name !== undefined ? { name } : {}),
});
const luaBase = (body: string, extra: Message = {}): Message => ({ device: 'lua@5.3a', module: luaModule(body, 'main.lua'), ...extra });

const MATH = `
function add(a, b) return a + b end
function greet(base, req) return "Hello, " .. (req.name or "stranger") .. "!" end
function counter(base, req) base.count = (base.count or 0) + 1; Calls = (Calls or 0) + 1; return base end
function calls() return Calls or 0 end
function two() return "skip", { why = "two values" } end
function three() return 1, 2, 3 end
function nothing() end
function boom() local t = nil; return t.x end
function deep() local function inner() error("from inner") end inner() end
function err_table() error({ code = 7, why = "table error" }) end
function stamp() return os.time() end
function clocks() return os.time(), os.date("%Y-%m-%d", 0), os.date("%H:%M", 3600), os.clock() end
function say(base, req) print("said", req.word, 3) return "ok" end
`;

describe('lua@5.3a calls (seed examples)', () => {
  it('calls a function with parameters: add 5 3 -> 8', async () => {
    const initialized = await lua.init(luaBase(MATH), {}, {});
    expect(await resolve(initialized, { path: 'add', parameters: [5, 3] })).toBe(8);
    expect(await resolve(initialized, { path: 'add', parameters: [0.5, 1] })).toBe(1.5);
    expect(await resolve(initialized, { path: 'x', function: 'add', parameters: [1, 2] })).toBe(3);
    expect(await resolve(initialized, { path: 'x', body: { function: 'add', parameters: [2, 2] } })).toBe(4);
  });

  it('passes (base, request, {}) by default: greet', async () => {
    const base = luaBase(MATH);
    expect(await resolve(base, { path: 'greet', name: 'Alice' })).toBe('Hello, Alice!');
    expect(await resolve(base, 'greet')).toBe('Hello, stranger!');
  });

  it('maps results: one value, (status, value), none, and too many without a status', async () => {
    const base = luaBase(MATH);
    expect(await resolve(base, 'nothing')).toBeNull();
    const skipped = await resolve(base, 'two'); // skip resolves with its value: the table replaces the base
    expect(skipped.why).toBe('two values');
    expect(skipped.module).toEqual(base.module);
    const e = await rejection(resolve(base, 'three'));
    expect(e.status).toBe(500);
    expect(e.message).toContain("Lua function 'three' returned 3 values: the first must be a status (ok, error, skip or pass), got 1");
  });

  it('a missing function is a 404 naming it', async () => {
    const e = await rejection(resolve(luaBase(MATH), 'nope'));
    expect(e.status).toBe(404);
    expect(e.message).toContain("no Lua function 'nope'");
  });

  it('a returned table replaces the message, keeping its private part and module', async () => {
    const base = luaBase(MATH, { count: 0 });
    const m1 = await resolve(base, 'counter');
    expect(m1.count).toBe(1);
    expect(m1.module).toEqual(base.module);
    expect(m1.device).toBe('lua@5.3a');
    const m2 = await resolve(m1, 'counter');
    expect(m2.count).toBe(2);
    expect(await resolve(m2, 'calls')).toBe(2); // the same VM went on
    expect(base.count).toBe(0); // inputs never change
  });

  it('keeps module sources out of Lua (also under process/) and carries them over', async () => {
    const src = 'function look(base) base.saw = tostring(base.module) .. "," .. tostring(base.process.module) .. "," .. base.process.type return base end';
    const base = { ...luaBase(src), process: { type: 'Process', module: 'the-source' } };
    const out = await resolve(base, 'look');
    expect(out.saw).toBe('nil,nil,Process');
    expect(out.module).toEqual(base.module);
    expect(out.process).toEqual({ type: 'Process', module: 'the-source' });
  });

  it('reads stored keys as plain values (they are excluded from Lua calls)', async () => {
    const base = luaBase(MATH, { add: 'stored' });
    expect(await resolve(base, 'add')).toBe('stored');
    expect(await resolve(base, { path: 'x', function: 'add', parameters: [1, 1] })).toBe(2);
  });

  it('lists global functions, sorted', async () => {
    const fns = await lua.functions(await lua.init(luaBase(MATH), {}, {}), {}, {});
    expect(fns).toEqual([...fns].sort());
    expect(fns).toEqual(expect.arrayContaining(['add', 'greet', 'counter', 'print', 'pairs']));
    expect(fns).not.toContain('_hb');
  });

  it('prints to opts.luaPrint, never to stdout', async () => {
    const lines: string[] = [];
    expect(await resolve(luaBase(MATH), { path: 'say', word: 'hi' }, { luaPrint: (l: string) => lines.push(l) })).toBe('ok');
    expect(lines).toEqual(['said\thi\t3']);
  });

  it('has a deterministic clock: os.time() is the block timestamp, os.date UTC, os.clock 0', async () => {
    const base = luaBase(MATH);
    expect(await resolve(base, { path: 'x', function: 'stamp', parameters: [], 'block-timestamp': 1700000000 })).toBe(1700000000);
    const i = await lua.init(base, {}, {});
    const vm = lua.vm(i)!;
    expect(vm.call('clocks', [])).toEqual([0, '1970-01-01', '01:00', 0]);
  });
});

describe('lua@5.3a modules (SPEC §7.2)', () => {
  it('loads a list in order: a module message, then raw source', async () => {
    const base = {
      device: 'lua@5.3a',
      module: [luaModule('X = 1 function f() return X end', 'one.lua'), 'X = X + 1 function test_second_script() return 4 end'],
    };
    expect(await resolve(base, 'test_second_script')).toBe(4);
    expect(await resolve(base, 'f')).toBe(2);
  });

  it('loads a map of modules in key order, and three modules -> 4', async () => {
    const base = {
      device: 'lua@5.3a',
      module: { b: luaModule('N = N * 2'), a: luaModule('N = 1'), c: { 'content-type': 'text/x-lua', data: 'N = N + 2 function n() return N end' } },
    };
    expect(await resolve(base, 'n')).toBe(4);
  });

  it('loads modules by cache ID (source bytes or module messages)', async () => {
    const src = await cacheWrite(Buffer.from('function from_bytes() return "bytes" end'));
    const msg = await cacheWrite(luaModule('function from_msg() return "msg" end', 'cached.lua'));
    const base = { device: 'lua@5.3a', module: [src, msg] };
    expect(await resolve(base, 'from_bytes')).toBe('bytes');
    expect(await resolve(base, 'from_msg')).toBe('msg');
  });

  it('names chunks after the module, so errors read name:line', async () => {
    const e = await rejection(resolve({ device: 'lua@5.3a', module: luaModule('\nfunction f() error("bad") end', 'named.lua') }, 'f'));
    expect(e).toBeInstanceOf(LuaRuntimeError);
    expect(e.message).toBe('[string "named.lua"]:2: bad');
  });

  it('reports missing, unknown and unloadable modules', async () => {
    const none = await rejection(resolve({ device: 'lua@5.3a' }, 'f'));
    expect([none.status, none.message]).toEqual([404, 'no-modules-found: the base has no `module`']);
    const id = 'A'.repeat(43);
    const missing = await rejection(resolve({ device: 'lua@5.3a', module: [id] }, 'f'));
    expect([missing.status, missing.message]).toEqual([404, `Lua module '${id}' not found.`]);
    const empty = await rejection(resolve({ device: 'lua@5.3a', module: [{ name: 'm.lua' }] }, 'f'));
    expect([empty.status, empty.message]).toEqual([400, "Lua module 'm.lua' is not loadable: it has no body or data"]);
  });

  it('gives syntax errors with the line number', async () => {
    const e = await rejection(resolve({ device: 'lua@5.3a', module: luaModule('x = 1\ny = = 2', 'bad.lua') }, 'f'));
    expect(e).toBeInstanceOf(LuaSyntaxError);
    expect(e.message).toBe(`[string "bad.lua"]:2: unexpected symbol near '='`);
  });
});

describe('lua@5.3a errors', () => {
  it('a runtime error is a 500 with the Lua message and decoded frames', async () => {
    const e = await rejection(resolve(luaBase(MATH), 'deep'));
    expect(e).toBeInstanceOf(LuaRuntimeError);
    expect(e.status).toBe(500);
    expect(e.message).toBe('[string "main.lua"]:10: from inner');
    expect(e.body).toBe('[string "main.lua"]:10: from inner');
    expect((e.trace as Message[]).slice(0, 2)).toEqual([
      { function: 'inner', line: 'main.lua:10' },
      { function: 'deep', line: 'main.lua:10' },
    ]);
  });

  it('a table error value is the body', async () => {
    const e = await rejection(resolve(luaBase(MATH), 'err_table'));
    expect(e).toBeInstanceOf(LuaRuntimeError);
    expect(e.body).toEqual({ code: 7, why: 'table error' });
  });

  it('the instruction and memory limits are typed errors, and the base still works afterwards', async () => {
    const SRC = 'function spin() while true do end end function grow() local t = {} for i = 1, 1e9 do t[i] = i end end function ok() return "fine" end';
    const i = await lua.init(luaBase(SRC, { 'instruction-limit': 100000 }), {}, {});
    const spin = await rejection(resolve(i, 'spin'));
    expect(spin).toBeInstanceOf(LimitError);
    expect([spin.status, spin.message]).toEqual([500, 'instruction limit of 100000 exceeded']);
    expect(await resolve(i, 'ok')).toBe('fine'); // rebuilt from its modules: the VM was left mid-change
    const j = await lua.init(luaBase(SRC, { 'memory-limit': 4 * 1024 * 1024 }), {}, {});
    const grow = await rejection(resolve(j, 'grow'));
    expect(grow).toBeInstanceOf(LuaMemoryError);
    expect(grow.message).toBe('not enough memory (memoryLimit of 4194304 bytes reached)');
    expect(await resolve(j, 'ok')).toBe('fine');
  });

  it('survives deep recursion, string.rep bombs and endless tables with typed errors', async () => {
    const base = luaBase(
      'function rec() return 1 + rec() end function rep() return #string.rep("x", 1 << 30) end function tables() local t = {} while true do t = { t } end end function ok() return "ok" end',
      { 'memory-limit': 8 * 1024 * 1024 },
    );
    const rec = await rejection(resolve({ ...base, 'memory-limit': undefined }, 'rec')); // the Lua stack (1,000,000 slots) needs 16 MiB
    expect(rec).toBeInstanceOf(LuaRuntimeError);
    expect(rec.message).toContain('stack overflow');
    const rep = await rejection(resolve(base, 'rep'));
    expect(rep).toBeInstanceOf(LuaMemoryError);
    const tables = await rejection(resolve(base, 'tables'));
    expect(tables).toBeInstanceOf(LuaMemoryError);
    expect(await resolve(base, 'ok')).toBe('ok');
  });

  it('refuses an altered snapshot (checksum) without touching the message', async () => {
    const i = await lua.init(luaBase(MATH), {}, {});
    const body = Buffer.from((await lua.snapshot(i, {}, {})).body as Uint8Array);
    body[body.length - SEAL_BYTES - 5] ^= 0xff;
    const bad = { ...luaBase(MATH), snapshot: { body } };
    const e = await rejection(lua.normalize(bad, {}, {}));
    expect(e).toBeInstanceOf(SnapshotError);
    expect(e.message).toContain('checksum mismatch');
    expect(bad.snapshot.body).toBe(body);
  });

  it('refuses a snapshot this node did not seal (403 ERR_SNAPSHOT_UNTRUSTED)', async () => {
    const i = await lua.init(luaBase(MATH), {}, {});
    const sealed = Buffer.from((await lua.snapshot(i, {}, {})).body as Uint8Array);
    expect(await resolve(await lua.normalize({ ...luaBase(MATH), snapshot: { body: sealed } }, {}, {}), { path: 'add', parameters: [2, 3] })).toBe(5);
    const forged = Buffer.from(sealed);
    forged[forged.length - SEAL_BYTES] ^= 1; // the tag
    const e = await rejection(lua.normalize({ ...luaBase(MATH), snapshot: { body: forged } }, {}, {}));
    expect(e).toBeInstanceOf(SnapshotError);
    expect(e).toMatchObject({ status: 403, code: 'ERR_SNAPSHOT_UNTRUSTED' });
    const bare = sealed.subarray(0, sealed.length - SEAL_BYTES);
    const e2 = await rejection(lua.normalize({ ...luaBase(MATH), snapshot: { body: bare } }, {}, {}));
    expect(e2).toMatchObject({ status: 403, code: 'ERR_SNAPSHOT_UNTRUSTED' });
  });

  it('rejects bad limits', async () => {
    const e = await rejection(resolve(luaBase(MATH, { 'memory-limit': -5 }), 'add'));
    expect([e.status, e.message]).toEqual([400, 'lua@5.3a: memory-limit must be a positive integer, got "-5"']);
    const t = await rejection(resolve(luaBase(MATH, { 'time-limit': '0' }), 'add'));
    expect([t.status, t.message]).toEqual([400, 'lua@5.3a: time-limit must be a positive integer, got "0"']);
  });

  it('ends a runaway call by the default step budget (1e8 steps), well before the 10 s deadline', async () => {
    expect(DEFAULT_LUA_INSTRUCTION_LIMIT).toBe(100_000_000);
    const i = await lua.init(luaBase('function spin() while true do end end function ok() return "fine" end'), {}, {});
    const t0 = performance.now();
    const spin = await rejection(resolve(i, 'spin'));
    expect(performance.now() - t0).toBeLessThan(DEFAULT_TIME_LIMIT_MS);
    expect(spin).toBeInstanceOf(LimitError);
    expect(spin).toMatchObject({ status: 500, code: 'ERR_LIMIT_STEPS', limit: 'steps', message: 'instruction limit of 100000000 exceeded' });
    expect(await resolve(i, 'ok')).toBe('fine');
  });

  it('time-limit: a wall-clock deadline per call (limit time), Infinity opts out', async () => {
    const SRC = 'function spin() while true do end end function pattern() return string.find(string.rep("a", 1e6), ".-.-.-.-b") end function ok() return "fine" end';
    const i = await lua.init(luaBase(SRC, { 'time-limit': '150', 'instruction-limit': 1e12 }), {}, {});
    for (const fn of ['spin', 'pattern']) {
      const e = await rejection(resolve(i, fn));
      expect(e).toBeInstanceOf(LimitError);
      expect(e).toMatchObject({ status: 500, code: 'ERR_LIMIT_TIME', limit: 'time', message: 'time limit of 150 ms exceeded' });
    }
    expect(await resolve(i, 'ok')).toBe('fine');
    const free = await lua.init(luaBase('function count() local n = 0 for i = 1, 2e7 do n = n + 1 end return n end', { 'time-limit': 'infinity' }), {}, {});
    expect(await resolve(free, 'count')).toBe(2e7);
  });

  it("a top-level coroutine.yield is an error the script's own pcall catches, as in plain Lua", async () => {
    const SRC = `
      function y() local ok, e = pcall(coroutine.yield, 1) return tostring(ok) .. ':' .. e end
      function nested() local ok, e = pcall(function() coroutine.yield() end) return tostring(ok) .. ':' .. e end
      function main() local co, main = coroutine.running() return tostring(main) .. ' ' .. tostring(coroutine.isyieldable()) end
      function inco() local co = coroutine.wrap(function() coroutine.yield(5) return 6 end) return co() + co() end
      function bare() coroutine.yield(3) return 'after' end`;
    const i = await lua.init(luaBase(SRC), {}, {});
    expect(await resolve(i, 'y')).toBe('false:attempt to yield from outside a coroutine');
    expect(await resolve(i, 'nested')).toBe('false:attempt to yield from outside a coroutine');
    expect(await resolve(i, 'main')).toBe('true false');
    expect(await resolve(i, 'inco')).toBe(11);
    const e = await rejection(resolve(i, 'bare'));
    expect(e).toBeInstanceOf(LuaRuntimeError);
    expect(e.message).toBe('attempt to yield from outside a coroutine');
  });
});

describe('lua@5.3a sandboxes (SPEC §7.4)', () => {
  const PROBE = `
    function probe(base, req) local ok, e = pcall(function() return os.getenv("HOME") end) return tostring(ok) .. ":" .. tostring(e) end
    function kinds() return type(io) .. "," .. type(os.execute) .. "," .. type(require) .. "," .. type(load) .. "," .. type(debug.getregistry) .. "," .. type(string.dump) end
    function exec() return os.execute("echo hi") end
  `;

  it('always runs without the unsafe libraries', async () => {
    expect(await resolve(luaBase(PROBE), 'kinds')).toBe('nil,nil,function,function,nil,nil');
  });

  it('sandbox: true replaces the default list with "sandboxed"', async () => {
    const base = luaBase(PROBE, { sandbox: true });
    expect(await resolve(base, 'kinds')).toBe('string,string,string,string,nil,nil');
    expect(DEFAULT_LUA_SANDBOX).toContain('os.getenv');
    const e = await rejection(resolve(base, 'exec'));
    expect(e).toBeInstanceOf(LuaRuntimeError);
    expect(e.message).toBe(`[string "main.lua"]:4: attempt to call a string value (field 'execute')`);
  });

  it('takes a list of paths or a map of path -> value, in any spelling', async () => {
    expect(await resolve(luaBase(PROBE, { sandbox: ['os.getenv'] }), 'probe')).toContain('false:');
    const map = luaBase(PROBE + 'function v() return os.getenv, os.rename, tostring(io) end', {
      sandbox: { 'os/getenv': 'blocked', '_G.os.rename': 7, io: 'no-io' },
    });
    const i = await lua.init(map, {}, {});
    expect(lua.vm(i)!.call('v', [])).toEqual(['blocked', 7, 'no-io']);
  });

  it('cannot reach the registry, upvalues or hooks through debug, nor load bytecode', async () => {
    const base = luaBase(`
      function dbg() return debug.getregistry, debug.getupvalue, debug.sethook, debug.setmetatable, debug.getinfo ~= nil end
      function bytecode() return load(string.char(27) .. "Lua") end
      function files() return require("os") == os, pcall(require, "socket") end
      function hunt()
        local found = {}
        local function scan(t, path, depth)
          if depth > 3 then return end
          for k, v in pairs(t) do
            if type(v) == "table" then
              if rawget(v, "getregistry") or rawget(v, "sethook") or rawget(v, "popen") or rawget(v, "execute") then found[#found + 1] = path .. "." .. tostring(k) end
              scan(v, path .. "." .. tostring(k), depth + 1)
            end
          end
        end
        scan(_G, "_G", 0)
        scan(getmetatable("") or {}, "strmt", 0)
        return #found == 0 and "none" or table.concat(found, " ")
      end
    `);
    const i = await lua.init(base, {}, {});
    const vm = lua.vm(i)!;
    expect(vm.call('dbg', [])).toEqual([null, null, null, null, true]);
    expect(vm.call('bytecode', [])).toEqual([null, "attempt to load a binary chunk (mode is 't')"]);
    const [same, ok, msg] = vm.call('files', []);
    expect([same, ok]).toEqual([true, false]);
    expect(msg).toContain("module 'socket' not found");
    expect(msg).not.toContain('.lua'); // no file searchers
    expect(vm.call('hunt', [])).toEqual(['none']); // nothing reachable holds the full debug, io or os
  });
});

describe('lua@5.3a and AO-Core (the ao library, SPEC §7.8)', () => {
  const AO = `
    function via_singleton() local s, r = ao.resolve({ path = "/hello", hello = "Hello, AO world!" }) return r end
    function via_path(base) local s, r = ao.resolve({ a = { b = "deep" } }, "a/b") return s .. ":" .. r end
    function via_list() local s, r = ao.resolve({ x = { y = 5 } }, { path = "x" }, { path = "y" }) return r end
    function failing() return ao.resolve({ a = 1 }, "missing") end
    function with_get(base) return ao.get("k", { k = "v" }), ao.get("nope", { k = "v" }) end
    function with_set() local m = ao.set({ a = 1 }, "b", 2) local n = ao.set(m, { c = 3 }) return n end
    function events() return ao.event("hello"), ao.event("group", { n = 1 }) end
    function slow(base) local s, r = ao.resolve({ device = "slow@1.0" }, "answer") return s .. ":" .. tostring(r) end
    function slow_in_coroutine()
      local f = coroutine.wrap(function(x) local s, r = ao.resolve({ device = "slow@1.0" }, "answer") coroutine.yield(r + x) return "end" end)
      local a, b = f(1), f()
      return a .. "," .. b
    end
    function relayed() local s, r = ao.resolve({ device = "relay@1.0" }, "call") return s end
    function slow_in_sort() local t = {3, 1, 2} table.sort(t, function(a, b) ao.resolve({ device = "slow@1.0" }, "answer") return a < b end) return t end
    function sync_in_sort() local t = {3, 1, 2} table.sort(t, function(a, b) local s, r = ao.resolve({ v = a }, "v") return r < b end) return t end
    function wrapped_error() local f = coroutine.wrap(function() error("inside") end) f() end
    ao = ao or {}
  `;
  const devices = { 'slow@1.0': { answer: async () => 41 } };

  it('ao.resolve: singleton, base + path, a list of messages', async () => {
    const base = luaBase(AO);
    expect(await resolve(base, 'via_singleton')).toBe('Hello, AO world!');
    expect(await resolve(base, 'via_path')).toBe('ok:deep');
    expect(await resolve(base, 'via_list')).toBe(5);
  });

  it('ao.resolve returns "error" and the reason; ao.get, ao.set, ao.event', async () => {
    const base = luaBase(AO);
    const i = await lua.init(base, {}, {});
    const vm = lua.vm(i)!;
    const [st, why] = vm.call('failing', []);
    expect(st).toBe('error');
    expect(why).toContain("Key 'missing' not found");
    expect(vm.call('with_get', [])).toEqual(['v', null]);
    expect(vm.call('with_set', [])).toEqual([{ a: 1, b: 2, c: 3 }]);
    const events: unknown[][] = [];
    expect(await resolve(base, { path: 'events' }, { luaEvent: (...e: unknown[]) => events.push(e) })).toBe('ok');
    expect(events).toEqual([['hello'], ['group', { n: 1 }]]);
  });

  it('awaits asynchronous devices, also from inside the script’s own coroutines', async () => {
    const base = luaBase(AO);
    expect(await resolve(base, 'slow', { devices })).toBe('ok:41');
    expect(await resolve(base, { path: 'x', function: 'slow_in_coroutine', parameters: [] }, { devices })).toBe('42,end');
  });

  it('says so where Lua cannot yield (a C function such as table.sort); synchronous answers work there', async () => {
    const base = luaBase(AO);
    const e = await rejection(resolve(base, 'slow_in_sort', { devices }));
    expect(e).toBeInstanceOf(LuaRuntimeError);
    expect(e.message).toContain('ao.resolve: the resolution needs an asynchronous device, which cannot be awaited here (inside a metamethod or a C function)');
    expect(await resolve(base, 'sync_in_sort')).toEqual([1, 2, 3]);
    const w = await rejection(resolve(base, 'wrapped_error'));
    expect(w.message).toMatch(/^\[string "main.lua"\]:\d+: \[string "main.lua"\]:\d+: inside$/); // wrap adds the caller's position, as Lua's does
  });

  it('device-sandbox restricts the devices ao.resolve may load (a Lua error otherwise)', async () => {
    const base = luaBase(AO, { 'device-sandbox': ['message@1.0'] });
    expect(await resolve(base, 'via_singleton')).toBe('Hello, AO world!');
    const e = await rejection(resolve(base, 'relayed'));
    expect(e).toBeInstanceOf(LuaRuntimeError);
    expect(e.message).toContain("Device 'relay@1.0' is not allowed here");
    const slow = await rejection(resolve(base, 'slow', { devices }));
    expect(slow.message).toContain("Device 'slow@1.0' is not allowed here");
  });

  it('merges into an existing ao table', async () => {
    const base = luaBase('ao = { id = "mine", send = function() return "sent" end } function check() return ao.id, ao.send(), type(ao.resolve), type(ao.event) end');
    const i = await lua.init(base, {}, {});
    expect(lua.vm(i)!.call('check', [])).toEqual(['mine', 'sent', 'function', 'function']);
  });
});

describe('lua@5.3a encode / decode (SPEC §7.6)', () => {
  it('maps with keys 1..n are arrays, the empty table is the empty list, private keys are dropped', () => {
    expect(lua.encode({ '1': 'a', '2': 'b' })).toEqual(['a', 'b']);
    expect(lua.encode({ '1': 'a', x: 'b' })).toEqual({ '1': 'a', x: 'b' });
    expect(lua.encode({ a: { priv: { s: 1 }, k: 1 }, priv: 2 })).toEqual({ a: { k: 1 } });
    expect(lua.decode({})).toEqual([]);
    expect(lua.decode({ a: {}, b: [{}] })).toEqual({ a: [], b: [[]] });
    const t = { a: 1, b: [1, 2, { c: 'x' }], d: { e: Buffer.from([0, 255]) }, f: true, g: 2.5, h: 2n ** 60n };
    expect(lua.decode(lua.encode(t))).toEqual(t);
  });

  it('refuses messages that contain themselves', () => {
    const m: Message = { a: 1 };
    m.self = m;
    expect(() => lua.encode(m)).toThrow('lua@5.3a: cannot encode a message that contains itself');
  });
});

describe('lua@5.3a snapshots and immutability (decisions 6, 7)', () => {
  const STATE = `
    X = 0
    function inc(base) X = X + 1 base.x = X return base end
    function get() return X end
    Big = {}
    for i = 1, 500 do Big["k" .. i] = i end
    for i = 1, 500, 3 do Big["k" .. i] = nil end
    function order() local ks = {} for k in pairs(Big) do ks[#ks + 1] = k end return table.concat(ks, ",") end
  `;

  it('snapshot then normalize into a fresh message continues the state with the same pairs order', async () => {
    const base = luaBase(STATE);
    const m1 = await resolve(await resolve(base, 'inc'), 'inc');
    const snap = await lua.snapshot(m1, {}, {});
    const fresh = await lua.normalize({ ...base, snapshot: snap }, {}, {});
    expect(fresh.snapshot).toBeUndefined();
    const again = await resolve(fresh, 'snapshot');
    expect(Buffer.from(again.body).equals(Buffer.from(snap.body))).toBe(true); // canonical
    expect(await resolve(fresh, 'get')).toBe(2);
    expect(await resolve(fresh, 'order')).toBe(await resolve(m1, 'order'));
  });

  it('an older message never sees a newer one’s state', async () => {
    const base = luaBase(STATE);
    const i = await lua.init(base, {}, {});
    const m1 = await resolve(i, 'inc');
    expect(await resolve(m1, 'get')).toBe(1);
    // i was the fresh state: it is rebuilt from its modules
    expect(await resolve(i, 'get')).toBe(0);
    const m2 = await resolve(m1, 'inc');
    expect(await resolve(m2, 'get')).toBe(2);
    // m1 is neither current nor fresh, and has no snapshot
    const stale = await rejection(resolve(m1, 'get'));
    expect([stale.status, stale.code]).toEqual([409, 'ERR_LUA_STALE']);
    // with a snapshot it restores its own VM
    const s1 = await resolve(m2, 'snapshot');
    const m3 = await resolve(m2, 'inc');
    expect(await resolve({ ...m2, snapshot: s1 }, 'get')).toBe(2);
    expect(await resolve(m3, 'get')).toBe(3);
  });

  it('normalize and snapshot without a state are 400s; bad snapshots are SnapshotErrors', async () => {
    const e1 = await rejection(resolve(luaBase(STATE), 'normalize'));
    expect(e1.status).toBe(400);
    expect(e1.message).toContain('no_lua_state_snapshot_found');
    const e2 = await rejection(lua.snapshot(luaBase(STATE), {}, {}));
    expect(e2.message).toBe('Cannot snapshot Lua state: state not initialized.');
    const snap = (await lua.snapshot(await lua.init(luaBase(STATE), {}, {}), {}, {})).body as Uint8Array;
    const truncated = await rejection(lua.normalize({ ...luaBase(STATE), snapshot: { body: snap.subarray(0, snap.length - 9) } }, {}, {}));
    expect(truncated).toBeInstanceOf(SnapshotError);
    const wasmLike = Buffer.concat([Buffer.from('HBWASM'), Buffer.alloc(40)]);
    const foreign = await rejection(lua.normalize({ ...luaBase(STATE), snapshot: { body: wasmLike } }, {}, {}));
    expect(foreign).toBeInstanceOf(SnapshotError);
    expect(foreign.message).toContain('not a Lua snapshot');
  });

});

describeShared('lua@5.3a on the shared fixtures (SPEC §10.6)', () => {
  const TEST_LUA = () => sharedFixture('test.lua');
  const testBase = (extra: Message = {}): Message => ({ device: 'lua@5.3a', module: { 'content-type': 'application/lua', body: TEST_LUA() }, ...extra });

  it('simple_invocation: assoctable/b -> 2', async () => {
    expect(await resolve(testBase({ parameters: [] }), 'assoctable/b')).toBe(2);
  });

  it('multiple_modules: test.lua and a second script', async () => {
    const base = { device: 'lua@5.3a', module: [{ 'content-type': 'application/lua', body: TEST_LUA() }, 'function test_second_script() return 4 end'] };
    expect(await resolve(base, 'assoctable/b')).toBe(2);
    expect(await resolve(base, 'test_second_script')).toBe(4);
  });

  it('error_response -> error "Very bad, but Lua caught it."', async () => {
    const e = await rejection(resolve(testBase(), 'error_response'));
    expect(e.body).toBe('Very bad, but Lua caught it.');
    expect(e.status).toBe(500);
  });

  it('sandboxed_failure: os.getenv under sandbox: true is an error', async () => {
    const e = await rejection(resolve(testBase({ sandbox: true }), 'sandboxed_fail'));
    expect(e).toBeInstanceOf(LuaRuntimeError);
    expect(e.message).toContain("attempt to call a string value (field 'getenv')");
  });

  it('ao_core_resolution_from_lua and ao_core_sandbox', async () => {
    expect(await resolve(testBase(), 'ao_resolve')).toBe('Hello, AO world!');
    const sandboxed = testBase({ 'device-sandbox': ['message@1.0'] });
    expect(await resolve(sandboxed, 'ao_resolve')).toBe('Hello, AO world!');
    const e = await rejection(resolve(sandboxed, 'ao_relay'));
    expect(e.message).toContain("Device 'relay@1.0' is not allowed here");
  });

  it('invoke_non_compute_key: hello with test-value 42, and with name Alice', async () => {
    const base = testBase({ 'test-value': 42 });
    const r1 = await resolve(base, 'hello');
    expect([r1['test-value'], r1.hello]).toEqual([42, 'world']);
    const r2 = await resolve(base, { path: 'hello', name: 'Alice' });
    expect([r2['test-value'], r2.hello]).toEqual([42, 'Alice']);
  });

  it('pure_lua_process: results/output/body -> 42', async () => {
    let p: Message = { device: 'process@1.0', 'execution-device': 'lua@5.3a', module: { 'content-type': 'application/lua', body: TEST_LUA() }, type: 'Process' };
    p = await resolve(p, { path: 'schedule', body: { action: 'Anything' } });
    expect(await resolve(p, 'now/results/output/body')).toBe(42);
  });

  it('the dev_lua_test meta suite: *_test functions pass, others are not collected', async () => {
    const routes = [{ template: '/result/.*', node: 'http://localhost' }];
    const devices = { 'router@1.0': { routes: () => routes } };
    const results = await lua.tests({ device: 'lua@5.3a', module: { 'content-type': 'application/lua', name: 'meta-test.lua', body: sharedFixture('meta-test.lua') } }, { devices });
    expect(results).toEqual([
      { name: 'basic_test', status: 'ok', value: 'ok' },
      { name: 'return_message_test', status: 'ok', value: expect.objectContaining({ key1: 'Value1', key2: 'Value2' }) },
      { name: 'sandbox_test', status: 'ok', value: '/result/.*' },
    ]);
  });

  describe('hyper-aos.lua as a process', () => {
    const OWNER = 'owner-address-0123456789abcdefghijklmnopqrs';
    const commit = (who: string, id = 'commitment-id-0123456789abcdefghijklmnopqr') => rsaCommitment(who, id);
    const aosProcess = (extra: Message = {}): Message =>
      aosLuaProcess(sharedFixture('hyper-aos.lua'), { owner: OWNER, id: 'commitment-id-0123456789abcdefghijklmnopqr', ...extra });
    const evalBody = (code: string, who = OWNER, extra: Message = {}) => ({
      action: 'Eval',
      body: { 'content-type': 'application/lua', body: code },
      commitments: commit(who, 'msg-commitment-0123456789abcdefghijklmnopqrs'),
      ...extra,
    });

    it('invoke_aos: Eval of Send + Count -> data "1" and one outbox message', async () => {
      const code = "Count = 0 function add() Send({Target = 'Foo', Data = 'Bar' }); Count = Count + 1 end add() return Count";
      const p = await resolve(aosProcess(), { path: 'schedule', body: evalBody(code) });
      const out = await resolve(p, 'now');
      expect(out.results.output.data).toBe('1');
      expect(Object.keys(out.results.outbox)).toEqual(['1']);
      expect(out.results.outbox['1']).toMatchObject({ Target: 'Foo', Data: 'Bar' });
    });

    it('aos_authority_not_trusted: "Message is not trusted."', async () => {
      const body = evalBody('1 + 1', 'someone-else-0123456789abcdefghijklmnopqrs', { 'from-process': '1234' });
      const p = await resolve(aosProcess(), { path: 'schedule', body });
      expect(await resolve(p, 'now/results/output/data')).toBe('Message is not trusted.');
    });

    it('runs the example of docs/devices/lua@5.3a.md (Eval code in data)', async () => {
      let p = aosLuaProcess(sharedFixture('hyper-aos.lua'), { owner: 'addr', id: 'pid' });
      p = await resolve(p, { path: 'schedule', body: { action: 'Eval', data: 'return 1 + 1', commitments: rsaCommitment('addr', 'mid') } });
      expect((await resolve(p, 'now')).results.output.data).toBe('2');
    });

    it('handles other AOS messages: a handler added by Eval answers a Ping with an outbox message', async () => {
      let p = aosProcess({ 'snapshot-interval': 0 });
      const handler = 'Handlers.add("ping", function(m) return m.body.action == "Ping" end, function(m) Send({ Target = "Pinger", Data = "pong " .. m.body.data }) end)';
      p = await resolve(p, { path: 'schedule', body: evalBody(handler) });
      p = await resolve(p, { path: 'schedule', body: { action: 'Ping', data: 'one', commitments: commit(OWNER, 'ping-commitment-0123456789abcdefghijklmnopq') } });
      const out = await resolve(p, 'now');
      expect(out['at-slot']).toBe(1);
      expect(out.results.outbox['1']).toMatchObject({ Target: 'Pinger', Data: 'pong one' });
    });

    it('keeps state across slots, and across a snapshot restore', async () => {
      let p = aosProcess({ 'snapshot-interval': 1 });
      for (const code of ['X = 41', 'X = X + 1', 'return X']) p = await resolve(p, { path: 'schedule', body: evalBody(code) });
      const out = await resolve(p, 'now');
      expect(out.results.output.data).toBe('42');
      // a fresh process computing from its last snapshot (no live state) gives the same answer
      const { priv: _p, ...stored } = out;
      const again = await resolve({ ...stored, 'at-slot': 1, results: undefined }, { path: 'compute', slot: 2 });
      expect(again.results.output.data).toBe('42');
    });
  });
});
