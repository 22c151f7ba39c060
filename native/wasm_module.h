// WasmModule: compiled code (wasmtime_module_t) of one image. Parent of its instances: closing
// a module closes the instances created from it first.
#pragma once

#include <napi.h>
#include <wasmtime.h>

#include <vector>

#include "addon.h"

namespace hbr {

class WasmInstance;

class WasmModule : public Napi::ObjectWrap<WasmModule>, public Closable {
 public:
  static void Init(Napi::Env env, Napi::Object exports, Addon* addon);
  // The WasmModule wrapped by `value`, or nullptr when it is not one (type tag checked).
  static WasmModule* FromValue(Napi::Env env, Napi::Value value);

  explicit WasmModule(const Napi::CallbackInfo& info);
  ~WasmModule() override;
  void Close() override;
  Rank CloseRank() const override { return Rank::kParent; }

  // Precondition: open.
  const wasmtime_module_t* Module() const { return module_; }
  bool IsOpen() const { return module_ != nullptr; }
  uint32_t EngineFlags() const { return flags_; }
  void AddChild(WasmInstance* child) { children_.push_back(child); }
  void RemoveChild(WasmInstance* child);

 private:
  static Napi::Value Compile(const Napi::CallbackInfo& info);
  static Napi::Value Deserialize(const Napi::CallbackInfo& info);
  static Napi::Value DeserializeFile(const Napi::CallbackInfo& info);
  // Wraps a freshly created module (takes ownership) in a new JS object.
  static Napi::Value Wrap(Napi::Env env, wasmtime_module_t* module, uint32_t flags);

  Napi::Value Serialize(const Napi::CallbackInfo& info);
  Napi::Value Imports(const Napi::CallbackInfo& info);
  Napi::Value Exports(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  void CheckOpen(Napi::Env env) const;

  wasmtime_module_t* module_ = nullptr;
  uint32_t flags_ = 0;  // the engine profile the code was compiled for
  std::vector<WasmInstance*> children_;
};

}  // namespace hbr
