// LuaVM: one Lua 5.3 state per handle.
//
// Safety design. Lua is compiled as C and reports errors with longjmp, which must never unwind a
// C++ frame that has destructors. So every Lua API call that can raise runs inside lua_pcall,
// in a C-style trampoline (a lua_CFunction holding no object with a destructor) that gets its
// data through a pointer to a plain struct (lua_pushcfunction without upvalues and
// lua_pushlightuserdata do not allocate, so entering a trampoline cannot raise). Everything outside
// a protected call uses only API calls that cannot raise (raw reads, scalar pushes, lua_next over
// an unmodified table, stores into existing array slots). Host functions run their JS in a C++
// member that returns before the trampoline raises.
// Each helper documents its stack effect as `Stack: [before] -> [after]`.
#pragma once

#include <napi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "addon.h"
#include "bound_call.h"
#include "lua_marshal.h"
#include "lua_packed.h"

extern "C" {
#include "hb-meter.h"  // the step meter (written by scripts/fetch-lua.js; includes lua.h)
}

namespace hbr {

// Libraries, by bit. The safe set is always open; `libs` adds unsafe ones.
enum LuaLib : uint16_t {
  kLibBase = 1 << 0,
  kLibCoroutine = 1 << 1,
  kLibTable = 1 << 2,
  kLibString = 1 << 3,
  kLibUtf8 = 1 << 4,
  kLibMath = 1 << 5,
  kLibOs = 1 << 6,  // the full os library (the safe set has os.time/clock/date/difftime only)
  kLibIo = 1 << 7,
  kLibDebug = 1 << 8,
  kLibPackage = 1 << 9,
};
constexpr uint16_t kSafeLibs = kLibBase | kLibCoroutine | kLibTable | kLibString | kLibUtf8 | kLibMath;
constexpr uint16_t kAllLibs = 0x3ff;

// Slots of the per-state auxiliary table (an array in the registry, every slot pre-filled with
// `false` so that storing into it never allocates and so never raises). Snapshots write every
// slot but kAuxLoad as `false` (they are caches and per-call bookkeeping).
enum AuxSlot : int {
  kAuxTrace = 1,    // traceback recorded by our message handler, until the error is converted
  kAuxHostErr,      // anchors the message string of the last JS exception from a host function
  kAuxPermTables,   // unused (snapshot format v1 kept the permanent tables here)
  kAuxPermBases,    // unused (format v1: copies of the permanent tables)
  kAuxLoad,         // the stdlib `load` behind the text-only wrapper
  kAuxCache0,       // interned names of recently called globals (kCallCacheSize slots)
};
constexpr int kCallCacheSize = 8;
constexpr int kAuxSize = kAuxCache0 + kCallCacheSize - 1;
constexpr size_t kCacheNameMax = 64;

// The lua_CFunction behind every host function (upvalue 1: its slot number).
int LuaHostTrampoline(lua_State* L);

class LuaVM : public Napi::ObjectWrap<LuaVM>, public Closable {
 public:
  static void Init(Napi::Env env, Napi::Object exports, Addon* addon);
  explicit LuaVM(const Napi::CallbackInfo& info);
  ~LuaVM() override;
  void Close() override;
  static constexpr const char* kHandleName = "LuaVM";  // in ClosedError's message

  // For the C-style trampolines; not visible from JS.
  struct Alloc {
    size_t used = 0;
    size_t limit = 0;      // 0: unlimited
    bool refused = false;  // an allocation was refused since the outermost call began
    hb_meter* meter = nullptr;  // charged for the emergency collection that follows a refusal
  };
  // One budget of steps: VM instructions (count hook) plus the C library's work (the meter), and
  // the outermost call's wall-clock deadline, checked whenever steps are charged.
  struct Budget {
    uint64_t limit = 0;  // 0: unlimited
    uint64_t used = 0;
    int step = 0;  // instructions between count-hook ticks
    bool exhausted = false;  // the steps are spent, the deadline passed, or the call is interrupted
    bool in_handler = false;  // our message handler is running (the meter does not raise then)
    uint64_t deadline_ns = UINT64_MAX;  // CoarseNowNs() deadline of the outermost call; UINT64_MAX: none
    double time_limit_ms = 0;           // the outermost call's time limit (for the message)
    bool timed_out = false;             // the deadline passed (exhausted is set too)
    // The hook and the meter must tick: a step limit or a deadline applies (or the call is ending).
    bool Metered() const { return limit != 0 || deadline_ns != UINT64_MAX || exhausted; }
  };
  struct CacheEntry {
    char name[kCacheNameMax];
    size_t len = 0;  // 0: empty
  };
  // Runs the JS of a host function. Stack: [args] -> [result] (returns 1) or [error] (returns -1).
  int InvokeHost(lua_State* L) noexcept;
  Budget& budget() { return budget_; }
  hb_meter& meter() { return meter_; }
  lua_State* main_state() const { return L_; }
  bool InCall() const { return depth_ > 0 || closing_; }  // inside a load/call, or closing
  uint64_t* rng() { return rng_; }
  CacheEntry* cache() { return cache_; }
  int aux_ref() const { return aux_ref_; }
  const std::string* HostPath(int64_t slot) const;
  // print: appends to the output of the running call (up to outputLimit bytes, the rest is counted
  // as dropped), or writes to stdout with print: 'stdout'.
  void Output(const char* s, size_t n) noexcept;
  bool print_stdout() const { return print_stdout_; }
  bool clock_real() const { return clock_real_; }
  static constexpr double kDefaultTimeLimitMs = 10'000;  // DEFAULT_TIME_LIMIT_MS in src/limits.ts
  static constexpr size_t kDefaultOutputLimit = 1 << 20;

