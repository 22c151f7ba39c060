#include "addon.h"

#include <wasmtime.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <mutex>
#include <vector>

#include "errors.h"
#include "lua_vm.h"
#include "wasm_engine.h"
#include "wasm_instance.h"
#include "wasm_module.h"
#include "wasm_cow_memory.h"
#include "wasm_write_tracker.h"

extern "C" uint64_t hb_xxh3_64(const uint8_t* data, size_t len);
extern "C" {
#include "lua.h"
}

namespace hbr {

void Closable::Track(Addon* addon) {
  addon_ = addon;
  addon->Register(this);
}

void Closable::Untrack() {
  if (addon_ != nullptr) addon_->Deregister(this);
  addon_ = nullptr;
}

uint64_t Checksum64(const uint8_t* data, size_t len) { return hb_xxh3_64(data, len); }

Addon::Addon(Napi::Env env, Napi::Object exports) {
  DefineAddon(exports, {
                           InstanceMethod("setErrorClasses", &Addon::SetErrorClasses),
                           InstanceMethod("versions", &Addon::Versions),
                           InstanceMethod("checksum", &Addon::Checksum),
                           InstanceMethod("snapshotKey", &Addon::SnapshotKey),
                           InstanceMethod("writeTracking", &Addon::WriteTracking),
                           InstanceMethod("copyOnWrite", &Addon::CopyOnWrite),
                           InstanceMethod("trimMemory", &Addon::TrimMemory),
                       });
  WasmModule::Init(env, exports, this);
  WasmInstance::Init(env, exports, this);
  LuaVM::Init(env, exports, this);
}

Addon::~Addon() {
  // Environment teardown: stop the epoch ticker (it uses the engines), close children, then
  // parents, then the engines (see addon.h).
  ticker.Stop();
  std::vector<Closable*> handles = live_;
  std::stable_sort(handles.begin(), handles.end(), [](Closable* a, Closable* b) {
    return static_cast<int>(a->CloseRank()) < static_cast<int>(b->CloseRank());
  });
  for (Closable* h : handles) {
    h->Close();
    h->addon_ = nullptr;
  }
  live_.clear();
  for (wasm_engine_t*& e : engines_) {
    if (e != nullptr) wasm_engine_delete(e);
    e = nullptr;
  }
}

wasm_engine_t* Addon::Engine(uint32_t flags) {
  flags &= kEngineFlagsCount - 1;
  if (engines_[flags] == nullptr) {
    engines_[flags] = NewEngine(flags);
    ticker.AddEngine(engines_[flags]);
  }
  return engines_[flags];
}

void Addon::Register(Closable* handle) { live_.push_back(handle); }

void Addon::Deregister(Closable* handle) {
  auto it = std::find(live_.begin(), live_.end(), handle);
  if (it != live_.end()) {
    *it = live_.back();
    live_.pop_back();
  }
}

Napi::Value Addon::SetErrorClasses(const Napi::CallbackInfo& info) {
  if (!info[0].IsObject()) throw Napi::TypeError::New(info.Env(), "setErrorClasses(classes): object expected");
  error_classes = Napi::Persistent(info[0].As<Napi::Object>());
  return info.Env().Undefined();
}

Napi::Value Addon::Versions(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object v = Napi::Object::New(env);
  v.Set("wasmtime", Napi::String::New(env, WASMTIME_VERSION));
  v.Set("lua", Napi::String::New(env, LUA_RELEASE));
  v.Set("napi", Napi::Number::New(env, NAPI_VERSION));
  return v;
}

// checksum(bytes) -> bigint: XXH3-64 of a buffer (used by snapshot formats on both sides).
Napi::Value Addon::WriteTracking(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), WriteTracker::Supported());
}

// copyOnWrite() -> boolean: whether memory.copy() is copy-on-write here (wasm_cow_memory.h).
Napi::Value Addon::CopyOnWrite(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), CowMemory::Supported());
}

// trimMemory() -> boolean: hands the allocator's free pages back to the system (glibc's
// malloc_trim), after an owner freed many VMs or instances at once (serve's eviction). Freed
// memory otherwise stays in the process's heaps. False where there is no such call.
Napi::Value Addon::TrimMemory(const Napi::CallbackInfo& info) {
#if defined(__GLIBC__)
  malloc_trim(0);
  return Napi::Boolean::New(info.Env(), true);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

Napi::Value Addon::Checksum(const Napi::CallbackInfo& info) {
  if (!info[0].IsTypedArray()) throw InvalidArg(info.Env(), "checksum(bytes): Uint8Array expected");
  Napi::Uint8Array a = info[0].As<Napi::Uint8Array>();
  return Napi::BigInt::New(info.Env(), Checksum64(a.Data(), a.ByteLength()));
}

// snapshotKey(candidate, replace) -> Buffer: the process-wide key that authenticates snapshots
// (src/lua-trust.ts). Shared by every environment of the process (worker threads included), so a
// snapshot taken on one worker restores on another. The first caller's candidate becomes the key;
// `replace` sets it explicitly (setLuaSnapshotKey).
Napi::Value Addon::SnapshotKey(const Napi::CallbackInfo& info) {
  static std::mutex mu;
  static std::vector<uint8_t> key;
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throw InvalidArg(env, "snapshotKey(candidate, replace): candidate must be a Uint8Array");
  }
  Napi::Uint8Array c = info[0].As<Napi::Uint8Array>();
  bool replace = info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value();
  std::lock_guard<std::mutex> lock(mu);
  if (key.empty() || replace) key.assign(c.Data(), c.Data() + c.ByteLength());
  return Napi::Buffer<uint8_t>::Copy(env, key.data(), key.size());
}

}  // namespace hbr

using HbRuntimesAddon = hbr::Addon;
NODE_API_ADDON(HbRuntimesAddon)
