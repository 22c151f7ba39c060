#include "lua_vm.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "errors.h"
#include "lua_packed.h"
#include "lua_snapshot.h"
#include "lua_stdlib.h"
#include "wasm_engine.h"  // TimeLimitArg
#include "wasm_ticker.h"  // CoarseNowNs

extern "C" {
#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"
}

namespace hbr {

namespace {

const napi_type_tag kLuaVMTag = {0x6862727475614c75ULL, 0x56cbb4de2f1a7d03ULL};

// Raised (as a light userdata error value) once the instruction budget is spent.
const char kLimitSentinel = 0;

constexpr int kMaxHookStep = 1000;  // also the meter's largest grant
constexpr long long kUnlimitedGrant = 1LL << 60;  // the meter's grant without instructionLimit



// ---- Allocation with a cap ----------------------------------------------------------------------

void* LuaAlloc(void* ud, void* ptr, size_t osize, size_t nsize) {
  auto* a = static_cast<LuaVM::Alloc*>(ud);
  size_t old = ptr != nullptr ? osize : 0;
  if (nsize == 0) {
    std::free(ptr);
    a->used -= old;
    return nullptr;
  }
  if (nsize > old && a->limit != 0 && a->used - old + nsize > a->limit) {
    a->refused = true;
    // Lua answers a refusal with a full (emergency) collection: charge it like collectgarbage().
    if (a->meter != nullptr) a->meter->credit -= static_cast<long long>(a->used >> 4);
    return nullptr;
  }
  void* p = std::realloc(ptr, nsize);
  if (p == nullptr) {
    if (nsize <= old) return ptr;  // Lua assumes shrinking never fails; the old block still fits
    a->refused = true;
    return nullptr;
  }
  a->used = a->used - old + nsize;
  return p;
}

int Panic(lua_State* L) {
  const char* msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(not a string)";
  std::fprintf(stderr, "hb-runtimes: Lua error outside a protected call (a bug): %s\n", msg);
  std::abort();
}

// ---- Instruction budget ----------------------------------------------------------------------------

// One budget of steps, charged from two places: the count hook (VM instructions, per thread) and
// the meter (hb-meter.h: the C library's loops, string comparison and concatenation in the VM,
// collections). The meter hands out grants of up to kMaxHookStep steps; HB_TICK spends them and
// calls hb_meter_settle when one is used up, which charges it and grants the next.

// Starts a new grant on the meter from what is left of the budget (none once it is spent). With a
// deadline, grants stay small so that C library loops look at the clock often enough.
void Regrant(LuaVM::Budget& b, hb_meter& m) {
  long long g = kUnlimitedGrant;
  if (b.exhausted) {
    g = 0;
  } else {
    if (b.limit != 0) g = static_cast<long long>(std::min<uint64_t>(b.limit - b.used, kMaxHookStep));
    if (b.deadline_ns != UINT64_MAX) g = std::min<long long>(g, kMaxHookStep);
  }
  m.grant = m.credit = g;
}

// Charges `steps` plus what the meter spent since its last grant, and looks at the clock when the
// call has a deadline. False once the budget is spent or the deadline passed.
bool Charge(LuaVM* vm, uint64_t steps) {
  LuaVM::Budget& b = vm->budget();
  hb_meter& m = vm->meter();
  if (!b.exhausted && b.limit != 0) {
    b.used += steps + static_cast<uint64_t>(m.grant - m.credit);
    if (b.used >= b.limit) b.exhausted = true;
  }
  if (!b.exhausted && b.deadline_ns != UINT64_MAX && CoarseNowNs() >= b.deadline_ns) {
    b.timed_out = true;
    b.exhausted = true;
  }
  Regrant(b, m);
  return !b.exhausted;
}

void CountHook(lua_State* L, lua_Debug*);

// Makes `L` and the main thread error on every instruction from now on.
void ArmEveryInstruction(lua_State* L) {
  if (lua_gethook(L) != CountHook || lua_gethookcount(L) != 1) lua_sethook(L, CountHook, LUA_MASKCOUNT, 1);
  lua_State* main = VmOf(L)->main_state();
  if (main != nullptr && main != L && (lua_gethook(main) != CountHook || lua_gethookcount(main) != 1)) {
    lua_sethook(main, CountHook, LUA_MASKCOUNT, 1);
  }
}

[[noreturn]] void RaiseLimit(lua_State* L) {
  ArmEveryInstruction(L);
  lua_pushlightuserdata(L, const_cast<char*>(&kLimitSentinel));
  lua_error(L);
  std::abort();  // lua_error does not return
}

// Each tick charges the instructions since the previous tick of this thread (its hook count).
// Once the budget is spent (or the call is interrupted), every thread errors on every instruction,
// so a script's pcall cannot swallow the limit for long; hooks are off inside error handlers, so
// xpcall handlers are skipped then (GuardedHandler).
void CountHook(lua_State* L, lua_Debug*) {
  LuaVM* vm = VmOf(L);
  LuaVM::Budget& b = vm->budget();
  if (!b.Metered()) {  // left on a coroutine by an earlier call
    lua_sethook(L, nullptr, 0, 0);
    return;
  }
  if (Charge(vm, static_cast<uint64_t>(lua_gethookcount(L)))) {
    uint64_t rem = b.limit != 0 ? b.limit - b.used : UINT64_MAX;
    int want = rem < static_cast<uint64_t>(b.step) ? static_cast<int>(rem) : b.step;
    if (want != lua_gethookcount(L)) lua_sethook(L, CountHook, LUA_MASKCOUNT, want);
    return;
  }
  RaiseLimit(L);
}

}  // namespace

void LuaResumeHook(lua_State* L, lua_State* from) {
  if (from == nullptr) return;
  if (lua_gethook(from) == CountHook) {
    int count = lua_gethookcount(from);
    if (lua_gethook(L) != CountHook || lua_gethookcount(L) != count) lua_sethook(L, CountHook, LUA_MASKCOUNT, count);
  } else if (lua_gethook(L) == CountHook) {
    lua_sethook(L, nullptr, 0, 0);
  }
}

}  // namespace hbr

extern "C" {
__thread hb_meter* hb_meter_current = nullptr;
void hb_resume_hook(lua_State* L, lua_State* from) { hbr::LuaResumeHook(L, from); }
}

// Called by HB_TICK (C library code, always where a Lua error may be raised) when a grant is spent.
extern "C" void hb_meter_settle(lua_State* L) {
  hbr::LuaVM* vm = hbr::VmOf(L);
  if (vm == nullptr) {  // a state without a VM (the snapshot code's template state): no budget
    hb_meter_of(L)->credit = hb_meter_of(L)->grant;
    return;
  }
  if (hbr::Charge(vm, 0)) return;
  // Nothing raises outside calls (opening the libraries, restoring, between calls) nor inside our
  // message handler (the error it handles ends the call anyway).
  if (!vm->InCall() || vm->budget().in_handler) return;
  hbr::RaiseLimit(L);
}

