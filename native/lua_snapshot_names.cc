// Lua snapshots: stable names for the C functions, hooks and static pointers a state can hold.
//
// A snapshot refers to a C function by name ("string.format", "_G.ipairs#iter"), never by address,
// so a snapshot taken in one process restores in another. The table is built once per process by
// walking a template state with every library open (keys in sorted order) and by discovering the
// values no library table holds (iterator closures, continuations, hooks, registry keys).
#include <algorithm>
#include <climits>
#include <mutex>

#include "lua_snapshot_format.h"
#include "lua_vm.h"

namespace hbr {
namespace luasnap {

namespace {

struct WalkKey {
  bool is_int;
  lua_Integer i;
  std::string s;
};

// Names every C function reachable from the table at `idx`: `prefix.key`, `prefix[1]`,
// `prefix#mt.key` for metatables; keys in sorted order, so names are the same in every process.
void Walk(lua_State* T, int idx, const std::string& prefix, int depth, CNames& c, std::vector<const void*>& seen) {
  idx = lua_absindex(T, idx);
  const void* self = lua_topointer(T, idx);
  if (std::find(seen.begin(), seen.end(), self) != seen.end()) return;
  seen.push_back(self);
  std::vector<WalkKey> keys;
  lua_pushnil(T);
  while (lua_next(T, idx) != 0) {
    if (lua_type(T, -2) == LUA_TNUMBER && lua_isinteger(T, -2)) {
      keys.push_back({true, lua_tointeger(T, -2), std::string()});
    } else if (lua_type(T, -2) == LUA_TSTRING) {
      size_t n;
      const char* s = lua_tolstring(T, -2, &n);
      keys.push_back({false, 0, std::string(s, n)});
    }
    lua_pop(T, 1);
  }
  std::sort(keys.begin(), keys.end(), [](const WalkKey& a, const WalkKey& b) {
    if (a.is_int != b.is_int) return a.is_int;
    return a.is_int ? a.i < b.i : a.s < b.s;
  });
  for (const WalkKey& k : keys) {
    std::string name;
    if (k.is_int) {
      lua_rawgeti(T, idx, k.i);
      name = prefix + "[" + std::to_string(k.i) + "]";
    } else {
      lua_pushlstring(T, k.s.data(), k.s.size());
      lua_rawget(T, idx);
      name = prefix + "." + k.s;
    }
    if (lua_iscfunction(T, -1)) c.Add(name, reinterpret_cast<const void*>(lua_tocfunction(T, -1)), kPtrCFunction);
    if (lua_istable(T, -1) && depth > 0) Walk(T, -1, name, depth - 1, c, seen);
    if ((lua_istable(T, -1) || lua_isuserdata(T, -1)) && depth > 0 && lua_getmetatable(T, -1)) {
      Walk(T, -1, name + "#mt", depth - 1, c, seen);
      lua_pop(T, 1);
    }
    lua_pop(T, 1);
  }
}

int OpenAllLibs(lua_State* T) {
  luaL_openlibs(T);
  return 0;
}

// Values that are not reachable from the library tables: iterator closures, the continuation of
// pcall/xpcall, the close function of the standard streams, debug.sethook's hook.
const char* const kDiscover =
    "local co = coroutine.create(function() pcall(coroutine.yield) end) coroutine.resume(co)\n"
    "debug.sethook(function() end, 'l')\n"
    "return string.gmatch('', ''), coroutine.wrap(function() end), (ipairs({})), (utf8.codes('')),\n"
    "  io.lines(), io.stdout, co\n";

void BuildNames(CNames& c) {
  size_t n = 0;
  const LuaNamedPointer* own = LuaVmPointers(&n);
  for (size_t i = 0; i < n; i++) c.Add(own[i].name, own[i].ptr, own[i].kind);

  lua_State* T = luaL_newstate();
  if (T == nullptr) return;
  // The patched library code charges the step meter of hb-meter.h through every state's extra
  // space: give the template state one that never runs out (and has no VM to settle with).
  hb_meter unmetered{};
  unmetered.credit = unmetered.grant = LLONG_MAX / 4;
  hb_meter_of(T) = &unmetered;
  lua_pushcfunction(T, OpenAllLibs);
  if (lua_pcall(T, 0, 0, 0) != LUA_OK) {
    lua_close(T);
    return;
  }
  // Registry entries the libraries create on first use: lauxlib's LUABOX metatable (its __gc frees
  // the buffer of a long string being built, e.g. by string.rep or table.concat).
  if (luaL_loadstring(T, "return string.rep('x', 1 << 16)") == LUA_OK) lua_pcall(T, 0, 0, 0);
  lua_settop(T, 0);
  std::vector<const void*> seen;
  lua_getfield(T, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  int loaded = lua_gettop(T);
  std::vector<std::string> mods;
  lua_pushnil(T);
  while (lua_next(T, loaded) != 0) {
    if (lua_type(T, -2) == LUA_TSTRING) mods.emplace_back(lua_tostring(T, -2));
    lua_pop(T, 1);
  }
  std::sort(mods.begin(), mods.end());
  for (const std::string& m : mods) {
    lua_getfield(T, loaded, m.c_str());
    if (lua_istable(T, -1)) Walk(T, -1, m, m == "_G" ? 0 : 1, c, seen);
    lua_pop(T, 1);
  }
  lua_settop(T, 0);
  lua_pushvalue(T, LUA_REGISTRYINDEX);
  Walk(T, -1, "registry", 3, c, seen);
  lua_settop(T, 0);
  if (luaL_loadstring(T, kDiscover) == LUA_OK && lua_pcall(T, 0, 7, 0) == LUA_OK) {
    c.Add("string.gmatch#iter", reinterpret_cast<const void*>(lua_tocfunction(T, 1)), kPtrCFunction);
    c.Add("coroutine.wrap#iter", reinterpret_cast<const void*>(lua_tocfunction(T, 2)), kPtrCFunction);
    c.Add("_G.ipairs#iter", reinterpret_cast<const void*>(lua_tocfunction(T, 3)), kPtrCFunction);
    c.Add("utf8.codes#iter", reinterpret_cast<const void*>(lua_tocfunction(T, 4)), kPtrCFunction);
    c.Add("io.lines#iter", reinterpret_cast<const void*>(lua_tocfunction(T, 5)), kPtrCFunction);
    auto* stream = static_cast<luaL_Stream*>(lua_touserdata(T, 6));
    if (stream != nullptr) {
      c.noclose = reinterpret_cast<const void*>(stream->closef);
      c.Add("io#noclose", c.noclose, kPtrCFunction);
    }
    lua_State* co = lua_tothread(T, 7);
    for (CallInfo* ci = co != nullptr ? co->ci : nullptr; ci != nullptr; ci = ci->previous) {
      if (!isLua(ci) && ci->u.c.k != nullptr) c.Add("_G.pcall#k", reinterpret_cast<const void*>(ci->u.c.k), kPtrKFunction);
    }
    c.Add("debug.sethook#hook", reinterpret_cast<const void*>(lua_gethook(T)), kPtrHook);
    // Registry keys that are addresses of static variables: loadlib.c's CLIBS (a table with a
    // __gc metatable) and ldblib.c's HOOKKEY (the hook table, weak keys).
    lua_pushnil(T);
    while (lua_next(T, LUA_REGISTRYINDEX) != 0) {
      if (lua_type(T, -2) == LUA_TLIGHTUSERDATA && lua_istable(T, -1) && lua_getmetatable(T, -1)) {
        if (lua_getfield(T, -1, "__gc") != LUA_TNIL) {
          c.Add("package#CLIBS", lua_touserdata(T, -4), kPtrLightUserdata);
          c.Add("package#CLIBS#mt.__gc", reinterpret_cast<const void*>(lua_tocfunction(T, -1)), kPtrCFunction);
        }
        lua_pop(T, 1);
        if (lua_getfield(T, -1, "__mode") != LUA_TNIL) c.Add("debug#HOOKKEY", lua_touserdata(T, -4), kPtrLightUserdata);
        lua_pop(T, 2);
      }
      lua_pop(T, 1);
    }
  }
  lua_close(T);
}

}  // namespace

const CNames& Names() {
  static CNames names;
  static std::once_flag once;
  std::call_once(once, [] { BuildNames(names); });
  return names;
}

}  // namespace luasnap
}  // namespace hbr
