#include "lua_snapshot.h"

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "addon.h"
#include "errors.h"
#include "lua_vm.h"

extern "C" {
#include "lauxlib.h"
#include "lua.h"
}

namespace hbr {

const char* const kPermTableNames[kNumPermTables] = {
    "_G",      "coroutine",       "debug",           "io",     "math",  "os",   "package",
    "package.loaded", "package.preload", "package.searchers", "string", "table", "utf8",
};

namespace {

constexpr char kMagic[6] = {'H', 'B', 'L', 'U', 'A', '\0'};
constexpr char kWasmMagic[6] = {'H', 'B', 'W', 'A', 'S', 'M'};
constexpr int kMaxSnapshotDepth = 2000;

// Value tags of the stream.
enum Tag : uint8_t {
  kTagNil = 0,
  kTagFalse = 1,
  kTagTrue = 2,
  kTagInt = 3,    // i64
  kTagFloat = 4,  // f64 bits
  kTagString = 5, // u32 length, bytes
  kTagRef = 6,    // u32 object id
  kTagTable = 7,  // u32 narr, u32 nhash, (key, value) * (narr + nhash), metatable value
  kTagLFunc = 8,  // u32 length, bytecode, u8 nups, per upvalue: u8 0 + value | u8 1 + u32 upvalue id
  kTagPerm = 9,   // u8 permanent table, key value: a stdlib value by name
  kTagHost = 10,  // u32 index into the host path table
};

void PutU8(std::vector<uint8_t>& o, uint8_t v) { o.push_back(v); }
void PutU16(std::vector<uint8_t>& o, uint16_t v) {
  for (int i = 0; i < 2; i++) o.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void PutU32(std::vector<uint8_t>& o, uint32_t v) {
  for (int i = 0; i < 4; i++) o.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void PutU64(std::vector<uint8_t>& o, uint64_t v) {
  for (int i = 0; i < 8; i++) o.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void PatchU32(std::vector<uint8_t>& o, size_t at, uint32_t v) {
  for (int i = 0; i < 4; i++) o[at + i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t LoadLE(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

// lua_dump writer: appends to a vector. Never lets an exception into ldump's C frames.
int DumpWriter(lua_State*, const void* p, size_t sz, void* ud) noexcept {
  try {
    auto* out = static_cast<std::vector<uint8_t>*>(ud);
    const uint8_t* b = static_cast<const uint8_t*>(p);
    out->insert(out->end(), b, b + sz);
    return 0;
  } catch (...) {
    return 1;
  }
}

// ---- Serializing (C++; non-raising reads of the state) ----------------------------------------------

class Serializer {
 public:
  Serializer(Napi::Env env, lua_State* L, const std::vector<std::string>& host_paths)
      : env_(env), L_(L), host_paths_(host_paths) {}

  // Stack: [] -> [] (on success; on a throw the caller restores the top).
  void Run(int aux) {
    lua_rawgeti(L_, aux, kAuxPermTables);
    int ptabs = lua_gettop(L_);
    lua_rawgeti(L_, aux, kAuxPermBases);
    int bases = lua_gettop(L_);
    // Stdlib values by name. For a value under several names the first (table index, key) wins.
    for (int i = 0; i < kNumPermTables; i++) {
      if (lua_rawgeti(L_, ptabs, i + 1) == LUA_TTABLE) ids_[lua_topointer(L_, -1)] = static_cast<uint32_t>(i);
      lua_pop(L_, 1);
    }
    for (int i = 0; i < kNumPermTables; i++) {
      if (lua_rawgeti(L_, bases, i + 1) != LUA_TTABLE) {
        lua_pop(L_, 1);
        continue;
      }
      int b = lua_gettop(L_);
      lua_pushnil(L_);
      while (lua_next(L_, b) != 0) {
        int vt = lua_type(L_, -1);
        int kt = lua_type(L_, -2);
        bool named = kt == LUA_TSTRING || (kt == LUA_TNUMBER && lua_isinteger(L_, -2));
        if ((vt == LUA_TFUNCTION || vt == LUA_TUSERDATA) && named) {
          PermName name{static_cast<uint8_t>(i), kt == LUA_TNUMBER, 0, std::string()};
          if (name.int_key) {
            name.ikey = lua_tointeger(L_, -2);
          } else {
            size_t len;
            const char* s = lua_tolstring(L_, -2, &len);
            name.skey.assign(s, len);
          }
          auto it = perms_.find(lua_topointer(L_, -1));
          if (it == perms_.end()) {
            perms_.emplace(lua_topointer(L_, -1), std::move(name));
          } else if (it->second.table == name.table && name.Before(it->second)) {
            it->second = std::move(name);
          }
        }
        lua_pop(L_, 1);
      }
      lua_pop(L_, 1);
    }

    size_t count_at = stream_.size();
    PutU8(stream_, 0);
    uint8_t records = 0;
    for (int i = 0; i < kNumPermTables; i++) {
      if (lua_rawgeti(L_, ptabs, i + 1) != LUA_TTABLE) {
        lua_pop(L_, 1);
        continue;
      }
      lua_rawgeti(L_, bases, i + 1);
      path_.assign(1, kPermTableNames[i]);
      PutU8(stream_, static_cast<uint8_t>(i));
      PermDiff(lua_gettop(L_) - 1, lua_gettop(L_));
      lua_pop(L_, 2);
      records++;
    }
    stream_[count_at] = records;
    lua_pop(L_, 2);
  }

  std::vector<uint8_t>& stream() { return stream_; }
  const std::vector<uint32_t>& hosts() const { return host_order_; }

 private:
  struct PermName {
    uint8_t table;
    bool int_key;
    int64_t ikey;
    std::string skey;
    bool Before(const PermName& o) const {
      if (int_key != o.int_key) return int_key;
      return int_key ? ikey < o.ikey : skey < o.skey;
    }
  };
  struct Entry {
    int k, v;  // stack indices; v == 0: nil (a deletion)
    int rank;  // false, true, integer, float, string, object
    int64_t i;
    double f;
    const char* s;
    size_t len;
    uint64_t obj;
  };

  [[noreturn]] void Fail(const std::string& why) {
    std::string where;
    for (const std::string& p : path_) where += (where.empty() || p[0] == '[' ? "" : ".") + p;
    throw MakeError(env_, "SnapshotError", "cannot snapshot " + why + " at " + where,
                    {{"status", Napi::Number::New(env_, 500)}});
  }

  void PushPath(int kidx) {
    switch (lua_type(L_, kidx)) {
      case LUA_TSTRING: {
        size_t len;
        const char* s = lua_tolstring(L_, kidx, &len);
        path_.emplace_back(s, len);
        break;
      }
      case LUA_TNUMBER:
        path_.push_back(lua_isinteger(L_, kidx) ? "[" + std::to_string(lua_tointeger(L_, kidx)) + "]" : "[float]");
        break;
      default:
        path_.push_back(std::string("[") + lua_typename(L_, lua_type(L_, kidx)) + "]");
    }
  }

  Entry Describe(int k, int v, uint64_t position) {
    Entry e{k, v, 5, 0, 0, nullptr, 0, 0};
    switch (lua_type(L_, k)) {
      case LUA_TBOOLEAN:
        e.rank = lua_toboolean(L_, k) ? 1 : 0;
        break;
      case LUA_TNUMBER:
        if (lua_isinteger(L_, k)) {
          e.rank = 2;
          e.i = lua_tointeger(L_, k);
        } else {
          e.rank = 3;
          e.f = lua_tonumber(L_, k);
        }
        break;
      case LUA_TSTRING:
        e.rank = 4;
        e.s = lua_tolstring(L_, k, &e.len);
        break;
      default: {
        // Objects already written sort by id; the others by iteration order (see docs).
        auto it = ids_.find(lua_topointer(L_, k));
        e.obj = it != ids_.end() ? it->second : (uint64_t{1} << 40) + position;
      }
    }
    return e;
  }

  static bool Less(const Entry& a, const Entry& b) {
    if (a.rank != b.rank) return a.rank < b.rank;
    switch (a.rank) {
      case 2:
        return a.i < b.i;
      case 3:
        return a.f < b.f;
      case 4: {
        int c = std::memcmp(a.s, b.s, std::min(a.len, b.len));
        return c != 0 ? c < 0 : a.len < b.len;
      }
      case 5:
        return a.obj < b.obj;
      default:
        return false;
    }
  }

  // Writes the key/value pairs on the stack from `first` to the top, in canonical order, preceded
  // by (narr, nhash) for a table or by the entry count for a diff. A nil value is a deletion.
  void WriteEntries(int first, bool with_counts) {
    int top = lua_gettop(L_);
    std::vector<Entry> entries;
    entries.reserve(static_cast<size_t>(top - first + 1) / 2);
    for (int k = first; k < top; k += 2) entries.push_back(Describe(k, k + 1, entries.size()));
    std::sort(entries.begin(), entries.end(), Less);
    uint32_t narr = 0;
    while (narr < entries.size() && entries[narr].rank == 2 && entries[narr].i == static_cast<int64_t>(narr) + 1) {
      narr++;
    }
    if (with_counts) {
      PutU32(stream_, narr);
      PutU32(stream_, static_cast<uint32_t>(entries.size() - narr));
    } else {
      PutU32(stream_, static_cast<uint32_t>(entries.size()));
    }
    for (const Entry& e : entries) {
      PushPath(e.k);
      Value(e.k);
      Value(e.v);
      path_.pop_back();
    }
  }

  // Diff of the permanent table at `t` against its copy at `b`, then its metatable.
  void PermDiff(int t, int b) {
    int first = lua_gettop(L_) + 1;
    lua_pushnil(L_);
    while (lua_next(L_, t) != 0) {  // [.. k v]
      if (!lua_checkstack(L_, 4)) Fail("a table this large");
      lua_pushvalue(L_, -2);
      lua_rawget(L_, b);  // [.. k v base]
      if (lua_rawequal(L_, -1, -2)) {
        lua_pop(L_, 2);  // [.. k]
      } else {
        lua_pop(L_, 1);
        lua_pushvalue(L_, -2);  // [.. k v k]
      }
    }
    lua_pushnil(L_);
    while (lua_next(L_, b) != 0) {  // [.. k base]
      if (!lua_checkstack(L_, 4)) Fail("a table this large");
      lua_pushvalue(L_, -2);
      if (lua_rawget(L_, t) == LUA_TNIL) {  // removed since the state was opened
        lua_pop(L_, 2);
        lua_pushnil(L_);
        lua_pushvalue(L_, -2);  // [.. k nil k]
      } else {
        lua_pop(L_, 2);  // [.. k]
      }
    }
    WriteEntries(first, false);
    lua_settop(L_, first - 1);
    Metatable(t);
  }

  void Metatable(int t) {
    if (lua_getmetatable(L_, t) == 0) {
      PutU8(stream_, kTagNil);
      return;
    }
    path_.push_back("<metatable>");
    Value(lua_gettop(L_));
    path_.pop_back();
    lua_pop(L_, 1);
  }

  uint32_t NewId(const void* p) {
    uint32_t id = next_id_++;
    ids_[p] = id;
    return id;
  }

  // Writes the value at `idx` (absolute; 0 means nil). Stack: unchanged.
  void Value(int idx) {
    int type = idx == 0 ? LUA_TNIL : lua_type(L_, idx);
    switch (type) {
      case LUA_TNIL:
        PutU8(stream_, kTagNil);
        return;
      case LUA_TBOOLEAN:
        PutU8(stream_, lua_toboolean(L_, idx) ? kTagTrue : kTagFalse);
        return;
      case LUA_TNUMBER:
        if (lua_isinteger(L_, idx)) {
          PutU8(stream_, kTagInt);
          PutU64(stream_, static_cast<uint64_t>(lua_tointeger(L_, idx)));
        } else {
          double d = lua_tonumber(L_, idx);
          uint64_t bits;
          std::memcpy(&bits, &d, 8);
          PutU8(stream_, kTagFloat);
          PutU64(stream_, bits);
        }
        return;
      case LUA_TSTRING: {
        size_t len;
        const char* s = lua_tolstring(L_, idx, &len);
        if (len > 0xffffffffu) Fail("a string longer than 4 GiB");
        PutU8(stream_, kTagString);
        PutU32(stream_, static_cast<uint32_t>(len));
        stream_.insert(stream_.end(), s, s + len);
        return;
      }
      default:
        break;
    }
    const void* p = lua_topointer(L_, idx);
    auto it = ids_.find(p);
    if (it != ids_.end()) {
      PutU8(stream_, kTagRef);
      PutU32(stream_, it->second);
      return;
    }
    auto perm = perms_.find(p);
    if (perm != perms_.end() && (type == LUA_TFUNCTION || type == LUA_TUSERDATA)) {
      PutU8(stream_, kTagPerm);
      PutU8(stream_, perm->second.table);
      if (perm->second.int_key) {
        PutU8(stream_, kTagInt);
        PutU64(stream_, static_cast<uint64_t>(perm->second.ikey));
      } else {
        PutU8(stream_, kTagString);
        PutU32(stream_, static_cast<uint32_t>(perm->second.skey.size()));
        stream_.insert(stream_.end(), perm->second.skey.begin(), perm->second.skey.end());
      }
      return;
    }
    if (++depth_ > kMaxSnapshotDepth) {
      Fail("a value nested deeper than " + std::to_string(kMaxSnapshotDepth) + " levels");
    }
    if (!lua_checkstack(L_, 8)) Fail("a value nested this deeply");
    switch (type) {
      case LUA_TTABLE:
        Table(idx, p);
        break;
      case LUA_TFUNCTION:
        if (lua_iscfunction(L_, idx)) {
          if (lua_tocfunction(L_, idx) != LuaHostTrampoline) {
            Fail("a C function that is not part of the standard library");
          }
          lua_getupvalue(L_, idx, 1);
          int64_t slot = lua_tointeger(L_, -1);
          lua_pop(L_, 1);
          NewId(p);
          PutU8(stream_, kTagHost);
          PutU32(stream_, HostIndex(slot));
        } else {
          Function(idx, p);
        }
        break;
      case LUA_TTHREAD:
        Fail("a coroutine (snapshot v1 does not capture coroutines)");
      case LUA_TUSERDATA:
        Fail("a userdata value");
      default:
        Fail("a light userdata value");
    }
    depth_--;
  }

  void Table(int idx, const void* p) {
    NewId(p);
    PutU8(stream_, kTagTable);
    int first = lua_gettop(L_) + 1;
    lua_pushnil(L_);
    while (lua_next(L_, idx) != 0) {  // [.. k v] -> keep both, copy k for the next step
      if (!lua_checkstack(L_, 3)) Fail("a table this large");
      lua_pushvalue(L_, -2);
    }
    WriteEntries(first, true);
    lua_settop(L_, first - 1);
    Metatable(idx);
  }

  void Function(int idx, const void* p) {
    NewId(p);
    PutU8(stream_, kTagLFunc);
    size_t len_at = stream_.size();
    PutU32(stream_, 0);
    lua_pushvalue(L_, idx);
    int st = lua_dump(L_, DumpWriter, &stream_, 0);
    lua_pop(L_, 1);
    size_t len = stream_.size() - len_at - 4;
    if (st != 0 || len > 0xffffffffu) Fail("a function whose bytecode could not be written");
    PatchU32(stream_, len_at, static_cast<uint32_t>(len));
    int nups = 0;
    while (lua_getupvalue(L_, idx, nups + 1) != nullptr) {
      lua_pop(L_, 1);
      nups++;
    }
    if (nups > 255) Fail("a function with more than 255 upvalues");
    PutU8(stream_, static_cast<uint8_t>(nups));
    for (int n = 1; n <= nups; n++) {
      const void* uid = lua_upvalueid(L_, idx, n);
      auto it = upids_.find(uid);
      if (it != upids_.end()) {
        PutU8(stream_, 1);
        PutU32(stream_, it->second);
        continue;
      }
      upids_[uid] = next_upid_++;
      PutU8(stream_, 0);
      const char* name = lua_getupvalue(L_, idx, n);
      path_.push_back(std::string("<upvalue ") + (name != nullptr && *name != '\0' ? name : "?") + ">");
      Value(lua_gettop(L_));
      path_.pop_back();
      lua_pop(L_, 1);
    }
  }

  uint32_t HostIndex(int64_t slot) {
    auto it = host_index_.find(slot);
    if (it != host_index_.end()) return it->second;
    if (slot < 0 || static_cast<size_t>(slot) >= host_paths_.size()) Fail("an unknown host function");
    uint32_t i = static_cast<uint32_t>(host_order_.size());
    host_order_.push_back(static_cast<uint32_t>(slot));
    host_index_[slot] = i;
    return i;
  }

  Napi::Env env_;
  lua_State* L_;
  const std::vector<std::string>& host_paths_;
  std::vector<uint8_t> stream_;
  std::unordered_map<const void*, uint32_t> ids_;
  std::unordered_map<const void*, PermName> perms_;
  std::unordered_map<const void*, uint32_t> upids_;
  std::unordered_map<int64_t, uint32_t> host_index_;
  std::vector<uint32_t> host_order_;
  std::vector<std::string> path_;
  uint32_t next_id_ = kNumPermTables;
  uint32_t next_upid_ = 0;
  int depth_ = 0;
};

[[noreturn]] void Bad(Napi::Env env, const std::string& what) { throw MakeError(env, "SnapshotError", what); }

// ---- Restoring (C-style: runs inside a protected call, holds no object with a destructor) ------------

struct ChunkReader {
  const char* p;
  size_t n;
};

const char* ReadChunk(lua_State*, void* ud, size_t* size) {
  ChunkReader* r = static_cast<ChunkReader*>(ud);
  *size = r->n;
  r->n = 0;
  return *size == 0 ? nullptr : r->p;
}

void Malformed(lua_State* L, LuaRestoreCtx* c, const char* what) {
  luaL_error(L, "malformed snapshot: %s (at payload byte %d)", what, static_cast<int>(c->pos));
}

void Need(lua_State* L, LuaRestoreCtx* c, size_t n) {
  if (c->len - c->pos < n) Malformed(L, c, "truncated value");
}

uint64_t Get(lua_State* L, LuaRestoreCtx* c, int n) {
  Need(L, c, static_cast<size_t>(n));
  uint64_t v = LoadLE(c->p + c->pos, n);
  c->pos += static_cast<size_t>(n);
  return v;
}

void Register(lua_State* L, LuaRestoreCtx* c, uint32_t id) {
  lua_pushvalue(L, -1);
  lua_rawseti(L, c->objs, static_cast<lua_Integer>(id) + 1);
}

void ReadValue(lua_State* L, LuaRestoreCtx* c);

// Stack: [value] -> [] ; sets it as the metatable of `t` when it is a table.
void ApplyMetatable(lua_State* L, LuaRestoreCtx* c, int t) {
  ReadValue(L, c);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  if (lua_type(L, -1) != LUA_TTABLE) Malformed(L, c, "a metatable that is not a table");
  lua_pushliteral(L, "__gc");
  if (lua_rawget(L, -2) != LUA_TNIL) Malformed(L, c, "a __gc metamethod");
  lua_pop(L, 1);
  lua_setmetatable(L, t);
}

// Stack: [] -> [key, value]
void ReadEntry(lua_State* L, LuaRestoreCtx* c, bool nil_value_ok) {
  ReadValue(L, c);
  if (lua_isnil(L, -1) || (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) != lua_tonumber(L, -1))) {
    Malformed(L, c, "a nil or NaN table key");
  }
  ReadValue(L, c);
  if (!nil_value_ok && lua_isnil(L, -1)) Malformed(L, c, "a nil table value");
}

// Stack: [] -> [table]
void ReadTable(lua_State* L, LuaRestoreCtx* c) {
  uint32_t id = c->next_id++;
  uint32_t narr = static_cast<uint32_t>(Get(L, c, 4));
  uint32_t nhash = static_cast<uint32_t>(Get(L, c, 4));
  uint64_t n = static_cast<uint64_t>(narr) + nhash;
  if (n * 2 > c->len - c->pos) Malformed(L, c, "a table larger than the payload");
  lua_createtable(L, static_cast<int>(narr), static_cast<int>(nhash));
  Register(L, c, id);
  int t = lua_gettop(L);
  for (uint64_t i = 0; i < n; i++) {
    ReadEntry(L, c, false);
    lua_rawset(L, t);
  }
  ApplyMetatable(L, c, t);
}

// Stack: [] -> [function]
void ReadFunction(lua_State* L, LuaRestoreCtx* c) {
  uint32_t id = c->next_id++;
  uint32_t len = static_cast<uint32_t>(Get(L, c, 4));
  Need(L, c, len);
  ChunkReader r{reinterpret_cast<const char*>(c->p + c->pos), len};
  c->pos += len;
  if (lua_load(L, ReadChunk, &r, "=snapshot", "b") != LUA_OK) {
    luaL_error(L, "malformed snapshot: bad function bytecode (%s)", lua_tostring(L, -1));
  }
  Register(L, c, id);
  int f = lua_gettop(L);
  int nups = static_cast<int>(Get(L, c, 1));
  int actual = 0;
  while (lua_getupvalue(L, f, actual + 1) != nullptr) {
    lua_pop(L, 1);
    actual++;
  }
  if (actual != nups) Malformed(L, c, "an upvalue count that does not match the bytecode");
  for (int n = 1; n <= nups; n++) {
    uint8_t mode = static_cast<uint8_t>(Get(L, c, 1));
    if (mode == 0) {
      // Register the upvalue before reading its value: the value may hold a closure sharing it
      // (a local function that refers to itself, `local g; g = function() return g end`).
      uint32_t u = c->next_upid++;
      lua_pushvalue(L, f);
      lua_rawseti(L, c->upvs, 2 * static_cast<lua_Integer>(u) + 1);
      lua_pushinteger(L, n);
      lua_rawseti(L, c->upvs, 2 * static_cast<lua_Integer>(u) + 2);
      ReadValue(L, c);
      lua_setupvalue(L, f, n);
    } else if (mode == 1) {
      uint32_t u = static_cast<uint32_t>(Get(L, c, 4));
      if (u >= c->next_upid) Malformed(L, c, "a reference to an unknown upvalue");
      lua_rawgeti(L, c->upvs, 2 * static_cast<lua_Integer>(u) + 1);
      lua_rawgeti(L, c->upvs, 2 * static_cast<lua_Integer>(u) + 2);
      int other = static_cast<int>(lua_tointeger(L, -1));
      lua_upvaluejoin(L, f, n, lua_gettop(L) - 1, other);
      lua_pop(L, 2);
    } else {
      Malformed(L, c, "a bad upvalue mode");
    }
  }
}

// Stack: [] -> [value]
void ReadValue(lua_State* L, LuaRestoreCtx* c) {
  luaL_checkstack(L, 8, "snapshot nested too deeply");
  if (++c->depth > kMaxSnapshotDepth) Malformed(L, c, "nesting too deep");
  uint8_t tag = static_cast<uint8_t>(Get(L, c, 1));
  switch (tag) {
    case kTagNil:
      lua_pushnil(L);
      break;
    case kTagFalse:
    case kTagTrue:
      lua_pushboolean(L, tag == kTagTrue);
      break;
    case kTagInt:
      lua_pushinteger(L, static_cast<lua_Integer>(Get(L, c, 8)));
      break;
    case kTagFloat: {
      uint64_t bits = Get(L, c, 8);
      double d;
      std::memcpy(&d, &bits, 8);
      lua_pushnumber(L, d);
      break;
    }
    case kTagString: {
      uint32_t n = static_cast<uint32_t>(Get(L, c, 4));
      Need(L, c, n);
      lua_pushlstring(L, reinterpret_cast<const char*>(c->p + c->pos), n);
      c->pos += n;
      break;
    }
    case kTagRef: {
      uint32_t id = static_cast<uint32_t>(Get(L, c, 4));
      int t = lua_rawgeti(L, c->objs, static_cast<lua_Integer>(id) + 1);
      if (t != LUA_TTABLE && t != LUA_TFUNCTION) Malformed(L, c, "a reference to an unknown object");
      break;
    }
    case kTagTable:
      ReadTable(L, c);
      break;
    case kTagLFunc:
      ReadFunction(L, c);
      break;
    case kTagPerm: {
      uint8_t ti = static_cast<uint8_t>(Get(L, c, 1));
      if (ti >= kNumPermTables || lua_rawgeti(L, c->bases, ti + 1) != LUA_TTABLE) {
        Malformed(L, c, "an unknown standard library table");
      }
      ReadValue(L, c);
      if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER) Malformed(L, c, "a bad stdlib name");
      int t = lua_rawget(L, -2);
      if (t != LUA_TFUNCTION && t != LUA_TUSERDATA) Malformed(L, c, "an unknown standard library value");
      lua_remove(L, -2);
      break;
    }
    case kTagHost: {
      uint32_t id = c->next_id++;
      uint32_t i = static_cast<uint32_t>(Get(L, c, 4));
      if (i >= c->nhost) Malformed(L, c, "an unknown host function");
      lua_pushinteger(L, c->host_slots[i]);
      lua_pushcclosure(L, LuaHostTrampoline, 1);
      Register(L, c, id);
      break;
    }
    default:
      Malformed(L, c, "an unknown value tag");
  }
  c->depth--;
}

}  // namespace

int LuaRestoreTrampoline(lua_State* L) {
  LuaRestoreCtx* c = static_cast<LuaRestoreCtx*>(lua_touserdata(L, 1));
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->aux_ref);
  int aux = lua_gettop(L);
  lua_newtable(L);
  c->objs = lua_gettop(L);
  lua_newtable(L);
  c->upvs = lua_gettop(L);
  lua_rawgeti(L, aux, kAuxPermBases);
  c->bases = lua_gettop(L);
  lua_rawgeti(L, aux, kAuxPermTables);
  for (int i = 0; i < kNumPermTables; i++) {
    lua_rawgeti(L, -1, i + 1);
    lua_rawseti(L, c->objs, i + 1);
  }
  lua_pop(L, 1);
  c->next_id = kNumPermTables;
  int records = static_cast<int>(Get(L, c, 1));
  int last = -1;
  for (int r = 0; r < records; r++) {
    int ti = static_cast<int>(Get(L, c, 1));
    if (ti <= last || ti >= kNumPermTables || lua_rawgeti(L, c->objs, ti + 1) != LUA_TTABLE) {
      Malformed(L, c, "a diff of an unknown standard library table");
    }
    last = ti;
    int t = lua_gettop(L);
    uint32_t n = static_cast<uint32_t>(Get(L, c, 4));
    for (uint32_t i = 0; i < n; i++) {
      ReadEntry(L, c, true);
      lua_rawset(L, t);
    }
    ApplyMetatable(L, c, t);
    lua_pop(L, 1);
  }
  if (c->pos != c->len) Malformed(L, c, "trailing bytes");
  lua_settop(L, 1);
  return 0;
}

void CapturePermanents(lua_State* L, int aux) {
  lua_createtable(L, kNumPermTables, 0);
  int ptabs = lua_gettop(L);
  lua_createtable(L, kNumPermTables, 0);
  int bases = lua_gettop(L);
  for (int i = 0; i < kNumPermTables; i++) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    const char* name = kPermTableNames[i];
    if (std::strcmp(name, "_G") != 0) {
      const char* seg = name;
      while (lua_type(L, -1) == LUA_TTABLE && seg != nullptr) {
        const char* dot = std::strchr(seg, '.');
        lua_pushlstring(L, seg, dot != nullptr ? static_cast<size_t>(dot - seg) : std::strlen(seg));
        lua_rawget(L, -2);
        lua_remove(L, -2);
        seg = dot != nullptr ? dot + 1 : nullptr;
      }
    }
    if (lua_type(L, -1) != LUA_TTABLE) {
      lua_pop(L, 1);
      lua_pushboolean(L, 0);
      lua_rawseti(L, ptabs, i + 1);
      lua_pushboolean(L, 0);
      lua_rawseti(L, bases, i + 1);
      continue;
    }
    int t = lua_gettop(L);
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {  // [t copy k v]
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, -4);
    }
    lua_rawseti(L, bases, i + 1);
    lua_rawseti(L, ptabs, i + 1);
  }
  lua_rawseti(L, aux, kAuxPermBases);
  lua_rawseti(L, aux, kAuxPermTables);
}

std::vector<uint8_t> SerializeLuaState(Napi::Env env, lua_State* L, int aux_ref, uint16_t libs, const uint64_t rng[4],
                                       const std::vector<std::string>& host_paths) {
  int top = lua_gettop(L);
  Serializer s(env, L, host_paths);
  try {
    if (!lua_checkstack(L, 16)) Bad(env, "cannot snapshot: Lua stack exhausted");
    lua_rawgeti(L, LUA_REGISTRYINDEX, aux_ref);
    s.Run(lua_gettop(L));
  } catch (...) {
    lua_settop(L, top);
    throw;
  }
  lua_settop(L, top);

  std::vector<uint8_t> payload;
  PutU16(payload, libs);
  for (int i = 0; i < 4; i++) PutU64(payload, rng[i]);
  PutU32(payload, static_cast<uint32_t>(s.hosts().size()));
  for (uint32_t slot : s.hosts()) {
    const std::string& p = host_paths[slot];
    PutU32(payload, static_cast<uint32_t>(p.size()));
    payload.insert(payload.end(), p.begin(), p.end());
  }
  payload.insert(payload.end(), s.stream().begin(), s.stream().end());

  std::vector<uint8_t> blob;
  blob.reserve(kLuaSnapshotHeaderSize + payload.size());
  blob.insert(blob.end(), kMagic, kMagic + 6);
  PutU32(blob, kLuaSnapshotVersion);
  PutU8(blob, static_cast<uint8_t>(sizeof(void*)));
  PutU8(blob, 0);
  PutU64(blob, payload.size());
  PutU64(blob, Checksum64(payload.data(), payload.size()));
  blob.insert(blob.end(), payload.begin(), payload.end());
  return blob;
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
    Bad(env, "unsupported version " + std::to_string(version) + " (this build reads version " +
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
  uint32_t nhost = static_cast<uint32_t>(LoadLE(take(4), 4));
  if (nhost > have / 4) Bad(env, "malformed snapshot: bad host function table");
  for (uint32_t i = 0; i < nhost; i++) {
    uint32_t n = static_cast<uint32_t>(LoadLE(take(4), 4));
    const uint8_t* s = take(n);
    out.host_paths.emplace_back(reinterpret_cast<const char*>(s), n);
  }
  out.stream = p + pos;
  out.stream_len = have - pos;
  return out;
}

}  // namespace hbr