namespace hbr {
namespace {

// ---- Trampolines (run inside lua_pcall; plain data in, no destructors) ---------------------------------

// Keeps the error value; records the traceback in aux[kAuxTrace]. Stack: [err] -> [err].
int MsgHandler(lua_State* L) {
  lua_settop(L, 1);
  LuaVM::Budget& b = VmOf(L)->budget();
  b.in_handler = true;  // building the traceback charges the meter, which must not raise here
  luaL_traceback(L, L, nullptr, 1);
  b.in_handler = false;
  lua_rawgeti(L, LUA_REGISTRYINDEX, VmOf(L)->aux_ref());
  lua_insert(L, -2);
  lua_rawseti(L, -2, kAuxTrace);
  lua_settop(L, 1);
  return 1;
}

struct CallCtx {
  const char* name;
  size_t len;
  const LuaArena* args;
  uint32_t nargs;
  int cache_slot;  // >= 0: remember the interned name in this cache slot
  PackedReader* packed = nullptr;  // set: the arguments are this packed stream, not `args`
};

// Stack: [] -> [callable]. Looks `name` ("f" or "a.b.f") up in _G with raw reads.
void PushCallable(lua_State* L, CallCtx* c) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  const char* seg = c->name;
  const char* end = c->name + c->len;
  for (;;) {
    const char* dot = static_cast<const char*>(std::memchr(seg, '.', static_cast<size_t>(end - seg)));
    lua_pushlstring(L, seg, static_cast<size_t>((dot != nullptr ? dot : end) - seg));
    if (c->cache_slot >= 0) {
      LuaVM* vm = VmOf(L);
      lua_rawgeti(L, LUA_REGISTRYINDEX, vm->aux_ref());
      lua_pushvalue(L, -2);
      lua_rawseti(L, -2, kAuxCache0 + c->cache_slot);
      lua_pop(L, 1);
      LuaVM::CacheEntry& e = vm->cache()[c->cache_slot];
      std::memcpy(e.name, c->name, c->len);
      e.len = c->len;
    }
    lua_rawget(L, -2);
    lua_remove(L, -2);
    if (dot == nullptr) break;
    if (lua_type(L, -1) != LUA_TTABLE) {
      lua_pushlstring(L, c->name, static_cast<size_t>(dot - c->name));
      luaL_error(L, "attempt to index a %s value ('%s')", luaL_typename(L, -2), lua_tostring(L, -1));
    }
    seg = dot + 1;
  }
  if (lua_type(L, -1) == LUA_TFUNCTION) return;
  if (luaL_getmetafield(L, -1, "__call") != LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  lua_pushlstring(L, c->name, c->len);
  if (std::memchr(c->name, '.', c->len) == nullptr) {
    luaL_error(L, "attempt to call a %s value (global '%s')", luaL_typename(L, -2), lua_tostring(L, -1));
  }
  luaL_error(L, "attempt to call a %s value ('%s')", luaL_typename(L, -2), lua_tostring(L, -1));
}

// Looks up the function, pushes the arguments and calls it. Stack: [ctx] -> [results...].
int CallTrampoline(lua_State* L) {
  CallCtx* c = static_cast<CallCtx*>(lua_touserdata(L, 1));
  lua_settop(L, 0);
  PushCallable(L, c);
  luaL_checkstack(L, static_cast<int>(c->nargs) + 4, "too many arguments");
  if (c->packed != nullptr) {
    for (uint32_t i = 0; i < c->nargs; i++) PushPacked(L, c->packed);
  } else {
    size_t pos = 0;
    for (uint32_t i = 0; i < c->nargs; i++) PushNode(L, *c->args, &pos);
  }
  lua_call(L, static_cast<int>(c->nargs), LUA_MULTRET);
  return lua_gettop(L);
}

struct PushCtx {
  const LuaArena* arena;  // null: push the string s[0..len)
  const char* s;
  size_t len;
  PackedReader* packed = nullptr;  // set: push the next value of this packed stream
};

// Stack: [ctx] -> [value].
int PushTrampoline(lua_State* L) {
  PushCtx* c = static_cast<PushCtx*>(lua_touserdata(L, 1));
  if (c->packed != nullptr) {
    PushPacked(L, c->packed);
  } else if (c->arena != nullptr) {
    size_t pos = 0;
    PushNode(L, *c->arena, &pos);
  } else {
    lua_pushlstring(L, c->s, c->len);
  }
  return 1;
}

// Stack: [] -> [value] (status LUA_OK) or [error]. Needs 2 free slots.
int ProtectedPush(lua_State* L, PushCtx* ctx) {
  lua_pushcfunction(L, PushTrampoline);
  lua_pushlightuserdata(L, ctx);
  return lua_pcall(L, 1, 1, 0);
}

struct SetGlobalCtx {
  const char* path;
  size_t len;
  int slot;
};

// Sets _G[path] (creating intermediate tables, raw) to a new host closure. Stack: [ctx] -> [ctx].
int SetGlobalTrampoline(lua_State* L) {
  SetGlobalCtx* c = static_cast<SetGlobalCtx*>(lua_touserdata(L, 1));
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  const char* seg = c->path;
  const char* end = c->path + c->len;
  for (;;) {
    const char* dot = static_cast<const char*>(std::memchr(seg, '.', static_cast<size_t>(end - seg)));
    lua_pushlstring(L, seg, static_cast<size_t>((dot != nullptr ? dot : end) - seg));
    if (dot == nullptr) break;
    lua_pushvalue(L, -1);
    int t = lua_rawget(L, -3);
    if (t == LUA_TNIL) {
      lua_pop(L, 1);
      lua_newtable(L);
      lua_pushvalue(L, -2);
      lua_pushvalue(L, -2);
      lua_rawset(L, -5);
    } else if (t != LUA_TTABLE) {
      lua_pushlstring(L, c->path, static_cast<size_t>(dot - c->path));
      luaL_error(L, "cannot set '%s': '%s' is a %s, not a table", c->path, lua_tostring(L, -1), luaL_typename(L, -2));
    }
    lua_remove(L, -2);
    lua_remove(L, -2);
    seg = dot + 1;
  }
  // Already bound to this slot (a restored VM, or the same path registered again): the JS side
  // was replaced through the slot, and the Lua side stays as it is. Creating another closure would
  // change the state's object graph and serials, so a restored VM would not continue exactly as
  // the original.
  lua_pushvalue(L, -1);
  lua_rawget(L, -3);
  if (lua_tocfunction(L, -1) == LuaHostTrampoline && lua_getupvalue(L, -1, 1) != nullptr &&
      lua_tointeger(L, -1) == c->slot) {
    lua_settop(L, 1);
    return 0;
  }
  lua_settop(L, 3);
  lua_pushinteger(L, c->slot);
  lua_pushcclosure(L, LuaHostTrampoline, 1);
  lua_rawset(L, -3);
  lua_settop(L, 1);
  return 0;
}

// "not enough memory[ <context>][ (memoryLimit of N bytes reached)]".
std::string OutOfMemory(const char* context, const LuaVM::Alloc& a) {
  std::string m = "not enough memory";
  if (*context != '\0') m += std::string(" ") + context;
  if (a.limit != 0 && a.refused) m += " (memoryLimit of " + std::to_string(a.limit) + " bytes reached)";
  return m;
}

std::string LuaString(lua_State* L, int idx) {
  size_t len = 0;
  const char* s = lua_type(L, idx) == LUA_TSTRING ? lua_tolstring(L, idx, &len) : nullptr;
  return s != nullptr ? std::string(s, len) : std::string();
}

bool LooksLikeMemoryError(lua_State* L, int idx) {
  if (lua_type(L, idx) != LUA_TSTRING) return false;
  size_t len;
  const char* s = lua_tolstring(L, idx, &len);
  static const char kNeedle[] = "not enough memory";
  return std::search(s, s + len, kNeedle, kNeedle + sizeof kNeedle - 1) != s + len;
}

// True when the environment refuses to run JS (it is stopping). Probes with a property read,
// which N-API refuses in that state; any exception the probe leaves is cleared.
bool JsUnavailable(napi_env env) {
  napi_value global, v;
  if (napi_get_global(env, &global) != napi_ok) return true;
  if (napi_get_named_property(env, global, "undefined", &v) == napi_ok) return false;
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) napi_get_and_clear_last_exception(env, &v);
  return true;
}

// The message of a thrown JS value (its `message`, else its string form).
std::string JsErrorMessage(napi_env env, napi_value exc) {
  try {
    Napi::Value v(env, exc);
    if (v.IsObject()) {
      Napi::Value m = v.As<Napi::Object>().Get("message");
      if (m.IsString()) return m.As<Napi::String>().Utf8Value();
    }
    return v.ToString().Utf8Value();
  } catch (...) {
    return "(a JS exception that cannot be converted to a string)";
  }
}

}  // namespace

