import fc from 'fast-check';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SnapshotError } from '../../src/errors';
import { LuaVM } from '../../src/lua';
import { SEAL_BYTES } from '../../src/lua-trust';
import { native } from '../../src/native';
import { WasmInstance, WasmModule } from '../../src/wasm';
import { runChild } from '../helpers/child';
import { describeShared, REPO_ROOT, sharedFixture } from '../helpers/fixtures';
import { thrown } from '../helpers/thrown';

/** The native snapshot inside a sealed one (docs/lua-vm.md, "Trust"). */
const body = (sealed: Buffer): Buffer => sealed.subarray(0, sealed.length - SEAL_BYTES);

// A deterministic transcript of a value: tables in `next` order with `#t`, objects numbered by
// first visit (never addresses), numbers with their subtype and exact digits, strings quoted.
const DUMP = String.raw`
function __dump(root)
  local seen, n, out = {}, 0, {}
  local function w(s) out[#out + 1] = s end
  local function dump(v)
    local tv = type(v)
    if tv == 'table' then
      if seen[v] then w('@' .. seen[v]) return end
      n = n + 1; seen[v] = n
      w('{#' .. n .. ' len=' .. rawlen(v) .. ' ')
      for k, x in next, v do dump(k); w('='); dump(x); w(',') end
      local mt = getmetatable(v)
      if mt ~= nil then w(' mt='); dump(mt) end
      w('}')
    elseif tv == 'function' or tv == 'thread' or tv == 'userdata' then
      if seen[v] then w('@' .. seen[v]) return end
      n = n + 1; seen[v] = n
      w(tv .. '#' .. n)
      if tv == 'thread' then w('(' .. coroutine.status(v) .. ')') end
    elseif tv == 'number' then
      w(math.type(v) .. ':' .. string.format('%q', v))
    elseif tv == 'string' then
      w(string.format('%q', v))
    else
      w(tostring(v))
    end
  end
  dump(root)
  return table.concat(out)
end
`;

/** Snapshot, restore, snapshot: the bytes must be identical. Returns the restored VM. */
function roundtrip(vm: LuaVM): LuaVM {
  const s1 = vm.snapshot();
  expect(Buffer.compare(vm.snapshot(), s1)).toBe(0); // taking a snapshot changes nothing
  const r = LuaVM.restore(s1);
  const s2 = r.snapshot();
  expect(s2.length).toBe(s1.length);
  expect(Buffer.compare(s1, s2)).toBe(0);
  return r;
}

/** Runs `code` in both VMs (same operations on both) and expects the same results. */
function same(a: LuaVM, b: LuaVM, code: string): unknown[] {
  const x = a.load(code, 'check');
  const y = b.load(code, 'check');
  expect(y).toEqual(x);
  return x;
}

