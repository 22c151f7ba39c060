// Lua snapshots, writing part 2: the bytes. Each object's shell (what restore needs to allocate
// it), then each object's content, then the roots; SerializeLuaState adds the prefix (libraries,
// random state, host function paths, C function names) and the header with its checksum.
#include <algorithm>
#include <cstring>

#include "addon.h"
#include "lua_snapshot_serializer.h"

namespace hbr {
namespace luasnap {

namespace {

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

}  // namespace

inline void Serializer::PutRef(const void* p) { PutU32(out_, p != nullptr ? IdOf(p) : kNone); }

// Objects: shells, contents, roots.
void Serializer::Write() {
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

void Serializer::WriteValue(const TValue* v) {
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
inline void Serializer::WriteStaleKey(const TValue* k) {
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

inline void Serializer::Shell(const Obj& o) {
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

inline void Serializer::Content(const Obj& o) {
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

}  // namespace luasnap

using namespace luasnap;

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

}  // namespace hbr
