// The sandboxed standard library of a LuaVM (native/lua_stdlib.cc). Every function here is a
// C-style lua_CFunction: it runs inside Lua's protected calls and may raise.
#pragma once

#include <cstddef>
#include <cstdint>

#include "lua_vm.h"

namespace hbr {

struct LuaLibInfo {
  uint16_t bit;
  const char* name;     // the name users pass in `libs`
  const char* modname;  // the name luaL_requiref registers
  lua_CFunction open;
};
constexpr size_t kLuaLibCount = 10;
extern const LuaLibInfo kLuaLibs[kLuaLibCount];

constexpr uint64_t kDefaultSeed = 0;

// Data for LuaOpenTrampoline.
struct OpenCtx {
  uint16_t libs;
  int aux_ref;
};
// Opens the libraries and applies the sandbox. Stack: [ctx] -> [ctx].
int LuaOpenTrampoline(lua_State* L);

// Replacements and wrappers (named in snapshots, see LuaVmPointers).
int ChargedReader(lua_State* L);
int SafeLoad(lua_State* L);
int FinishPcall(lua_State* L, int status, lua_KContext extra);
int GuardedHandler(lua_State* L);
int GuardedXpcall(lua_State* L);
int SafeSetmetatable(lua_State* L);
int SafeCollectgarbage(lua_State* L);
int MathRandom(lua_State* L);
int MathRandomseed(lua_State* L);
int SearcherLuaText(lua_State* L);
int OutputPrint(lua_State* L);  // print into the VM's output (or stdout with print: 'stdout')
int ClockTime(lua_State* L);    // os.time: the fixed time 0 and UTC tables (upvalue 1: the real one)
int ClockDate(lua_State* L);    // os.date: UTC, at the fixed time by default (upvalue 1: the real one)
int ClockClock(lua_State* L);   // os.clock: 0 (upvalue 1: the real one)

void SeedRandom(uint64_t* s, uint64_t seed);

}  // namespace hbr
