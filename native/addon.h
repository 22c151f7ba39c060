// Per-environment state of the hb-runtimes addon.
//
// Lifetime design: every native handle (WasmModule, WasmInstance, LuaVM) is a Napi::ObjectWrap
// deriving from Closable. A handle registers with the Addon of its environment only after its
// construction succeeded and deregisters in Close(). When the environment is torn down (process
// exit, worker termination) the Addon stops and joins its epoch ticker thread, closes every handle
// still registered, children before parents (instances before modules), and only then deletes the
// Wasmtime engines. After that a late GC finalizer finds the handle already closed and frees
// nothing twice.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "wasm_ticker.h"

namespace hbr {

class Addon;

// Base of every handle. Close() is idempotent, releases native resources and deregisters;
// destructors call it. Copy and move are deleted: the JS wrapper owns the one object.
class Closable {
 public:
  // Close order at teardown: lower first (instances and VMs before modules).
  enum class Rank { kChild = 0, kParent = 1 };

  Closable() = default;
  Closable(const Closable&) = delete;
  Closable& operator=(const Closable&) = delete;
  virtual ~Closable() = default;

  virtual void Close() = 0;
  virtual Rank CloseRank() const { return Rank::kChild; }

 protected:
  // Registers with the addon; call last in a successful constructor.
  void Track(Addon* addon);
  // Deregisters (no-op when not tracked or when the addon is already gone).
  void Untrack();
  Addon* addon_ = nullptr;

 private:
  friend class Addon;
};

class Addon : public Napi::Addon<Addon> {
 public:
  Addon(Napi::Env env, Napi::Object exports);
  ~Addon();

  // Constructors of the wrapped classes, for creating handles from C++ (e.g. deserialize).
  Napi::FunctionReference wasm_module_ctor;
  Napi::FunctionReference wasm_instance_ctor;
  Napi::FunctionReference lua_vm_ctor;

  // The TS error classes (see src/errors.ts), by name. Empty until setErrorClasses() ran.
  Napi::ObjectReference error_classes;

  // The Wasmtime engine of this environment for a profile (EngineFlags), created on first use.
  wasm_engine_t* Engine(uint32_t flags);

  // Advances the epoch of this environment's engines (the clock of WASM deadlines).
  EpochTicker ticker;

  void Register(Closable* handle);
  void Deregister(Closable* handle);

 private:
  Napi::Value SetErrorClasses(const Napi::CallbackInfo& info);
  Napi::Value Versions(const Napi::CallbackInfo& info);
  Napi::Value Checksum(const Napi::CallbackInfo& info);
  Napi::Value TrimMemory(const Napi::CallbackInfo& info);
  Napi::Value SnapshotKey(const Napi::CallbackInfo& info);
  Napi::Value WriteTracking(const Napi::CallbackInfo& info);
  Napi::Value CopyOnWrite(const Napi::CallbackInfo& info);

  std::vector<Closable*> live_;
  wasm_engine_t* engines_[8] = {};
};

// The Addon of the environment `env`.
inline Addon* AddonOf(Napi::Env env) { return env.GetInstanceData<Addon>(); }

// A fast non-cryptographic 64-bit checksum (XXH3, from the Rust side of deps/wasmtime).
uint64_t Checksum64(const uint8_t* data, size_t len);

}  // namespace hbr