describe('Lua snapshot v2: tables are restored slot by slot', () => {
  const BUILD = `
    t = {}
    for i = 1, 40 do t['k' .. i] = i end
    for i = 1, 40, 3 do t['k' .. i] = nil end
    for i = 1, 12 do t[i] = i * 10 end
    t[5] = nil; t[9] = nil
    t[2^53] = 'big'; t[-7] = 'neg'; t[1.5] = 'float'; t[-0.25] = 'negf'
    t[true] = 'yes'; t[false] = 'no'
    keyt = {}; keyf = function() end
    t[keyt] = 'table key'; t[keyf] = 'function key'; t[print] = 'light C function key'
    t[coroutine.create(print)] = 'thread key'
    for i = 1, 10 do t[{}] = i end
    t.k2 = nil; t[keyt] = nil; t.late = 'added after deletes'
    holes = {1, 2, nil, 4, nil, nil, 7}
    holes[20] = 20
    len0 = #holes
  `;

  it('keeps pairs order, #t with holes and next continuation in a new VM', () => {
    const vm = new LuaVM();
    vm.load(BUILD, 'build');
    const r = roundtrip(vm);
    vm.load(DUMP, 'dump');
    r.load(DUMP, 'dump');
    const d = same(vm, r, 'return __dump(t), #holes, __dump(holes), len0');
    expect(d[1]).toBe(d[3]);
    same(vm, r, 'local k = next(t); for i = 1, 17 do k = next(t, k) end; return __dump(k), __dump(t[k]), __dump((next(t, k)))');
    // Layout identical: later inserts land in the same slots, so the order still agrees.
    same(vm, r, "for i = 1, 30 do t[{}] = i; t['n' .. i] = i end; t[7] = nil; t[100] = 1; return __dump(t)");
    same(vm, r, 'local n = 0; for k in pairs(t) do n = n + 1 end; return n, #t');
  });

  it('is address-independent: two VMs running the same program give the same bytes', () => {
    // Different heaps: c allocates and frees strings first (strings take no serial; a chunk or a
    // table would, and then the serials, part of the bytes, would differ).
    const a = new LuaVM();
    a.load(BUILD, 'build');
    const c = new LuaVM();
    for (let i = 1; i < 300; i++) c.call('string.rep', ['x', i * 20]); // below LUAL_BUFFERSIZE: no LUABOX
    c.call('collectgarbage', []);
    c.load(BUILD, 'build');
    expect(Buffer.compare(a.snapshot(), c.snapshot())).toBe(0);
    expect(a.load('local o = {} for k, v in pairs(t) do o[#o + 1] = tostring(v) end return table.concat(o, " ")', 'o')).toEqual(
      c.load('local o = {} for k, v in pairs(t) do o[#o + 1] = tostring(v) end return table.concat(o, " ")', 'o'),
    );
  });

  it('restores keys removed during traversal so that next() can go on from them', () => {
    const vm = new LuaVM();
    vm.load("t = {}; for i = 1, 10 do t['k' .. i] = i end; first = next(t); t[first] = nil", 'm');
    const r = roundtrip(vm);
    same(vm, r, 'local out = {}; local k = first; repeat k = next(t, k); out[#out + 1] = tostring(k) until k == nil; return table.concat(out, " ")');
  });

  it('keeps integer and float keys apart, math.type, -0.0, NaN and binary strings', () => {
    const vm = new LuaVM();
    vm.load(String.raw`
      t = {[1] = 'int', [1.5] = 'float', [2^63] = 'huge float', [math.mininteger] = 'minint'}
      nz = -0.0; nan = 0/0; inf = math.huge; bin = "\0\1\255\r\n" .. string.rep("\128", 40)
      f = 3.0
    `, 'm');
    const r = roundtrip(vm);
    expect(r.load('return t[1], t[1.0], t[1.5], math.type(f), 1/nz, nan ~= nan, inf, t[math.mininteger]', 'm')).toEqual([
      'int', 'int', 'float', 'float', -Infinity, true, Infinity, 'minint',
    ]);
    expect(r.load('return bin', 'm')).toEqual([Buffer.concat([Buffer.from([0, 1, 255, 13, 10]), Buffer.alloc(40, 0x80)])]);
    expect(r.load('return math.type(2^63), t[2^63]', 'm')).toEqual(['float', 'huge float']);
  });
});

