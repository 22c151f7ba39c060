// LuaVM, part 2: the step meter. One budget of steps per outermost call (instructionLimit) and a
// wall-clock deadline (timeLimit), charged by the count hook of every metered thread and by the
// meter of hb-meter.h that the patched C library ticks (scripts/fetch-lua.js).
#include <cstdlib>

#include "lua_vm_internal.h"
#include "wasm_ticker.h"  // CoarseNowNs

namespace hbr {
namespace luavm {

// One budget of steps, charged from two places: the count hook (VM instructions, per thread) and
// the meter (hb-meter.h: the C library's loops, string comparison and concatenation in the VM,
// collections). The meter hands out grants of up to kMaxHookStep steps; HB_TICK spends them and
// calls hb_meter_settle when one is used up, which charges it and grants the next.
// Regrant, which starts each grant, is inline in lua_vm_internal.h.

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

namespace {

// Makes `L` and the main thread error on every instruction from now on.
void ArmEveryInstruction(lua_State* L) {
  if (lua_gethook(L) != CountHook || lua_gethookcount(L) != 1) lua_sethook(L, CountHook, LUA_MASKCOUNT, 1);
  lua_State* main = VmOf(L)->main_state();
  if (main != nullptr && main != L && (lua_gethook(main) != CountHook || lua_gethookcount(main) != 1)) {
    lua_sethook(main, CountHook, LUA_MASKCOUNT, 1);
  }
}

}  // namespace

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

}  // namespace luavm

void LuaResumeHook(lua_State* L, lua_State* from) {
  using luavm::CountHook;
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
  if (hbr::luavm::Charge(vm, 0)) return;
  // Nothing raises outside calls (opening the libraries, restoring, between calls) nor inside our
  // message handler (the error it handles ends the call anyway).
  if (!vm->InCall() || vm->budget().in_handler) return;
  hbr::luavm::RaiseLimit(L);
}
