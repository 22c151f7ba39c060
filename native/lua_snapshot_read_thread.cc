// Lua snapshots, reading part 2: suspended coroutines (stack, CallInfo chain, hook, continuation
// frames, each field checked against the stack it indexes) and function prototypes (bytecode,
// constants, upvalue descriptions, debug info). See lua_snapshot_reader.h.
#include "lua_snapshot_reader.h"

namespace hbr {
namespace luasnap {

namespace {

// A stack offset in bytes (errfunc, extra, old_errfunc): 0 or a slot below `need`.
bool SlotOffsetOk(ptrdiff_t off, uint32_t need) {
  return off >= 0 && off % static_cast<ptrdiff_t>(sizeof(TValue)) == 0 &&
         off / static_cast<ptrdiff_t>(sizeof(TValue)) < static_cast<ptrdiff_t>(need);
}

}  // namespace

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

namespace {

TString* GetStr(Reader* r) {
  RObj* o = GetObj(r, kStr, true);
  return o != nullptr ? static_cast<TString*>(o->p) : nullptr;
}

}  // namespace

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

}  // namespace luasnap
}  // namespace hbr