describe('Lua snapshot v2: coroutines', () => {
  it('resumes a generator suspended mid-loop identically, in a new VM', () => {
    const vm = new LuaVM();
    vm.load('gen = coroutine.create(function(n) local acc = 0; for i = 1, n do acc = acc + i; coroutine.yield(i, acc) end; return "done", acc end); coroutine.resume(gen, 5); coroutine.resume(gen)', 'm');
    const r = roundtrip(vm);
    const code = 'local out = {}; for i = 1, 5 do local r = {coroutine.resume(gen)}; out[#out + 1] = tostring(r[2]) .. "/" .. tostring(r[3]) end; return table.concat(out, " "), coroutine.status(gen)';
    expect(same(vm, r, code)).toEqual(['3/6 4/10 5/15 done/15 cannot resume dead coroutine/nil', 'dead']);
  });

  it('resumes a coroutine suspended inside pcall and xpcall within the coroutine', () => {
    const vm = new LuaVM();
    vm.load(`
      co = coroutine.create(function()
        local ok, v = pcall(function()
          local got = coroutine.yield('in pcall')
          error('boom ' .. got, 0)
        end)
        local ok2, v2 = xpcall(function() return coroutine.yield('in xpcall') * 2 end, function(m) return 'handled: ' .. m end)
        local ok3, v3 = xpcall(function() coroutine.yield('again'); error('late') end, function(m) return 'handled: ' .. m end)
        return tostring(ok) .. ':' .. v, tostring(ok2) .. ':' .. tostring(v2), tostring(ok3) .. ':' .. v3
      end)
      first = select(2, coroutine.resume(co))
    `, 'm');
    expect(vm.load('return first', 'm')).toEqual(['in pcall']);
    const r = roundtrip(vm);
    const code = 'local a = {coroutine.resume(co, "x")}; local b = {coroutine.resume(co, 21)}; local c = {coroutine.resume(co)}; return a[2], b[2], c[2], c[3], c[4]';
    expect(same(vm, r, code)).toEqual(['in xpcall', 'again', 'false:boom x', 'true:42', 'false:handled: [string "m"]:8: late']);
  });

  it('keeps nested coroutines (a coroutine resumed by a suspended coroutine) and their status', () => {
    const vm = new LuaVM();
    vm.load(`
      inner = coroutine.create(function() for i = 1, 3 do coroutine.yield('inner ' .. i) end end)
      outer = coroutine.create(function()
        while true do
          local ok, v = coroutine.resume(inner)
          coroutine.yield('outer got ' .. tostring(v) .. ' (' .. coroutine.status(inner) .. ')')
        end
      end)
      coroutine.resume(outer)
    `, 'm');
    const r = roundtrip(vm);
    expect(same(vm, r, 'return coroutine.status(outer), coroutine.status(inner), select(2, coroutine.resume(outer)), select(2, coroutine.resume(outer)), select(2, coroutine.resume(outer))')).toEqual([
      'suspended', 'suspended', 'outer got inner 2 (suspended)', 'outer got inner 3 (suspended)', 'outer got nil (dead)',
    ]);
  });

  it('keeps coroutine.wrap and string.gmatch iterators mid-way', () => {
    const vm = new LuaVM();
    vm.load(`
      words = string.gmatch("one two three four", "%a+"); words()
      count = coroutine.wrap(function() local i = 0; while true do i = i + 1; coroutine.yield(i) end end); count(); count()
      chars = utf8.codes("héllo"); iter, state, ctl = ipairs({10, 20, 30})
    `, 'm');
    const r = roundtrip(vm);
    expect(same(vm, r, 'return words(), words(), words(), count(), count(), iter(state, 1)')).toEqual(['two', 'three', 'four', 3, 4, 2, 20]);
    expect(same(vm, r, 'return words(), select(2, chars("héllo", 1))')).toEqual([null, 0xe9]);
  });

  it('keeps dead and not-started coroutines as they are', () => {
    const vm = new LuaVM();
    vm.load(`
      done = coroutine.create(function() return 1 end); coroutine.resume(done)
      failed = coroutine.create(function() error({code = 7}) end); ok, err = coroutine.resume(failed)
      fresh = coroutine.create(function(a, b) return a + b end)
    `, 'm');
    const r = roundtrip(vm);
    expect(same(vm, r, 'return coroutine.status(done), coroutine.status(failed), coroutine.status(fresh), err.code, select(2, coroutine.resume(done)), select(2, coroutine.resume(fresh, 2, 3))')).toEqual([
      'dead', 'dead', 'suspended', 7, 'cannot resume dead coroutine', 5,
    ]);
  });

  it('resumes coroutines suspended inside metamethods and generic-for iterators', () => {
    const vm = new LuaVM();
    vm.load(`
      lazy = setmetatable({}, {__index = function(t, k) return coroutine.yield('need ' .. k) end,
                               __concat = function(a, b) return coroutine.yield('concat') end})
      co = coroutine.create(function()
        local v = lazy.foo
        local w = lazy .. 'x'
        local sum = 0
        for i in function(_, i) i = (i or 0) + 1; if i <= 3 then coroutine.yield('iter ' .. i); return i end end do sum = sum + i end
        return v .. '/' .. w .. '/' .. sum
      end)
      first = select(2, coroutine.resume(co))
    `, 'm');
    expect(vm.load('return first', 'm')).toEqual(['need foo']);
    const r = roundtrip(vm);
    const code = 'local o = {} for i = 1, 5 do local ok, v = coroutine.resume(co, "got" .. i) o[#o + 1] = tostring(v) end return table.concat(o, " ")';
    expect(same(vm, r, code)).toEqual(['concat iter 1 iter 2 iter 3 got1/got2/6']);
  });

  it('keeps a coroutine stopped by the instruction limit (its error value is the limit sentinel)', () => {
    const vm = new LuaVM({ instructionLimit: 50_000 });
    vm.load('co = coroutine.create(function() while true do end end)', 'm');
    expect(thrown(() => vm.load('coroutine.resume(co)', 'm')).constructor.name).toBe('LimitError');
    const r = roundtrip(vm);
    expect(same(vm, r, 'return coroutine.status(co), coroutine.resume(co)')).toEqual(['dead', false, 'cannot resume dead coroutine']);
  });

  it('keeps an open upvalue shared by a suspended frame and a closure outside', () => {
    const vm = new LuaVM();
    vm.load(`
      co = coroutine.create(function()
        local x = 1
        getx = function() return x end
        setx = function(v) x = v end
        while true do coroutine.yield(x); x = x * 10 end
      end)
      coroutine.resume(co)
    `, 'm');
    const r = roundtrip(vm);
    r.load('collectgarbage(); collectgarbage()', 'gc'); // the open upvalue survives collections
    vm.load('collectgarbage(); collectgarbage()', 'gc');
    // Writing through the closure is seen by the frame, and the frame's writes by the closure.
    expect(same(vm, r, 'setx(5); local _, a = coroutine.resume(co); local b = getx(); setx(7); local _, c = coroutine.resume(co); return a, b, c, getx()')).toEqual([50, 50, 70, 70]);
  });
});