// Snapshots name these pointers (a C function in a snapshot is written as its name).
const LuaNamedPointer* LuaVmPointers(size_t* n) {
  static const LuaNamedPointer kPointers[] = {
      {"hb.host", reinterpret_cast<const void*>(&LuaHostTrampoline), kPtrCFunction},
      {"hb.load", reinterpret_cast<const void*>(&SafeLoad), kPtrCFunction},
      {"hb.xpcall", reinterpret_cast<const void*>(&GuardedXpcall), kPtrCFunction},
      {"hb.xpcall#k", reinterpret_cast<const void*>(&FinishPcall), kPtrKFunction},
      {"hb.xpcall#handler", reinterpret_cast<const void*>(&GuardedHandler), kPtrCFunction},
      {"hb.setmetatable", reinterpret_cast<const void*>(&SafeSetmetatable), kPtrCFunction},
      {"hb.collectgarbage", reinterpret_cast<const void*>(&SafeCollectgarbage), kPtrCFunction},
      {"hb.load#reader", reinterpret_cast<const void*>(&ChargedReader), kPtrCFunction},
      {"hb.math.random", reinterpret_cast<const void*>(&MathRandom), kPtrCFunction},
      {"hb.math.randomseed", reinterpret_cast<const void*>(&MathRandomseed), kPtrCFunction},
      {"hb.searcher", reinterpret_cast<const void*>(&SearcherLuaText), kPtrCFunction},
      {"hb.msghandler", reinterpret_cast<const void*>(&MsgHandler), kPtrCFunction},
      {"hb.print", reinterpret_cast<const void*>(&OutputPrint), kPtrCFunction},
      {"hb.os.time", reinterpret_cast<const void*>(&ClockTime), kPtrCFunction},
      {"hb.os.date", reinterpret_cast<const void*>(&ClockDate), kPtrCFunction},
      {"hb.os.clock", reinterpret_cast<const void*>(&ClockClock), kPtrCFunction},
      {"hb.counthook", reinterpret_cast<const void*>(&CountHook), kPtrHook},
      {"hb.limit", static_cast<const void*>(&kLimitSentinel), kPtrLightUserdata},
  };
  *n = sizeof(kPointers) / sizeof(kPointers[0]);
  return kPointers;
}

int LuaHostTrampoline(lua_State* L) {
  LuaVM* vm = VmOf(L);
  int n = vm->InvokeHost(L);
  if (n < 0) return lua_error(L);
  // A host function that returns past the deadline (or after the budget ran out) ends the call.
  if (vm->budget().deadline_ns != UINT64_MAX && !Charge(vm, 0) && vm->InCall()) RaiseLimit(L);
  return n;
}

// ---- Frames ----------------------------------------------------------------------------------------------

// One call into the VM (call, load) or one host-function invocation. The outermost frame starts
// the instruction budget and the error bookkeeping; when it ends a deferred dispose happens.
// Lives in C++ frames above every lua_pcall, so Lua errors never unwind it.
class LuaVM::Frame {
 public:
  Frame(LuaVM* vm, lua_State* L, bool restore_stack)
      : vm_(vm), L_(L), prev_(vm->active_), prev_meter_(hb_meter_current), restore_(restore_stack) {
    hb_meter_current = &vm->meter_;
    if (vm->depth_ == 0) {
      Budget& b = vm->budget_;
      b.used = 0;
      b.exhausted = false;
      b.in_handler = false;
      b.timed_out = false;
      double ms = vm->call_limit_ms_ >= 0 ? vm->call_limit_ms_ : vm->time_limit_ms_;
      vm->call_limit_ms_ = -1;
      b.time_limit_ms = ms;
      b.deadline_ns = std::isinf(ms) ? UINT64_MAX : CoarseNowNs() + static_cast<uint64_t>(ms * 1e6);
      b.step = b.limit != 0 ? static_cast<int>(std::min<uint64_t>(b.limit, kMaxHookStep)) : kMaxHookStep;
      Regrant(b, vm->meter_);
      // The main thread ticks when a limit applies; coroutines follow the thread that resumes
      // them (LuaResumeHook). A hook of the debug library is left alone.
      if (b.Metered()) {
        lua_sethook(vm->L_, CountHook, LUA_MASKCOUNT, b.step);
      } else if (lua_gethook(vm->L_) == CountHook) {
        lua_sethook(vm->L_, nullptr, 0, 0);
      }
      vm->interrupted_ = false;
      vm->output_.clear();
      vm->output_dropped_ = 0;
      vm->alloc_.refused = false;
      vm->ResetPendingHostError();
    }
    vm->depth_++;
    vm->active_ = L;
    base_ = lua_gettop(L);
  }
  ~Frame() {
    if (restore_) lua_settop(L_, base_);
    vm_->active_ = prev_;
    hb_meter_current = prev_meter_;
    size_t at = static_cast<size_t>(vm_->depth_ - 1);
    if (at < vm_->arenas_.size()) {
      LuaArena& a = *vm_->arenas_[at];
      if (a.bytes.capacity() > (1u << 20) || a.nodes.capacity() > (1u << 16)) a = LuaArena();
    }
    if (--vm_->depth_ == 0) {
      vm_->ResetPendingHostError();
      if (vm_->close_pending_) {
        vm_->Close();
      } else if (vm_->alloc_.refused) {
        vm_->CollectAfterRefusal();
      }
    }
  }
  Frame(const Frame&) = delete;
  Frame& operator=(const Frame&) = delete;

