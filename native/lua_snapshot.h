// Lua snapshot format v2 (see docs/lua-vm.md for the byte layout).
//
// A snapshot is the whole object graph reachable from the registry and the per-type metatables,
// written through Lua's internal structures: tables slot by slot (array part, node array with
// each node's key, value and `next` link, `lastfree`), so a restored table iterates in the same
// order; closures with shared upvalues (open upvalues of suspended coroutines stay attached to
// their stack slot), prototypes shared between closures, C closures and light C functions by
// stable name, suspended coroutines with their stack and CallInfo chain. Objects are numbered in
// the order of a deterministic breadth-first walk, so the bytes are canonical.
//
// Serializing reads the state without calling Lua at all (no allocation in the state, no GC
// step); its scratch memory comes from the state's allocator. Restoring builds every object of a
// fresh state inside a protected call (C-style code, nothing with a destructor), with the
// collector stopped, then swaps in the restored registry.
//
// Files: lua_snapshot_format.h (kinds, tags, byte helpers, shared by all of them), lua_snapshot_names.cc
// (stable names of C functions), lua_snapshot_serializer.h with lua_snapshot_walk.cc and
// lua_snapshot_write.cc (writing), lua_snapshot_reader.h with lua_snapshot_read.cc,
// lua_snapshot_read_thread.cc and lua_snapshot_restore.cc (reading), lua_snapshot_validate.cc (the
// header, checksum and prefix checks, and the structural checks of what was read).
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

struct lua_State;

namespace hbr {

constexpr uint32_t kLuaSnapshotVersion = 2;
constexpr size_t kLuaSnapshotHeaderSize = 28;

// The complete blob (header + payload) as a Buffer, followed by `spare` zero bytes. Throws
// SnapshotError (status 500) naming the first value v2 cannot capture (userdata that is not a
// standard stream, C functions unknown to the stdlib, light userdata). Returns undefined when the
// scratch memory (the host's, outside the state's memory limit) could not be allocated.
// `L` is the main thread of an idle state. Stack: unchanged (nothing is pushed).
Napi::Value SerializeLuaState(Napi::Env env, lua_State* L, int aux_ref, uint16_t libs, const uint64_t rng[4],
                              const std::vector<std::string>& host_paths,
                              size_t spare = 0);

// The payload fields read before any state is created.
struct LuaSnapshotPrefix {
  uint16_t libs = 0;
  uint64_t rng[4] = {0, 0, 0, 0};
  uint32_t aux_ref = 0;
  uint32_t serial = 0;  // the state's next object serial
  std::vector<std::string> host_paths;
  std::vector<const void*> cfuncs;  // the snapshot's C function names, resolved
  std::vector<uint8_t> ckinds;      // what each one is (kind checked where it is used)
  const uint8_t* stream = nullptr;  // the object stream (points into the caller's bytes)
  size_t stream_len = 0;
};

// Checks magic, version, word size, flags, length and checksum, then parses the prefix.
// Throws SnapshotError (status 400) with what was wrong.
LuaSnapshotPrefix ReadLuaSnapshot(Napi::Env env, const uint8_t* data, size_t len);

// Input of LuaRestoreTrampoline. Plain data: it is read inside a protected call.
struct LuaRestoreCtx {
  const LuaSnapshotPrefix* pre;
  const int* host_slots;  // host path index -> slot of the restored VM
  int aux_size;           // the restored aux table needs at least this many array slots
  // The reader's scratch (malloc'd by the trampoline, freed by the caller after the protected call,
  // whatever its outcome): the host's memory, outside the state's memoryLimit.
  void* objs_mem = nullptr;
  void* scratch_mem = nullptr;
};

// lua_CFunction; argument 1: light userdata LuaRestoreCtx*. Builds the snapshot's objects in the
// (freshly opened) state and makes the restored registry and metatables the state's own. Raises
// "malformed snapshot: ..." on bad input; the caller then discards the state.
int LuaRestoreTrampoline(lua_State* L);

// A pointer the snapshot refers to by name (the VM's own C functions, hooks, sentinels).
struct LuaNamedPointer {
  const char* name;
  const void* ptr;
  uint8_t kind;  // LuaPointerKind
};
enum LuaPointerKind : uint8_t { kPtrCFunction = 1, kPtrKFunction = 2, kPtrHook = 3, kPtrLightUserdata = 4 };

// The VM's own named pointers (defined in lua_vm_snapshot.cc).
const LuaNamedPointer* LuaVmPointers(size_t* n);

}  // namespace hbr
