// WasmInstance: one instance of a WasmModule in its own Wasmtime store. Host imports are JS
// functions called synchronously on the calling thread. Memory access, snapshots and calls all go
// through this handle; it keeps its module's JS object alive.
//
// The implementation is split by concern: wasm_instance.cc (lifecycle and instantiation),
// wasm_instance_call.cc (calls and host imports), wasm_instance_memory.cc (memory access) and
// wasm_instance_snapshot.cc (snapshots); value conversions are in wasm_values.{h,cc}.
#pragma once

#include <napi.h>
#include <wasmtime.h>

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "addon.h"
#include "bound_call.h"
#include "wasm_cow_memory.h"
#include "wasm_limits.h"
#include "wasm_values.h"
#include "wasm_write_tracker.h"

namespace hbr {

namespace snap {
struct Plan;
}

class WasmModule;

// Limits. Every outermost call, and instantiation (start function included), runs under:
// - a wall-clock deadline (`timeLimit` ms, per instance and per call; Infinity for none): the
//   store's epoch deadline, set EpochTicker::Ticks(timeLimit) ahead, makes running wasm trap once
//   the addon's EpochTicker has advanced the epoch that far (never before the time has passed); a
//   host import returning past the deadline ends the call too. Nested calls (from a host import
//   back into the instance) share the outermost call's deadline;
// - the fuel budget (`fuel`, for modules compiled with metering): deterministic;
// - caps on memories and tables (hb_limits_t, wasm_limits.h): a refused growth returns -1 to the
//   guest, and a call that then fails is reported as a memory LimitError.
class WasmInstance : public Napi::ObjectWrap<WasmInstance>, public Closable {
 public:
  static constexpr uint64_t kDefaultMemoryBytes = uint64_t{4} << 30;  // for a memory with no maximum
  static constexpr uint64_t kDefaultTableElements = 10'000'000;
  static constexpr double kDefaultTimeLimitMs = 10'000;  // DEFAULT_TIME_LIMIT_MS in src/limits.ts
  static constexpr const char* kHandleName = "WasmInstance";  // in ClosedError's message

  static void Init(Napi::Env env, Napi::Object exports, Addon* addon);
  // new WasmInstance(module, imports: (fn|undefined)[] in import order, options)
  explicit WasmInstance(const Napi::CallbackInfo& info);
  ~WasmInstance() override;
  // Idempotent. During a call (depth > 0) the close is deferred until the outermost call returns.
  void Close() override;

 private:
  struct HostImport {
    WasmInstance* self;
    Napi::FunctionReference fn;
    std::string label;  // "module.name", for messages
    Signature sig;      // sig.foreign set: JS cannot serve it, and a call traps
  };
  struct ExportFunc {
    wasmtime_func_t func;
    Signature sig;     // sig.foreign set: JS cannot call it
    std::string label;  // "function 'f'", for messages
  };
  struct ExportGlobal {
    std::string name;
    wasmtime_global_t global;
    wasm_valkind_t kind;
  };
  struct ExportMemory {
    std::string name;
    wasmtime_memory_t memory;
  };

  static wasm_trap_t* Trampoline(void* env, wasmtime_caller_t* caller, const wasmtime_val_t* args, size_t nargs,
                                 wasmtime_val_t* results, size_t nresults);
  // The body of Trampoline; returns a trap (and records the JS error) on failure. Never throws.
  wasm_trap_t* CallHost(HostImport* imp, wasmtime_caller_t* caller, const wasmtime_val_t* args,
                        wasmtime_val_t* results);
  std::string CallJs(Napi::Env env, HostImport* imp, const wasmtime_val_t* args, wasmtime_val_t* results);