  int base() const { return base_; }
  LuaArena& arena() { return vm_->ArenaAt(vm_->depth_ - 1); }

 private:
  LuaVM* vm_;
  lua_State* L_;
  lua_State* prev_;
  hb_meter* prev_meter_;  // the thread's current meter before this frame (another VM's, or none)
  bool restore_;
  int base_ = 0;
};

LuaArena& LuaVM::ArenaAt(int depth) {
  while (static_cast<int>(arenas_.size()) <= depth) arenas_.push_back(std::make_unique<LuaArena>());
  LuaArena& a = *arenas_[static_cast<size_t>(depth)];
  a.Clear();
  return a;
}

namespace {
// Full collections until the heap stops shrinking (each one halves an oversized string table).
int CollectTrampoline(lua_State* L) {
  for (int i = 0; i < 16; i++) {
    int kb = lua_gc(L, LUA_GCCOUNT, 0);
    lua_gc(L, LUA_GCCOLLECT, 0);
    if (lua_gc(L, LUA_GCCOUNT, 0) >= kb) break;
  }
  return 0;
}
}  // namespace

void LuaVM::CollectAfterRefusal() noexcept {
  if (L_ == nullptr) return;
  int top = lua_gettop(L_);
  if (lua_checkstack(L_, 2)) Protected(L_, CollectTrampoline, nullptr);
  lua_settop(L_, top);
}

void LuaVM::ResetPendingHostError() noexcept {
  host_err_ = nullptr;
  if (!host_err_set_) return;
  host_err_set_ = false;
  if (L_ != nullptr) {
    lua_rawgeti(L_, LUA_REGISTRYINDEX, aux_ref_);
    lua_pushboolean(L_, 0);
    lua_rawseti(L_, -2, kAuxHostErr);
    lua_pop(L_, 1);
  }
  try {
    if (!holder_.IsEmpty()) {
      Napi::Object h = holder_.Value();
      if (!h.IsEmpty()) h.Delete("error");
    }
  } catch (...) {
    // The environment cannot run JS (it is shutting down): the holder goes with it.
  }
}

// ---- Construction and lifecycle ----------------------------------------------------------------------

void LuaVM::Init(Napi::Env env, Napi::Object exports, Addon* addon) {
  Napi::Function ctor =
      DefineClass(env, "LuaVM",
                  {
                      InstanceMethod<&LuaVM::Load>("load"),
                      InstanceMethod<&LuaVM::LoadLimited>("loadLimited"),
                      InstanceMethod<&LuaVM::CallLimited>("callLimited"),
                      InstanceMethod<&LuaVM::CallPackedLimited>("callPackedLimited"),
                      InstanceMethod<&LuaVM::GetOutput>("output"),
                      InstanceMethod<&LuaVM::Call>("call"),
                      InstanceMethod<&LuaVM::CallPacked>("callPacked"),
                      InstanceMethod<&LuaVM::SetGlobalFunction>("setGlobalFunction"),
                      InstanceMethod<&LuaVM::SetPackedHost>("setPackedHost"),
                      InstanceMethod<&LuaVM::Globals>("globals"),
                      InstanceMethod<&LuaVM::Snapshot>("snapshot"),
                      InstanceMethod<&LuaVM::MemoryUsed>("memoryUsed"),
                      InstanceMethod<&LuaVM::Dispose>("dispose"),
                      StaticMethod<&LuaVM::Restore>("restore"),
                      StaticMethod<&LuaVM::Check>("check"),
                  });
  addon->lua_vm_ctor = Napi::Persistent(ctor);
  exports.Set("LuaVM", ctor);
}

LuaVM::LuaVM(const Napi::CallbackInfo& info) : Napi::ObjectWrap<LuaVM>(info) {
  Napi::Env env = info.Env();
  Napi::Object self = info.This().As<Napi::Object>();
  if (napi_type_tag_object(env, self, &kLuaVMTag) != napi_ok) throw Napi::Error::New(env);

  uint16_t libs = kSafeLibs;
  if (info.Length() > 0 && !info[0].IsUndefined()) {
    if (!info[0].IsObject()) throw InvalidArg(env, "new LuaVM(options): options must be an object");
    Napi::Object o = info[0].As<Napi::Object>();
    Napi::Value lv = o.Get("libs");
    if (!lv.IsUndefined()) {
      if (!lv.IsArray()) throw InvalidArg(env, "new LuaVM(options): libs must be an array of library names");
      Napi::Array arr = lv.As<Napi::Array>();
      for (uint32_t i = 0; i < arr.Length(); i++) {
        Napi::Value n = arr.Get(i);
        std::string name = n.IsString() ? n.As<Napi::String>().Utf8Value() : std::string();
        const LuaLibInfo* found = nullptr;
        for (const LuaLibInfo& lib : kLuaLibs) {
          if (name == lib.name) found = &lib;
        }
        if (found == nullptr) throw InvalidArg(env, "new LuaVM(options): unknown library '" + name + "'");
        libs |= found->bit;
      }
    }
    auto limit = [&](const char* key) -> uint64_t {
      Napi::Value v = o.Get(key);
      if (v.IsUndefined()) return 0;
      double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
      if (!(d >= 1 && d <= 9007199254740991.0) || d != std::floor(d)) {
        throw InvalidArg(env, std::string("new LuaVM(options): ") + key + " must be a positive integer");
      }
      return static_cast<uint64_t>(d);
    };
    alloc_.limit = static_cast<size_t>(limit("memoryLimit"));
    budget_.limit = limit("instructionLimit");
    Napi::Value tl = o.Get("timeLimit");
    if (!tl.IsUndefined()) time_limit_ms_ = TimeLimitArg(env, tl);
    Napi::Value ol = o.Get("outputLimit");
    if (!ol.IsUndefined()) {
      double d = ol.IsNumber() ? ol.As<Napi::Number>().DoubleValue() : -1;
      if (!(d >= 0 && d <= 9007199254740991.0) || d != std::floor(d)) {
        throw InvalidArg(env, "new LuaVM(options): outputLimit must be a non-negative integer");
      }
      output_limit_ = static_cast<size_t>(d);
    }
    auto choice = [&](const char* key, const char* a, const char* b) -> bool {
      Napi::Value v = o.Get(key);
      if (v.IsUndefined()) return false;
      std::string c = v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
      if (c != a && c != b) throw InvalidArg(env, std::string("new LuaVM(options): ") + key + " must be '" + a + "' or '" + b + "'");
      return c == b;
    };
    print_stdout_ = choice("print", "capture", "stdout");
    clock_real_ = choice("clock", "fixed", "real");
  }

  Napi::Object holder = Napi::Object::New(env);
  Napi::Array fns = Napi::Array::New(env);
  holder.Set("fns", fns);
  self.DefineProperty(Napi::PropertyDescriptor::Value(Napi::Symbol::New(env, "hb-runtimes.LuaVM.host"), holder,
                                                      napi_default));
  holder_ = Napi::Weak(holder);
  fns_ = Napi::Weak(fns);

  OpenState(env, libs);
  Track(AddonOf(env));
}

