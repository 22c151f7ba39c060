// Lua snapshot format v1 (see docs/lua-vm.md for the byte layout).
//
// A snapshot records what differs from a freshly opened state with the same libraries: the
// "permanent" tables (_G and the stdlib tables, by fixed index) as diffs against copies taken
// when the state was opened, and every value reachable from those diffs. Stdlib functions are
// written by name (permanent table + key), Lua functions as lua_dump bytecode plus upvalues.
// Serializing reads the state with non-raising calls only; restoring runs in a protected call.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

struct lua_State;

namespace hbr {

constexpr uint32_t kLuaSnapshotVersion = 1;
constexpr size_t kLuaSnapshotHeaderSize = 28;

// The permanent tables, by index (a name is a raw path from _G).
constexpr int kNumPermTables = 13;
extern const char* const kPermTableNames[kNumPermTables];

// Fills aux[kAuxPermTables] and aux[kAuxPermBases]. `aux` is an absolute index.
// Stack: [] -> []. May raise: call inside a protected call.
void CapturePermanents(lua_State* L, int aux);

// The complete blob (header + payload). Throws SnapshotError (status 500) naming the first value
// v1 cannot capture (coroutines, userdata, C functions outside the stdlib). Stack: unchanged.
std::vector<uint8_t> SerializeLuaState(Napi::Env env, lua_State* L, int aux_ref, uint16_t libs, const uint64_t rng[4],
                                       const std::vector<std::string>& host_paths);

// The payload fields read before any state is created.
struct LuaSnapshotPrefix {
  uint16_t libs = 0;
  uint64_t rng[4] = {0, 0, 0, 0};
  std::vector<std::string> host_paths;
  const uint8_t* stream = nullptr;  // the value stream (points into the caller's bytes)
  size_t stream_len = 0;
};

// Checks magic, version, word size, flags, length and checksum, then parses the prefix.
// Throws SnapshotError (status 400) with what was wrong.
LuaSnapshotPrefix ReadLuaSnapshot(Napi::Env env, const uint8_t* data, size_t len);

// Input of RestoreTrampoline. Plain data: it is read inside a protected call.
struct LuaRestoreCtx {
  const uint8_t* p;
  size_t len;
  size_t pos;
  const int* host_slots;  // host path index -> slot of the restored VM
  uint32_t nhost;
  int aux_ref;
  int objs;   // stack index of the id -> object table (set by the trampoline)
  int upvs;   // stack index of the upvalue id -> (closure, n) table
  int bases;  // stack index of aux[kAuxPermBases]
  uint32_t next_id;
  uint32_t next_upid;
  int depth;
};

// lua_CFunction; argument 1: light userdata LuaRestoreCtx*. Applies the value stream to the
// freshly opened state. Raises "malformed snapshot: ..." on bad input. Stack: [ctx] -> [ctx].
int LuaRestoreTrampoline(lua_State* L);

}  // namespace hbr