describe('Lua snapshot v2: functions, metatables, library state', () => {
  it('keeps shared upvalues, shared prototypes and the closure cache', () => {
    const vm = new LuaVM();
    vm.load(`
      local n = 0
      function incr() n = n + 1; return n end
      function get() return n end
      function make() return function() return 42 end end
      a, b = make(), make()
      counters = {}
      for i = 1, 3 do local c = 0; counters[i] = function() c = c + i; return c end end
    `, 'm');
    vm.call('incr');
    const r = roundtrip(vm);
    expect(same(vm, r, 'return incr(), get(), a == b, make() == a, counters[2](), counters[2](), counters[3]()')).toEqual([2, 2, true, true, 2, 4, 3]);
  });

  it('keeps __index chains and changes to the string metatable', () => {
    const vm = new LuaVM();
    vm.load(`
      Base = {hello = function(self) return 'hello from ' .. self.name end}
      Base.__index = Base
      Mid = setmetatable({shout = function(self) return self:hello():upper() end}, Base)
      Mid.__index = Mid
      obj = setmetatable({name = 'obj'}, Mid)
      getmetatable('').__index.twice = function(s) return s .. s end
      getmetatable('').__add = function(a, b) return a .. '+' .. b end
    `, 'm');
    const r = roundtrip(vm);
    expect(same(vm, r, 'return obj:shout(), ("ab"):twice(), "x" + "y", getmetatable(obj) == Mid')).toEqual(['HELLO FROM OBJ', 'abab', 'x+y', true]);
  });

  it('continues the math.random sequence', () => {
    const vm = new LuaVM();
    vm.load('math.randomseed(42); for i = 1, 5 do math.random() end', 'm');
    const r = roundtrip(vm);
    same(vm, r, 'local t = {}; for i = 1, 10 do t[i] = math.random(1000000) end; return table.concat(t, ",")');
  });

  it('restores closures whose upvalue refers back to themselves through a forward-declared local', () => {
    const vm = new LuaVM();
    vm.load(`
      local encode
      local function et(v) return encode(v) end
      local map = { t = et }
      encode = function(v) return map.t == et and v end
      J = { encode = function(v) return encode(v) end }
    `, 'a');
    vm.load('local g; g = function() return g end; K = { f = function() return g end }', 'b');
    const r = roundtrip(vm);
    expect(same(vm, r, 'return J.encode(5), K.f() == K.f(), K.f()() == K.f()')).toEqual([5, true, true]);
  });

  it('restores a VM that built long strings (lauxlib keeps a LUABOX metatable in the registry)', () => {
    const vm = new LuaVM();
    vm.load('big = string.rep("ab", 50000); joined = table.concat({big, big})', 'm');
    const r = roundtrip(vm);
    expect(same(vm, r, 'return #big, #joined, #string.rep("z", 70000), type(debug)')).toEqual([100000, 200000, 70000, 'nil']);
  });

  it('keeps the standard streams and the io library', () => {
    const vm = new LuaVM({ libs: ['io'] });
    vm.load('out = io.stdout; io.output(io.stderr)', 'm');
    const r = roundtrip(vm);
    expect(same(vm, r, 'return io.type(out), out == io.stdout, io.output() == io.stderr, tostring(io.stdin):sub(1, 6)')).toEqual(['file', true, true, 'file (']);
    // The fresh state's own streams, now garbage, are collected without their finalizers failing.
    expect(r.load('collectgarbage(); local t = {} for i = 1, 1e5 do t[i] = {} end; collectgarbage(); return io.type(out)', 'm')).toEqual(['file']);
  });

  it('restores in another process: same bytes and the same behaviour', () => {
    const vm = new LuaVM();
    vm.load('t = {}; for i = 1, 20 do t[{}] = i; t[tostring(i)] = i end; gen = coroutine.wrap(function() for i = 1, 9 do coroutine.yield(i) end end); gen()', 'm');
    const snap = body(vm.snapshot());
    const order = 'local o = {} for k, v in pairs(t) do o[#o + 1] = type(k) .. v end return table.concat(o, " ") .. " " .. gen()';
    const child = runChild(
      `const s = Buffer.from(${JSON.stringify(snap.toString('base64'))}, 'base64');\n` +
        `const vm = addon.LuaVM.restore(s, {});\n` +
        `process.stdout.write(JSON.stringify([Buffer.compare(s, vm.snapshot()), vm.load(${JSON.stringify(order)}, 'o')]));`,
    );
    expect(child.stderr).toBe('');
    expect(JSON.parse(child.stdout)).toEqual([0, vm.load(order, 'o')]);
  });
});