void LuaVM::OpenState(Napi::Env env, uint16_t libs) {
  meter_.owner = this;
  Regrant(budget_, meter_);
  alloc_.meter = &meter_;
  L_ = lua_newstate(LuaAlloc, &alloc_);
  if (L_ == nullptr) {
    throw MakeError(env, "LuaMemoryError", OutOfMemory("to create a Lua state", alloc_));
  }
  hb_meter_of(L_) = &meter_;  // before anything that could charge it (new threads copy it)
  lua_atpanic(L_, Panic);
  active_ = L_;
  OpenCtx ctx{libs, 0};
  int st = Protected(L_, LuaOpenTrampoline, &ctx);
  if (st != LUA_OK) {
    std::string msg = LuaString(L_, -1);
    bool mem = st == LUA_ERRMEM || alloc_.refused;
    lua_close(L_);
    L_ = nullptr;
    active_ = nullptr;
    if (mem) {
      throw MakeError(env, "LuaMemoryError", OutOfMemory("to open the Lua libraries", alloc_));
    }
    throw MakeError(env, "LuaError", "could not open the Lua libraries: " + msg);
  }
  aux_ref_ = ctx.aux_ref;
  libs_ = libs;
  SeedRandom(rng_, kDefaultSeed);
  if (budget_.limit != 0 || !std::isinf(time_limit_ms_)) {
    budget_.step = budget_.limit != 0 ? static_cast<int>(std::min<uint64_t>(budget_.limit, kMaxHookStep)) : kMaxHookStep;
    lua_sethook(L_, CountHook, LUA_MASKCOUNT, budget_.step);
  }
}

LuaVM::~LuaVM() { Close(); }

void LuaVM::Close() {
  if (L_ != nullptr) {
    // Host callbacks are refused from here on (InvokeHost checks closing_), so nothing that runs
    // inside lua_close can reach JS. SafeSetmetatable refuses __gc; a Lua finalizer that exists
    // anyway (opt-in libraries, a restored metatable) meets a spent budget: it errors on its first
    // instruction and C loops error at their first tick (lua_close drops finalizer errors). The
    // io library's C finalizers only close files.
    closing_ = true;
    budget_.exhausted = true;
    Regrant(budget_, meter_);
    lua_sethook(L_, CountHook, LUA_MASKCOUNT, 1);
    lua_close(L_);
    L_ = nullptr;
    active_ = nullptr;
  }
  try {
    holder_.Reset();
    fns_.Reset();
  } catch (...) {
    // Only fails when the environment is gone, and then the references went with it.
  }
  arenas_.clear();
  Untrack();
}

void LuaVM::CheckUsable(Napi::Env env, bool idle) {
  if (L_ == nullptr || close_pending_) throw ClosedError(env, "LuaVM");
  if (idle && depth_ > 0) throw Napi::TypeError::New(env, "LuaVM is busy: this cannot be done during a call");
}

int LuaVM::Protected(lua_State* L, int (*fn)(lua_State*), void* ud) {
  lua_pushcfunction(L, fn);
  lua_pushlightuserdata(L, ud);
  return lua_pcall(L, 1, 0, 0);
}

Napi::Value LuaVM::Dispose(const Napi::CallbackInfo& info) {
  if (depth_ > 0) {
    close_pending_ = true;  // closed when the outermost call returns
  } else {
    Close();
  }
  return info.Env().Undefined();
}

Napi::Value LuaVM::MemoryUsed(const Napi::CallbackInfo& info) {
  CheckUsable(info.Env());
  return Napi::Number::New(info.Env(), static_cast<double>(alloc_.used));
}

Napi::Value LuaVM::GetOutput(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckUsable(env);
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Buffer<char>::Copy(env, output_.data(), output_.size()));
  out.Set(1u, Napi::Number::New(env, static_cast<double>(output_dropped_)));
  return out;
}

void LuaVM::Output(const char* s, size_t n) noexcept {
  if (print_stdout_) {
    std::fwrite(s, 1, n, stdout);
    return;
  }
  size_t room = output_limit_ > output_.size() ? output_limit_ - output_.size() : 0;
  size_t take = std::min(room, n);
  try {
    output_.append(s, take);
  } catch (...) {
    take = 0;
  }
  output_dropped_ += n - take;
}

// ---- Errors ---------------------------------------------------------------------------------------------

Napi::Value LuaVM::TakeTrace(Napi::Env env, lua_State* L) {
  Napi::Value trace = env.Undefined();
  lua_rawgeti(L, LUA_REGISTRYINDEX, aux_ref_);
  if (lua_rawgeti(L, -1, kAuxTrace) == LUA_TSTRING) {
    size_t len;
    const char* s = lua_tolstring(L, -1, &len);
    trace = Napi::String::New(env, s, len);
  }
  lua_pop(L, 1);
  lua_pushboolean(L, 0);
  lua_rawseti(L, -2, kAuxTrace);
  lua_pop(L, 1);
  return trace;
}

Napi::Error LuaVM::ErrorFromStatus(Napi::Env env, lua_State* L, int status) {
  int err = lua_gettop(L);
  if (status == LUA_ERRMEM || (alloc_.refused && LooksLikeMemoryError(L, err))) {
    return MakeError(env, "LuaMemoryError", OutOfMemory("", alloc_));
  }
  Napi::Value trace = TakeTrace(env, L);

  std::string message;
  Napi::Value body = env.Undefined();
  Napi::Value cause = env.Undefined();
  switch (lua_type(L, err)) {
    case LUA_TSTRING:
      message = LuaString(L, err);
      if (host_err_ != nullptr && lua_tostring(L, err) == host_err_ && !holder_.IsEmpty()) {
        Napi::Object h = holder_.Value();
        if (!h.IsEmpty()) cause = h.Get("error");
      }
      break;
    case LUA_TNUMBER:
      body = Napi::Value(env, LuaToJs(env, L, err));
      message = body.ToString().Utf8Value();
      break;
    default:
      message = std::string("(error object is a ") + luaL_typename(L, err) + " value)";
      try {
        body = Napi::Value(env, LuaToJs(env, L, err));
      } catch (const Napi::Error&) {
        body = Napi::String::New(env, message);
      }
  }
  if (body.IsUndefined()) body = Napi::String::New(env, message);
  if (cause.IsUndefined()) return MakeError(env, "LuaRuntimeError", message, {{"trace", trace}, {"body", body}});
  return MakeError(env, "LuaRuntimeError", message, {{"trace", trace}, {"body", body}, {"cause", cause}});
}

