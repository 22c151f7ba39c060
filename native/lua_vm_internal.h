// LuaVM internals shared by the files of the class (not part of the addon's surface):
//   lua_vm.cc           construction, options, the capped allocator, dispose/finalise, output, globals
//   lua_vm_budget.cc    the step meter: count hook, deadline, instruction limit (hb-meter.h callbacks)
//   lua_vm_call.cc      load/call, the message handler, Lua errors to JS errors, results
//   lua_vm_host.cc      host functions (JS functions bound into Lua), the packed host
//   lua_vm_snapshot.cc  snapshot/check/restore of a VM, the named pointers snapshots refer to
// and the Frame every call and host-function invocation runs in.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "lua_vm.h"
#include "wasm_ticker.h"  // CoarseNowNs

extern "C" {
#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"
}

namespace hbr {
namespace luavm {

inline constexpr napi_type_tag kLuaVMTag = {0x6862727475614c75ULL, 0x56cbb4de2f1a7d03ULL};

// Raised (as a light userdata error value) once the instruction budget is spent. One address in
// the whole addon (an inline variable): snapshots name it.
inline const char kLimitSentinel = 0;

constexpr int kMaxHookStep = 1000;  // also the meter's largest grant
constexpr long long kUnlimitedGrant = 1LL << 60;  // the meter's grant without instructionLimit

// ---- Instruction budget (lua_vm_budget.cc) ------------------------------------------------------

// Starts a new grant on the meter from what is left of the budget (none once it is spent). With a
// deadline, grants stay small so that C library loops look at the clock often enough.
inline void Regrant(LuaVM::Budget& b, hb_meter& m) {
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
bool Charge(LuaVM* vm, uint64_t steps);
// The count hook of every metered thread.
void CountHook(lua_State* L, lua_Debug*);
// Makes every thread error on every instruction, then raises the limit sentinel.
[[noreturn]] void RaiseLimit(lua_State* L);

// ---- lua_vm_call.cc ----
// Keeps the error value; records the traceback in aux[kAuxTrace]. Stack: [err] -> [err].
int MsgHandler(lua_State* L);

// ---- lua_vm.cc ----
// "not enough memory[ <context>][ (memoryLimit of N bytes reached)]".
std::string OutOfMemory(const char* context, const LuaVM::Alloc& a);
// The string at `idx` (empty when it is not a string). Does not raise.
std::string LuaString(lua_State* L, int idx);

}  // namespace luavm

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
      b.step = b.limit != 0 ? static_cast<int>(std::min<uint64_t>(b.limit, luavm::kMaxHookStep)) : luavm::kMaxHookStep;
      luavm::Regrant(b, vm->meter_);
      // The main thread ticks when a limit applies; coroutines follow the thread that resumes
      // them (LuaResumeHook). A hook of the debug library is left alone.
      if (b.Metered()) {
        lua_sethook(vm->L_, luavm::CountHook, LUA_MASKCOUNT, b.step);
      } else if (lua_gethook(vm->L_) == luavm::CountHook) {
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

}  // namespace hbr