// ---- Property tests ------------------------------------------------------------------------------

type Op =
  | { op: 'new' }
  | { op: 'set'; t: number; k: Key; v: Val }
  | { op: 'del'; t: number; k: Key }
  | { op: 'closure'; t: number; k: Key }
  | { op: 'co'; t: number };
type Key = { kind: 'int' | 'float' | 'str' | 'bool' | 'tab' | 'fn'; n: number };
type Val = { kind: 'int' | 'str' | 'tab' | 'float'; n: number };

const keyArb: fc.Arbitrary<Key> = fc.record({
  kind: fc.constantFrom('int', 'int', 'float', 'str', 'str', 'bool', 'tab', 'fn'),
  n: fc.integer({ min: 0, max: 40 }),
}) as fc.Arbitrary<Key>;
const valArb: fc.Arbitrary<Val> = fc.record({ kind: fc.constantFrom('int', 'str', 'tab', 'float'), n: fc.integer({ min: 0, max: 40 }) }) as fc.Arbitrary<Val>;
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 1, arbitrary: fc.constant({ op: 'new' as const }) },
  { weight: 6, arbitrary: fc.record({ op: fc.constant('set' as const), t: fc.nat(20), k: keyArb, v: valArb }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('del' as const), t: fc.nat(20), k: keyArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('closure' as const), t: fc.nat(20), k: keyArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('co' as const), t: fc.nat(20) }) },
);

function luaKey(k: Key): string {
  switch (k.kind) {
    case 'int': return String(k.n - 5);
    case 'float': return `${k.n}.5`;
    case 'str': return JSON.stringify(`s${k.n}`);
    case 'bool': return k.n % 2 === 0 ? 'true' : 'false';
    case 'tab': return `T[${(k.n % 8) + 1}]`;
    case 'fn': return `F[${(k.n % 4) + 1}]`;
  }
}

function luaVal(v: Val): string {
  switch (v.kind) {
    case 'int': return String(v.n);
    case 'float': return `${v.n} / 4`;
    case 'str': return JSON.stringify(`v${v.n}`);
    case 'tab': return `T[${(v.n % 8) + 1}]`; // shared subtables and cycles
  }
}