Napi::Value LuaVM::Finish(Napi::Env env, lua_State* L, int base, int status, napi_value packed_into) {
  budget_.in_handler = false;  // in case the message handler itself failed
  if (interrupted_) return env.Undefined();  // nothing can be thrown into a stopping environment
  if (budget_.exhausted) {
    Napi::Value trace = TakeTrace(env, L);
    if (budget_.timed_out) {
      throw MakeError(env, "LimitError", "time limit of " + FormatMs(budget_.time_limit_ms) + " ms exceeded",
                      {{"limit", Napi::String::New(env, "time")}, {"trace", trace}});
    }
    throw MakeError(env, "LimitError", "instruction limit of " + std::to_string(budget_.limit) + " exceeded",
                    {{"limit", Napi::String::New(env, "steps")}, {"trace", trace}});
  }
  if (status != LUA_OK) throw ErrorFromStatus(env, L, status);
  int n = lua_gettop(L) - (base + 1);
  napi_value arr;
  if (napi_create_array_with_length(env, static_cast<size_t>(n), &arr) != napi_ok) throw Napi::Error::New(env);
  for (int i = 0; i < n; i++) {
    int t = lua_type(L, base + 2 + i);
    if (t == LUA_TTABLE) return Napi::Value(env, PackedResults(env, L, base + 2, n, packed_into));  // all, packed
    napi_value v = LuaToJs(env, L, base + 2 + i, t);
    if (napi_set_element(env, arr, static_cast<uint32_t>(i), v) != napi_ok) throw Napi::Error::New(env);
  }
  return Napi::Value(env, arr);
}

// ---- load / call -----------------------------------------------------------------------------------------

namespace {
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
}  // namespace

Napi::Value LuaVM::Load(const Napi::CallbackInfo& info) { return DoLoad(info, 0, -1); }

// loadLimited(timeLimit, code, name): load with this call's time limit.
Napi::Value LuaVM::LoadLimited(const Napi::CallbackInfo& info) { return DoLoad(info, 1, TimeLimitArg(info.Env(), info[0])); }

Napi::Value LuaVM::DoLoad(const Napi::CallbackInfo& info, size_t at, double limit_ms) {
  Napi::Env env = info.Env();
  CheckUsable(env);
  if (!info[at + 1].IsString()) throw InvalidArg(env, "LuaVM#load(code, name): name must be a string");
  std::string name = info[at + 1].As<Napi::String>().Utf8Value();
  std::string text;
  ChunkReader r{nullptr, 0};
  if (info[at].IsString()) {
    text = info[at].As<Napi::String>().Utf8Value();
    r = {text.data(), text.size()};
  } else if (info[at].IsTypedArray() && info[at].As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array) {
    Napi::Uint8Array a = info[at].As<Napi::Uint8Array>();
    r = {reinterpret_cast<const char*>(a.Data()), a.ByteLength()};
  } else {
    throw InvalidArg(env, "LuaVM#load(code, name): code must be a string or a Uint8Array");
  }

  if (depth_ == 0) call_limit_ms_ = limit_ms;  // a nested load shares the outermost call's deadline
  Frame frame(this, active_, true);
  lua_State* L = active_;
  if (!lua_checkstack(L, 8)) throw MakeError(env, "LuaError", "Lua stack overflow");
  int base = frame.base();
  lua_pushcfunction(L, MsgHandler);
  int st = lua_load(L, ReadChunk, &r, name.c_str(), "t");
  if (st != LUA_OK) {
    if (st == LUA_ERRMEM || alloc_.refused) throw ErrorFromStatus(env, L, LUA_ERRMEM);
    throw MakeError(env, "LuaSyntaxError", LuaString(L, -1));
  }
  st = lua_pcall(L, 0, LUA_MULTRET, base + 1);
  return Finish(env, L, base, st);
}

Napi::Value LuaVM::Call(const Napi::CallbackInfo& info) { return DoCall<false>(info, 0, -1); }

// callPacked(fn, buf, len, nargs): the arguments are the packed stream buf[0, len) of nargs values;
// packed results are written back into buf when they fit (see Finish).
Napi::Value LuaVM::CallPacked(const Napi::CallbackInfo& info) { return DoCall<true>(info, 0, -1); }

// callLimited(timeLimit, fn, ...args) and callPackedLimited(timeLimit, fn, buf, len, nargs).
Napi::Value LuaVM::CallLimited(const Napi::CallbackInfo& info) {
  return DoCall<false>(info, 1, TimeLimitArg(info.Env(), info[0]));
}
Napi::Value LuaVM::CallPackedLimited(const Napi::CallbackInfo& info) {
  return DoCall<true>(info, 1, TimeLimitArg(info.Env(), info[0]));
}

template <bool packed>
Napi::Value LuaVM::DoCall(const Napi::CallbackInfo& info, size_t at, double limit_ms) {
  Napi::Env env = info.Env();
  CheckUsable(env);
  if (info.Length() <= at) throw InvalidArg(env, "LuaVM#call(fn, ...args): fn must be a string");
  napi_value fnv = info[at];
  char small[kCacheNameMax];
  std::string big;
  const char* name = small;
  size_t len = 0;
  if (napi_get_value_string_utf8(env, fnv, small, sizeof small, &len) != napi_ok) {
    throw InvalidArg(env, "LuaVM#call(fn, ...args): fn must be a string");
  }
  if (len + 1 >= sizeof small) {
    big = Napi::Value(env, fnv).As<Napi::String>().Utf8Value();
    name = big.data();
    len = big.size();
  }
  uint32_t nargs = static_cast<uint32_t>(info.Length() - 1 - at);
  PackedReader reader{nullptr, nullptr};
  napi_value io = nullptr;
  if (packed) {
    io = info[at + 1];
    reader = ReadPackedArgs(env, info[at + 1], info[at + 2], info[at + 3], &nargs);
  }

  if (depth_ == 0) call_limit_ms_ = limit_ms;  // a nested call shares the outermost call's deadline
  Frame frame(this, active_, true);
  LuaArena& a = frame.arena();
  if (packed) {
    a.needs_protection = true;
  } else {
    ArenaBuilder builder(env, a, "LuaVM#call()");
    for (uint32_t i = 0; i < nargs; i++) builder.Add(info[at + i + 1], "args", i);
  }

  lua_State* L = active_;
  int base = frame.base();
  if (!lua_checkstack(L, static_cast<int>(nargs) + 8)) throw MakeError(env, "LuaError", "Lua stack overflow");
  lua_pushcfunction(L, MsgHandler);

  int slot = -1;
  bool plain = len < kCacheNameMax && std::memchr(name, '.', len) == nullptr;
  if (plain) {
    for (int i = 0; i < kCallCacheSize; i++) {
      if (cache_[i].len == len && std::memcmp(cache_[i].name, name, len) == 0) slot = i;
    }
  }
  int st;
  if (slot >= 0 && !a.needs_protection) {
    // Fast path: every step is non-raising (raw reads of existing slots, scalar pushes).
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    lua_rawgeti(L, LUA_REGISTRYINDEX, aux_ref_);
    lua_rawgeti(L, -1, kAuxCache0 + slot);
    lua_remove(L, -2);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    if (lua_type(L, -1) == LUA_TFUNCTION) {
      for (uint32_t i = 0; i < nargs; i++) PushScalar(L, a.nodes[i]);
      st = lua_pcall(L, static_cast<int>(nargs), LUA_MULTRET, base + 1);
      return Finish(env, L, base, st);
    }
    lua_pop(L, 1);
  }
  CallCtx ctx{name, len, &a, nargs, -1, packed ? &reader : nullptr};
  if (plain && slot < 0) {
    ctx.cache_slot = cache_next_;
    cache_next_ = (cache_next_ + 1) % kCallCacheSize;
    cache_[ctx.cache_slot].len = 0;  // refilled inside the trampoline once the key is stored
  }
  lua_pushcfunction(L, CallTrampoline);
  lua_pushlightuserdata(L, &ctx);
  st = lua_pcall(L, 1, LUA_MULTRET, base + 1);
  return Finish(env, L, base, st, io);
}

