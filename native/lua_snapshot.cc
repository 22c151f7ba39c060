#include "lua_snapshot.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_map>

#include "addon.h"
#include "errors.h"
#include "lua_vm.h"

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

namespace {

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

// ---- Names of C functions (stable across processes) ---------------------------------------------

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

const CNames& Names() {
  static CNames names;
  static std::once_flag once;
  std::call_once(once, [] { BuildNames(names); });
  return names;
}

// ---- Scratch memory (the host's, see SerializeLuaState) ------------------------------------------

// A lua_Alloc over malloc, outside every VM's accounting (the serializer's scratch).
void* HostAlloc(void*, void* ptr, size_t, size_t nsize) {
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

// Object pointer -> id, open addressing (the serializer's hot path: one lookup per reference).
class IdMap {
 public:
  explicit IdMap(LAlloc<uint8_t> a) : slots_(LAlloc<Slot>(a)) { slots_.resize(1024); }
  // The id of `p`, or kNone after inserting it with `id`.
  uint32_t FindOrInsert(const void* p, uint32_t id) {
    if ((count_ + 1) * 2 > slots_.size()) Grow();
    size_t mask = slots_.size() - 1;
    for (size_t i = Hash(p) & mask;; i = (i + 1) & mask) {
      if (slots_[i].p == p) return slots_[i].id;
      if (slots_[i].p == nullptr) {
        slots_[i] = {p, id};
        count_++;
        return 0xffffffffu;
      }
    }
  }
  uint32_t Find(const void* p) const {
    size_t mask = slots_.size() - 1;
    for (size_t i = Hash(p) & mask;; i = (i + 1) & mask) {
      if (slots_[i].p == p) return slots_[i].id;
      if (slots_[i].p == nullptr) return 0xffffffffu;
    }
  }

 private:
  struct Slot {
    const void* p = nullptr;
    uint32_t id = 0;
  };
  static size_t Hash(const void* p) {
    uint64_t x = reinterpret_cast<uintptr_t>(p);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return static_cast<size_t>(x);
  }
  void Grow() {
    std::vector<Slot, LAlloc<Slot>> old(slots_.get_allocator());
    old.swap(slots_);
    slots_.resize(old.size() * 2);
    count_ = 0;
    for (const Slot& s : old) {
      if (s.p != nullptr) FindOrInsert(s.p, s.id);
    }
  }
  std::vector<Slot, LAlloc<Slot>> slots_;
  size_t count_ = 0;
};
using Bytes = std::vector<uint8_t, LAlloc<uint8_t>>;

void PutU8(Bytes& o, uint8_t v) { o.push_back(v); }
void PutN(Bytes& o, uint64_t v, int n) {
  size_t at = o.size();
  o.resize(at + static_cast<size_t>(n));
  uint8_t* d = o.data() + at;
  for (int i = 0; i < n; i++) d[i] = static_cast<uint8_t>(v >> (8 * i));
}
void PutU16(Bytes& o, uint16_t v) { PutN(o, v, 2); }
void PutU32(Bytes& o, uint32_t v) { PutN(o, v, 4); }
void PutI32(Bytes& o, int32_t v) { PutN(o, static_cast<uint32_t>(v), 4); }
void PutU64(Bytes& o, uint64_t v) { PutN(o, v, 8); }
void PutBytes(Bytes& o, const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  o.insert(o.end(), b, b + n);
}
uint64_t LoadLE(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

[[noreturn]] void Bad(Napi::Env env, const std::string& what) { throw MakeError(env, "SnapshotError", what); }

// ---- Serializing ----------------------------------------------------------------------------------

enum Edge : uint8_t {
  kEdgeRoot,
  kEdgeValue,  // table value under `key`
  kEdgeKey,
  kEdgeArray,  // array part, `index`
  kEdgeMeta,
  kEdgeUserValue,
  kEdgeUpvalue,  // `index`
  kEdgeProto,
  kEdgeStack,  // `index`
  kEdgeThread,
  kEdgeConst,
};

struct Obj {
  const void* p;
  const TValue* key;
  int64_t index;
  uint32_t parent;
  uint8_t kind;
  uint8_t edge;
};

bool IsTransientAux(int64_t slot) { return slot != kAuxLoad; }

const void* NamedPointer(const CNames& c, const char* name) {
  auto it = c.by_name.find(name);
  return it != c.by_name.end() ? c.list[it->second].ptr : nullptr;
}

// The first fields of lstrlib.c's GMatchState: the current position, the pattern, the end of the
// last match (the MatchState after them is rebuilt by calling string.gmatch again).
struct GmatchHead {
  const char* src;
  const char* p;
  const char* lastmatch;
};

class Serializer {
 public:
  Serializer(Napi::Env env, lua_State* L, const Table* aux, const std::vector<std::string>& host_paths,
             LAlloc<uint8_t> a)
      : env_(env),
        L_(L),
        aux_(aux),
        host_paths_(host_paths),
        names_(Names()),
        gmatch_aux_(NamedPointer(names_, "string.gmatch#iter")),
        objs_(a),
        ids_(a),
        open_(0, std::hash<const void*>(), std::equal_to<const void*>(), a),
        names_used_(a),
        name_local_(0, std::hash<uint32_t>(), std::equal_to<uint32_t>(), a),
        hosts_used_(a),
        host_local_(0, std::hash<int64_t>(), std::equal_to<int64_t>(), a),
        out_(a) {}

  void Walk() {
    global_State* g = G(L_);
    // Open upvalues of every thread that has any (g->twups holds them all), to find the thread
    // and stack slot of an open upvalue reached through a closure.
    for (lua_State* th = g->twups; th != nullptr; th = th->twups) {
      for (UpVal* uv = th->openupval; uv != nullptr; uv = uv->u.open.next) {
        open_[uv] = {th, static_cast<uint32_t>(uv->v - th->stack)};
      }
    }
    Visit(&g->l_registry, kNone, kEdgeRoot, nullptr, 0);
    for (int i = 0; i < LUA_NUMTAGS; i++) {
      if (g->mt[i] != nullptr) Ref(g->mt[i], kTable, kNone, kEdgeRoot, nullptr, i + 1);
    }
    for (size_t i = 0; i < objs_.size(); i++) Children(static_cast<uint32_t>(i));
  }

  // Objects: shells, contents, roots.
  void Write() {
    out_.reserve(objs_.size() * 24 + 64);
    PutU32(out_, static_cast<uint32_t>(objs_.size()));
    for (size_t i = 0; i < objs_.size(); i++) Shell(objs_[i]);
    for (size_t i = 0; i < objs_.size(); i++) Content(objs_[i]);
    global_State* g = G(L_);
    WriteValue(&g->l_registry);
    for (int i = 0; i < LUA_NUMTAGS; i++) {
      if (g->mt[i] == nullptr) {
        PutU8(out_, kTNil);
      } else {
        PutU8(out_, kTRef);
        PutU32(out_, IdOf(g->mt[i]));
      }
    }
  }

  const Bytes& out() const { return out_; }
  const std::vector<uint32_t, LAlloc<uint32_t>>& names_used() const { return names_used_; }
  const std::vector<int64_t, LAlloc<int64_t>>& hosts_used() const { return hosts_used_; }

 private:
  uint32_t Ref(const void* p, uint8_t kind, uint32_t parent, uint8_t edge, const TValue* key, int64_t index) {
    uint32_t id = static_cast<uint32_t>(objs_.size());
    uint32_t found = ids_.FindOrInsert(p, id);
    if (found != kNone) return found;
    objs_.push_back({p, key, index, parent, kind, edge});
    return id;
  }

  uint32_t IdOf(const void* p) const {
    return ids_.Find(p);
  }

  // Index of a named pointer in this snapshot's name table (added on first use), or kNone.
  uint32_t NameOf(const void* p, uint8_t kind) {
    auto it = names_.by_ptr.find(p);
    if (it == names_.by_ptr.end() || names_.list[it->second].kind != kind) return kNone;
    auto local = name_local_.find(it->second);
    if (local != name_local_.end()) return local->second;
    uint32_t idx = static_cast<uint32_t>(names_used_.size());
    names_used_.push_back(it->second);
    name_local_.emplace(it->second, idx);
    return idx;
  }

  uint32_t NameOrFail(const void* p, uint8_t kind, const char* what, uint32_t parent, uint8_t edge,
                      const TValue* key, int64_t index) {
    uint32_t n = NameOf(p, kind);
    if (n == kNone) Fail(what, parent, edge, key, index);
    return n;
  }

  void Visit(const TValue* v, uint32_t parent, uint8_t edge, const TValue* key, int64_t index) {
    switch (ttype(v)) {
      case LUA_TNIL:
      case LUA_TBOOLEAN:
      case LUA_TNUMINT:
      case LUA_TNUMFLT:
        return;
      case LUA_TSHRSTR:
      case LUA_TLNGSTR:
        Ref(gcvalue(v), kStr, parent, edge, key, index);
        return;
      case LUA_TTABLE:
        Ref(gcvalue(v), kTable, parent, edge, key, index);
        return;
      case LUA_TLCL:
        Ref(gcvalue(v), kLcl, parent, edge, key, index);
        return;
      case LUA_TCCL: {
        const CClosure* c = clCvalue(v);
        if (c->f == LuaHostTrampoline) {
          if (ids_.Find(c) == kNone) {
            if (c->nupvalues < 1 || !ttisinteger(&c->upvalue[0]) || ivalue(&c->upvalue[0]) < 0 ||
                static_cast<uint64_t>(ivalue(&c->upvalue[0])) >= host_paths_.size()) {
              Fail("a host function with a bad slot", parent, edge, key, index);
            }
            int64_t slot = ivalue(&c->upvalue[0]);
            if (host_local_.count(slot) == 0) {
              host_local_.emplace(slot, static_cast<uint32_t>(hosts_used_.size()));
              hosts_used_.push_back(slot);
            }
          }
          Ref(c, kHost, parent, edge, key, index);
        } else {
          Ref(c, kCcl, parent, edge, key, index);
        }
        return;
      }
      case LUA_TUSERDATA:
        Ref(gcvalue(v), kUdata, parent, edge, key, index);
        return;
      case LUA_TTHREAD:
        Ref(gcvalue(v), thvalue(v) == G(L_)->mainthread ? kMain : kThread, parent, edge, key, index);
        return;
      case LUA_TLCF:
        NameOrFail(reinterpret_cast<const void*>(fvalue(v)), kPtrCFunction, "a C function outside the standard library",
                   parent, edge, key, index);
        return;
      case LUA_TLIGHTUSERDATA:
        NameOrFail(pvalue(v), kPtrLightUserdata, "a light userdata", parent, edge, key, index);
        return;
      default:
        Fail("a value of an unknown type", parent, edge, key, index);
    }
  }

  void VisitUpval(const UpVal* uv, uint32_t parent, int64_t index) {
    if (upisopen(uv)) {
      if (open_.count(uv) == 0) Fail("an open upvalue of an unknown thread", parent, kEdgeUpvalue, nullptr, index);
      Ref(uv, kUpvalOpen, parent, kEdgeUpvalue, nullptr, index);
    } else {
      Ref(uv, kUpval, parent, kEdgeUpvalue, nullptr, index);
    }
  }

  void Children(uint32_t id) {
    Obj o = objs_[id];
    switch (o.kind) {
      case kTable: {
        const Table* t = static_cast<const Table*>(o.p);
        if (t->metatable != nullptr) Ref(t->metatable, kTable, id, kEdgeMeta, nullptr, 0);
        for (unsigned i = 0; i < t->sizearray; i++) {
          if (t == aux_ && IsTransientAux(i + 1)) continue;
          Visit(&t->array[i], id, kEdgeArray, nullptr, i + 1);
        }
        if (!isdummy(t)) {
          for (int i = 0; i < sizenode(t); i++) {
            const Node* n = gnode(t, i);
            if (ttisnil(gval(n))) {
              // A removed string key keeps its node (the patched collector never kills it, see
              // keptStaleKeys in scripts/fetch-lua.js): writing it exactly keeps the layout.
              if (ttisstring(gkey(n))) Visit(gkey(n), id, kEdgeKey, gkey(n), 0);
              continue;
            }
            Visit(gkey(n), id, kEdgeKey, gkey(n), 0);
            Visit(gval(n), id, kEdgeValue, gkey(n), 0);
          }
        }
        break;
      }
      case kLcl: {
        const LClosure* cl = static_cast<const LClosure*>(o.p);
        if (cl->p != nullptr) Ref(cl->p, kProto, id, kEdgeProto, nullptr, 0);
        for (int i = 0; i < cl->nupvalues; i++) {
          if (cl->upvals[i] != nullptr) VisitUpval(cl->upvals[i], id, i + 1);
        }
        break;
      }
      case kCcl: {
        const CClosure* c = static_cast<const CClosure*>(o.p);
        NameOrFail(reinterpret_cast<const void*>(c->f), kPtrCFunction, "a C function outside the standard library",
                   o.parent, o.edge, o.key, o.index);
        // string.gmatch's iterator keeps its position in a userdata (upvalue 3) that points into
        // its subject and pattern (upvalues 1 and 2): written as offsets.
        bool gmatch = reinterpret_cast<const void*>(c->f) == gmatch_aux_ && c->nupvalues == 3 &&
                      ttisstring(&c->upvalue[0]) && ttisstring(&c->upvalue[1]) && ttisfulluserdata(&c->upvalue[2]) &&
                      uvalue(&c->upvalue[2])->metatable == nullptr;
        for (int i = 0; i < c->nupvalues; i++) {
          if (gmatch && i == 2) {
            Ref(uvalue(&c->upvalue[2]), kGmatch, id, kEdgeUpvalue, &c->upvalue[0], i + 1);
          } else {
            Visit(&c->upvalue[i], id, kEdgeUpvalue, nullptr, i + 1);
          }
        }
        break;
      }
      case kUdata: {
        const Udata* u = static_cast<const Udata*>(o.p);
        StreamKind(u, o);
        if (u->metatable != nullptr) Ref(u->metatable, kTable, id, kEdgeMeta, nullptr, 0);
        TValue uv;
        getuservalue(L_, u, &uv);
        Visit(&uv, id, kEdgeUserValue, nullptr, 0);
        break;
      }
      case kThread: {
        const lua_State* th = static_cast<const lua_State*>(o.p);
        if (th->errorJmp != nullptr) Fail("a running coroutine", o.parent, o.edge, o.key, o.index);
        for (const TValue* s = th->stack; s < th->top; s++) {
          Visit(s, id, kEdgeStack, nullptr, static_cast<int64_t>(s - th->stack));
        }
        for (UpVal* uv = th->openupval; uv != nullptr; uv = uv->u.open.next) {
          Ref(uv, kUpvalOpen, id, kEdgeStack, nullptr, static_cast<int64_t>(uv->v - th->stack));
        }
        if (th->hook != nullptr) {
          NameOrFail(reinterpret_cast<const void*>(th->hook), kPtrHook, "a coroutine with an unknown debug hook",
                     o.parent, o.edge, o.key, o.index);
        }
        for (const CallInfo* ci = &th->base_ci; ci != nullptr; ci = ci == th->ci ? nullptr : ci->next) {
          if (th->status == LUA_YIELD && ci != &th->base_ci && !isLua(ci) && ci->u.c.k != nullptr) {
            NameOrFail(reinterpret_cast<const void*>(ci->u.c.k), kPtrKFunction,
                       "a coroutine suspended in an unknown C function", o.parent, o.edge, o.key, o.index);
          }
        }
        break;
      }
      case kProto: {
        const Proto* p = static_cast<const Proto*>(o.p);
        if (p->source != nullptr) Ref(p->source, kStr, id, kEdgeConst, nullptr, 0);
        for (int i = 0; i < p->sizek; i++) Visit(&p->k[i], id, kEdgeConst, nullptr, i);
        for (int i = 0; i < p->sizeupvalues; i++) {
          if (p->upvalues[i].name != nullptr) Ref(p->upvalues[i].name, kStr, id, kEdgeConst, nullptr, 0);
        }
        for (int i = 0; i < p->sizep; i++) Ref(p->p[i], kProto, id, kEdgeProto, nullptr, i);
        for (int i = 0; i < p->sizelocvars; i++) {
          if (p->locvars[i].varname != nullptr) Ref(p->locvars[i].varname, kStr, id, kEdgeConst, nullptr, 0);
        }
        break;
      }
      case kUpval: {
        const UpVal* uv = static_cast<const UpVal*>(o.p);
        Visit(uv->v, id, kEdgeValue, nullptr, 0);
        break;
      }
      case kUpvalOpen: {
        const auto& at = open_.at(o.p);
        if (at.first == G(L_)->mainthread) Fail("an upvalue open on the main thread", o.parent, o.edge, o.key, o.index);
        Ref(at.first, kThread, id, kEdgeThread, nullptr, 0);
        break;
      }
      default:
        break;
    }
  }

  uint8_t StreamKind(const Udata* u, const Obj& o) {
    if (u->len == sizeof(luaL_Stream)) {
      const auto* s = reinterpret_cast<const luaL_Stream*>(getudatamem(u));
      if (s->closef == nullptr) return 3;
      if (reinterpret_cast<const void*>(s->closef) == names_.noclose) {
        if (s->f == stdin) return 0;
        if (s->f == stdout) return 1;
        if (s->f == stderr) return 2;
      }
    }
    Fail("a userdata (an open file or another C object)", o.parent, o.edge, o.key, o.index);
  }

  [[noreturn]] void Fail(const std::string& why, uint32_t parent, uint8_t edge, const TValue* key, int64_t index) {
    std::vector<std::string> parts;
    parts.push_back(Label(edge, key, index));
    for (uint32_t at = parent; at != kNone; at = objs_[at].parent) {
      const Obj& o = objs_[at];
      parts.push_back(Label(o.edge, o.key, o.index));
    }
    std::string where;
    for (size_t i = parts.size(); i-- > 0;) {
      const std::string& p = parts[i];
      if (p.empty()) continue;
      if (where == "registry" && p == "[2]") {
        where = "_G";
        continue;
      }
      if (where == "registry" && p == "._LOADED") {
        where = "package.loaded";
        continue;
      }
      where += p;
    }
    throw MakeError(env_, "SnapshotError", "cannot snapshot " + why + " at " + where,
                    {{"status", Napi::Number::New(env_, 500)}});
  }

  static std::string Label(uint8_t edge, const TValue* key, int64_t index) {
    switch (edge) {
      case kEdgeRoot:
        return index == 0 ? "registry" : "(metatable of type " + std::to_string(index - 1) + ")";
      case kEdgeValue:
        if (key == nullptr) return "";
        if (ttisstring(key)) return "." + std::string(svalue(key), tsslen(tsvalue(key)));
        if (ttisinteger(key)) return "[" + std::to_string(ivalue(key)) + "]";
        return "[?]";
      case kEdgeKey:
        return "(a key)";
      case kEdgeArray:
        return "[" + std::to_string(index) + "]";
      case kEdgeMeta:
        return "(metatable)";
      case kEdgeUserValue:
        return "(user value)";
      case kEdgeUpvalue:
        return "(upvalue " + std::to_string(index) + ")";
      case kEdgeStack:
        return "(stack slot " + std::to_string(index) + ")";
      default:
        return "";
    }
  }

  void WriteValue(const TValue* v) {
    switch (ttype(v)) {
      case LUA_TNIL:
        PutU8(out_, kTNil);
        return;
      case LUA_TBOOLEAN:
        PutU8(out_, bvalue(v) ? kTTrue : kTFalse);
        return;
      case LUA_TNUMINT:
        PutU8(out_, kTInt);
        PutU64(out_, static_cast<uint64_t>(ivalue(v)));
        return;
      case LUA_TNUMFLT: {
        PutU8(out_, kTFloat);
        lua_Number d = fltvalue(v);
        uint64_t bits;
        std::memcpy(&bits, &d, 8);
        PutU64(out_, bits);
        return;
      }
      case LUA_TLCF:
        PutU8(out_, kTCFunc);
        PutU32(out_, NameOf(reinterpret_cast<const void*>(fvalue(v)), kPtrCFunction));
        return;
      case LUA_TLIGHTUSERDATA:
        PutU8(out_, kTLightUd);
        PutU32(out_, NameOf(pvalue(v), kPtrLightUserdata));
        return;
      default:
        PutU8(out_, kTRef);
        PutU32(out_, IdOf(gcvalue(v)));
        return;
    }
  }

  // The key of a node whose value is nil: Lua keeps it (it still occupies the node) until the
  // collector marks it dead; objects not otherwise reachable are written as dead keys.
  void WriteStaleKey(const TValue* k) {
    if (ttisnil(k)) {
      PutU8(out_, kTNil);
    } else if (ttisdeadkey(k) || (iscollectable(k) && IdOf(gcvalue(k)) == kNone)) {
      PutU8(out_, kTDeadKey);
    } else if (ttislcf(k) && NameOf(reinterpret_cast<const void*>(fvalue(k)), kPtrCFunction) == kNone) {
      PutU8(out_, kTDeadKey);
    } else if (ttislightuserdata(k) && NameOf(pvalue(k), kPtrLightUserdata) == kNone) {
      PutU8(out_, kTDeadKey);
    } else {
      WriteValue(k);
    }
  }

  void PutRef(const void* p) { PutU32(out_, p != nullptr ? IdOf(p) : kNone); }

  void Shell(const Obj& o) {
    PutU8(out_, o.kind);
    switch (o.kind) {
      case kStr: {
        const TString* s = static_cast<const TString*>(o.p);
        size_t n = tsslen(s);
        PutU32(out_, static_cast<uint32_t>(n));
        PutBytes(out_, getstr(s), n);
        break;
      }
      case kTable: {
        const Table* t = static_cast<const Table*>(o.p);
        PutU32(out_, t->hbserial);
        PutU32(out_, t->sizearray);
        PutU8(out_, isdummy(t) ? 255 : t->lsizenode);
        break;
      }
      case kLcl: {
        const LClosure* cl = static_cast<const LClosure*>(o.p);
        PutU32(out_, cl->hbserial);
        PutU8(out_, cl->nupvalues);
        break;
      }
      case kCcl: {
        const CClosure* c = static_cast<const CClosure*>(o.p);
        PutU32(out_, c->hbserial);
        PutU32(out_, NameOf(reinterpret_cast<const void*>(c->f), kPtrCFunction));
        PutU8(out_, c->nupvalues);
        break;
      }
      case kHost: {
        const CClosure* c = static_cast<const CClosure*>(o.p);
        PutU32(out_, c->hbserial);
        PutU32(out_, host_local_.at(ivalue(&c->upvalue[0])));
        break;
      }
      case kUdata: {
        const Udata* u = static_cast<const Udata*>(o.p);
        PutU32(out_, u->hbserial);
        PutU8(out_, StreamKind(u, o));
        break;
      }
      case kThread: {
        const lua_State* th = static_cast<const lua_State*>(o.p);
        PutU32(out_, th->hbserial);
        ptrdiff_t need = th->top - th->stack;
        for (const CallInfo* ci = &th->base_ci; ci != nullptr; ci = ci == th->ci ? nullptr : ci->next) {
          need = std::max(need, ci->top - th->stack);
        }
        PutU32(out_, static_cast<uint32_t>(need));
        break;
      }
      case kUpvalOpen: {
        const auto& at = open_.at(o.p);
        PutU32(out_, IdOf(at.first));
        PutU32(out_, at.second);
        break;
      }
      case kGmatch: {
        const Udata* u = static_cast<const Udata*>(o.p);
        PutU32(out_, u->hbserial);
        PutU32(out_, static_cast<uint32_t>(u->len));
        break;
      }
      default:
        break;
    }
  }

  void Content(const Obj& o) {
    switch (o.kind) {
      case kTable: {
        const Table* t = static_cast<const Table*>(o.p);
        PutU8(out_, t->flags);
        if (t->metatable != nullptr) {
          PutU8(out_, kTRef);
          PutU32(out_, IdOf(t->metatable));
        } else {
          PutU8(out_, kTNil);
        }
        for (unsigned i = 0; i < t->sizearray; i++) {
          if (t == aux_ && IsTransientAux(i + 1)) {
            PutU8(out_, kTFalse);
          } else {
            WriteValue(&t->array[i]);
          }
        }
        if (!isdummy(t)) {
          int size = sizenode(t);
          for (int i = 0; i < size; i++) {
            const Node* n = gnode(t, i);
            if (ttisnil(gval(n))) {
              WriteStaleKey(gkey(n));
            } else {
              WriteValue(gkey(n));
            }
            WriteValue(gval(n));
            PutI32(out_, gnext(n));
          }
          PutU32(out_, static_cast<uint32_t>(t->lastfree - t->node));
        }
        break;
      }
      case kLcl: {
        const LClosure* cl = static_cast<const LClosure*>(o.p);
        PutRef(cl->p);
        for (int i = 0; i < cl->nupvalues; i++) PutRef(cl->upvals[i]);
        break;
      }
      case kCcl: {
        const CClosure* c = static_cast<const CClosure*>(o.p);
        for (int i = 0; i < c->nupvalues; i++) WriteValue(&c->upvalue[i]);
        break;
      }
      case kUdata: {
        const Udata* u = static_cast<const Udata*>(o.p);
        if (u->metatable != nullptr) {
          PutU8(out_, kTRef);
          PutU32(out_, IdOf(u->metatable));
        } else {
          PutU8(out_, kTNil);
        }
        TValue uv;
        getuservalue(L_, u, &uv);
        WriteValue(&uv);
        break;
      }
      case kThread: {
        const lua_State* th = static_cast<const lua_State*>(o.p);
        PutU8(out_, th->status);
        PutU64(out_, static_cast<uint64_t>(th->errfunc));
        PutU16(out_, th->nny);
        PutU16(out_, th->nCcalls);
        PutU8(out_, static_cast<uint8_t>(th->hookmask));
        PutU8(out_, th->allowhook);
        PutI32(out_, th->basehookcount);
        PutI32(out_, th->hookcount);
        PutU32(out_, th->hook != nullptr ? NameOf(reinterpret_cast<const void*>(th->hook), kPtrHook) : kNone);
        PutU32(out_, static_cast<uint32_t>(th->top - th->stack));
        for (const TValue* s = th->stack; s < th->top; s++) WriteValue(s);
        uint32_t nci = 0;
        for (const CallInfo* ci = &th->base_ci; ci != nullptr; ci = ci == th->ci ? nullptr : ci->next) nci++;
        PutU32(out_, nci);
        // Only the fields Lua keeps meaningful are written: CallInfo structs are reused, so the
        // others hold leftovers of earlier calls (the base frame's, uninitialised memory).
        bool yielded = th->status == LUA_YIELD;
        for (const CallInfo* ci = &th->base_ci; ci != nullptr; ci = ci == th->ci ? nullptr : ci->next) {
          bool ypcall = (ci->callstatus & CIST_YPCALL) != 0;
          if (ci == &th->base_ci) {
            PutU32(out_, static_cast<uint32_t>(ci->top - th->stack));
            PutU16(out_, ci->callstatus);
            continue;
          }
          PutU32(out_, static_cast<uint32_t>(ci->func - th->stack));
          PutU32(out_, static_cast<uint32_t>(ci->top - th->stack));
          PutU16(out_, static_cast<uint16_t>(ci->nresults));
          PutU16(out_, ci->callstatus);
          PutU64(out_, ypcall || (yielded && ci == th->ci) ? static_cast<uint64_t>(ci->extra) : 0);
          if (isLua(ci)) {
            PutU32(out_, static_cast<uint32_t>(ci->u.l.base - th->stack));
            PutU32(out_, static_cast<uint32_t>(ci->u.l.savedpc - clLvalue(ci->func)->p->code));
          } else {
            bool k = yielded && ci->u.c.k != nullptr;
            PutU32(out_, k ? NameOf(reinterpret_cast<const void*>(ci->u.c.k), kPtrKFunction) : kNone);
            PutU64(out_, k ? static_cast<uint64_t>(ci->u.c.ctx) : 0);
            PutU64(out_, ypcall ? static_cast<uint64_t>(ci->u.c.old_errfunc) : 0);
          }
        }
        break;
      }
      case kProto: {
        const Proto* p = static_cast<const Proto*>(o.p);
        PutU8(out_, p->numparams);
        PutU8(out_, p->is_vararg);
        PutU8(out_, p->maxstacksize);
        PutI32(out_, p->linedefined);
        PutI32(out_, p->lastlinedefined);
        PutRef(p->source);
        PutU32(out_, static_cast<uint32_t>(p->sizecode));
        for (int i = 0; i < p->sizecode; i++) PutU32(out_, p->code[i]);
        PutU32(out_, static_cast<uint32_t>(p->sizek));
        for (int i = 0; i < p->sizek; i++) WriteValue(&p->k[i]);
        PutU32(out_, static_cast<uint32_t>(p->sizeupvalues));
        for (int i = 0; i < p->sizeupvalues; i++) {
          PutU8(out_, p->upvalues[i].instack);
          PutU8(out_, p->upvalues[i].idx);
          PutRef(p->upvalues[i].name);
        }
        PutU32(out_, static_cast<uint32_t>(p->sizep));
        for (int i = 0; i < p->sizep; i++) PutRef(p->p[i]);
        PutU32(out_, static_cast<uint32_t>(p->sizelineinfo));
        for (int i = 0; i < p->sizelineinfo; i++) PutI32(out_, p->lineinfo[i]);
        PutU32(out_, static_cast<uint32_t>(p->sizelocvars));
        for (int i = 0; i < p->sizelocvars; i++) {
          PutRef(p->locvars[i].varname);
          PutI32(out_, p->locvars[i].startpc);
          PutI32(out_, p->locvars[i].endpc);
        }
        // The prototype's closure cache is weak: kept only when that closure is written anyway.
        PutU32(out_, p->cache != nullptr ? IdOf(p->cache) : kNone);
        break;
      }
      case kUpval: {
        const UpVal* uv = static_cast<const UpVal*>(o.p);
        WriteValue(uv->v);
        break;
      }
      case kGmatch: {
        // o.key: the closure's upvalues (subject, pattern, this state).
        const Udata* u = static_cast<const Udata*>(o.p);
        const auto* h = reinterpret_cast<const GmatchHead*>(getudatamem(u));
        const TString* subject = tsvalue(&o.key[0]);
        const TString* pattern = tsvalue(&o.key[1]);
        PutU32(out_, IdOf(subject));
        PutU32(out_, IdOf(pattern));
        PutU32(out_, static_cast<uint32_t>(h->src - getstr(subject)));
        PutU32(out_, static_cast<uint32_t>(h->p - getstr(pattern)));
        PutU32(out_, h->lastmatch != nullptr ? static_cast<uint32_t>(h->lastmatch - getstr(subject)) : kNone);
        break;
      }
      default:
        break;
    }
  }

  Napi::Env env_;
  lua_State* L_;
  const Table* aux_;
  const std::vector<std::string>& host_paths_;
  const CNames& names_;
  const void* gmatch_aux_;
  std::vector<Obj, LAlloc<Obj>> objs_;
  IdMap ids_;
  LMap<const void*, std::pair<lua_State*, uint32_t>> open_;
  std::vector<uint32_t, LAlloc<uint32_t>> names_used_;
  LMap<uint32_t, uint32_t> name_local_;
  std::vector<int64_t, LAlloc<int64_t>> hosts_used_;
  LMap<int64_t, uint32_t> host_local_;
  Bytes out_;
};

// ---- Restoring (C-style: runs inside a protected call, holds no object with a destructor) ------------

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

[[noreturn]] void Malformed(Reader* r, const char* what) {
  luaL_error(r->L, "malformed snapshot: %s", what);
  std::abort();  // not reached
}

void Need(Reader* r, size_t n) {
  if (r->len - r->pos < n) Malformed(r, "truncated object stream");
}
uint64_t Get(Reader* r, int n) {
  Need(r, static_cast<size_t>(n));
  uint64_t v = LoadLE(r->p + r->pos, n);
  r->pos += static_cast<size_t>(n);
  return v;
}
uint8_t GetU8(Reader* r) { return static_cast<uint8_t>(Get(r, 1)); }
uint32_t GetU32(Reader* r) { return static_cast<uint32_t>(Get(r, 4)); }
int32_t GetI32(Reader* r) { return static_cast<int32_t>(static_cast<uint32_t>(Get(r, 4))); }

// An array count: each element takes at least `min_bytes` of the remaining stream.
uint32_t GetCount(Reader* r, size_t min_bytes) {
  uint32_t n = GetU32(r);
  if (n > (r->len - r->pos) / min_bytes || n > (1u << 30)) Malformed(r, "count larger than the stream");
  return n;
}

RObj* GetObj(Reader* r, uint8_t kind, bool none_ok) {
  uint32_t id = GetU32(r);
  if (id == kNone && none_ok) return nullptr;
  if (id >= r->nobj || r->objs[id].kind != kind) Malformed(r, "bad object reference");
  return &r->objs[id];
}

const void* GetName(Reader* r, uint8_t kind, bool none_ok) {
  uint32_t n = GetU32(r);
  if (n == kNone && none_ok) return nullptr;
  if (n >= r->pre->cfuncs.size() || r->pre->ckinds[n] != kind) Malformed(r, "bad C function reference");
  return r->pre->cfuncs[n];
}

// Stdlib C closures that use their upvalues without checking them (lua_tothread, lua_touserdata):
// restore checks what they get.
struct IterFns {
  const void* gmatch;   // string.gmatch#iter: subject, pattern, its state
  const void* wrap;     // coroutine.wrap#iter: the coroutine
  const void* readline; // io.lines#iter: the stream, n, toclose, n formats
};
const IterFns& Iters() {
  static const IterFns fns{NamedPointer(Names(), "string.gmatch#iter"), NamedPointer(Names(), "coroutine.wrap#iter"),
                           NamedPointer(Names(), "io.lines#iter")};
  return fns;
}
bool NeedsUpvalues(const void* f) {
  const IterFns& it = Iters();
  return f != nullptr && (f == it.gmatch || f == it.wrap || f == it.readline);
}

void ReadValue(Reader* r, TValue* out, bool key) {
  lua_State* L = r->L;
  uint8_t tag = GetU8(r);
  switch (tag) {
    case kTNil:
      setnilvalue(out);
      return;
    case kTFalse:
    case kTTrue:
      setbvalue(out, tag == kTTrue);
      return;
    case kTInt:
      setivalue(out, static_cast<lua_Integer>(Get(r, 8)));
      return;
    case kTFloat: {
      uint64_t bits = Get(r, 8);
      lua_Number d;
      std::memcpy(&d, &bits, 8);
      setfltvalue(out, d);
      return;
    }
    case kTCFunc: {
      const void* f = GetName(r, kPtrCFunction, false);
      if (NeedsUpvalues(f)) Malformed(r, "an iterator function without its upvalues");
      setfvalue(out, reinterpret_cast<lua_CFunction>(const_cast<void*>(f)));
      return;
    }
    case kTLightUd:
      setpvalue(out, const_cast<void*>(GetName(r, kPtrLightUserdata, false)));
      return;
    case kTDeadKey:
      if (!key) Malformed(r, "dead key outside a table key");
      out->value_.gc = nullptr;
      settt_(out, LUA_TDEADKEY);
      return;
    case kTRef: {
      uint32_t id = GetU32(r);
      if (id >= r->nobj) Malformed(r, "bad object reference");
      RObj& o = r->objs[id];
      switch (o.kind) {
        case kStr:
          setsvalue(L, out, static_cast<TString*>(o.p));
          return;
        case kTable:
          sethvalue(L, out, static_cast<Table*>(o.p));
          return;
        case kLcl:
          setclLvalue(L, out, static_cast<LClosure*>(o.p));
          return;
        case kCcl:
        case kHost:
          setclCvalue(L, out, static_cast<CClosure*>(o.p));
          return;
        case kUdata:
        case kGmatch:
          setuvalue(L, out, static_cast<Udata*>(o.p));
          return;
        case kThread:
        case kMain:
          setthvalue(L, out, static_cast<lua_State*>(o.p));
          return;
        default:
          Malformed(r, "a value refers to a prototype or an upvalue");
      }
    }
    default:
      Malformed(r, "bad value tag");
  }
}

Table* ReadMetatable(Reader* r) {
  TValue v;
  ReadValue(r, &v, false);
  if (ttisnil(&v)) return nullptr;
  if (!ttistable(&v)) Malformed(r, "a metatable that is not a table");
  return hvalue(&v);
}

void ReadShell(Reader* r, RObj* o) {
  lua_State* L = r->L;
  o->kind = GetU8(r);
  switch (o->kind) {
    case kStr: {
      uint32_t n = GetU32(r);
      Need(r, n);
      o->p = luaS_newlstr(L, reinterpret_cast<const char*>(r->p + r->pos), n);
      r->pos += n;
      break;
    }
    case kTable: {
      uint32_t serial = GetU32(r);
      uint32_t asize = GetU32(r);
      uint8_t ls = GetU8(r);
      size_t nodes = ls == 255 ? 0 : static_cast<size_t>(1) << (ls > 30 ? 30 : ls);
      if ((ls != 255 && ls > 30) || asize > r->len - r->pos || nodes > (r->len - r->pos) / 6) {
        Malformed(r, "table larger than the stream");
      }
      Table* t = luaH_new(L);
      o->p = t;
      t->hbserial = serial;
      luaH_resize(L, t, asize, static_cast<unsigned>(nodes));
      o->a = static_cast<uint32_t>(nodes);
      break;
    }
    case kLcl: {
      uint32_t serial = GetU32(r);
      LClosure* cl = luaF_newLclosure(L, GetU8(r));
      cl->hbserial = serial;
      o->p = cl;
      break;
    }
    case kCcl: {
      uint32_t serial = GetU32(r);
      const void* f = GetName(r, kPtrCFunction, false);
      int n = GetU8(r);
      CClosure* c = luaF_newCclosure(L, n);
      c->hbserial = serial;
      c->f = reinterpret_cast<lua_CFunction>(const_cast<void*>(f));
      for (int i = 0; i < n; i++) setnilvalue(&c->upvalue[i]);
      o->p = c;
      break;
    }
    case kHost: {
      uint32_t serial = GetU32(r);
      uint32_t idx = GetU32(r);
      if (idx >= r->pre->host_paths.size()) Malformed(r, "bad host function index");
      CClosure* c = luaF_newCclosure(L, 1);
      c->hbserial = serial;
      c->f = LuaHostTrampoline;
      setivalue(&c->upvalue[0], r->host_slots[idx]);
      o->p = c;
      break;
    }
    case kUdata: {
      uint32_t serial = GetU32(r);
      uint8_t sk = GetU8(r);
      if (sk > 3) Malformed(r, "bad stream kind");
      if (sk < 3 && Names().noclose == nullptr) Malformed(r, "the io library is not available");
      Udata* u = luaS_newudata(L, sizeof(luaL_Stream));
      u->hbserial = serial;
      auto* s = reinterpret_cast<luaL_Stream*>(getudatamem(u));
      s->f = sk == 0 ? stdin : sk == 1 ? stdout : sk == 2 ? stderr : nullptr;
      s->closef = sk < 3 ? reinterpret_cast<lua_CFunction>(const_cast<void*>(Names().noclose)) : nullptr;
      o->p = u;
      break;
    }
    case kThread: {
      uint32_t serial = GetU32(r);
      uint32_t need = GetU32(r);
      if (need > LUAI_MAXSTACK) Malformed(r, "coroutine stack too large");
      lua_State* th = lua_newthread(L);
      L->top--;
      th->hbserial = serial;
      o->p = th;
      o->a = need;
      if (static_cast<int>(need) + EXTRA_STACK > th->stacksize) luaD_reallocstack(th, static_cast<int>(need) + EXTRA_STACK);
      break;
    }
    case kGmatch: {
      uint32_t serial = GetU32(r);
      uint32_t size = GetU32(r);
      if (size < sizeof(GmatchHead) || size > 4096) Malformed(r, "bad string.gmatch state");
      Udata* u = luaS_newudata(L, size);
      std::memset(getudatamem(u), 0, size);
      u->hbserial = serial;
      o->p = u;
      break;
    }
    case kMain:
      o->p = L;
      break;
    case kProto:
      o->p = luaF_newproto(L);
      break;
    case kUpval:
      o->p = nullptr;  // made when the first closure that uses it is read
      break;
    case kUpvalOpen:
      o->a = GetU32(r);
      o->b = GetU32(r);
      o->p = nullptr;
      break;
    default:
      Malformed(r, "bad object kind");
  }
}

// A total order on valid table keys in which equal means raw-equal (no float key holds an
// integer value and none is NaN: ReadTable refuses those, as Lua never stores them).
int KeyCompare(const TValue* a, const TValue* b) {
  int ta = ttype(a), tb = ttype(b);
  if (ta != tb) return ta < tb ? -1 : 1;
  switch (ta) {
    case LUA_TNUMINT:
      return ivalue(a) < ivalue(b) ? -1 : ivalue(a) > ivalue(b) ? 1 : 0;
    case LUA_TNUMFLT:
      return fltvalue(a) < fltvalue(b) ? -1 : fltvalue(a) > fltvalue(b) ? 1 : 0;
    case LUA_TBOOLEAN:
      return bvalue(a) - bvalue(b);
    case LUA_TLNGSTR: {
      const TString* x = tsvalue(a);
      const TString* y = tsvalue(b);
      size_t lx = tsslen(x), ly = tsslen(y);
      if (lx != ly) return lx < ly ? -1 : 1;
      return std::memcmp(getstr(x), getstr(y), lx);
    }
    case LUA_TLCF: {
      auto x = reinterpret_cast<uintptr_t>(fvalue(a)), y = reinterpret_cast<uintptr_t>(fvalue(b));
      return x < y ? -1 : x > y ? 1 : 0;
    }
    case LUA_TLIGHTUSERDATA: {
      auto x = reinterpret_cast<uintptr_t>(pvalue(a)), y = reinterpret_cast<uintptr_t>(pvalue(b));
      return x < y ? -1 : x > y ? 1 : 0;
    }
    default: {
      auto x = reinterpret_cast<uintptr_t>(gcvalue(a)), y = reinterpret_cast<uintptr_t>(gcvalue(b));
      return x < y ? -1 : x > y ? 1 : 0;
    }
  }
}

// Every chain of `next` links must be a simple list (no merges, no cycles) and every key must be
// on the chain of its main position: otherwise lookups and inserts could loop forever.
void CheckTable(Reader* r, Table* t, uint32_t nodes) {
  if (nodes == 0) return;
  uint32_t* depth = r->scratch;        // distance to the end of the node's chain
  uint32_t* head = r->scratch + nodes;  // first: number of predecessors; then: 1 + the chain's head
  for (uint32_t i = 0; i < nodes; i++) {
    head[i] = 0;
    depth[i] = kNone;
  }
  for (uint32_t i = 0; i < nodes; i++) {
    int nx = gnext(gnode(t, i));
    if (nx == 0) continue;
    uint32_t to = i + static_cast<uint32_t>(nx);
    if (head[to] != 0) Malformed(r, "table chains merge");
    head[to] = 1;
  }
  for (uint32_t i = 0; i < nodes; i++) {
    if (head[i] != 0) continue;  // has a predecessor (or belongs to a chain already done)
    uint32_t len = 1, end = i;
    while (gnext(gnode(t, end)) != 0) {
      end += static_cast<uint32_t>(gnext(gnode(t, end)));
      len++;
    }
    uint32_t at = i;
    for (uint32_t k = 0; k < len; k++) {
      depth[at] = len - 1 - k;
      head[at] = i + 1;
      at += static_cast<uint32_t>(gnext(gnode(t, at)));
    }
  }
  for (uint32_t i = 0; i < nodes; i++) {
    if (depth[i] == kNone) Malformed(r, "table chain cycle");
  }
  for (uint32_t i = 0; i < nodes; i++) {
    Node* n = gnode(t, i);
    if (ttisnil(gval(n))) continue;
    uint32_t mp = static_cast<uint32_t>(hb_mainposition(t, gkey(n)) - t->node);
    if (head[mp] != head[i] || depth[mp] < depth[i]) Malformed(r, "a table key off its chain");
  }
  // No key twice in a chain (equal keys share their main position, so a duplicate would be in
  // the same chain): `next` would then go back and loop forever. Sorted per chain, O(n log n).
  uint32_t* buf = depth;
  for (uint32_t h = 0; h < nodes; h++) {
    if (head[h] != h + 1) continue;  // not a chain head
    uint32_t m = 0;
    for (uint32_t at = h;; at += static_cast<uint32_t>(gnext(gnode(t, at)))) {
      const TValue* k = gkey(gnode(t, at));
      if (!ttisnil(k) && !ttisdeadkey(k)) buf[m++] = at;
      if (gnext(gnode(t, at)) == 0) break;
    }
    if (m < 2) continue;
    std::sort(buf, buf + m, [t](uint32_t a, uint32_t b) { return KeyCompare(gkey(gnode(t, a)), gkey(gnode(t, b))) < 0; });
    for (uint32_t j = 1; j < m; j++) {
      if (KeyCompare(gkey(gnode(t, buf[j - 1])), gkey(gnode(t, buf[j]))) == 0) Malformed(r, "a table key twice");
    }
  }
}

void ReadTable(Reader* r, RObj* o) {
  lua_State* L = r->L;
  Table* t = static_cast<Table*>(o->p);
  uint8_t flags = GetU8(r);
  t->metatable = ReadMetatable(r);
  for (unsigned i = 0; i < t->sizearray; i++) ReadValue(r, &t->array[i], false);
  uint32_t nodes = o->a;
  if (nodes == 0) {
    t->flags = flags;
    return;
  }
  for (uint32_t i = 0; i < nodes; i++) {
    Node* n = gnode(t, i);
    TValue k;
    ReadValue(r, &k, true);
    ReadValue(r, gval(n), false);
    int32_t nx = GetI32(r);
    int64_t to = static_cast<int64_t>(i) + nx;
    if (to < 0 || to >= static_cast<int64_t>(nodes)) Malformed(r, "table link out of range");
    if (!ttisnil(gval(n)) && (ttisnil(&k) || ttisdeadkey(&k))) Malformed(r, "a table value without a valid key");
    if (ttisfloat(&k)) {
      lua_Integer iv;
      if (luai_numisnan(fltvalue(&k)) || (lua_numbertointeger(fltvalue(&k), &iv) && static_cast<lua_Number>(iv) == fltvalue(&k))) {
        Malformed(r, "a float table key that Lua would not store");
      }
    }
    setnodekey(L, &n->i_key, &k);
    gnext(n) = nx;
  }
  uint32_t lf = GetU32(r);
  if (lf > nodes) Malformed(r, "table free pointer out of range");
  t->lastfree = gnode(t, lf);
  t->flags = flags;
  CheckTable(r, t, nodes);
}

void ReadLcl(Reader* r, RObj* o) {
  lua_State* L = r->L;
  LClosure* cl = static_cast<LClosure*>(o->p);
  RObj* p = GetObj(r, kProto, false);
  cl->p = static_cast<Proto*>(p->p);
  for (int i = 0; i < cl->nupvalues; i++) {
    uint32_t id = GetU32(r);
    if (id >= r->nobj || (r->objs[id].kind != kUpval && r->objs[id].kind != kUpvalOpen)) {
      Malformed(r, "bad upvalue reference");
    }
    RObj& u = r->objs[id];
    if (u.p == nullptr) {
      if (u.kind != kUpval) Malformed(r, "bad upvalue reference");
      UpVal* uv = luaM_new(L, UpVal);
      uv->refcount = 0;
      uv->v = &uv->u.value;
      setnilvalue(uv->v);
      u.p = uv;
    }
    UpVal* uv = static_cast<UpVal*>(u.p);
    cl->upvals[i] = uv;
    uv->refcount++;
  }
}

// A stack offset in bytes (errfunc, extra, old_errfunc): 0 or a slot below `need`.
bool SlotOffsetOk(ptrdiff_t off, uint32_t need) {
  return off >= 0 && off % static_cast<ptrdiff_t>(sizeof(TValue)) == 0 &&
         off / static_cast<ptrdiff_t>(sizeof(TValue)) < static_cast<ptrdiff_t>(need);
}

void ReadThread(Reader* r, RObj* o) {
  lua_State* th = static_cast<lua_State*>(o->p);
  uint32_t need = o->a;
  uint8_t status = GetU8(r);
  if (status > LUA_ERRERR) Malformed(r, "bad coroutine status");
  ptrdiff_t errfunc = static_cast<ptrdiff_t>(Get(r, 8));
  if (!SlotOffsetOk(errfunc, need)) Malformed(r, "bad coroutine error handler");
  th->nny = static_cast<unsigned short>(Get(r, 2));
  th->nCcalls = static_cast<unsigned short>(Get(r, 2));
  th->hookmask = GetU8(r);
  th->allowhook = GetU8(r) != 0;
  th->basehookcount = GetI32(r);
  th->hookcount = GetI32(r);
  th->hook = reinterpret_cast<lua_Hook>(const_cast<void*>(GetName(r, kPtrHook, true)));
  uint32_t top = GetU32(r);
  if (top > need || top < 1) Malformed(r, "bad coroutine stack top");
  for (uint32_t i = 0; i < top; i++) ReadValue(r, th->stack + i, false);
  th->top = th->stack + top;
  uint32_t nci = GetCount(r, 20);
  if (nci < 1) Malformed(r, "coroutine without a base call");
  th->ci = &th->base_ci;
  for (uint32_t i = 0; i < nci; i++) {
    CallInfo* ci = i == 0 ? &th->base_ci : luaE_extendCI(th);
    th->ci = ci;
    if (i == 0) {
      uint32_t citop = GetU32(r);
      ci->callstatus = static_cast<unsigned short>(Get(r, 2));
      if (citop > need || citop < 1 || (ci->callstatus & CIST_LUA) != 0) Malformed(r, "bad base call frame");
      ci->func = th->stack;
      ci->top = th->stack + citop;
      ci->nresults = 0;
      ci->extra = 0;
      continue;
    }
    uint32_t func = GetU32(r);
    uint32_t citop = GetU32(r);
    ci->nresults = static_cast<short>(Get(r, 2));
    ci->callstatus = static_cast<unsigned short>(Get(r, 2));
    ci->extra = static_cast<ptrdiff_t>(Get(r, 8));
    // The stack must have room for the results (luaD_poscall writes `nresults` slots from func;
    // a metamethod's results land above its caller's top, inside its own frame).
    int nres = ci->nresults;
    if (func >= top || citop > need || citop <= func || nres < LUA_MULTRET ||
        func + static_cast<uint32_t>(nres > 0 ? nres : 0) > need) {
      Malformed(r, "bad call frame");
    }
    ci->func = th->stack + func;
    ci->top = th->stack + citop;
    if (isLua(ci)) {
      uint32_t base = GetU32(r);
      uint32_t pc = GetU32(r);
      if (!ttisLclosure(ci->func) || base <= func || base > citop) Malformed(r, "bad Lua call frame");
      ci->u.l.base = th->stack + base;
      ci->u.l.savedpc = reinterpret_cast<const Instruction*>(static_cast<uintptr_t>(pc));  // resolved later
    } else {
      ci->u.c.k = reinterpret_cast<lua_KFunction>(const_cast<void*>(GetName(r, kPtrKFunction, true)));
      ci->u.c.ctx = static_cast<lua_KContext>(Get(r, 8));
      ci->u.c.old_errfunc = static_cast<ptrdiff_t>(Get(r, 8));
      if (!ttisfunction(ci->func)) Malformed(r, "bad C call frame");
      if ((ci->callstatus & CIST_YPCALL) != 0 &&
          (!SlotOffsetOk(ci->extra, need) || !SlotOffsetOk(ci->u.c.old_errfunc, need) ||
           ci->extra / static_cast<ptrdiff_t>(sizeof(TValue)) <= static_cast<ptrdiff_t>(func))) {
        Malformed(r, "bad protected call frame");
      }
      // The stdlib continuations (pcall's and xpcall's) return the values above their context:
      // it counts the slots below the called function.
      if (ci->u.c.k != nullptr &&
          ((ci->callstatus & CIST_YPCALL) == 0 || ci->u.c.ctx < 0 ||
           ci->u.c.ctx > ci->extra / static_cast<ptrdiff_t>(sizeof(TValue)) - static_cast<ptrdiff_t>(func) - 1)) {
        Malformed(r, "bad continuation context");
      }
    }
  }
  th->errfunc = errfunc;
  th->status = status;
  if (status == LUA_YIELD) {
    if (th->ci == &th->base_ci || !SlotOffsetOk(th->ci->extra, need)) Malformed(r, "bad suspended coroutine");
    // Frames below the yield are resumed through their continuation (C) or the interpreter (Lua).
    for (CallInfo* ci = th->base_ci.next; ci != nullptr && ci != th->ci; ci = ci->next) {
      if (!isLua(ci) && ci->u.c.k == nullptr) Malformed(r, "a C frame without continuation below a yield");
    }
  }
}

// After every prototype is read: Lua frames get their saved pc, and `oldpc` (the last pc traced
// for line hooks, not saved) points into the innermost Lua frame.
void ResolveThread(Reader* r, lua_State* th) {
  th->oldpc = nullptr;
  for (CallInfo* ci = th->base_ci.next; ci != nullptr; ci = ci->next) {
    if (!isLua(ci)) continue;
    Proto* p = clLvalue(ci->func)->p;
    uintptr_t pc = reinterpret_cast<uintptr_t>(ci->u.l.savedpc);
    if (p == nullptr || pc < 1 || pc > static_cast<uintptr_t>(p->sizecode) || ci->top - ci->u.l.base < p->maxstacksize) {
      Malformed(r, "bad saved pc");
    }
    ci->u.l.savedpc = p->code + pc;
    th->oldpc = ci->u.l.savedpc;
    if (ci == th->ci) break;
  }
}

TString* GetStr(Reader* r) {
  RObj* o = GetObj(r, kStr, true);
  return o != nullptr ? static_cast<TString*>(o->p) : nullptr;
}

void ReadProto(Reader* r, RObj* o) {
  lua_State* L = r->L;
  Proto* p = static_cast<Proto*>(o->p);
  p->numparams = GetU8(r);
  p->is_vararg = GetU8(r);
  p->maxstacksize = GetU8(r);
  if (p->numparams > p->maxstacksize || p->maxstacksize < 2 || p->is_vararg > 1) Malformed(r, "bad prototype header");
  p->linedefined = GetI32(r);
  p->lastlinedefined = GetI32(r);
  p->source = GetStr(r);
  uint32_t n = GetCount(r, 4);
  if (n == 0) Malformed(r, "prototype without code");
  p->code = luaM_newvector(L, n, Instruction);
  p->sizecode = static_cast<int>(n);
  for (uint32_t i = 0; i < n; i++) p->code[i] = GetU32(r);
  n = GetCount(r, 1);
  p->k = luaM_newvector(L, n, TValue);
  for (uint32_t i = 0; i < n; i++) setnilvalue(&p->k[i]);
  p->sizek = static_cast<int>(n);
  for (uint32_t i = 0; i < n; i++) {
    ReadValue(r, &p->k[i], false);
    if (!ttisnil(&p->k[i]) && !ttisboolean(&p->k[i]) && !ttisnumber(&p->k[i]) && !ttisstring(&p->k[i])) {
      Malformed(r, "bad constant");
    }
  }
  n = GetCount(r, 6);
  p->upvalues = luaM_newvector(L, n, Upvaldesc);
  for (uint32_t i = 0; i < n; i++) p->upvalues[i].name = nullptr;
  p->sizeupvalues = static_cast<int>(n);
  for (uint32_t i = 0; i < n; i++) {
    p->upvalues[i].instack = GetU8(r);
    p->upvalues[i].idx = GetU8(r);
    p->upvalues[i].name = GetStr(r);
  }
  n = GetCount(r, 4);
  p->p = luaM_newvector(L, n, Proto*);
  for (uint32_t i = 0; i < n; i++) p->p[i] = nullptr;
  p->sizep = static_cast<int>(n);
  for (uint32_t i = 0; i < n; i++) p->p[i] = static_cast<Proto*>(GetObj(r, kProto, false)->p);
  n = GetCount(r, 4);
  p->lineinfo = luaM_newvector(L, n, int);
  p->sizelineinfo = static_cast<int>(n);
  for (uint32_t i = 0; i < n; i++) p->lineinfo[i] = GetI32(r);
  if (n != 0 && n != static_cast<uint32_t>(p->sizecode)) Malformed(r, "line info does not match the code");
  n = GetCount(r, 12);
  p->locvars = luaM_newvector(L, n, LocVar);
  for (uint32_t i = 0; i < n; i++) p->locvars[i].varname = nullptr;
  p->sizelocvars = static_cast<int>(n);
  for (uint32_t i = 0; i < n; i++) {
    p->locvars[i].varname = GetStr(r);
    p->locvars[i].startpc = GetI32(r);
    p->locvars[i].endpc = GetI32(r);
  }
  RObj* cache = GetObj(r, kLcl, true);
  p->cache = cache != nullptr ? static_cast<LClosure*>(cache->p) : nullptr;
}

// A fresh string.gmatch(subject, pattern) state, moved to the saved position.
void ReadGmatch(Reader* r, RObj* o) {
  lua_State* L = r->L;
  TString* subject = static_cast<TString*>(GetObj(r, kStr, false)->p);
  TString* pattern = static_cast<TString*>(GetObj(r, kStr, false)->p);
  // Its iterator (read before it) must hold the same subject and pattern.
  if (o->a == 0) Malformed(r, "a string.gmatch state without its iterator");
  const CClosure* it = static_cast<const CClosure*>(r->objs[o->a - 1].p);
  if (tsvalue(&it->upvalue[0]) != subject || tsvalue(&it->upvalue[1]) != pattern) {
    Malformed(r, "a string.gmatch state of another iterator");
  }
  uint32_t src = GetU32(r), pat = GetU32(r), last = GetU32(r);
  const void* gmatch = NamedPointer(Names(), "string.gmatch");
  if (gmatch == nullptr) Malformed(r, "string.gmatch is not available");
  if (src > tsslen(subject) + 1 || pat > tsslen(pattern) || (last != kNone && last > tsslen(subject))) {
    Malformed(r, "bad string.gmatch position");
  }
  lua_pushcfunction(L, reinterpret_cast<lua_CFunction>(const_cast<void*>(gmatch)));
  setsvalue2s(L, L->top, subject);
  L->top++;
  setsvalue2s(L, L->top, pattern);
  L->top++;
  lua_call(L, 2, 1);
  Udata* u = static_cast<Udata*>(o->p);
  lua_getupvalue(L, -1, 3);
  Udata* fresh = static_cast<Udata*>(lua_touserdata(L, -1)) != nullptr ? uvalue(L->top - 1) : nullptr;
  if (fresh == nullptr || fresh->len != u->len) Malformed(r, "string.gmatch state of another size");
  std::memcpy(getudatamem(u), getudatamem(fresh), u->len);
  lua_pop(L, 2);
  auto* h = reinterpret_cast<GmatchHead*>(getudatamem(u));
  h->src = getstr(subject) + src;
  h->p = getstr(pattern) + pat;
  h->lastmatch = last != kNone ? getstr(subject) + last : nullptr;
}

void ReadContent(Reader* r, RObj* o) {
  switch (o->kind) {
    case kTable:
      ReadTable(r, o);
      break;
    case kLcl:
      ReadLcl(r, o);
      break;
    case kCcl: {
      CClosure* c = static_cast<CClosure*>(o->p);
      const IterFns& it = Iters();
      const void* f = reinterpret_cast<const void*>(c->f);
      if (f == it.gmatch) {
        // Subject, pattern, then the state, which must be a string.gmatch state of its own.
        if (c->nupvalues != 3) Malformed(r, "bad string.gmatch iterator");
        ReadValue(r, &c->upvalue[0], false);
        ReadValue(r, &c->upvalue[1], false);
        if (!ttisstring(&c->upvalue[0]) || !ttisstring(&c->upvalue[1]) || GetU8(r) != kTRef) {
          Malformed(r, "bad string.gmatch iterator");
        }
        RObj* gm = GetObj(r, kGmatch, false);
        if (gm->a != 0) Malformed(r, "a string.gmatch state shared by two iterators");
        gm->a = static_cast<uint32_t>(o - r->objs) + 1;
        setuvalue(r->L, &c->upvalue[2], static_cast<Udata*>(gm->p));
        break;
      }
      for (int i = 0; i < c->nupvalues; i++) ReadValue(r, &c->upvalue[i], false);
      if (f == it.wrap && (c->nupvalues < 1 || !ttisthread(&c->upvalue[0]))) Malformed(r, "bad coroutine.wrap iterator");
      if (f == it.readline &&
          (c->nupvalues < 3 || !ttisfulluserdata(&c->upvalue[0]) || uvalue(&c->upvalue[0])->len != sizeof(luaL_Stream) ||
           !ttisinteger(&c->upvalue[1]) || ivalue(&c->upvalue[1]) < 0 || ivalue(&c->upvalue[1]) > c->nupvalues - 3)) {
        Malformed(r, "bad io.lines iterator");
      }
      break;
    }
    case kUdata: {
      Udata* u = static_cast<Udata*>(o->p);
      u->metatable = ReadMetatable(r);
      TValue v;
      ReadValue(r, &v, false);
      setuservalue(r->L, u, &v);
      break;
    }
    case kThread:
      ReadThread(r, o);
      break;
    case kProto:
      ReadProto(r, o);
      break;
    case kUpval:
      if (o->p == nullptr) Malformed(r, "an upvalue that no closure uses");
      ReadValue(r, static_cast<UpVal*>(o->p)->v, false);
      break;
    case kGmatch:
      ReadGmatch(r, o);
      break;
    default:
      break;
  }
}

}  // namespace

int LuaRestoreTrampoline(lua_State* L) {
  auto* c = static_cast<LuaRestoreCtx*>(lua_touserdata(L, 1));
  global_State* g = G(L);
  Reader rd{};
  Reader* r = &rd;
  r->L = L;
  r->pre = c->pre;
  r->host_slots = c->host_slots;
  r->p = c->pre->stream;
  r->len = c->pre->stream_len;
  // The collector is stopped while the graph is built (the new objects are anchored nowhere), and
  // a failed allocation must not run an emergency collection: it raises a memory error instead.
  // From a clean pause: no object is black while the graph is built. (The fresh state's own
  // libraries become garbage at the commit below; they cannot be dropped before: the io streams'
  // finalizers need the registry's FILE* metatable.)
  lua_gc(L, LUA_GCCOLLECT, 0);
  lua_gc(L, LUA_GCSTOP, 0);
  const lua_Number* version = g->version;
  g->version = nullptr;

  r->nobj = GetCount(r, 1);
  c->objs_mem = std::malloc(sizeof(RObj) * (r->nobj > 0 ? r->nobj : 1));
  if (c->objs_mem == nullptr) luaD_throw(L, LUA_ERRMEM);
  r->objs = static_cast<RObj*>(c->objs_mem);
  for (uint32_t i = 0; i < r->nobj; i++) r->objs[i] = RObj{nullptr, 0, 0, 0};
  bool main_seen = false;
  uint32_t max_nodes = 0;
  for (uint32_t i = 0; i < r->nobj; i++) {
    ReadShell(r, &r->objs[i]);
    if (r->objs[i].kind == kMain) {
      if (main_seen) Malformed(r, "two main threads");
      main_seen = true;
    }
    if (r->objs[i].kind == kTable) max_nodes = std::max(max_nodes, r->objs[i].a);
  }
  for (uint32_t i = 0; i < r->nobj; i++) {
    RObj& o = r->objs[i];
    if (o.kind != kUpvalOpen) continue;
    if (o.a >= r->nobj || r->objs[o.a].kind != kThread || o.b >= r->objs[o.a].a) Malformed(r, "bad open upvalue");
    lua_State* th = static_cast<lua_State*>(r->objs[o.a].p);
    o.p = luaF_findupval(th, th->stack + o.b);
  }
  c->scratch_mem = std::malloc(sizeof(uint32_t) * 2 * (max_nodes > 0 ? max_nodes : 1));
  if (c->scratch_mem == nullptr) luaD_throw(L, LUA_ERRMEM);
  r->scratch = static_cast<uint32_t*>(c->scratch_mem);
  for (uint32_t i = 0; i < r->nobj; i++) ReadContent(r, &r->objs[i]);

  TValue reg;
  ReadValue(r, &reg, false);
  if (!ttistable(&reg)) Malformed(r, "the registry is not a table");
  Table* mts[LUA_NUMTAGS];
  for (int i = 0; i < LUA_NUMTAGS; i++) mts[i] = ReadMetatable(r);
  if (r->pos != r->len) Malformed(r, "trailing bytes");

  for (uint32_t i = 0; i < r->nobj; i++) {
    RObj& o = r->objs[i];
    if (o.kind == kLcl) {
      LClosure* cl = static_cast<LClosure*>(o.p);
      if (cl->p == nullptr || cl->nupvalues != cl->p->sizeupvalues) Malformed(r, "closure does not match its prototype");
    } else if (o.kind == kThread) {
      ResolveThread(r, static_cast<lua_State*>(o.p));
    } else if (o.kind == kProto) {
      // A nested function's upvalues come from the enclosing function's registers or upvalues.
      Proto* p = static_cast<Proto*>(o.p);
      for (int j = 0; j < p->sizep; j++) {
        const Proto* c = p->p[j];
        for (int u = 0; u < c->sizeupvalues; u++) {
          int lim = c->upvalues[u].instack ? p->maxstacksize : p->sizeupvalues;
          if (c->upvalues[u].idx >= lim) Malformed(r, "bad upvalue description");
        }
      }
    }
  }
  Table* regt = hvalue(&reg);
  const TValue* mainv = luaH_getint(regt, LUA_RIDX_MAINTHREAD);
  const TValue* globals = luaH_getint(regt, LUA_RIDX_GLOBALS);
  const TValue* aux = luaH_getint(regt, static_cast<lua_Integer>(c->pre->aux_ref));
  if (!ttisthread(mainv) || thvalue(mainv) != L || !ttistable(globals) || !ttistable(aux) ||
      hvalue(aux)->sizearray < static_cast<unsigned>(c->aux_size)) {
    Malformed(r, "the registry lacks the main thread, the globals or the VM's own table");
  }

  // Registry entries that library C code dereferences without checking their type.
  for (const char* name : {"_IO_input", "_IO_output"}) {
    const TValue* v = luaH_getshortstr(regt, luaS_new(L, name));
    if (!ttisnil(v) && !(ttisfulluserdata(v) && uvalue(v)->len == sizeof(luaL_Stream))) {
      Malformed(r, "the registry's io streams are not streams");
    }
  }
  for (const char* name : {"debug#HOOKKEY", "package#CLIBS"}) {
    const void* key = NamedPointer(Names(), name);
    if (key == nullptr) continue;
    TValue k;
    setpvalue(&k, const_cast<void*>(key));
    const TValue* v = luaH_get(regt, &k);
    if (!ttisnil(v) && !ttistable(v)) Malformed(r, "the registry's library tables are not tables");
  }

  // Commit: the restored registry and metatables replace the fresh state's (now garbage). The
  // fresh state's objects with finalizers (its io streams, the C library table) lose their
  // metatables: io's __gc checks its argument against the registry's FILE* metatable, which is no
  // longer theirs, and would raise from whatever allocation collects them.
  for (GCObject* f = g->finobj; f != nullptr; f = f->next) {
    if (f->tt == LUA_TUSERDATA) gco2u(f)->metatable = nullptr;
    if (f->tt == LUA_TTABLE) gco2t(f)->metatable = nullptr;
  }
  sethvalue(L, &g->l_registry, regt);
  for (int i = 0; i < LUA_NUMTAGS; i++) g->mt[i] = mts[i];
  // Restored objects whose metatable has __gc are registered for finalization, as setmetatable
  // does (order of registration: by id).
  for (uint32_t i = 0; i < r->nobj; i++) {
    RObj& o = r->objs[i];
    if (o.kind == kTable && static_cast<Table*>(o.p)->metatable != nullptr) {
      luaC_checkfinalizer(L, obj2gco(static_cast<Table*>(o.p)), static_cast<Table*>(o.p)->metatable);
    } else if (o.kind == kUdata && static_cast<Udata*>(o.p)->metatable != nullptr) {
      luaC_checkfinalizer(L, obj2gco(static_cast<Udata*>(o.p)), static_cast<Udata*>(o.p)->metatable);
    }
  }
  g->hbserial = c->pre->serial;
  g->version = version;
  lua_gc(L, LUA_GCRESTART, 0);
  lua_settop(L, 1);
  return 0;
}

Napi::Value SerializeLuaState(Napi::Env env, lua_State* L, int aux_ref, uint16_t libs, const uint64_t rng[4],
                              const std::vector<std::string>& host_paths, size_t spare) {
  // The scratch (object ids, the output being built) is the host's memory, not the guest's: it
  // does not count against memoryLimit, so a state near its limit can still be snapshotted.
  LAlloc<uint8_t> a(HostAlloc, nullptr);
  const TValue* auxv = luaH_getint(hvalue(&G(L)->l_registry), aux_ref);
  const Table* aux = ttistable(auxv) ? hvalue(auxv) : nullptr;
  const CNames& names = Names();
  try {
    Serializer s(env, L, aux, host_paths, a);
    s.Walk();
    s.Write();
    Bytes pre(a);
    PutU16(pre, libs);
    for (int i = 0; i < 4; i++) PutU64(pre, rng[i]);
    PutU32(pre, static_cast<uint32_t>(aux_ref));
    PutU32(pre, G(L)->hbserial);
    PutU32(pre, static_cast<uint32_t>(s.hosts_used().size()));
    for (int64_t slot : s.hosts_used()) {
      const std::string& p = host_paths[static_cast<size_t>(slot)];
      PutU32(pre, static_cast<uint32_t>(p.size()));
      PutBytes(pre, p.data(), p.size());
    }
    PutU32(pre, static_cast<uint32_t>(s.names_used().size()));
    for (uint32_t n : s.names_used()) {
      const CName& cn = names.list[n];
      PutU8(pre, cn.kind);
      PutU32(pre, static_cast<uint32_t>(cn.name.size()));
      PutBytes(pre, cn.name.data(), cn.name.size());
    }
    size_t plen = pre.size() + s.out().size();
    // `spare` zero bytes after the snapshot: room for the seal (src/lua-trust.ts), so that sealing
    // does not copy the snapshot.
    Napi::Buffer<uint8_t> buf = Napi::Buffer<uint8_t>::New(env, kLuaSnapshotHeaderSize + plen + spare);
    if (spare > 0) std::memset(buf.Data() + kLuaSnapshotHeaderSize + plen, 0, spare);
    uint8_t* o = buf.Data();
    std::memcpy(o, kMagic, 6);
    for (int i = 0; i < 4; i++) o[6 + i] = static_cast<uint8_t>(kLuaSnapshotVersion >> (8 * i));
    o[10] = static_cast<uint8_t>(sizeof(void*));
    o[11] = 0;
    for (int i = 0; i < 8; i++) o[12 + i] = static_cast<uint8_t>(static_cast<uint64_t>(plen) >> (8 * i));
    uint8_t* payload = o + kLuaSnapshotHeaderSize;
    std::memcpy(payload, pre.data(), pre.size());
    std::memcpy(payload + pre.size(), s.out().data(), s.out().size());
    uint64_t sum = Checksum64(payload, plen);
    for (int i = 0; i < 8; i++) o[20 + i] = static_cast<uint8_t>(sum >> (8 * i));
    return buf;
  } catch (const std::bad_alloc&) {
    return env.Undefined();  // the caller reports the memory error
  }
}

LuaSnapshotPrefix ReadLuaSnapshot(Napi::Env env, const uint8_t* data, size_t len) {
  if (len >= 6 && std::memcmp(data, kWasmMagic, 6) == 0) Bad(env, "not a Lua snapshot (this is a WASM snapshot)");
  if (len >= 6 && std::memcmp(data, kMagic, 6) != 0) Bad(env, "bad magic: not a Lua snapshot");
  if (len < kLuaSnapshotHeaderSize) {
    Bad(env, "truncated: " + std::to_string(len) + " bytes, shorter than the " +
                 std::to_string(kLuaSnapshotHeaderSize) + "-byte header");
  }
  uint32_t version = static_cast<uint32_t>(LoadLE(data + 6, 4));
  if (version != kLuaSnapshotVersion) {
    Bad(env, "unsupported snapshot version " + std::to_string(version) + " (this build reads version " +
                 std::to_string(kLuaSnapshotVersion) + ")");
  }
  if (data[10] != sizeof(void*)) {
    Bad(env, "word size mismatch: the snapshot has " + std::to_string(data[10]) + "-byte words, this build " +
                 std::to_string(sizeof(void*)));
  }
  if (data[11] != 0) Bad(env, "unsupported flags " + std::to_string(data[11]));
  uint64_t plen = LoadLE(data + 12, 8);
  size_t have = len - kLuaSnapshotHeaderSize;
  if (have < plen) {
    Bad(env, "truncated: the header announces " + std::to_string(plen) + " payload bytes, " + std::to_string(have) +
                 " present");
  }
  if (have > plen) {
    Bad(env, "length mismatch: " + std::to_string(have - plen) + " bytes after the announced payload");
  }
  const uint8_t* p = data + kLuaSnapshotHeaderSize;
  if (Checksum64(p, have) != LoadLE(data + 20, 8)) Bad(env, "checksum mismatch");

  LuaSnapshotPrefix out;
  size_t pos = 0;
  auto take = [&](size_t n) {
    if (have - pos < n) Bad(env, "malformed snapshot: truncated prefix");
    const uint8_t* at = p + pos;
    pos += n;
    return at;
  };
  out.libs = static_cast<uint16_t>(LoadLE(take(2), 2));
  if ((out.libs & ~kAllLibs) != 0 || (out.libs & kSafeLibs) != kSafeLibs) {
    Bad(env, "malformed snapshot: bad library set");
  }
  for (int i = 0; i < 4; i++) out.rng[i] = LoadLE(take(8), 8);
  out.aux_ref = static_cast<uint32_t>(LoadLE(take(4), 4));
  if (out.aux_ref < 1 || out.aux_ref > (1u << 30)) Bad(env, "malformed snapshot: bad VM table reference");
  out.serial = static_cast<uint32_t>(LoadLE(take(4), 4));
  uint32_t nhost = static_cast<uint32_t>(LoadLE(take(4), 4));
  if (nhost > have / 4) Bad(env, "malformed snapshot: bad host function table");
  for (uint32_t i = 0; i < nhost; i++) {
    uint32_t n = static_cast<uint32_t>(LoadLE(take(4), 4));
    const uint8_t* s = take(n);
    out.host_paths.emplace_back(reinterpret_cast<const char*>(s), n);
  }
  uint32_t nfn = static_cast<uint32_t>(LoadLE(take(4), 4));
  if (nfn > have / 5) Bad(env, "malformed snapshot: bad C function table");
  const CNames& names = Names();
  for (uint32_t i = 0; i < nfn; i++) {
    uint8_t kind = *take(1);
    uint32_t n = static_cast<uint32_t>(LoadLE(take(4), 4));
    const uint8_t* s = take(n);
    std::string name(reinterpret_cast<const char*>(s), n);
    auto it = names.by_name.find(name);
    if (it == names.by_name.end() || names.list[it->second].kind != kind) {
      Bad(env, "malformed snapshot: unknown C function '" + name + "'");
    }
    out.cfuncs.push_back(names.list[it->second].ptr);
    out.ckinds.push_back(kind);
  }
  out.stream = p + pos;
  out.stream_len = have - pos;
  return out;
}

}  // namespace hbr
