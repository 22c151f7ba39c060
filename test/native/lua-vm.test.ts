import { describe, expect, it } from 'vitest';
import { AoError, LimitError, LuaMemoryError, LuaRuntimeError, LuaSyntaxError, SnapshotError } from '../../src/errors';
import { LuaVM } from '../../src/lua';
import { SEAL_BYTES } from '../../src/lua-trust';
import { native } from '../../src/native';
import { WasmInstance, WasmModule } from '../../src/wasm';
import { thrown } from '../helpers/thrown';

/** The native snapshot inside a sealed one (docs/lua-vm.md, "Trust"). */
const body = (sealed: Buffer): Buffer => sealed.subarray(0, sealed.length - SEAL_BYTES);


/** A VM with `id(...)` (returns its arguments) and `add(a, b)`. */
function vmWithHelpers(opts?: ConstructorParameters<typeof LuaVM>[0]): LuaVM {
  const vm = new LuaVM(opts);
  vm.load('function id(...) return ... end\nfunction add(a, b) return a + b end', 'helpers');
  return vm;
}

describe('LuaVM#call()', () => {
  it('returns [8] for add(5, 3)', () => {
    expect(vmWithHelpers().call('add', [5, 3])).toEqual([8]);
  });

  it('returns every result: zero, one and three values', () => {
    const vm = new LuaVM();
    vm.load('function none() end\nfunction one() return 1 end\nfunction three() return 1, "two", nil end', 'm');
    expect(vm.call('none', [])).toEqual([]);
    expect(vm.call('one', [])).toEqual([1]);
    expect(vm.call('three', [])).toEqual([1, 'two', null]);
    // one number or boolean crosses N-API bare, and is still returned in an array
    vm.load('function yes() return true end\nfunction big() return math.maxinteger end', 'm2');
    expect(vm.call('yes', [])).toEqual([true]);
    expect(vm.call('one', [], { timeLimit: 1000 })).toEqual([1]);
    expect(vm.call('big', [])).toEqual([2n ** 63n - 1n]);
    expect(vm.call('one', [{ a: 1 }])).toEqual([1]); // the packed path
  });

  it('keeps Lua integers and floats apart in both directions', () => {
    const vm = vmWithHelpers();
    expect(vm.call('math.type', [1])).toEqual(['integer']);
    expect(vm.call('math.type', [1.5])).toEqual(['float']);
    expect(vm.call('math.type', [2n])).toEqual(['integer']);
    expect(vm.call('math.type', [Number.MAX_SAFE_INTEGER + 1])).toEqual(['float']);
    expect(vm.load('return 3, 3.0, 0.5, 2^53', 'm')).toEqual([3, 3, 0.5, 2 ** 53]);
    expect(vm.load('return math.type(3.0)', 'm')).toEqual(['float']);
  });

  it('keeps the sign of -0 by passing it as a float', () => {
    const [z] = vmWithHelpers().call('id', [-0]);
    expect(Object.is(z, -0)).toBe(true);
  });

  it('round-trips int64 extremes, giving BigInt beyond the safe integers', () => {
    const vm = vmWithHelpers();
    const max = 2n ** 63n - 1n;
    const min = -(2n ** 63n);
    expect(vm.call('id', [max, min])).toEqual([max, min]);
    expect(vm.call('math.type', [max])).toEqual(['integer']);
    expect(vm.load('return math.maxinteger, 2^53 | 0, (2^53 - 1) | 0', 'm')).toEqual([max, 2n ** 53n, 2 ** 53 - 1]);
    expect(vm.call('add', [max, 0])).toEqual([max]);
  });

  it('rejects a BigInt outside int64 with AoError 400', () => {
    const e = thrown(() => vmWithHelpers().call('id', [2n ** 63n]));
    expect(e).toBeInstanceOf(AoError);
    expect(e).toMatchObject({ status: 400, code: 'ERR_INVALID_ARG' });
    expect(e.message).toBe('LuaVM#call(): BigInt outside the int64 range (at args[0])');
  });

  it('passes binary strings byte for byte: NUL bytes and invalid UTF-8', () => {
    const vm = vmWithHelpers();
    const bytes = new Uint8Array([0, 0xff, 0x80, 0x41, 0, 0xc3]);
    const [back] = vm.call('id', [bytes]);
    expect(Buffer.isBuffer(back)).toBe(true);
    expect([...(back as Uint8Array)]).toEqual([...bytes]);
    expect(vm.call('string.len', [bytes])).toEqual([6]);
    expect(vm.call('id', ['a\0b'])).toEqual(['a\0b']);
    expect(vm.call('string.len', ['a\0b'])).toEqual([3]);
    expect(vm.call('string.len', ['é'])).toEqual([2]);
    expect(vm.load('return "\\xe2\\x82\\xac", "\\xed\\xa0\\x80"', 'm')).toEqual(['€', Buffer.from([0xed, 0xa0, 0x80])]);
  });

  it('converts nested tables to arrays and objects, and back', () => {
    const vm = vmWithHelpers();
    const value = { list: [1, 'two', { three: 3 }], nested: { deep: { flag: true, none: null } }, bytes: 'x' };
    expect(vm.call('id', [value])).toEqual([{ list: [1, 'two', { three: 3 }], nested: { deep: { flag: true } }, bytes: 'x' }]);
    expect(vm.load('return {}, {1, 2}, {[1] = "a", [3] = "c"}, {[1.5] = 1, [true] = 2, [-1] = 3}', 'm')).toEqual([
      {},
      [1, 2],
      { '1': 'a', '3': 'c' },
      { '1.5': 1, true: 2, '-1': 3 },
    ]);
    expect(vm.call('id', [{ '1': 'a' }])).toEqual([{ '1': 'a' }]);
    expect(vm.call('next', [{ '1': 'a' }])).toEqual(['1', 'a']); // object keys stay strings in Lua
  });

  it('keeps a __proto__ key as an own property', () => {
    const [obj] = new LuaVM().load('return {__proto__ = 1, x = 2}', 'm') as [Record<string, unknown>];
    expect(Object.getPrototypeOf(obj)).toBe(Object.prototype);
    expect(Object.keys(obj).sort()).toEqual(['__proto__', 'x']);
  });

  it('detects cycles in JS arguments with AoError 400', () => {
    const a: Record<string, unknown> = { x: 1 };
    a.self = { back: a };
    const e = thrown(() => vmWithHelpers().call('id', [a]));
    expect(e).toBeInstanceOf(AoError);
    expect(e).toMatchObject({ status: 400, code: 'ERR_INVALID_ARG' });
    expect(e.message).toBe('LuaVM#call(): cycle detected (the value contains itself) (at args[0].self.back)');
  });

  it('detects cycles in Lua results with AoError 500', () => {
    const e = thrown(() => new LuaVM().load('local t = {} t.me = {up = t} return t', 'm'));
    expect(e).toBeInstanceOf(AoError);
    expect(e).toMatchObject({ status: 500, code: 'ERR_LUA_CONVERT' });
    expect(e.message).toBe('cannot convert a Lua value to JS: cycle detected (the table contains itself)');
  });

  it('accepts shared references that are not cycles, both ways', () => {
    const vm = vmWithHelpers();
    const shared = { v: 1 };
    expect(vm.call('id', [{ a: shared, b: shared }])).toEqual([{ a: { v: 1 }, b: { v: 1 } }]);
    expect(vm.load('local s = {1} return {s, s}', 'm')).toEqual([[[1], [1]]]);
  });

  it('refuses values nested deeper than 200 levels, both ways', () => {
    const vm = vmWithHelpers();
    let deep: unknown[] = [];
    for (let i = 0; i < 250; i++) deep = [deep];
    expect(thrown(() => vm.call('id', [deep])).message).toMatch(/^LuaVM#call\(\): value nested deeper than 200 levels/);
    const e = thrown(() => vm.load('local t = {} for i = 1, 250 do t = {t} end return t', 'm'));
    expect(e).toMatchObject({ status: 500, code: 'ERR_LUA_CONVERT' });
    expect(e.message).toBe('cannot convert a Lua value to JS: table nested deeper than 200 levels');
  });

  it('refuses JS values with no Lua form', () => {
    const vm = vmWithHelpers();
    expect(thrown(() => vm.call('id', [() => 1])).status).toBe(400);
    expect(thrown(() => vm.call('id', [new Map()])).message).toMatch(/only plain objects and arrays/);
    expect(thrown(() => vm.call('id', [new Uint16Array(2)])).message).toMatch(/only Uint8Array/);
  });

  it('refuses table keys with no JS form', () => {
    const e = thrown(() => new LuaVM().load('return {[{}] = 1}', 'm'));
    expect(e).toMatchObject({ status: 500, code: 'ERR_LUA_CONVERT' });
    expect(e.message).toBe('cannot convert a Lua value to JS: a table key of type table has no JS form');
  });

  it('gives functions, coroutines and userdata marker strings', () => {
    expect(new LuaVM().load('return print, function() end, coroutine.create(print)', 'm')).toEqual([
      '[lua function]',
      '[lua function]',
      '[lua thread]',
    ]);
  });

  it('looks dotted paths up with raw access, ignoring __index', () => {
    const vm = new LuaVM();
    vm.load('lib = {sub = {f = function(x) return x * 2 end}}\nproxy = setmetatable({}, {__index = lib})', 'm');
    expect(vm.call('lib.sub.f', [21])).toEqual([42]);
    const e = thrown(() => vm.call('proxy.sub.f', [1]));
    expect(e).toBeInstanceOf(LuaRuntimeError);
    expect(e.message).toBe("attempt to index a nil value ('proxy.sub')");
  });

  it('reads results raw: __index, __pairs and __len never run', () => {
    const vm = new LuaVM();
    const r = vm.load(
      `local mt = {__index = function() error("index") end, __pairs = function() error("pairs") end,
                   __len = function() error("len") end, __metatable = "locked"}
       return setmetatable({a = 1}, mt), setmetatable({1, 2}, mt)`,
      'm',
    );
    expect(r).toEqual([{ a: 1 }, [1, 2]]);
  });

  it('throws LuaRuntimeError naming a global that is not a function', () => {
    const vm = new LuaVM();
    vm.load('notfn = 5', 'm');
    const e = thrown(() => vm.call('notfn', []));
    expect(e).toBeInstanceOf(LuaRuntimeError);
    expect(e).toMatchObject({ status: 500, code: 'ERR_LUA_RUNTIME' });
    expect(e.message).toBe("attempt to call a number value (global 'notfn')");
    expect(thrown(() => vm.call('missing', [])).message).toBe("attempt to call a nil value (global 'missing')");
  });

  it('calls tables with a __call metamethod', () => {
    const vm = new LuaVM();
    vm.load('callable = setmetatable({}, {__call = function(self, x) return x + 1 end})', 'm');
    expect(vm.call('callable', [1])).toEqual([2]);
  });

  it('validates its arguments in TypeScript', () => {
    const vm = new LuaVM();
    expect(thrown(() => vm.call('', [])).message).toBe('LuaVM#call(fn, args): fn must be a non-empty string');
    expect(thrown(() => vm.call('f', 'x' as never)).message).toBe('LuaVM#call(fn, args): args must be an array');
  });
});

describe('LuaVM#load()', () => {
  it("returns the chunk's results", () => {
    expect(new LuaVM().load('local a, b = 2, 3 return a * b, "x"', 'm')).toEqual([6, 'x']);
    expect(new LuaVM().load(Buffer.from('return 1'), 'm')).toEqual([1]);
  });

  it('throws LuaSyntaxError with the chunk name and line number', () => {
    const e = thrown(() => new LuaVM().load('local x = 1\nlocal y = 2\nx = = 3', 'm.lua'));
    expect(e).toBeInstanceOf(LuaSyntaxError);
    expect(e).toMatchObject({ status: 500, code: 'ERR_LUA_SYNTAX' });
    expect(e.message).toBe(`[string "m.lua"]:3: unexpected symbol near '='`);
  });

  it('refuses binary chunks', () => {
    const e = thrown(() => new LuaVM().load(Buffer.from('\x1bLua\x53\x00'), 'bin'));
    expect(e).toBeInstanceOf(LuaSyntaxError);
    expect(e.message).toBe("attempt to load a binary chunk (mode is 't')");
  });
});

describe('LuaVM errors', () => {
  it('reports a runtime error with class, code, status, message and trace', () => {
    const vm = new LuaVM();
    vm.load('function f()\n  error("boom")\nend', 'm');
    const e = thrown(() => vm.call('f', []));
    expect(e).toBeInstanceOf(LuaRuntimeError);
    expect(e).toMatchObject({ status: 500, code: 'ERR_LUA_RUNTIME', message: '[string "m"]:2: boom', body: '[string "m"]:2: boom' });
    expect(e.trace).toBe(`stack traceback:\n\t[C]: in function 'error'\n\t[string "m"]:2: in function 'f'\n\t[C]: in ?`);
  });

  it('reports an error with a table value as body', () => {
    const vm = new LuaVM();
    vm.load('function f() error({code = 42, why = "bad"}) end', 'm');
    const e = thrown(() => vm.call('f', []));
    expect(e).toBeInstanceOf(LuaRuntimeError);
    expect(e.message).toBe('(error object is a table value)');
    expect(e.body).toEqual({ code: 42, why: 'bad' });
  });

  it('reports an error with a number value as its decimal form', () => {
    const e = thrown(() => new LuaVM().load('error(42)', 'm'));
    expect(e).toMatchObject({ message: '42', body: 42 });
  });

  it('stays usable after an error', () => {
    const vm = vmWithHelpers();
    expect(() => vm.load('error("x")', 'm')).toThrow(LuaRuntimeError);
    expect(vm.call('add', [1, 2])).toEqual([3]);
  });
});

describe('LuaVM limits', () => {
  it('turns string.rep("x", 1e9) under memoryLimit into LuaMemoryError and keeps working', () => {
    const vm = vmWithHelpers({ memoryLimit: 8 << 20 });
    const e = thrown(() => vm.load('return string.rep("x", 1e9)', 'm'));
    expect(e).toBeInstanceOf(LuaMemoryError);
    expect(e).toMatchObject({ status: 500, code: 'ERR_LUA_MEMORY' });
    expect(e.message).toBe('not enough memory (memoryLimit of 8388608 bytes reached)');
    expect(vm.call('add', [5, 3])).toEqual([8]);
  });

  it('turns an endless table-growing loop into LuaMemoryError and keeps working', () => {
    const vm = vmWithHelpers({ memoryLimit: 8 << 20 });
    const e = thrown(() => vm.load('local t = {} while true do t[#t + 1] = {} end', 'm'));
    expect(e).toBeInstanceOf(LuaMemoryError);
    expect(vm.call('add', [5, 3])).toEqual([8]);
    expect(vm.load('local t = {} for i = 1, 1000 do t[i] = i end return #t', 'm')).toEqual([1000]);
    expect(vm.memoryUsed).toBeLessThanOrEqual(8 << 20);
  });

  it('lets a script catch a memory error with pcall', () => {
    const vm = new LuaVM({ memoryLimit: 8 << 20 });
    expect(vm.load('return pcall(string.rep, "x", 1e9)', 'm')).toEqual([false, 'not enough memory for buffer allocation']);
  });

  it('refuses a memoryLimit too small for the libraries with LuaMemoryError', () => {
    expect(() => new LuaVM({ memoryLimit: 1000 })).toThrow(LuaMemoryError);
  });

  it('stops an endless loop with LimitError and resets the budget for the next call', () => {
    const vm = vmWithHelpers({ instructionLimit: 100_000 });
    const e = thrown(() => vm.load('while true do end', 'm'));
    expect(e).toBeInstanceOf(LimitError);
    expect(e).toMatchObject({ status: 500, code: 'ERR_LIMIT_STEPS', limit: 'steps', message: 'instruction limit of 100000 exceeded' });
    expect(vm.call('add', [1, 2])).toEqual([3]);
    for (let i = 0; i < 5; i++) expect(vm.load('local n = 0 for i = 1, 20000 do n = n + i end return n', 'm')).toEqual([200010000]);
  });

  it('cannot be swallowed by pcall inside the script', () => {
    const vm = vmWithHelpers({ instructionLimit: 100_000 });
    const e = thrown(() => vm.load('while true do pcall(function() while true do end end) end', 'm'));
    expect(e).toBeInstanceOf(LimitError);
    expect(e.limit).toBe('steps');
    expect(vm.call('add', [1, 2])).toEqual([3]);
  });

  it('cannot be escaped through an xpcall message handler', () => {
    const vm = new LuaVM({ instructionLimit: 100_000 });
    const e = thrown(() => vm.load('xpcall(function() while true do end end, function() while true do end end) return "escaped"', 'm'));
    expect(e).toBeInstanceOf(LimitError);
  });

  it('counts instructions run in coroutines', () => {
    const vm = new LuaVM({ instructionLimit: 100_000 });
    expect(() => vm.load('coroutine.wrap(function() while true do end end)()', 'm')).toThrow(LimitError);
    expect(() => vm.load('while true do coroutine.resume(coroutine.create(function() for i = 1, 500 do end end)) end', 'm')).toThrow(
      LimitError,
    );
  });
});

describe('LuaVM sandbox', () => {
  const ABSENT = ['io', 'debug', 'package', 'require', 'dofile', 'loadfile', 'string.dump', 'os.execute', 'os.exit', 'os.getenv',
    'os.remove', 'os.rename', 'os.tmpname', 'os.setlocale', 'loadstring', 'bit32'];
  it.each(ABSENT)('has no %s by default', (path) => {
    expect(new LuaVM().load(`return ${path} == nil`, 'm')).toEqual([true]);
  });

  it.each(['os.time', 'os.clock', 'os.date', 'os.difftime', 'load', 'pcall', 'xpcall', 'setmetatable', 'coroutine.wrap', 'utf8.char'])(
    'has %s by default',
    (path) => {
      expect(new LuaVM().load(`return type(${path})`, 'm')).toEqual(['function']);
    },
  );

  it('refuses binary chunks in load', () => {
    expect(new LuaVM().load('return load(string.char(27) .. "Lua\\83")', 'm')).toEqual([null, "attempt to load a binary chunk (mode is 't')"]);
    expect(new LuaVM().load('return load("return 7", "c", "b")()', 'm')).toEqual([7]);
  });

  it('refuses __gc metamethods in setmetatable', () => {
    expect(new LuaVM().load('return pcall(setmetatable, {}, {__gc = print})', 'm')).toEqual([
      false,
      '__gc metamethods are not supported in this sandbox',
    ]);
  });

  it('opens unsafe libraries only when named in libs', () => {
    const vm = new LuaVM({ libs: ['io', 'os', 'debug', 'package'] });
    expect(vm.load('return type(io.open), type(os.execute), type(debug.sethook), type(require), require("string") == string', 'm')).toEqual([
      'function',
      'function',
      'function',
      'function',
      true,
    ]);
    expect(new LuaVM({ libs: ['base', 'string'] }).load('return io', 'm')).toEqual([null]);
  });

  it('gives each VM its own deterministic math.random', () => {
    const seq = (vm: LuaVM) => vm.load('local t = {} for i = 1, 5 do t[i] = math.random(1000) end return t', 'm')[0];
    const a = new LuaVM();
    const b = new LuaVM();
    a.load('math.randomseed(42)', 'm');
    b.load('math.randomseed(42)', 'm');
    const first = seq(a);
    b.load('math.random()', 'm'); // consuming b's generator leaves a's untouched
    a.load('math.randomseed(42)', 'm');
    b.load('math.randomseed(42)', 'm');
    expect(seq(a)).toEqual(first);
    expect(seq(b)).toEqual(first);
    expect(seq(new LuaVM())).toEqual(seq(new LuaVM()));
    expect(new LuaVM().load('local x = math.random() return x >= 0 and x < 1, math.random(3, 3)', 'm')).toEqual([true, 3]);
    expect(new LuaVM().load('return pcall(math.random, 2, 1)', 'm')).toEqual([false, "bad argument #1 to 'math.random' (interval is empty)"]);
  });
});

describe('LuaVM determinism', () => {
  it('table.sort orders ties the same way in every VM and run (no clock-seeded pivots)', () => {
    const SRC = `
      function sorted(n)
        local t = {}
        for i = 1, n do t[i] = { k = (i * 7919) % 3, id = i } end
        table.sort(t, function(a, b) return a.k < b.k end)
        local ids = {}
        for i = 1, n do ids[i] = t[i].id end
        return table.concat(ids, ",")
      end`;
    const runs = [0, 1, 2].map(() => {
      const vm = new LuaVM();
      vm.load(SRC, 'sort');
      const r = vm.call('sorted', [20000])[0];
      vm.dispose();
      return r;
    });
    expect(runs[1]).toBe(runs[0]);
    expect(runs[2]).toBe(runs[0]);
  });
});

describe('LuaVM determinism: table layout does not depend on when the collector ran', () => {
  it('re-inserting removed string keys gives the same pairs order with or without a collection between', () => {
    const SRC = `
      function order(gc)
        local t = {}
        for i = 1, 300 do t["key" .. i] = i end
        for i = 1, 300, 2 do t["key" .. i] = nil end
        if gc then collectgarbage() collectgarbage() end
        for i = 1, 300, 2 do t["key" .. i] = -i end
        local ks = {}
        for k in pairs(t) do ks[#ks + 1] = k end
        return table.concat(ks, ",")
      end`;
    const vm = new LuaVM();
    vm.load(SRC, 'gc');
    expect(vm.call('order', [true])).toEqual(vm.call('order', [false]));
    vm.dispose();
  });
});

describe('LuaVM#setGlobalFunction()', () => {
  it('makes a JS function callable from Lua, with converted arguments and result', () => {
    const vm = new LuaVM();
    const seen: unknown[] = [];
    vm.setGlobalFunction('host.add', (a: number, b: number) => a + b);
    vm.setGlobalFunction('echo', (...args: unknown[]) => {
      seen.push(args);
      return { got: args.length, list: [1, 2] };
    });
    expect(vm.load('return host.add(2, 3)', 'm')).toEqual([5]);
    expect(vm.load('local r = echo(1, "s", {k = true}, nil) return r.got, r.list[2]', 'm')).toEqual([4, 2]);
    expect(seen).toEqual([[1, 's', { k: true }, null]]);
  });

  it('turns a JS exception into a Lua error catchable with pcall', () => {
    const vm = new LuaVM();
    vm.setGlobalFunction('fail', () => {
      throw new Error('js boom');
    });
    expect(vm.load('return pcall(fail)', 'm')).toEqual([false, 'js boom']);
  });

  it('surfaces an uncaught JS exception as LuaRuntimeError with the original error as cause', () => {
    const vm = new LuaVM();
    const original = new RangeError('out of range');
    vm.setGlobalFunction('fail', () => {
      throw original;
    });
    vm.load('function f() fail() end', 'm');
    const e = thrown(() => vm.call('f', []));
    expect(e).toBeInstanceOf(LuaRuntimeError);
    expect(e.message).toBe('out of range');
    expect(e.cause).toBe(original);
    expect(e.trace).toContain("in function 'fail'");
  });

  it('supports nested calls into the same VM from a host function, also from a coroutine', () => {
    const vm = vmWithHelpers();
    vm.setGlobalFunction('twice', (x: number) => (vm.call('add', [x, x])[0] as number));
    expect(vm.load('return twice(21)', 'm')).toEqual([42]);
    vm.load('co = coroutine.wrap(function() local v = twice(4) coroutine.yield(v) return twice(v) end)', 'm');
    expect(vm.load('return co(), co()', 'm')).toEqual([8, 16]);
  });

  it('replaces the function of a path registered again', () => {
    const vm = new LuaVM();
    vm.setGlobalFunction('f', () => 1);
    vm.load('saved = f', 'm');
    vm.setGlobalFunction('f', () => 2);
    expect(vm.load('return saved(), f()', 'm')).toEqual([2, 2]);
  });

  it('refuses a path through a value that is not a table', () => {
    const vm = new LuaVM();
    vm.load('x = 1', 'm');
    const e = thrown(() => vm.setGlobalFunction('x.f', () => 1));
    expect(e).toMatchObject({ status: 400, code: 'ERR_INVALID_ARG' });
    expect(e.message).toBe("LuaVM#setGlobalFunction(): cannot set 'x.f': 'x' is a number, not a table");
    expect(thrown(() => vm.setGlobalFunction('a..b', () => 1)).status).toBe(400);
  });
});

describe('LuaVM#globals()', () => {
  it('lists the string keys of the globals table, sorted', () => {
    const vm = new LuaVM();
    vm.load('zeta = 1; alpha = 2; _G[1] = 3', 'm');
    const g = vm.globals();
    expect(g).toEqual([...g].sort());
    expect(g).toContain('alpha');
    expect(g).toContain('zeta');
    expect(g.filter((n) => !['alpha', 'zeta'].includes(n))).toEqual(new LuaVM().globals());
  });
});

describe('LuaVM snapshots', () => {
  const PROGRAM = `
    counter = 0
    local step = 5
    function inc() counter = counter + step; return counter end
    local shared = 0
    function bump() shared = shared + 1; return shared end
    function peek() return shared end
    data = {list = {1, 2.5, "three", true}, bytes = "\\0\\255", nested = {deep = {x = 1}}, [7] = "seven"}
    data.self = data
    alias = data.list
    mt = setmetatable({}, {__index = function(t, k) return k .. "!" end})
    string.shout = function(s) return s:upper() .. "!" end
    print = nil
    big = math.maxinteger
  `;

  it('round-trips globals of data and of functions with shared upvalues', () => {
    const vm = new LuaVM();
    vm.load(PROGRAM, 'prog');
    vm.call('inc', []);
    vm.call('bump', []);
    const r = LuaVM.restore(vm.snapshot());
    expect(r.call('inc', [])).toEqual([10]);
    expect(r.call('bump', [])).toEqual([2]);
    expect(r.call('peek', [])).toEqual([2]); // bump and peek still share `shared`
    expect(r.load('return data.self == data, alias == data.list, data.list[2], math.type(data.list[2]), data[7]', 'm')).toEqual([
      true,
      true,
      2.5,
      'float',
      'seven',
    ]);
    expect(r.load('return data.bytes', 'm')).toEqual([Buffer.from([0, 255])]);
    expect(r.load('return mt.hello, ("a"):shout(), print, big', 'm')).toEqual(['hello!', 'A!', null, 2n ** 63n - 1n]);
  });

  it('restores closures whose upvalue holds a closure sharing that upvalue (self-reference)', () => {
    const vm = new LuaVM();
    vm.load('local g; g = function() return g end; J = { f = function() return g end }', 'fwd');
    vm.load('local enc; local function et(v) return enc(v) end; local map = { t = et }; enc = function(v) if v > 0 then return map.t(v - 1) + 1 end return 0 end; E = function(v) return enc(v) end', 'fwd2');
    const r = LuaVM.restore(vm.snapshot());
    expect(r.load('return J.f() == J.f(), J.f()() == J.f(), E(5)', 'm')).toEqual([true, true, 5]);
  });

  it('is canonical: snapshot, restore, snapshot gives the same bytes', () => {
    const vm = new LuaVM();
    vm.load(PROGRAM, 'prog');
    const s1 = vm.snapshot();
    const s2 = LuaVM.restore(s1).snapshot();
    expect(Buffer.compare(s1, s2)).toBe(0);
    expect(Buffer.compare(new LuaVM().snapshot(), new LuaVM().snapshot())).toBe(0);
  });

  it('keeps the state of math.random', () => {
    const vm = new LuaVM();
    vm.load('math.randomseed(7); math.random()', 'm');
    const r = LuaVM.restore(vm.snapshot());
    expect(r.load('return math.random(1e9)', 'm')).toEqual(vm.load('return math.random(1e9)', 'm'));
  });

  it('restores host functions by path, to be registered again', () => {
    const vm = new LuaVM();
    vm.setGlobalFunction('host.add', (a: number, b: number) => a + b);
    vm.load('local add = host.add; function viaUpvalue(a, b) return add(a, b) end', 'm');
    const r = LuaVM.restore(vm.snapshot());
    expect(thrown(() => r.call('viaUpvalue', [1, 2])).message).toBe(
      "host function 'host.add' is not registered (after a restore, register it again with setGlobalFunction)",
    );
    r.setGlobalFunction('host.add', (a: number, b: number) => a * b);
    expect(r.call('viaUpvalue', [3, 4])).toEqual([12]);
  });

  it('keeps the libraries of the snapshot', () => {
    const vm = new LuaVM({ libs: ['io'] });
    expect(LuaVM.restore(vm.snapshot()).load('return type(io)', 'm')).toEqual(['table']);
  });

  it('refuses a corrupted byte with SnapshotError "checksum mismatch"', () => {
    const vm = new LuaVM();
    vm.load(PROGRAM, 'prog');
    const s = Buffer.from(body(vm.snapshot()));
    s[s.length - 3] ^= 1;
    const e = thrown(() => LuaVM.restore(s));
    expect(e).toBeInstanceOf(SnapshotError);
    expect(e).toMatchObject({ status: 400, code: 'ERR_SNAPSHOT', message: 'checksum mismatch' });
  });

  it('refuses a truncated snapshot', () => {
    const s = body(new LuaVM().snapshot());
    const e = thrown(() => LuaVM.restore(s.subarray(0, s.length - 1)));
    expect(e).toBeInstanceOf(SnapshotError);
    expect(e.message).toBe(`truncated: the header announces ${s.length - 28} payload bytes, ${s.length - 29} present`);
    expect(thrown(() => LuaVM.restore(s.subarray(0, 10))).message).toBe('truncated: 10 bytes, shorter than the 28-byte header');
  });

  it('refuses a WASM snapshot as not a Lua snapshot', () => {
    // (module (memory 1))
    const bytes = Uint8Array.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 3, 1, 0, 1]);
    const wasm = new WasmInstance(WasmModule.compile(bytes, { cache: false })).snapshot();
    const e = thrown(() => LuaVM.restore(wasm));
    expect(e).toBeInstanceOf(SnapshotError);
    expect(e).toMatchObject({ status: 400, code: 'ERR_SNAPSHOT', message: 'not a Lua snapshot (this is a WASM snapshot)' });
  });

  it('refuses bad magic, other versions and trailing bytes', () => {
    const s = body(new LuaVM().snapshot());
    expect(thrown(() => LuaVM.restore(Buffer.from('something else entirely, long enough')))).toMatchObject({
      message: 'bad magic: not a Lua snapshot',
    });
    const v7 = Buffer.from(s);
    v7.writeUInt32LE(7, 6);
    expect(thrown(() => LuaVM.restore(v7)).message).toBe('unsupported snapshot version 7 (this build reads version 2)');
    expect(thrown(() => LuaVM.restore(Buffer.concat([s, Buffer.from([0])]))).message).toBe(
      'length mismatch: 1 bytes after the announced payload',
    );
  });

  it('refuses to capture an open file, naming where it is', () => {
    const vm = new LuaVM({ libs: ['io'] });
    vm.load('state = {f = io.tmpfile()}', 'm');
    const e = thrown(() => vm.snapshot());
    expect(e).toBeInstanceOf(SnapshotError);
    expect(e.status).toBe(500);
    expect(e.message).toBe('cannot snapshot a userdata (an open file or another C object) at _G.state.f');
    vm.load('state.f:close()', 'm');
    const again = LuaVM.restore(vm.snapshot());
    expect(again.load('return io.type(state.f), io.type(io.stdout)', 'm')).toEqual(['closed file', 'file']);
  });

  it('is not allowed during a call', () => {
    const vm = new LuaVM();
    vm.setGlobalFunction('snap', () => vm.snapshot());
    const e = thrown(() => vm.load('snap()', 'm'));
    expect(e).toBeInstanceOf(LuaRuntimeError);
    expect(e.message).toBe('LuaVM is busy: this cannot be done during a call');
    expect(e.cause).toBeInstanceOf(TypeError);
  });
});

