// Lua snapshots, the checks: the blob's header, checksum and prefix (ReadLuaSnapshot, before any
// state exists), and the structure restore relies on once objects are built (table chains, the
// graph as a whole, the registry). Restore validates the whole snapshot before the VM is handed
// out: a snapshot that passes cannot make Lua loop, read out of bounds or call an unknown address.
#include <algorithm>
#include <cstring>

#include "addon.h"
#include "errors.h"
#include "lua_snapshot_reader.h"
#include "lua_vm.h"

namespace hbr {
namespace luasnap {

namespace {

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

}  // namespace

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

void CheckGraph(Reader* r) {
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
}

void CheckRegistry(Reader* r, Table* regt, uint32_t aux_ref, int aux_size) {
  lua_State* L = r->L;
  const TValue* mainv = luaH_getint(regt, LUA_RIDX_MAINTHREAD);
  const TValue* globals = luaH_getint(regt, LUA_RIDX_GLOBALS);
  const TValue* aux = luaH_getint(regt, static_cast<lua_Integer>(aux_ref));
  if (!ttisthread(mainv) || thvalue(mainv) != L || !ttistable(globals) || !ttistable(aux) ||
      hvalue(aux)->sizearray < static_cast<unsigned>(aux_size)) {
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
}

namespace {

[[noreturn]] void Bad(Napi::Env env, const std::string& what) { throw MakeError(env, "SnapshotError", what); }

}  // namespace

}  // namespace luasnap

using namespace luasnap;

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