function program(ops: Op[]): string {
  const lines = [
    'T = {}; for i = 1, 8 do T[i] = {} end',
    'F = {}; for i = 1, 4 do local c = i; F[i] = function(x) c = c + (x or 1); return c end end',
    // Coroutines suspended in the middle of a traversal of one of the tables.
    'CO = {}; function walker(t) return coroutine.create(function() for k, v in next, t do coroutine.yield(type(k), type(v)) end; return "end" end) end',
  ];
  for (const o of ops) {
    const t = (n: number) => `T[${(n % 8) + 1}]`;
    if (o.op === 'new') lines.push('T[#T + 1] = {}');
    else if (o.op === 'set') lines.push(`${t(o.t)}[${luaKey(o.k)}] = ${luaVal(o.v)}`);
    else if (o.op === 'del') lines.push(`${t(o.t)}[${luaKey(o.k)}] = nil`);
    else if (o.op === 'closure') lines.push(`do local cap = ${t(o.t)}; ${t(o.t)}[${luaKey(o.k)}] = function() return cap end end`);
    else lines.push(`do local co = walker(${t(o.t)}); CO[#CO + 1] = co; coroutine.resume(co) end`);
  }
  return lines.join('\n');
}

describe('Lua snapshot v2: property tests', () => {
  it('random object graphs: same transcript after restore and identical re-snapshot bytes', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 120 }), (ops) => {
        const vm = new LuaVM();
        vm.load(program(ops), 'gen');
        const r = roundtrip(vm);
        vm.load(DUMP, 'dump');
        r.load(DUMP, 'dump');
        same(vm, r, 'return __dump(T), __dump(F), F[1](2), F[3](), #T');
        same(vm, r, 'local o = {} for i, co in ipairs(CO) do for j = 1, 3 do o[#o + 1] = table.concat({tostring(coroutine.resume(co))}, ",") end end return table.concat(o, " ")');
        same(vm, r, 'for i = 1, 5 do T[1][{}] = i; T[2]["z" .. i] = i end; return __dump(T[1]), __dump(T[2])');
        // Collections over the restored graph (open upvalues, suspended coroutines, caches).
        r.load('collectgarbage(); collectgarbage("step", 1); local g = {} for i = 1, 2000 do g[i] = {i} end; collectgarbage()', 'gc');
        expect(r.load('return __dump(T), __dump(F)', 'check')).toEqual(vm.load('return __dump(T), __dump(F)', 'check'));
        vm.dispose();
        r.dispose();
      }),
      { numRuns: 40, seed: 7 },
    );
  });
});

// ---- Bad input -----------------------------------------------------------------------------------

/**
 * The byte ranges of bytecode and of Lua frames' saved pcs inside a v2 snapshot (docs/lua-vm.md,
 * byte layout), found by walking the format: Lua 5.3 does not verify bytecode, and a saved pc
 * moved to another instruction of the same function is crafted code too (outside what restore
 * checks, see Trust).
 */
function codeRanges(s: Buffer): Array<[number, number]> {
  let pos = 28;
  const u8 = () => s[pos++];
  const u16 = () => ((pos += 2), s.readUInt16LE(pos - 2));
  const u32 = () => ((pos += 4), s.readUInt32LE(pos - 4));
  const value = () => {
    const tag = u8();
    pos += tag === 3 || tag === 4 ? 8 : tag === 5 || tag === 6 || tag === 8 ? 4 : 0;
  };
  pos += 2 + 32 + 8;
  const skip = (n: number) => (pos += n);
  for (let n = u32(); n > 0; n--) skip(u32());
  for (let n = u32(); n > 0; n--) (u8(), skip(u32()));
  const nobj = u32();
  const kinds: number[] = [];
  const info: number[][] = [];
  for (let i = 0; i < nobj; i++) {
    const k = u8();
    kinds.push(k);
    if (k === 1) skip(u32());
    else if (k === 2) info.push([i, (skip(4), u32()), u8()]);
    else if (k === 3) info.push([i, (skip(4), u8())]);
    else if (k === 4) info.push([i, (skip(8), u8())]);
    else if (k === 5 || k === 7 || k === 11 || k === 12) pos += 8;
    else if (k === 6) pos += 5;
  }
  const sizes = new Map(info.map(([id, ...rest]) => [id, rest]));
  const ranges: Array<[number, number]> = [];
  for (let i = 0; i < nobj; i++) {
    const k = kinds[i];
    if (k === 2) {
      const [asize, ls] = sizes.get(i)!;
      pos += 1;
      value();
      for (let j = 0; j < asize; j++) value();
      if (ls !== 255) {
        for (let j = 0; j < 1 << ls; j++) (value(), value(), (pos += 4));
        pos += 4;
      }
    } else if (k === 3) pos += 4 + 4 * sizes.get(i)![0];
    else if (k === 4) for (let j = sizes.get(i)![0]; j > 0; j--) value();
    else if (k === 6) (value(), value());
    else if (k === 7) {
      pos += 27;
      for (let n = u32(); n > 0; n--) value();
      const nci = u32();
      pos += 6;
      for (let j = 1; j < nci; j++) {
        pos += 10;
        const status = u16();
        pos += 8;
        if (status & 2) {
          ranges.push([pos + 4, pos + 8]); // a Lua frame's saved pc: which instruction runs next
          pos += 8;
        } else pos += 20;
      }
    } else if (k === 9) {
      pos += 15;
      const ncode = u32();
      ranges.push([pos, pos + 4 * ncode]);
      pos += 4 * ncode;
      for (let n = u32(); n > 0; n--) value();
      skip(6 * u32());
      skip(4 * u32());
      skip(4 * u32());
      skip(12 * u32());
      pos += 4;
    } else if (k === 10) value();
    else if (k === 12) pos += 20;
  }
  for (let j = 0; j < 10; j++) value();
  expect(pos).toBe(s.length); // the walk read the whole snapshot: the layout is as documented
  return ranges;
}