describe('LuaVM lifecycle', () => {
  it('throws a plain TypeError when used after dispose', () => {
    const vm = vmWithHelpers();
    vm.dispose();
    for (const use of [() => vm.call('add', [1, 2]), () => vm.load('return 1', 'm'), () => vm.globals(), () => vm.snapshot()]) {
      const e = thrown(use);
      expect(e.constructor).toBe(TypeError);
      expect(e.message).toBe('LuaVM is closed');
    }
  });

  it('allows dispose twice', () => {
    const vm = new LuaVM();
    vm.dispose();
    expect(() => vm.dispose()).not.toThrow();
  });

  it('defers a dispose from inside a host function until the outermost call returns', () => {
    const vm = vmWithHelpers();
    let during: string | undefined;
    vm.setGlobalFunction('closeMe', () => {
      vm.dispose();
      during = thrown(() => vm.call('add', [1, 1])).message;
      return 'after';
    });
    vm.load('function run() local r = closeMe() return r, add(2, 2) end', 'm');
    expect(vm.call('run', [])).toEqual(['after', 4]);
    expect(during).toBe('LuaVM is closed');
    expect(thrown(() => vm.call('add', [1, 2])).message).toBe('LuaVM is closed');
  });

  it('rejects misspelled and invalid options', () => {
    expect(thrown(() => new LuaVM({ memorylimit: 1 } as never))).toMatchObject({
      status: 400,
      message: "new LuaVM(): unknown option 'memorylimit': did you mean 'memoryLimit'?",
    });
    expect(thrown(() => new LuaVM({ libs: ['sockets'] } as never)).message).toBe(
      'new LuaVM(): unknown library "sockets" (known: base, coroutine, table, string, utf8, math, os, io, debug, package)',
    );
    expect(thrown(() => new LuaVM({ instructionLimit: 0 })).message).toBe('new LuaVM(): instructionLimit must be a positive integer, got 0');
    expect(thrown(() => LuaVM.restore(new LuaVM().snapshot(), { libs: [] } as never)).message).toBe(
      "LuaVM.restore(): unknown option 'libs' (allowed: memoryLimit, instructionLimit, timeLimit, print, outputLimit, clock, trusted)",
    );
  });

  it('refuses native methods called on an object that is not a LuaVM', () => {
    const handle = new native.LuaVM();
    const call = (handle as unknown as { call: Function }).call;
    expect(thrown(() => call.call({}, 'f', [])).constructor).toBe(TypeError);
    const module = native.WasmModule.compile(
      Buffer.from('AGFzbQEAAAABBgFgAXwBfAMCAQAHBwEDZmFjAAAKLgEsACAARAAAAAAAAPA/YwR8RAAAAAAAAPA/BSAAIABEAAAAAAAA8D+hEACiCws=', 'base64'),
      0,
    );
    const e = thrown(() => call.call(module, 'f', []));
    expect(e.constructor).toBe(TypeError);
    expect(e.message).toBe('Illegal invocation');
  });
});
