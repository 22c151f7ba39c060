// Lua snapshots, reading part 1: values, object shells, and the contents of tables, Lua and C
// closures, userdata, upvalues and string.gmatch states (see lua_snapshot_reader.h).
#include <cstring>

#include "lua_snapshot_reader.h"
#include "lua_vm.h"

namespace hbr {
namespace luasnap {

namespace {

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

}  // namespace

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

namespace {

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

}  // namespace

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

}  // namespace luasnap
}  // namespace hbr
