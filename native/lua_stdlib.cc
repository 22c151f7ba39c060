// The sandboxed standard library of a LuaVM: the libraries opened and the functions that replace
// or wrap stdlib ones (load of text only, xpcall whose handler the limits can skip, setmetatable
// without __gc, a restricted collectgarbage, a per-VM math.random, require of Lua text, print
// into the VM's output buffer, deterministic os.time/os.date/os.clock). All are C-style
// lua_CFunctions: they hold no object with a destructor, so Lua errors may unwind them.
#include "lua_stdlib.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <cstdint>

extern "C" {
#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"
}

namespace hbr {

// Opening order as in linit.c.
const LuaLibInfo kLuaLibs[kLuaLibCount] = {
    {kLibBase, "base", "_G", luaopen_base},
    {kLibPackage, "package", LUA_LOADLIBNAME, luaopen_package},
    {kLibCoroutine, "coroutine", LUA_COLIBNAME, luaopen_coroutine},
    {kLibTable, "table", LUA_TABLIBNAME, luaopen_table},
    {kLibIo, "io", LUA_IOLIBNAME, luaopen_io},
    {kLibOs, "os", LUA_OSLIBNAME, luaopen_os},
    {kLibString, "string", LUA_STRLIBNAME, luaopen_string},
    {kLibMath, "math", LUA_MATHLIBNAME, luaopen_math},
    {kLibUtf8, "utf8", LUA_UTF8LIBNAME, luaopen_utf8},
    {kLibDebug, "debug", LUA_DBLIBNAME, luaopen_debug},
};

// ---- Sandboxed stdlib replacements (C-style lua_CFunctions) -------------------------------------------

// The reader behind a load() of a function: calls the user's reader (upvalue 1) and charges a
// step per byte of each piece (compiling is about that costly).
int ChargedReader(lua_State* L) {
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_call(L, 0, 1);
  if (lua_type(L, 1) == LUA_TSTRING) HB_TICK(L, lua_rawlen(L, 1));
  return 1;
}

// load(chunk [, chunkname [, mode [, env]]]) with the mode forced to text, charging a step per
// byte of source.
int SafeLoad(lua_State* L) {
  if (lua_gettop(L) < 3) lua_settop(L, 3);
  lua_pushliteral(L, "t");
  lua_replace(L, 3);
  if (lua_type(L, 1) == LUA_TSTRING) {
    HB_TICK(L, lua_rawlen(L, 1));
  } else if (lua_type(L, 1) == LUA_TFUNCTION) {
    lua_pushvalue(L, 1);
    lua_pushcclosure(L, ChargedReader, 1);
    lua_replace(L, 1);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, VmOf(L)->aux_ref());
  lua_rawgeti(L, -1, kAuxLoad);
  lua_remove(L, -2);
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

int FinishPcall(lua_State* L, int status, lua_KContext extra) {
  if (status != LUA_OK && status != LUA_YIELD) {
    lua_pushboolean(L, 0);
    lua_pushvalue(L, -2);
    return 2;
  }
  return lua_gettop(L) - static_cast<int>(extra);
}

// The user's message handler (upvalue 1), skipped once the instruction budget is spent.
int GuardedHandler(lua_State* L) {
  if (VmOf(L)->budget().exhausted) {
    lua_settop(L, 1);
    return 1;
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  return 1;
}

// xpcall as in lbaselib.c, with the handler wrapped by GuardedHandler.
int GuardedXpcall(lua_State* L) {
  int n = lua_gettop(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushvalue(L, 2);
  lua_pushcclosure(L, GuardedHandler, 1);
  lua_replace(L, 2);
  lua_pushboolean(L, 1);
  lua_pushvalue(L, 1);
  lua_rotate(L, 3, 2);
  int status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, FinishPcall);
  return FinishPcall(L, status, 2);
}

// setmetatable as in lbaselib.c, refusing __gc: finalizers run with hooks off (outside the
// instruction limit) and at close time inside a GC finalizer.
int SafeSetmetatable(lua_State* L) {
  int t = lua_type(L, 2);
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_argcheck(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table expected");
  if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL) return luaL_error(L, "cannot change a protected metatable");
  if (t == LUA_TTABLE) {
    lua_pushliteral(L, "__gc");
    if (lua_rawget(L, 2) != LUA_TNIL) return luaL_error(L, "__gc metamethods are not supported in this sandbox");
  }
  lua_settop(L, 2);
  lua_setmetatable(L, 1);
  return 1;
}

// collectgarbage([opt [, arg]]) restricted to what cannot defeat the limits: "collect" (the
// default) and "step" are charged like a full collection (a step per 16 bytes in use), "count" and
// "isrunning" answer as usual; "stop", "restart", "setpause" and "setstepmul" are refused.
int SafeCollectgarbage(lua_State* L) {
  static const char* const kOpts[] = {"collect", "count", "step", "isrunning", "stop", "restart", "setpause", "setstepmul",
                                      nullptr};
  int o = luaL_checkoption(L, 1, "collect", kOpts);
  if (o >= 4) return luaL_argerror(L, 1, lua_pushfstring(L, "option '%s' is not allowed in this sandbox", kOpts[o]));
  switch (o) {
    case 1: {
      int kb = lua_gc(L, LUA_GCCOUNT, 0);
      int b = lua_gc(L, LUA_GCCOUNTB, 0);
      lua_pushnumber(L, static_cast<lua_Number>(kb) + static_cast<lua_Number>(b) / 1024);
      return 1;
    }
    case 3:
      lua_pushboolean(L, lua_gc(L, LUA_GCISRUNNING, 0));
      return 1;
    default: {
      int ex = static_cast<int>(luaL_optinteger(L, 2, 0));
      HB_TICK(L, static_cast<long long>(lua_gc(L, LUA_GCCOUNT, 0)) << 6);
      if (o == 0) {
        lua_gc(L, LUA_GCCOLLECT, 0);
        lua_pushinteger(L, 0);
      } else {
        lua_pushboolean(L, lua_gc(L, LUA_GCSTEP, ex));
      }
      return 1;
    }
  }
}

// xoshiro256** (Blackman & Vigna), state per VM, seeded through splitmix64.
uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t NextRandom(uint64_t* s) {
  uint64_t result = Rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = Rotl(s[3], 45);
  return result;
}

void SeedRandom(uint64_t* s, uint64_t seed) {
  for (int i = 0; i < 4; i++) {
    seed += 0x9e3779b97f4a7c15ULL;
    uint64_t z = seed;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    s[i] = z ^ (z >> 31);
  }
}

// math.random([m [, n]]) as in Lua 5.3, on the VM's own generator; integer results are unbiased.
int MathRandom(lua_State* L) {
  uint64_t* s = VmOf(L)->rng();
  lua_Integer low, up;
  switch (lua_gettop(L)) {
    case 0:
      lua_pushnumber(L, static_cast<lua_Number>(NextRandom(s) >> 11) * 0x1.0p-53);
      return 1;
    case 1:
      low = 1;
      up = luaL_checkinteger(L, 1);
      break;
    case 2:
      low = luaL_checkinteger(L, 1);
      up = luaL_checkinteger(L, 2);
      break;
    default:
      return luaL_error(L, "wrong number of arguments");
  }
  luaL_argcheck(L, low <= up, 1, "interval is empty");
  uint64_t range = static_cast<uint64_t>(up) - static_cast<uint64_t>(low);
  uint64_t r = NextRandom(s);
  if ((range & (range + 1)) == 0) {
    r &= range;
  } else {
    uint64_t mask = range;
    for (int sh = 1; sh < 64; sh <<= 1) mask |= mask >> sh;
    while ((r &= mask) > range) r = NextRandom(s);
  }
  lua_pushinteger(L, static_cast<lua_Integer>(static_cast<uint64_t>(low) + r));
  return 1;
}

int MathRandomseed(lua_State* L) {
  uint64_t seed;
  if (lua_isinteger(L, 1)) {
    seed = static_cast<uint64_t>(lua_tointeger(L, 1));
  } else {
    lua_Number d = luaL_checknumber(L, 1);
    if (d == std::floor(d) && std::fabs(d) < 9.2e18) {
      seed = static_cast<uint64_t>(static_cast<int64_t>(d));
    } else {
      std::memcpy(&seed, &d, sizeof seed);
    }
  }
  SeedRandom(VmOf(L)->rng(), seed);
  return 0;
}

// package.searchers[2] replacement: Lua files from package.path, loaded as text only.
int SearcherLuaText(lua_State* L) {
  const char* name = luaL_checkstring(L, 1);
  lua_getfield(L, lua_upvalueindex(1), "searchpath");
  lua_pushstring(L, name);
  lua_getfield(L, lua_upvalueindex(1), "path");
  if (lua_type(L, -1) != LUA_TSTRING) return luaL_error(L, "'package.path' must be a string");
  lua_call(L, 2, 2);
  if (lua_isnil(L, -2)) return 1;
  const char* filename = lua_tostring(L, -2);
  if (luaL_loadfilex(L, filename, "t") == LUA_OK) {
    lua_pushstring(L, filename);
    return 2;
  }
  return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s", name, filename, lua_tostring(L, -1));
}

// print(...) as in lbaselib.c (each argument through the global tostring), into the VM's output.
int OutputPrint(lua_State* L) {
  LuaVM* vm = VmOf(L);
  int n = lua_gettop(L);
  lua_getglobal(L, "tostring");
  for (int i = 1; i <= n; i++) {
    lua_pushvalue(L, -1);
    lua_pushvalue(L, i);
    lua_call(L, 1, 1);
    size_t l;
    const char* s = lua_tolstring(L, -1, &l);
    if (s == nullptr) return luaL_error(L, "'tostring' must return a string to 'print'");
    HB_TICK(L, 1 + HB_BYTES(l));
    if (i > 1) vm->Output("\t", 1);
    vm->Output(s, l);
    lua_pop(L, 1);
  }
  vm->Output("\n", 1);
  if (vm->print_stdout()) std::fflush(stdout);
  return 0;
}

namespace {

// Calls the real function (upvalue 1) with the arguments as they are.
int CallReal(lua_State* L) {
  int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, n, LUA_MULTRET);
  return lua_gettop(L);
}

// loslib.c's getfield: an integer field of the table at index 1, `delta` subtracted.
int TimeField(lua_State* L, const char* key, int d, int delta) {
  int isnum;
  int t = lua_getfield(L, 1, key);
  lua_Integer res = lua_tointegerx(L, -1, &isnum);
  if (!isnum) {
    if (t != LUA_TNIL) return luaL_error(L, "field '%s' is not an integer", key);
    if (d < 0) return luaL_error(L, "field '%s' missing in date table", key);
    res = d;
  } else {
    if (!(-INT32_MAX / 2 <= res && res <= INT32_MAX / 2 + delta)) return luaL_error(L, "field '%s' is out-of-bound", key);
    res -= delta;
  }
  lua_pop(L, 1);
  return static_cast<int>(res);
}

void SetTimeField(lua_State* L, const char* key, int value) {
  lua_pushinteger(L, value);
  lua_setfield(L, -2, key);
}

}  // namespace

// os.time([t]): without a table, the fixed time 0; a table is read as UTC (timegm) and its fields
// are normalized as Lua does, so the result is the same under every TZ.
int ClockTime(lua_State* L) {
  LuaVM* vm = VmOf(L);
  if (vm == nullptr || vm->clock_real()) return CallReal(L);
  if (lua_isnoneornil(L, 1)) {
    lua_pushinteger(L, 0);
    return 1;
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  struct tm ts;
  std::memset(&ts, 0, sizeof ts);
  ts.tm_sec = TimeField(L, "sec", 0, 0);
  ts.tm_min = TimeField(L, "min", 0, 0);
  ts.tm_hour = TimeField(L, "hour", 12, 0);
  ts.tm_mday = TimeField(L, "day", -1, 0);
  ts.tm_mon = TimeField(L, "month", -1, 1);
  ts.tm_year = TimeField(L, "year", -1, 1900);
  time_t t = timegm(&ts);
  if (t == static_cast<time_t>(-1)) return luaL_error(L, "time result cannot be represented in this installation");
  SetTimeField(L, "sec", ts.tm_sec);
  SetTimeField(L, "min", ts.tm_min);
  SetTimeField(L, "hour", ts.tm_hour);
  SetTimeField(L, "day", ts.tm_mday);
  SetTimeField(L, "month", ts.tm_mon + 1);
  SetTimeField(L, "year", ts.tm_year + 1900);
  SetTimeField(L, "wday", ts.tm_wday + 1);
  SetTimeField(L, "yday", ts.tm_yday + 1);
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "isdst");
  lua_pushinteger(L, static_cast<lua_Integer>(t));
  return 1;
}

// os.date([format [, time]]): always UTC (a '!' is added), at the fixed time 0 by default.
int ClockDate(lua_State* L) {
  LuaVM* vm = VmOf(L);
  if (vm == nullptr || vm->clock_real()) return CallReal(L);
  size_t len;
  const char* fmt = luaL_optlstring(L, 1, "%c", &len);
  lua_Integer t = luaL_opt(L, luaL_checkinteger, 2, 0);
  lua_pushvalue(L, lua_upvalueindex(1));
  if (len > 0 && fmt[0] == '!') {
    lua_pushvalue(L, 1);
  } else {
    lua_pushliteral(L, "!");
    lua_pushlstring(L, fmt, len);
    lua_concat(L, 2);
  }
  lua_pushinteger(L, t);
  lua_call(L, 2, 1);
  return 1;
}

// os.clock(): 0.
int ClockClock(lua_State* L) {
  LuaVM* vm = VmOf(L);
  if (vm == nullptr || vm->clock_real()) return CallReal(L);
  lua_pushnumber(L, 0);
  return 1;
}

// Opens the libraries and applies the sandbox. Stack: [ctx] -> [ctx].
int LuaOpenTrampoline(lua_State* L) {
  OpenCtx* c = static_cast<OpenCtx*>(lua_touserdata(L, 1));
  lua_createtable(L, kAuxSize, 0);
  for (int i = 1; i <= kAuxSize; i++) {
    lua_pushboolean(L, 0);
    lua_rawseti(L, -2, i);
  }
  lua_pushvalue(L, -1);
  c->aux_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  int aux = lua_gettop(L);

  for (const LuaLibInfo& lib : kLuaLibs) {
    if ((c->libs & lib.bit) == 0) continue;
    luaL_requiref(L, lib.modname, lib.open, 1);
    lua_pop(L, 1);
  }
  if ((c->libs & kLibOs) == 0) {
    // The safe part of os: time, clock, date, difftime (also what require("os") returns).
    luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 0);
    lua_createtable(L, 0, 4);
    const char* const keep[] = {"clock", "date", "difftime", "time"};
    for (const char* k : keep) {
      lua_getfield(L, -2, k);
      lua_setfield(L, -2, k);
    }
    lua_pushvalue(L, -1);
    lua_setglobal(L, LUA_OSLIBNAME);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, LUA_OSLIBNAME);
    lua_pop(L, 3);
  }

