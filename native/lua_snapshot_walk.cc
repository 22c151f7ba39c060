// Lua snapshots, writing part 1: the walk that numbers every reachable object and refuses what
// format v2 cannot capture (see lua_snapshot_serializer.h).
#include <string>
#include <vector>

#include "errors.h"
#include "lua_snapshot_serializer.h"

namespace hbr {
namespace luasnap {

void Serializer::Walk() {
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

inline uint32_t Serializer::NameOrFail(const void* p, uint8_t kind, const char* what, uint32_t parent, uint8_t edge,
                                const TValue* key, int64_t index) {
  uint32_t n = NameOf(p, kind);
  if (n == kNone) Fail(what, parent, edge, key, index);
  return n;
}

inline void Serializer::Visit(const TValue* v, uint32_t parent, uint8_t edge, const TValue* key, int64_t index) {
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

inline void Serializer::VisitUpval(const UpVal* uv, uint32_t parent, int64_t index) {
  if (upisopen(uv)) {
    if (open_.count(uv) == 0) Fail("an open upvalue of an unknown thread", parent, kEdgeUpvalue, nullptr, index);
    Ref(uv, kUpvalOpen, parent, kEdgeUpvalue, nullptr, index);
  } else {
    Ref(uv, kUpval, parent, kEdgeUpvalue, nullptr, index);
  }
}

inline void Serializer::Children(uint32_t id) {
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

uint8_t Serializer::StreamKind(const Udata* u, const Obj& o) {
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

void Serializer::Fail(const std::string& why, uint32_t parent, uint8_t edge, const TValue* key, int64_t index) {
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

std::string Serializer::Label(uint8_t edge, const TValue* key, int64_t index) {
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

}  // namespace luasnap
}  // namespace hbr