  Napi::Value ExportIndex(const Napi::CallbackInfo& info);
  // call(index, ...args) / callLimited(timeLimitMs, index, ...args), and the same for callTable.
  Napi::Value Call(const Napi::CallbackInfo& info);
  // caller() -> a function (index, ...args) doing what call() does, bound to this instance
  // (bound_call.h).
  Napi::Value Caller(const Napi::CallbackInfo& info);
  Napi::Value CallLimited(const Napi::CallbackInfo& info);
  Napi::Value CallTable(const Napi::CallbackInfo& info);
  Napi::Value CallTableLimited(const Napi::CallbackInfo& info);
  Napi::Value CallExport(const Napi::CallbackInfo& info, size_t at, double limit_ms);
  Napi::Value CallElement(const Napi::CallbackInfo& info, size_t at, double limit_ms);
  // Converts info[first..] per `f`'s signature, calls it, converts the results back.
  Napi::Value Invoke(const Napi::CallbackInfo& info, size_t first, const ExportFunc& f, const char* what,
                     double limit_ms);
  // The per-call time limit at info[0] of the *Limited methods.
  double CallLimitArg(const Napi::CallbackInfo& info) const;
  // Starts the limits of an outermost call or of instantiation, and ends them once it returned.
  // Precondition: depth_ == 0.
  void BeginOutermost(wasmtime_context_t* ctx, double limit_ms);
  void EndOutermost();
  // What the caps refused during this outermost call, for messages ("a memory grow to ...").
  std::string RefusedGrowth() const;
  Napi::Value MemorySize(const Napi::CallbackInfo& info);
  Napi::Value MemoryGrow(const Napi::CallbackInfo& info);
  Napi::Value MemoryRead(const Napi::CallbackInfo& info);
  Napi::Value MemoryWrite(const Napi::CallbackInfo& info);
  Napi::Value ReadCString(const Napi::CallbackInfo& info);
  // memoryView(): an ArrayBuffer over memory 0 itself (no copy). It is detached (byteLength 0)
  // as soon as the memory grows, moves, or the instance is disposed, so it never dangles; while
  // it lives it keeps the instance from being collected.
  Napi::Value MemoryView(const Napi::CallbackInfo& info);
  // Detaches the current view if memory 0 no longer has its base and size (or `always`). JS context only.
  void RefreshView(napi_env env, bool always = false);
  // memoryCopy(): an ArrayBuffer holding memory 0 now, copy-on-write where CowMemory is supported
  // (it then costs the pages the guest owns, wasm_cow_memory.h), else a plain copy.
  Napi::Value MemoryCopy(const Napi::CallbackInfo& info);
  // memoryIsCopy(bytes): whether `bytes` (an ArrayBuffer, or a typed array over all of one) is the
  // last memoryCopy() and still holds what memory 0 holds, proven without comparing it all.
  Napi::Value MemoryIsCopy(const Napi::CallbackInfo& info);
  Napi::Value HasMemory(const Napi::CallbackInfo& info);
  Napi::Value SnapshotSize(const Napi::CallbackInfo& info);
  Napi::Value Snapshot(const Napi::CallbackInfo& info);
  uint64_t SnapshotBytes();  // payload size; precondition: open
  // Open, not inside a call, and every mutable global capturable; else throws.
  void CheckSnapshotable(Napi::Env env, const char* what) const;
  // restore([full, ...deltas], hash): every blob verified, and the chain checked, before anything
  // is applied.
  Napi::Value Restore(const Napi::CallbackInfo& info);
  // snapshotDelta(hash, sinceId): the pages written since the latest snapshot (its id: sinceId).
  Napi::Value SnapshotDelta(const Napi::CallbackInfo& info);
  // snapshotToFd(hash, fd): the full blob written to fd in chunks; returns its size.
  Napi::Value SnapshotToFd(const Napi::CallbackInfo& info);
  // restoreFromFd(fd, fileSize, hash, deltas): a full snapshot file (read twice: verified, then
  // applied), then deltas.
  Napi::Value RestoreFromFd(const Napi::CallbackInfo& info);
  // Checks `plans` (a full snapshot, then deltas, each following the one before) against this
  // instance and applies them; base runs without `src` are read from `fd`, which is hashed again
  // on the way (a file that changed between the passes disposes the instance). Throws snap::Invalid
  // before anything is touched.
  void ApplyPlans(Napi::Env env, const std::vector<snap::Plan>& plans, int fd, uint64_t file_size);
  void CheckPlans(const std::vector<snap::Plan>& plans);
  // Parses and verifies Uint8Array blobs (throws snap::Invalid naming delta `first_index + k`).
  std::vector<snap::Plan> ParseBlobs(Napi::Env env, const Napi::Array& blobs, const uint8_t* hash, size_t first_index);
  // Reads the base's memories from the file into `dsts`, hashing the whole file again on the way;
  // false when the checksum no longer matches `plan.id` (the file changed since it was parsed).
  // `fresh[i]`: the offset from which memory i is known to be zero (grown by this restore).
  bool CopyFromFile(int fd, uint64_t file_size, const snap::Plan& plan, const std::vector<uint8_t*>& dsts,
                    const std::vector<uint64_t>& fresh);
  // Payload size of a full snapshot now (precondition: open); and the header-to-trailer writer.
  template <class W>
  void WriteFull(W& w, const uint8_t* hash, uint64_t payload);
  template <class W>
  void WriteGlobals(W& w);
  // After a snapshot or restore whose id is `id`: the next delta follows it.
  void MarkSnapshot(uint64_t id);
  Napi::Value FuelConsumed(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  void Instantiate(Napi::Env env, WasmModule* module, Napi::Array imports);
  void CheckOpen(Napi::Env env) const;
  // Precondition: open and the module exports a memory.
  const ExportMemory& Memory(Napi::Env env) const;
  // The store context to use now: the caller's inside a host import, else the store's.
  wasmtime_context_t* Ctx() const { return caller_ctx_ != nullptr ? caller_ctx_ : wasmtime_store_context(store_); }
  // Converts a failed call (error or trap, ownership taken) into the JS error to throw.
  Napi::Error CallError(Napi::Env env, wasmtime_error_t* error, wasm_trap_t* trap, const std::string& what);
  void ReleaseStore();

  wasmtime_store_t* store_ = nullptr;
  wasmtime_context_t* caller_ctx_ = nullptr;
  wasmtime_instance_t instance_{};
  WasmModule* module_ = nullptr;
  Napi::ObjectReference module_ref_;
  std::vector<std::unique_ptr<HostImport>> imports_;
  std::vector<ExportFunc> funcs_;
  std::unordered_map<std::string, int> func_index_;
  std::vector<ExportMemory> memories_;
  std::vector<wasmtime_table_t> tables_;  // exported tables, in export order
  std::vector<ExportGlobal> globals_;  // exported mutable globals of numeric or v128 type
  std::string uncapturable_;           // "global 'g' is a mutable anyref": no snapshots then
  std::vector<WriteTracker> trackers_;  // one per memory, for incremental snapshots
  // Option trackWrites: true tracks from the first snapshot; false never; undefined ("auto") from
  // the first incremental snapshot on (which holds every page), so that instances that never take
  // one never pay for the write-protect faults.
  bool track_always_ = false;
  bool track_never_ = false;
  bool track_writes_ = false;          // tracking is on (always, or auto after a first delta)
  bool has_last_ = false;              // a snapshot was taken or restored: deltas can follow it
  uint64_t last_id_ = 0;               // its id (trailer checksum)
  uint64_t fuel_ = 0;                  // per-call budget; 0 = unlimited
  uint64_t fuel_consumed_ = 0;         // by the last outermost call (or instantiation)
  hb_limits_t limits_{};               // memory and table caps; the Rust limiter reads and counts here
  BoundLink* caller_link_ = nullptr;  // shared with the functions made by caller()
  double time_limit_ms_ = kDefaultTimeLimitMs;  // default of each outermost call; Infinity = none
  bool interruptible_ = true;          // epoch checks compiled in (kEngineNoEpoch not set)
  EpochTicker* ticker_ = nullptr;      // the environment's, owned by the Addon
  uint64_t deadline_ns_ = UINT64_MAX;  // of the current outermost call (CoarseNowNs); MAX = none
  double call_limit_ms_ = 0;           // its time limit, for messages
  bool deadline_hit_ = false;          // the current outermost call passed its deadline
  bool epoch_far_ = false;             // the store's epoch deadline was pushed away (no-deadline call)
  bool ticking_ = false;               // the current outermost call keeps the ticker awake
  int depth_ = 0;                      // nesting of calls (host imports may call back in)
  bool close_pending_ = false;
  napi_env env_ = nullptr;             // valid during a call, for host imports
  napi_ref view_ = nullptr;            // weak: the ArrayBuffer memoryView() returned last
  napi_env env_for_view_ = nullptr;    // the environment view_ and cow_copy_ belong to
  uint8_t* view_base_ = nullptr;       // what it covers
  uint64_t view_size_ = 0;
  CowMemory cow_;                      // memory 0's copy-on-write copies (memoryCopy)
  napi_ref cow_copy_ = nullptr;        // weak: the ArrayBuffer memoryCopy() returned last
  Napi::Reference<Napi::Value> pending_error_;  // a JS error thrown by a host import
  std::string pending_label_;    // the import that failed first
  std::string pending_failure_;  // why it failed
};

}  // namespace hbr