// ---- Host functions ------------------------------------------------------------------------------------

const std::string* LuaVM::HostPath(int64_t slot) const {
  if (slot < 0 || static_cast<size_t>(slot) >= host_paths_.size()) return nullptr;
  return &host_paths_[static_cast<size_t>(slot)];
}

int LuaVM::SlotForPath(const std::string& path) {
  for (size_t i = 0; i < host_paths_.size(); i++) {
    if (host_paths_[i] == path) return static_cast<int>(i);
  }
  host_paths_.push_back(path);
  return static_cast<int>(host_paths_.size() - 1);
}

// setPackedHost(entry, pack): the JS functions that run host functions called with a table
// argument (entry(fn, packedArgs)) and pack an object or array a host function returned (pack(v)).
// Both return the packed value in a Uint8Array.
Napi::Value LuaVM::SetPackedHost(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckUsable(env);
  if (!info[0].IsFunction() || !info[1].IsFunction()) {
    throw InvalidArg(env, "LuaVM#setPackedHost(entry, pack): entry and pack must be functions");
  }
  holder_.Value().Set("packedHost", info[0]);
  holder_.Value().Set("packValue", info[1]);
  return env.Undefined();
}

Napi::Value LuaVM::PackedHostEntry(const char* which) {
  Napi::Object h = holder_.IsEmpty() ? Napi::Object() : holder_.Value();
  return h.IsEmpty() ? Env().Undefined() : h.Get(which);
}

Napi::Value LuaVM::SetGlobalFunction(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckUsable(env);
  if (!info[0].IsString()) throw InvalidArg(env, "LuaVM#setGlobalFunction(path, fn): path must be a string");
  if (!info[1].IsFunction()) throw InvalidArg(env, "LuaVM#setGlobalFunction(path, fn): fn must be a function");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int slot = SlotForPath(path);
  fns_.Value().Set(static_cast<uint32_t>(slot), info[1]);
  lua_State* L = active_;
  if (!lua_checkstack(L, 4)) throw MakeError(env, "LuaError", "Lua stack overflow");
  SetGlobalCtx ctx{path.data(), path.size(), slot};
  int st = Protected(L, SetGlobalTrampoline, &ctx);
  if (st != LUA_OK) {
    std::string msg = LuaString(L, -1);
    lua_pop(L, 1);
    if (st == LUA_ERRMEM) throw MakeError(env, "LuaMemoryError", "not enough memory");
    throw InvalidArg(env, "LuaVM#setGlobalFunction(): " + msg);
  }
  return env.Undefined();
}

int LuaVM::InvokeHost(lua_State* L) noexcept {
  // Every outcome leaves exactly one value on the stack: the result (return 1) or an error (-1).
  auto fail = [&](const std::string& msg, napi_value err) -> int {
    lua_settop(L, 0);
    PushCtx ctx{nullptr, msg.data(), msg.size()};
    if (ProtectedPush(L, &ctx) == LUA_OK && L_ != nullptr) {
      host_err_set_ = true;
      lua_rawgeti(L, LUA_REGISTRYINDEX, aux_ref_);
      lua_pushvalue(L, -2);
      lua_rawseti(L, -2, kAuxHostErr);
      lua_pop(L, 1);
      if (err != nullptr) {
        host_err_ = lua_tostring(L, -1);
        try {
          Napi::Object h = holder_.Value();
          if (!h.IsEmpty()) h.Set("error", Napi::Value(Env(), err));
        } catch (...) {
          host_err_ = nullptr;
        }
      }
    }
    return -1;
  };
  // The environment refuses to run JS (worker termination, teardown; a termination caught by
  // the call surfaces as an exception too): end the whole call like a spent budget, so that a
  // script looping over pcall stops as well.
  auto interrupt = [&]() -> int {
    interrupted_ = true;
    budget_.exhausted = true;
    Regrant(budget_, meter_);
    lua_sethook(L, CountHook, LUA_MASKCOUNT, 1);
    return fail("JS cannot run any more in this environment", nullptr);
  };
  if (closing_ || L_ == nullptr) return fail("host functions are disabled while the LuaVM closes", nullptr);
  if (meter_.finalizing > 0) return fail("host functions cannot be called from __gc finalizers", nullptr);
  if (interrupted_) return interrupt();
  try {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    int64_t slot = lua_tointeger(L, lua_upvalueindex(1));
    Napi::Value fn = fns_.IsEmpty() ? env.Undefined() : fns_.Value().Get(static_cast<uint32_t>(slot));
    if (!fn.IsFunction()) {
      const std::string* path = HostPath(slot);
      return fail("host function '" + (path != nullptr ? *path : std::string("?")) +
                      "' is not registered (after a restore, register it again with setGlobalFunction)",
                  nullptr);
    }
    int nargs = lua_gettop(L);
    napi_value small[8];
    std::vector<napi_value> big;
    napi_value* argv = small;
    if (nargs > 8) {
      big.resize(static_cast<size_t>(nargs));
      argv = big.data();
    }
    // With a table among the arguments, the JS entry (setPackedHost) gets them packed and calls
    // fn: packedHost(fn, buffer) returns the result packed in a Uint8Array.
    napi_value callee = fn;
    size_t argc = static_cast<size_t>(nargs);
    int i = 0;
    for (int t; i < nargs && (t = lua_type(L, i + 1)) != LUA_TTABLE; i++) argv[i] = LuaToJs(env, L, i + 1, t);
    if (i < nargs) {
      Napi::Value entry = PackedHostEntry("packedHost");
      if (entry.IsFunction()) {
        callee = entry;
        argc = 2;
        argv[0] = fn;
        argv[1] = PackedResults(env, L, 1, nargs, nullptr);
      } else {
        for (; i < nargs; i++) argv[i] = LuaToJs(env, L, i + 1);
      }
    }
    lua_settop(L, 0);

    Frame frame(this, L, false);
    napi_value undefined, result;
    napi_get_undefined(env, &undefined);
    // A call into JS that failed: its exception becomes the Lua error (or the call ends, when JS
    // cannot run any more).
    auto jsFailed = [&]() -> int {
      napi_value exc = nullptr;
      bool pending = false;
      napi_is_exception_pending(env, &pending);
      if (pending) napi_get_and_clear_last_exception(env, &exc);
      if (exc == nullptr || JsUnavailable(env)) return interrupt();
      return fail(JsErrorMessage(env, exc), exc);
    };
    napi_status st = napi_call_function(env, undefined, callee, argc, argv, &result);
    if (st != napi_ok) return jsFailed();
    napi_valuetype rt = napi_undefined;
    if (napi_typeof(env, result, &rt) != napi_ok) throw Napi::Error::New(env);
    bool bytes = false;
    if (callee == fn && rt == napi_object && napi_is_typedarray(env, result, &bytes) == napi_ok && !bytes) {
      // An object or array result: packed by JS (one call) instead of one N-API call per property.
      Napi::Value pack = PackedHostEntry("packValue");
      if (pack.IsFunction()) {
        callee = pack;
        st = napi_call_function(env, undefined, pack, 1, &result, &result);
        if (st != napi_ok) return jsFailed();
      }
    }
    if (callee != fn) {
      PackedReader reader = ReadPackedValue(env, result);
      PushCtx ctx{nullptr, nullptr, 0, &reader};
      return ProtectedPush(L, &ctx) == LUA_OK ? 1 : -1;
    }
    LuaArena& a = frame.arena();
    ArenaBuilder(env, a, "host function result").AddTyped(result, rt, "", 0);
    if (!a.needs_protection) {
      PushScalar(L, a.nodes[0]);
      return 1;
    }
    PushCtx ctx{&a, nullptr, 0};
    return ProtectedPush(L, &ctx) == LUA_OK ? 1 : -1;
  } catch (const Napi::Error& e) {
    if (JsUnavailable(Env())) return interrupt();
    try {
      return fail(e.Message(), e.Value());
    } catch (...) {
      return fail("host function failed", nullptr);
    }
  } catch (const std::exception& e) {
    return fail(std::string("host function failed: ") + e.what(), nullptr);
  } catch (...) {
    return fail("host function failed", nullptr);
  }
}

