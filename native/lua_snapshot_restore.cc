// Lua snapshots, restoring: LuaRestoreTrampoline builds a snapshot's objects in a fresh state (shells
// first, then contents, see lua_snapshot_reader.h), checks the graph and the registry
// (lua_snapshot_validate.cc), then commits: the restored registry and metatables become the state's.
// C-style: runs inside a protected call and holds no object with a destructor.
#include <algorithm>
#include <cstdlib>

#include "lua_snapshot_reader.h"

namespace hbr {

using namespace luasnap;

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
  CheckGraph(r);
  Table* regt = hvalue(&reg);
  CheckRegistry(r, regt, c->pre->aux_ref, c->aux_size);

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

}  // namespace hbr