 private:
  class Frame;
  friend class Frame;

  Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value Call(const Napi::CallbackInfo& info);
  // caller() -> a function (fn, ...args) doing what call() does, bound to this VM (bound_call.h).
  Napi::Value Caller(const Napi::CallbackInfo& info);
  Napi::Value CallPacked(const Napi::CallbackInfo& info);
  Napi::Value LoadLimited(const Napi::CallbackInfo& info);
  Napi::Value CallLimited(const Napi::CallbackInfo& info);
  Napi::Value CallPackedLimited(const Napi::CallbackInfo& info);
  // `at`: index of the first ordinary argument (after a time limit); limit_ms: this call's limit.
  Napi::Value DoLoad(const Napi::CallbackInfo& info, size_t at, double limit_ms);
  template <bool packed>
  Napi::Value DoCall(const Napi::CallbackInfo& info, size_t at, double limit_ms);

  Napi::Value SetGlobalFunction(const Napi::CallbackInfo& info);
  Napi::Value SetPackedHost(const Napi::CallbackInfo& info);
  Napi::Value PackedHostEntry(const char* which);  // "packedHost" or "packValue" (setPackedHost), or undefined
  Napi::Value Globals(const Napi::CallbackInfo& info);
  Napi::Value Snapshot(const Napi::CallbackInfo& info);
  Napi::Value MemoryUsed(const Napi::CallbackInfo& info);
  Napi::Value GetOutput(const Napi::CallbackInfo& info);  // [text as a Buffer, dropped bytes]
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  static Napi::Value Restore(const Napi::CallbackInfo& info);
  // check(bytes): the checks restore makes before creating anything (header, checksum, prefix).
  static Napi::Value Check(const Napi::CallbackInfo& info);

  // Throws TypeError unless the VM is open and, with `idle`, not inside a call. (Methods cannot be
  // called on foreign objects: V8 checks the receiver against the class before calling them.)
  void CheckUsable(Napi::Env env, bool idle = false);
  // Converts the outcome of a protected call whose message handler sits at `base + 1`.
  // Stack: [.. base, handler, results... | error] (unchanged; the Frame restores it).
  // Results with a table come back packed (PackedResults, written into `packed_into` if given);
  // with `bare`, a single number or boolean comes back as itself, not in an array (call()).
  Napi::Value Finish(Napi::Env env, lua_State* L, int base, int status, napi_value packed_into = nullptr,
                     bool bare = false);
  Napi::Error ErrorFromStatus(Napi::Env env, lua_State* L, int status);
  // Runs `fn(L)` with `ud` under lua_pcall (no handler). Stack: unchanged on return.
  int Protected(lua_State* L, int (*fn)(lua_State*), void* ud);
  void OpenState(Napi::Env env, uint16_t libs);
  int SlotForPath(const std::string& path);
  void ResetPendingHostError() noexcept;
  // A full collection after an allocation was refused, so that memoryUsed comes back down.
  void CollectAfterRefusal() noexcept;
  // The traceback recorded by the message handler (or undefined), clearing its slot.
  Napi::Value TakeTrace(Napi::Env env, lua_State* L);
  LuaArena& ArenaAt(int depth);

  lua_State* L_ = nullptr;       // main thread; null once closed
  lua_State* active_ = nullptr;  // the thread running the innermost call (a coroutine inside a host function)
  Alloc alloc_;
  Budget budget_;
  double time_limit_ms_ = kDefaultTimeLimitMs;  // default of each outermost call; Infinity: none
  double call_limit_ms_ = -1;                   // the limit the next outermost Frame applies (set by the call)
  bool print_stdout_ = false;
  bool clock_real_ = false;
  size_t output_limit_ = kDefaultOutputLimit;
  std::string output_;        // print output of the latest outermost call
  uint64_t output_dropped_ = 0;  // bytes past output_limit_
  hb_meter meter_{};  // every thread's extra space points here; meter_.owner is this
  uint64_t rng_[4] = {0, 0, 0, 0};
  uint16_t libs_ = kSafeLibs;
  int aux_ref_ = 0;
  BoundLink* caller_link_ = nullptr;  // shared with the functions made by caller()
  int depth_ = 0;  // nesting of calls and host-function frames
  bool close_pending_ = false;
  bool closing_ = false;
  bool interrupted_ = false;  // a host call found that JS cannot run any more; the call is ending
  int cache_next_ = 0;
  CacheEntry cache_[kCallCacheSize];
  const char* host_err_ = nullptr;  // message (in the state) of the last JS exception from a host function
  bool host_err_set_ = false;       // aux[kAuxHostErr] or the holder's `error` is set

  // Host functions: slot i has a path here, and its function is element i of the `fns` array
  // of a hidden holder object on the JS wrapper (weakly referenced, so a host function that
  // captures this VM does not keep it alive). The holder's `error` keeps the last JS exception.
  std::vector<std::string> host_paths_;
  Napi::ObjectReference holder_;
  Napi::Reference<Napi::Array> fns_;

  std::vector<std::unique_ptr<LuaArena>> arenas_;  // one per nesting depth, reused
};

// The VM of a state: the extra space of every thread points to the VM's meter, whose owner is the
// VM (null for the snapshot code's template state).
inline LuaVM* VmOf(lua_State* L) { return static_cast<LuaVM*>(hb_meter_of(L)->owner); }

// Makes a coroutine that `from` resumes tick like `from` (Lua copies hooks only when a thread is
// created): hb_resume_hook in hb-meter.h, called by lua_resume.
void LuaResumeHook(lua_State* L, lua_State* from);

}  // namespace hbr