// ---- globals / snapshot / restore ------------------------------------------------------------------------

Napi::Value LuaVM::Globals(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckUsable(env);
  lua_State* L = active_;
  if (!lua_checkstack(L, 4)) throw MakeError(env, "LuaError", "Lua stack overflow");
  int top = lua_gettop(L);
  std::vector<std::pair<const char*, size_t>> names;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  lua_pushnil(L);
  while (lua_next(L, top + 1) != 0) {
    if (lua_type(L, -2) == LUA_TSTRING) {
      size_t len;
      const char* s = lua_tolstring(L, -2, &len);
      names.emplace_back(s, len);
    }
    lua_pop(L, 1);
  }
  // The key strings stay alive: they are keys of _G, which nothing modifies meanwhile.
  std::sort(names.begin(), names.end(), [](const auto& x, const auto& y) {
    int c = std::memcmp(x.first, y.first, std::min(x.second, y.second));
    return c != 0 ? c < 0 : x.second < y.second;
  });
  Napi::Array out = Napi::Array::New(env, names.size());
  for (size_t i = 0; i < names.size(); i++) {
    out.Set(static_cast<uint32_t>(i), Napi::String::New(env, names[i].first, names[i].second));
  }
  lua_settop(L, top);
  return out;
}

Napi::Value LuaVM::Snapshot(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckUsable(env, true);
  // snapshot(spare): `spare` bytes of room after the snapshot (for the seal).
  size_t spare = info[0].IsNumber() ? static_cast<size_t>(std::max(0.0, std::min(info[0].As<Napi::Number>().DoubleValue(), 4096.0))) : 0;
  Napi::Value blob = SerializeLuaState(env, L_, aux_ref_, libs_, rng_, host_paths_, spare);
  if (blob.IsUndefined()) throw MakeError(env, "LuaMemoryError", OutOfMemory("to snapshot the state", alloc_));
  return blob;
}

Napi::Value LuaVM::Check(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throw InvalidArg(env, "LuaVM.check(snapshot): snapshot must be a Uint8Array");
  }
  Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
  ReadLuaSnapshot(env, bytes.Data(), bytes.ByteLength());
  return env.Undefined();
}

Napi::Value LuaVM::Restore(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throw InvalidArg(env, "LuaVM.restore(snapshot): snapshot must be a Uint8Array");
  }
  Napi::Object opts = Napi::Object::New(env);
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Object o = info[1].As<Napi::Object>();
    for (const char* key : {"memoryLimit", "instructionLimit", "timeLimit", "print", "outputLimit", "clock"}) {
      Napi::Value v = o.Get(key);
      if (!v.IsUndefined()) opts.Set(key, v);
    }
  }
  Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
  // Everything is validated before a state exists.
  LuaSnapshotPrefix pre = ReadLuaSnapshot(env, bytes.Data(), bytes.ByteLength());
  Napi::Array libs = Napi::Array::New(env);
  uint32_t n = 0;
  for (const LuaLibInfo& lib : kLuaLibs) {
    if ((pre.libs & lib.bit) != 0) libs.Set(n++, lib.name);
  }
  opts.Set("libs", libs);

  Napi::Object obj = AddonOf(env)->lua_vm_ctor.New({opts});
  bool tagged = false;
  if (napi_check_object_type_tag(env, obj, &kLuaVMTag, &tagged) != napi_ok || !tagged) {
    throw Napi::TypeError::New(env, "LuaVM.restore(): the constructor did not produce a LuaVM");
  }
  LuaVM* vm = Unwrap(obj);
  std::vector<int> slots;
  for (const std::string& p : pre.host_paths) slots.push_back(vm->SlotForPath(p));
  LuaRestoreCtx ctx{&pre, slots.data(), kAuxSize};
  lua_State* L = vm->L_;
  int st = lua_checkstack(L, 8) ? vm->Protected(L, LuaRestoreTrampoline, &ctx) : LUA_ERRMEM;
  std::free(ctx.objs_mem);
  std::free(ctx.scratch_mem);
  if (st != LUA_OK) {
    std::string msg = LuaString(L, -1);
    bool mem = st == LUA_ERRMEM || vm->alloc_.refused;
    vm->Close();
    if (mem) {
      throw MakeError(env, "LuaMemoryError", OutOfMemory("to restore the snapshot", vm->alloc_));
    }
    throw MakeError(env, "SnapshotError", msg);
  }
  vm->aux_ref_ = static_cast<int>(pre.aux_ref);
  std::copy(pre.rng, pre.rng + 4, vm->rng_);
  return obj;
}

}  // namespace hbr
