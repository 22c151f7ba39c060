// Lua snapshot format v2, internals shared by the writer (lua_snapshot_walk.cc, lua_snapshot_write.cc),
// the reader (lua_snapshot_read*.cc, lua_snapshot_restore.cc) and the checks (lua_snapshot_validate.cc):
// magic, object kinds and value tags, the table of C function names (lua_snapshot_names.cc), the
// host-memory allocator of the scratch, little-endian byte helpers. Not part of the addon's surface:
// only the lua_snapshot*.cc files include it (it pulls in Lua's internal headers).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

#include "lua_snapshot.h"

extern "C" {
#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"
// Lua's internal headers: the snapshot reads and writes the structures directly.
#include "ldo.h"
#include "lfunc.h"
#include "lgc.h"
#include "lmem.h"
#include "lobject.h"
#include "lstate.h"
#include "lstring.h"
#include "ltable.h"
// From the patched ltable.c (scripts/fetch-lua.js).
Node* hb_mainposition(const Table* t, const TValue* key);
}

namespace hbr {
namespace luasnap {

constexpr char kMagic[6] = {'H', 'B', 'L', 'U', 'A', '\0'};
constexpr char kWasmMagic[6] = {'H', 'B', 'W', 'A', 'S', 'M'};
constexpr uint32_t kNone = 0xffffffffu;

// Object kinds (the first byte of each object's shell record).
enum Kind : uint8_t {
  kStr = 1,        // u32 length, bytes
  kTable = 2,      // u32 serial, u32 sizearray, u8 lsizenode (255: no hash part)
  kLcl = 3,        // u32 serial, u8 nupvalues
  kCcl = 4,        // u32 serial, u32 C function, u8 nupvalues
  kHost = 5,       // u32 serial, u32 host path index
  kUdata = 6,      // u32 serial, u8 stream (0 stdin, 1 stdout, 2 stderr, 3 closed file)
  kThread = 7,     // u32 serial, u32 stack slots needed
  kMain = 8,       // the main thread
  kProto = 9,      //
  kUpval = 10,     // closed upvalue
  kUpvalOpen = 11, // u32 thread id, u32 stack slot
  kGmatch = 12,    // u32 serial, u32 size: the state of a string.gmatch iterator (its upvalue 3)
};

// Value tags.
enum Tag : uint8_t {
  kTNil = 0,
  kTFalse = 1,
  kTTrue = 2,
  kTInt = 3,      // i64
  kTFloat = 4,    // f64 bits
  kTRef = 5,      // u32 object id
  kTCFunc = 6,    // u32 C function (a light C function)
  kTDeadKey = 7,  // a removed key whose object is gone (table keys only)
  kTLightUd = 8,  // u32 named pointer
};

// ---- Names of C functions (stable across processes, lua_snapshot_names.cc) -----------------------

struct CName {
  std::string name;
  const void* ptr;
  uint8_t kind;
};

struct CNames {
  std::vector<CName> list;
  std::unordered_map<const void*, uint32_t> by_ptr;
  std::unordered_map<std::string, uint32_t> by_name;
  const void* noclose = nullptr;  // liolib's io_noclose (closef of the standard streams)

  void Add(const std::string& name, const void* p, uint8_t kind) {
    if (p == nullptr || by_ptr.count(p) != 0 || by_name.count(name) != 0) return;
    by_ptr[p] = static_cast<uint32_t>(list.size());
    by_name[name] = static_cast<uint32_t>(list.size());
    list.push_back({name, p, kind});
  }
};

// The names of every C function, hook and static pointer a snapshot can refer to, built once per
// process from a template state with every library open.
const CNames& Names();

inline const void* NamedPointer(const CNames& c, const char* name) {
  auto it = c.by_name.find(name);
  return it != c.by_name.end() ? c.list[it->second].ptr : nullptr;
}

// ---- Scratch memory (the host's, see SerializeLuaState) ------------------------------------------

// A lua_Alloc over malloc, outside every VM's accounting (the serializer's scratch).
inline void* HostAlloc(void*, void* ptr, size_t, size_t nsize) {
  if (nsize == 0) {
    std::free(ptr);
    return nullptr;
  }
  return std::realloc(ptr, nsize);
}

template <class T>
struct LAlloc {
  using value_type = T;
  lua_Alloc f;
  void* ud;
  LAlloc(lua_Alloc f_, void* ud_) : f(f_), ud(ud_) {}
  template <class U>
  LAlloc(const LAlloc<U>& o) : f(o.f), ud(o.ud) {}  // NOLINT
  T* allocate(size_t n) {
    void* p = f(ud, nullptr, 0, n * sizeof(T));
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t n) { f(ud, p, n * sizeof(T), 0); }
  template <class U>
  bool operator==(const LAlloc<U>& o) const {
    return f == o.f && ud == o.ud;
  }
  template <class U>
  bool operator!=(const LAlloc<U>& o) const {
    return !(*this == o);
  }
};

template <class K, class V>
using LMap = std::unordered_map<K, V, std::hash<K>, std::equal_to<K>, LAlloc<std::pair<const K, V>>>;

// ---- Little-endian bytes (writing: lua_snapshot_write.cc) ---------------------------------------------

using Bytes = std::vector<uint8_t, LAlloc<uint8_t>>;

inline uint64_t LoadLE(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

// The first fields of lstrlib.c's GMatchState: the current position, the pattern, the end of the
// last match (the MatchState after them is rebuilt by calling string.gmatch again).
struct GmatchHead {
  const char* src;
  const char* p;
  const char* lastmatch;
};

}  // namespace luasnap
}  // namespace hbr
