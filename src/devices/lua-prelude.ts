/**
 * The Lua side of lua@5.3a, loaded into every VM the device creates, before the modules. It
 * runs on the native LuaVM (safe libraries plus `package` and `debug`, both cut down here) and
 * talks to the device through one host function, `_hb.host(kind, ...)`.
 *
 * - `_hb.call(name, now, ...)` runs the global function `name` inside a coroutine, so that an
 *   `ao.resolve` reaching an asynchronous device can suspend the call while the host awaits it:
 *   it returns `'done', results...`, `'await'` (the host answers with `_hb.answer(status, value)`)
 *   or `'missing'` (no such function). A Lua error is re-raised unchanged (so the native side
 *   keeps its class: runtime, memory or limit error), with the coroutine's traceback left in
 *   `_hb.trace`.
 * - `coroutine.resume`/`coroutine.wrap` forward those suspensions through the script's own
 *   coroutines, so `ao.resolve` works inside them too (AOS runs handlers in coroutines).
 *   `coroutine.yield` at the call's top level is the error plain Lua raises on the main thread
 *   ('attempt to yield from outside a coroutine'), which the script's own `pcall` catches;
 *   `coroutine.isyieldable` and `coroutine.running` answer there as on the main thread.
 * - `require` finds only `package.preload` and `package.loaded` (no files); `debug` keeps only
 *   `getinfo` and `traceback` (no registry, upvalue, local or hook access: those reach outside
 *   the sandbox or remove the instruction limit).
 * - Determinism: `os.time()` is the current request's block timestamp, `os.date` formats in UTC
 *   from it, `os.clock()` is 0; `print` goes to the host (see `opts.luaPrint`).
 * - `_hb.sandbox`, `_hb.install_ao` and `_hb.functions` serve the device's `init` and `functions`.
 */
export const LUA_PRELUDE = String.raw`
local hb = _hb
local host = hb.host
local rawget, rawset, type, select, error, tostring, ipairs, next, getmetatable = rawget, rawset, type, select, error, tostring, ipairs, next, getmetatable
local pack, unpack, concat, sort = table.pack, table.unpack, table.concat, table.sort
local create, resume, yield, status, isyieldable = coroutine.create, coroutine.resume, coroutine.yield, coroutine.status, coroutine.isyieldable
local getinfo, traceback = debug.getinfo, debug.traceback
local time, date = os.time, os.date

local AWAIT = {}
local waiting = nil
hb.now = 0

-- The coroutine that runs the current call stands for the script's main thread: a yield there is
-- an error the script's own pcall sees, as in plain Lua (it must not suspend the device's call).
local running = coroutine.running
local top = nil
coroutine.yield = function(...)
  if running() == top then error('attempt to yield from outside a coroutine', 0) end
  return yield(...)
end
coroutine.isyieldable = function() return running() ~= top and isyieldable() end
coroutine.running = function()
  local co, main = running()
  return co, main or co == top
end

local function relay(co, r)
  while r[1] and r[2] == AWAIT and status(co) == 'suspended' do
    r = pack(resume(co, yield(AWAIT)))
  end
  return unpack(r, 1, r.n)
end
coroutine.resume = function(co, ...) return relay(co, pack(resume(co, ...))) end
coroutine.wrap = function(f)
  local co = create(f)
  return function(...)
    local r = pack(relay(co, pack(resume(co, ...))))
    if r[1] then return unpack(r, 2, r.n) end
    error(r[2], 2)
  end
end

local function finish(co, ok, ...)
  if not ok then
    waiting = nil
    local e = ...
    hb.trace = traceback(co, type(e) == 'string' and e or nil)
    error(e, 0)
  end
  if status(co) == 'dead' then
    waiting = nil
    return 'done', ...
  end
  if (...) == AWAIT then
    waiting = co
    return 'await'
  end
  waiting = nil
  error('attempt to yield from outside a coroutine', 0)
end

local function settop(prev, ...)
  top = prev
  return ...
end

local function callable(f)
  if type(f) == 'function' then return true end
  local mt = getmetatable(f)
  return type(mt) == 'table' and rawget(mt, '__call') ~= nil
end

function hb.call(name, now, ...)
  local f = rawget(_G, name)
  if not callable(f) then return 'missing' end
  hb.now = now
  hb.trace = nil
  local co = create(f)
  local prev = top
  top = co
  return settop(prev, finish(co, resume(co, ...)))
end

function hb.answer(...)
  local co = waiting
  waiting = nil
  if co == nil then error('no Lua call is waiting for an answer', 0) end
  local prev = top
  top = co
  return settop(prev, finish(co, resume(co, ...)))
end

local function request(kind, ...)
  local r = host(kind, ...)
  if r[1] == 'await' then
    if not isyieldable() then
      error('ao.' .. kind .. ': the resolution needs an asynchronous device, which cannot be awaited here (inside a metamethod or a C function)', 3)
    end
    return yield(AWAIT)
  end
  return r[1], r[2]
end

local ao_lib = {}
function ao_lib.resolve(...) return request('resolve', ...) end
function ao_lib.get(path, base)
  local st, v = request('get', path, base)
  if st == 'ok' then return v end
  return nil
end
function ao_lib.set(...)
  local st, v = request('set', ...)
  if st ~= 'ok' then error(v, 2) end
  return v
end
function ao_lib.event(...)
  host('event', ...)
  return 'ok'
end

function hb.install_ao()
  local ao = rawget(_G, 'ao')
  if type(ao) ~= 'table' then ao = {}; rawset(_G, 'ao', ao) end
  for k, f in next, ao_lib do rawset(ao, k, f) end
end

function hb.sandbox(entries)
  for _, e in ipairs(entries) do
    local keys, t = e[1], _G
    for i = 1, #keys - 1 do
      t = rawget(t, keys[i])
      if type(t) ~= 'table' then t = nil; break end
    end
    if t ~= nil then rawset(t, keys[#keys], e[2]) end
  end
end

function hb.functions()
  local names = {}
  for k, v in next, _G do
    if type(k) == 'string' and type(v) == 'function' then names[#names + 1] = k end
  end
  sort(names)
  return names
end

print = function(...)
  local n = select('#', ...)
  local parts = {}
  for i = 1, n do parts[i] = tostring((select(i, ...))) end
  host('print', concat(parts, '\t'))
end

os.time = function(t)
  if t == nil then return hb.now end
  return time(t)
end
os.date = function(fmt, t)
  fmt = fmt or '%c'
  if fmt:sub(1, 1) ~= '!' then fmt = '!' .. fmt end
  return date(fmt, t or hb.now)
end
os.clock = function() return 0 end

package.searchers = { package.searchers[1] }
package.path = ''
package.cpath = ''
package.loadlib = nil
package.searchpath = nil
debug = { getinfo = getinfo, traceback = traceback }
package.loaded.debug = debug
`;
