// Lua snapshots, reading: the Reader over the object stream and the functions that rebuild each
// kind of object (lua_snapshot_read.cc: values, shells, tables, closures, userdata;
// lua_snapshot_read_thread.cc: coroutines and prototypes), checked as they are read
// (lua_snapshot_validate.cc: table chains, the graph as a whole, the registry).
//
// C-style: everything here runs inside the protected call of LuaRestoreTrampoline and holds no
// object with a destructor. Malformed input raises a Lua error ("malformed snapshot: ..."), which
// longjmps out to that protected call.
#pragma once

#include <cstddef>
#include <cstdint>

#include "lua_snapshot_format.h"

namespace hbr {
namespace luasnap {

struct RObj {
  void* p;
  uint32_t a;  // kUpvalOpen: thread id; kThread: stack slots needed
  uint32_t b;  // kUpvalOpen: stack slot
  uint8_t kind;
};

struct Reader {
  lua_State* L;
  const LuaSnapshotPrefix* pre;
  const int* host_slots;
  const uint8_t* p;
  size_t len;
  size_t pos;
  RObj* objs;
  uint32_t nobj;
  uint32_t* scratch;  // 2 words per node of the largest hash part
};

[[noreturn]] inline void Malformed(Reader* r, const char* what) {
  luaL_error(r->L, "malformed snapshot: %s", what);
  std::abort();  // not reached
}

inline void Need(Reader* r, size_t n) {
  if (r->len - r->pos < n) Malformed(r, "truncated object stream");
}
inline uint64_t Get(Reader* r, int n) {
  Need(r, static_cast<size_t>(n));
  uint64_t v = LoadLE(r->p + r->pos, n);
  r->pos += static_cast<size_t>(n);
  return v;
}
inline uint8_t GetU8(Reader* r) { return static_cast<uint8_t>(Get(r, 1)); }
inline uint32_t GetU32(Reader* r) { return static_cast<uint32_t>(Get(r, 4)); }
inline int32_t GetI32(Reader* r) { return static_cast<int32_t>(static_cast<uint32_t>(Get(r, 4))); }

// An array count: each element takes at least `min_bytes` of the remaining stream.
inline uint32_t GetCount(Reader* r, size_t min_bytes) {
  uint32_t n = GetU32(r);
  if (n > (r->len - r->pos) / min_bytes || n > (1u << 30)) Malformed(r, "count larger than the stream");
  return n;
}

inline RObj* GetObj(Reader* r, uint8_t kind, bool none_ok) {
  uint32_t id = GetU32(r);
  if (id == kNone && none_ok) return nullptr;
  if (id >= r->nobj || r->objs[id].kind != kind) Malformed(r, "bad object reference");
  return &r->objs[id];
}

inline const void* GetName(Reader* r, uint8_t kind, bool none_ok) {
  uint32_t n = GetU32(r);
  if (n == kNone && none_ok) return nullptr;
  if (n >= r->pre->cfuncs.size() || r->pre->ckinds[n] != kind) Malformed(r, "bad C function reference");
  return r->pre->cfuncs[n];
}

// ---- lua_snapshot_read.cc ----
// One value (a table key when `key`: dead keys allowed).
void ReadValue(Reader* r, TValue* out, bool key);
// A metatable reference: nil or a table.
Table* ReadMetatable(Reader* r);
// An object's shell: allocates it (sizes only), before any content is read.
void ReadShell(Reader* r, RObj* o);
// An object's content (its references resolved against the shells).
void ReadContent(Reader* r, RObj* o);

// ---- lua_snapshot_read_thread.cc ----
void ReadThread(Reader* r, RObj* o);
void ResolveThread(Reader* r, lua_State* th);
void ReadProto(Reader* r, RObj* o);

// ---- lua_snapshot_validate.cc ----
// The node array of a table just read: chains are simple lists, keys on their main position's
// chain, no key twice. Uses r->scratch (2 words per node).
void CheckTable(Reader* r, Table* t, uint32_t nodes);
// After every content is read: closures match their prototypes, frames' saved pcs are resolved
// (ResolveThread), nested prototypes' upvalue descriptions are in range.
void CheckGraph(Reader* r);
// The restored registry: the main thread, the globals, the VM's aux table (at least `aux_size`
// array slots), and the entries library C code dereferences unchecked.
void CheckRegistry(Reader* r, Table* regt, uint32_t aux_ref, int aux_size);

}  // namespace luasnap
}  // namespace hbr