/** A copy of `s` with payload byte `at` changed and the checksum fixed up: only the reader's own checks stand in the way. */
function crafted(s: Buffer, at: number, value: number): Buffer {
  const c = Buffer.from(s);
  c[at] = value;
  c.writeBigUInt64LE(native.checksum(c.subarray(28)), 20);
  return c;
}

describe('Lua snapshot v2: bad input', () => {
  const small = (() => {
    const vm = new LuaVM();
    vm.load('t = {1, 2, x = "y", [{}] = 3}; co = coroutine.create(function() coroutine.yield(1) end); coroutine.resume(co); function f() return t end', 'm');
    return body(vm.snapshot());
  })();
  // Every kind of object: iterators, coroutines inside xpcall and pcall, a host function, streams.
  const rich = (() => {
    const vm = new LuaVM({ libs: ['io'] });
    vm.setGlobalFunction('h.f', (x: unknown) => x);
    vm.load(`
      words = string.gmatch("a b c", "%a"); words()
      co = coroutine.create(function()
        local x = 1; g = function() return x end
        xpcall(function() coroutine.yield(1) end, function(m) return m end)
        pcall(coroutine.yield, 2)
      end)
      coroutine.resume(co)
      w = coroutine.wrap(function() coroutine.yield(1) end); w()
      t = setmetatable({1, 2.5, "s", [{}] = h.f}, {__index = string}); out = io.stdout
      dead = coroutine.create(function() error("x") end); coroutine.resume(dead)
      function f() return t end
    `, 'm');
    return body(vm.snapshot());
  })();

  it('refuses a snapshot truncated at every length with the exact message', () => {
    for (let n = 0; n < small.length; n++) {
      const e = thrown(() => LuaVM.restore(small.subarray(0, n)));
      expect(e).toBeInstanceOf(SnapshotError);
      expect(e.status).toBe(400);
      const want =
        n < 28
          ? `truncated: ${n} bytes, shorter than the 28-byte header`
          : `truncated: the header announces ${small.length - 28} payload bytes, ${n - 28} present`;
      expect(e.message).toBe(want);
    }
  });

  it('refuses a flipped byte, a v1 header and a WASM snapshot', () => {
    const flipped = Buffer.from(small);
    flipped[small.length >> 1] ^= 0x40;
    expect(thrown(() => LuaVM.restore(flipped))).toMatchObject({ code: 'ERR_SNAPSHOT', status: 400, message: 'checksum mismatch' });
    const v1 = Buffer.from(small);
    v1.writeUInt32LE(1, 6);
    const e1 = thrown(() => LuaVM.restore(v1));
    expect(e1).toBeInstanceOf(SnapshotError);
    expect(e1.message).toBe('unsupported snapshot version 1 (this build reads version 2)');
    const bytes = Uint8Array.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 3, 1, 0, 1]);
    const wasm = new WasmInstance(WasmModule.compile(bytes, { cache: false })).snapshot();
    expect(thrown(() => LuaVM.restore(wasm)).message).toBe('not a Lua snapshot (this is a WASM snapshot)');
  });

  it('snapshots and restores a state near its memoryLimit: the scratch is not the guest\'s memory (issue #14)', () => {
    const vm = new LuaVM({ memoryLimit: 64 << 20 });
    vm.load('t = {} for i = 1, 250000 do t[i] = {i, tostring(i)} end', 'm');
    const used = vm.memoryUsed;
    expect(used).toBeGreaterThan(36 << 20);
    const snap = vm.snapshot();
    expect(vm.memoryUsed).toBe(used);
    expect(vm.load('t[250001] = 1 return #t', 'm')).toEqual([250001]);
    const again = LuaVM.restore(snap, { memoryLimit: 64 << 20 });
    expect(again.memoryUsed).toBeLessThan(64 << 20);
    expect(again.snapshot().equals(snap)).toBe(true);
    expect(again.load('return #t, t[250000][2]', 'm')).toEqual([250000, '250000']);
  });

  it('reports memory: restoring past memoryLimit is LuaMemoryError', () => {
    const big = new LuaVM();
    big.load('t = {}; for i = 1, 10000 do t[i] = {i} end', 'm');
    const snap = big.snapshot();
    const m = thrown(() => LuaVM.restore(snap, { memoryLimit: 200_000 }));
    expect(m.constructor.name).toBe('LuaMemoryError');
    expect(m.message).toBe('not enough memory to restore the snapshot (memoryLimit of 200000 bytes reached)');
    expect(LuaVM.restore(snap, { memoryLimit: 4_000_000 }).load('return #t, t[7][1]', 'm')).toEqual([10000, 7]);
  });

  it('never crashes on crafted blobs with a valid checksum: SnapshotError or a usable VM, other VMs unaffected', () => {
    const bystander = new LuaVM();
    bystander.load('x = 41', 'm');
    const outcomes = new Map<string, number>();
    const tally = (k: string) => outcomes.set(k, (outcomes.get(k) ?? 0) + 1);
    const code = codeRanges(rich);
    expect(code.length).toBeGreaterThan(0);
    for (let at = 28; at < rich.length; at++) {
      if (code.some(([a, b]) => at >= a && at < b)) continue;
      for (const value of [0, 0xff, rich[at] ^ 1]) {
        let vm: LuaVM | undefined;
        try {
          vm = LuaVM.restore(crafted(rich, at, value & 0xff), { trusted: true }); // the reader's own checks, past the seal
        } catch (e) {
          expect(e).toBeInstanceOf(SnapshotError);
          expect((e as Error).message).toMatch(/^(malformed snapshot: |unsupported flags|word size)/);
          tally((e as Error).message.replace(/'.*'/, "'…'"));
          continue;
        }
        tally('restored');
        // A restored VM runs or fails with typed errors, without crashing.
        try {
          vm.load(
            'for k, v in pairs(t or {}) do end; if co then coroutine.resume(co); coroutine.resume(co); coroutine.resume(co) end;' +
              ' if w then pcall(w); pcall(w) end; if words then words(); words() end; return g and g(), f and f()',
            'probe',
          );
        } catch (e) {
          expect(e).toHaveProperty('code');
        }
        vm.dispose();
      }
    }
    expect(outcomes.get('restored') ?? 0).toBeGreaterThan(0);
    expect([...outcomes.keys()].some((k) => k.startsWith('malformed snapshot: '))).toBe(true);
    expect(bystander.load('return x + 1', 'm')).toEqual([42]);
  });
});

// ---- The real AOS ------------------------------------------------------------------------------------

describeShared('Lua snapshot v2: hyper-aos', () => {
  it('snapshots hyper-aos canonically and the restored process still works', () => {
    const vm = new LuaVM({ libs: ['package', 'debug'] });
    vm.load(sharedFixture('hyper-aos.lua').toString('utf8'), path.join(REPO_ROOT, 'hyper-aos.lua'));
    const r = roundtrip(vm);
    expect(r.globals()).toEqual(vm.globals());
    const probe = 'return type(Handlers), type(Handlers.add), Name, type(package.loaded), #Inbox';
    expect(same(vm, r, probe)).toEqual(vm.load(probe, 'again'));
    same(vm, r, 'Handlers.add("ping", function(msg) return msg.Action == "Ping" end, function(msg) Pinged = (Pinged or 0) + 1 end); return #Handlers.list, Handlers.list[#Handlers.list].name');
    roundtrip(r);
  });
});