  // os.time, os.date and os.clock wrap the real ones (upvalue 1), used with clock: 'real'.
  lua_getglobal(L, LUA_OSLIBNAME);
  const struct {
    const char* name;
    lua_CFunction fn;
  } clocks[] = {{"time", ClockTime}, {"date", ClockDate}, {"clock", ClockClock}};
  for (const auto& k : clocks) {
    lua_getfield(L, -1, k.name);
    lua_pushcclosure(L, k.fn, 1);
    lua_setfield(L, -2, k.name);
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, OutputPrint);
  lua_setglobal(L, "print");

  lua_pushnil(L);
  lua_setglobal(L, "dofile");
  lua_pushnil(L);
  lua_setglobal(L, "loadfile");
  lua_getglobal(L, "load");
  lua_rawseti(L, aux, kAuxLoad);
  lua_pushcfunction(L, SafeLoad);
  lua_setglobal(L, "load");
  lua_pushcfunction(L, GuardedXpcall);
  lua_setglobal(L, "xpcall");
  lua_pushcfunction(L, SafeSetmetatable);
  lua_setglobal(L, "setmetatable");
  lua_pushcfunction(L, SafeCollectgarbage);
  lua_setglobal(L, "collectgarbage");
  lua_getglobal(L, LUA_STRLIBNAME);
  lua_pushnil(L);
  lua_setfield(L, -2, "dump");
  lua_pop(L, 1);
  lua_getglobal(L, LUA_MATHLIBNAME);
  lua_pushcfunction(L, MathRandom);
  lua_setfield(L, -2, "random");
  lua_pushcfunction(L, MathRandomseed);
  lua_setfield(L, -2, "randomseed");
  lua_pop(L, 1);
  if ((c->libs & kLibPackage) != 0) {
    // require: package.preload, then Lua files as text; no C loaders (dlopen is compiled out).
    lua_getglobal(L, LUA_LOADLIBNAME);
    lua_createtable(L, 2, 0);
    lua_getfield(L, -2, "searchers");
    lua_rawgeti(L, -1, 1);
    lua_rawseti(L, -3, 1);
    lua_pop(L, 1);
    lua_pushvalue(L, -2);
    lua_pushcclosure(L, SearcherLuaText, 1);
    lua_rawseti(L, -2, 2);
    lua_setfield(L, -2, "searchers");
    lua_pop(L, 1);
  }

  lua_settop(L, 1);
  return 0;
}


}  // namespace hbr
