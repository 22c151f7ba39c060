// WasmInstance, part 1: lifecycle and instantiation (see wasm_instance.h for the other parts).
#include "wasm_instance.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "errors.h"
#include "wasm_engine.h"
#include "wasm_module.h"
#include "wasm_values.h"

namespace hbr {

static const napi_type_tag kWasmInstanceTag = {0x6862722d696e7374ULL, 0x616e63652d776d31ULL};
static constexpr uint64_t kUnlimitedFuel = static_cast<uint64_t>(INT64_MAX);

void WasmInstance::Init(Napi::Env env, Napi::Object exports, Addon* addon) {
  Napi::Function ctor = DefineClass(env, "WasmInstance",
                                    {
                                        InstanceMethod("exportIndex", &WasmInstance::ExportIndex),
                                        InstanceMethod("call", &WasmInstance::Call),
                                        InstanceMethod("caller", &WasmInstance::Caller),
                                        InstanceMethod("callLimited", &WasmInstance::CallLimited),
                                        InstanceMethod("callTable", &WasmInstance::CallTable),
                                        InstanceMethod("callTableLimited", &WasmInstance::CallTableLimited),
                                        InstanceMethod("memorySize", &WasmInstance::MemorySize),
                                        InstanceMethod("memoryGrow", &WasmInstance::MemoryGrow),
                                        InstanceMethod("memoryRead", &WasmInstance::MemoryRead),
                                        InstanceMethod("memoryWrite", &WasmInstance::MemoryWrite),
                                        InstanceMethod("readCString", &WasmInstance::ReadCString),
                                        InstanceMethod("memoryView", &WasmInstance::MemoryView),
                                        InstanceMethod("memoryCopy", &WasmInstance::MemoryCopy),
                                        InstanceMethod("memoryIsCopy", &WasmInstance::MemoryIsCopy),
                                        InstanceMethod("hasMemory", &WasmInstance::HasMemory),
                                        InstanceMethod("snapshotSize", &WasmInstance::SnapshotSize),
                                        InstanceMethod("snapshot", &WasmInstance::Snapshot),
                                        InstanceMethod("restore", &WasmInstance::Restore),
                                        InstanceMethod("snapshotDelta", &WasmInstance::SnapshotDelta),
                                        InstanceMethod("snapshotToFd", &WasmInstance::SnapshotToFd),
                                        InstanceMethod("restoreFromFd", &WasmInstance::RestoreFromFd),
                                        InstanceMethod("fuelConsumed", &WasmInstance::FuelConsumed),
                                        InstanceMethod("dispose", &WasmInstance::Dispose),
                                    });
  addon->wasm_instance_ctor = Napi::Persistent(ctor);
  exports.Set("WasmInstance", ctor);
}

// A cap from a JS number: a non-negative integer, or Infinity for none (UINT64_MAX).
static uint64_t CapArg(Napi::Env env, const Napi::Value& v, const char* what) {
  if (v.IsNumber() && std::isinf(v.As<Napi::Number>().DoubleValue()) && v.As<Napi::Number>().DoubleValue() > 0) {
    return UINT64_MAX;
  }
  return ToOffset(env, v, what);
}

WasmInstance::WasmInstance(const Napi::CallbackInfo& info) : Napi::ObjectWrap<WasmInstance>(info) {
  Napi::Env env = info.Env();
  WasmModule* module = WasmModule::FromValue(env, info[0]);
  if (module == nullptr) throw InvalidArg(env, "WasmInstance: the first argument must be a WasmModule");
  if (!module->IsOpen()) throw ClosedError(env, "WasmModule");
  if (!info[1].IsArray()) throw InvalidArg(env, "WasmInstance: imports must be an array");
  // Defaults for direct use of the addon; the TS layer always passes every limit (src/limits.ts).
  limits_ = {0, kDefaultMemoryBytes, kDefaultTableElements, 0, 0, 0, 0};
  if (info[2].IsObject()) {
    Napi::Object opts = info[2].As<Napi::Object>();
    Napi::Value v = opts.Get("fuel");
    if (!v.IsUndefined()) fuel_ = ToOffset(env, v, "fuel");
    v = opts.Get("maxMemoryBytes");
    if (!v.IsUndefined()) limits_.max_memory_bytes = std::max<uint64_t>(1, CapArg(env, v, "maxMemoryBytes"));
    v = opts.Get("maxTableElements");
    if (!v.IsUndefined()) limits_.max_table_elements = CapArg(env, v, "maxTableElements");
    v = opts.Get("timeLimit");
    if (!v.IsUndefined()) time_limit_ms_ = TimeLimitArg(env, v);
    v = opts.Get("trackWrites");
    if (v.IsBoolean()) {
      track_always_ = v.As<Napi::Boolean>().Value();
      track_never_ = !track_always_;
      track_writes_ = track_always_;
    }
  }
  const bool metered_engine = (module->EngineFlags() & kEngineFuel) != 0;
  if (fuel_ != 0 && !metered_engine) {
    throw InvalidArg(env, "a fuel budget needs a module compiled with fuel metering (compile option fuel: true)");
  }
  interruptible_ = (module->EngineFlags() & kEngineNoEpoch) == 0;
  if (!interruptible_ && !std::isinf(time_limit_ms_)) {
    throw InvalidArg(env, "a time limit needs a module compiled with interruptible: true (the default)");
  }
  Addon* addon = AddonOf(env);
  ticker_ = &addon->ticker;
  store_ = wasmtime_store_new(addon->Engine(module->EngineFlags()), nullptr, nullptr);
  hb_store_limiter(store_, &limits_);
  try {
    Instantiate(env, module, info[1].As<Napi::Array>());
  } catch (...) {
    ReleaseStore();
    throw;
  }
  module_ = module;
  module_ref_ = Napi::Persistent(info[0].As<Napi::Object>());
  module->AddChild(this);
  info.This().As<Napi::Object>().TypeTag(&kWasmInstanceTag);
  Track(addon);
}

void WasmInstance::Instantiate(Napi::Env env, WasmModule* module, Napi::Array imports) {
  wasmtime_context_t* ctx = wasmtime_store_context(store_);
  wasm_importtype_vec_t types;
  wasmtime_module_imports(module->Module(), &types);
  std::vector<wasmtime_extern_t> externs(types.size);
  std::string link_error;
  for (size_t i = 0; i < types.size && link_error.empty(); i++) {
    const wasm_importtype_t* it = types.data[i];
    const wasm_name_t* mod = wasm_importtype_module(it);
    const wasm_name_t* name = wasm_importtype_name(it);
    std::string label = std::string(mod->data, mod->size) + "." + std::string(name->data, name->size);
    const wasm_externtype_t* et = wasm_importtype_type(it);
    if (wasm_externtype_kind(et) != WASM_EXTERN_FUNC) {
      link_error = "unsupported import " + label + ": only function imports can be provided";
      break;
    }
    Napi::Value fn = i < imports.Length() ? imports.Get(i) : env.Undefined();
    if (!fn.IsFunction()) {
      link_error = "unknown import: " + label + " has not been defined";
      break;
    }
    const wasm_functype_t* ft = wasm_externtype_as_functype_const(et);
    auto imp = std::make_unique<HostImport>();
    imp->self = this;
    imp->fn = Napi::Persistent(fn.As<Napi::Function>());
    imp->label = label;
    imp->sig = SignatureOf(ft);
    externs[i].kind = WASMTIME_EXTERN_FUNC;
    wasmtime_func_new(ctx, ft, &WasmInstance::Trampoline, imp.get(), nullptr, &externs[i].of.func);
    imports_.push_back(std::move(imp));
  }
  wasm_importtype_vec_delete(&types);
  if (!link_error.empty()) {
    throw MakeError(env, "WasmError", link_error, {{"code", Napi::String::New(env, "ERR_WASM_LINK")}});
  }

  // Instantiation (with the start function) runs under the same limits as an outermost call: the
  // time limit, the fuel budget and the memory and table caps.
  wasm_trap_t* trap = nullptr;
  env_ = env;
  const bool metered = (module->EngineFlags() & kEngineFuel) != 0;
  if (metered) DiscardError(wasmtime_context_set_fuel(ctx, fuel_ != 0 ? fuel_ : kUnlimitedFuel));
  BeginOutermost(ctx, time_limit_ms_);
  depth_++;  // the start function may call imports
  wasmtime_error_t* error = wasmtime_instance_new(ctx, module->Module(), externs.data(), externs.size(), &instance_, &trap);
  depth_--;
  EndOutermost();
  if (metered && fuel_ != 0) fuel_consumed_ = fuel_ - FuelLeft(ctx);
  if (error != nullptr || trap != nullptr) {
    throw CallError(env, error, trap, "instantiation");
  }

  // Index the exports: functions by name, memories and mutable value globals in export order.
  char* name = nullptr;
  size_t name_len = 0;
  wasmtime_extern_t item;
  for (size_t i = 0; wasmtime_instance_export_nth(ctx, &instance_, i, &name, &name_len, &item); i++) {
    std::string export_name(name, name_len);
    if (item.kind == WASMTIME_EXTERN_FUNC) {
      wasm_functype_t* ft = wasmtime_func_type(ctx, &item.of.func);
      ExportFunc f{item.of.func, SignatureOf(ft), "function '" + export_name + "'"};
      wasm_functype_delete(ft);
      func_index_.emplace(export_name, static_cast<int>(funcs_.size()));
      funcs_.push_back(std::move(f));
    } else if (item.kind == WASMTIME_EXTERN_MEMORY) {
      memories_.push_back({export_name, item.of.memory});
      trackers_.emplace_back();
    } else if (item.kind == WASMTIME_EXTERN_TABLE) {
      tables_.push_back(item.of.table);
    } else if (item.kind == WASMTIME_EXTERN_GLOBAL) {
      wasm_globaltype_t* gt = wasmtime_global_type(ctx, &item.of.global);
      wasm_valkind_t kind = ValKindOf(wasm_globaltype_content(gt));
      bool is_mutable = wasm_globaltype_mutability(gt) == WASM_VAR;
      if (is_mutable && kind != kRefKind) {
        globals_.push_back({export_name, item.of.global, kind});
      } else if (is_mutable && uncapturable_.empty()) {
        uncapturable_ = "global '" + export_name + "' is a mutable " + ValTypeName(wasm_globaltype_content(gt));
      }
      wasm_globaltype_delete(gt);
    }
    wasmtime_extern_delete(&item);
  }
}

WasmInstance::~WasmInstance() {
  Close();
  ReleaseBoundLink(caller_link_);
}

void WasmInstance::ReleaseStore() {
  if (store_ != nullptr) wasmtime_store_delete(store_);
  store_ = nullptr;
  imports_.clear();  // after the store: no trampoline can run any more
}

void WasmInstance::Close() {
  if (depth_ > 0) {
    close_pending_ = true;
    return;
  }
  ReleaseStore();
  funcs_.clear();
  func_index_.clear();
  memories_.clear();
  trackers_.clear();
  tables_.clear();
  globals_.clear();
  if (module_ != nullptr) module_->RemoveChild(this);
  module_ = nullptr;
  // Finalizer-safe: Reset only drops our reference count, it calls no JS.
  module_ref_.Reset();
  pending_error_.Reset();
  if (view_ != nullptr && env_for_view_ != nullptr) napi_delete_reference(env_for_view_, view_);
  view_ = nullptr;
  if (cow_copy_ != nullptr && env_for_view_ != nullptr) napi_delete_reference(env_for_view_, cow_copy_);
  cow_copy_ = nullptr;
  cow_.Release();  // copies keep the file they map
  Untrack();
}

void WasmInstance::CheckOpen(Napi::Env env) const {
  if (store_ == nullptr || close_pending_) throw ClosedError(env, kHandleName);
}

Napi::Value WasmInstance::Dispose(const Napi::CallbackInfo& info) {
  if (depth_ == 0) RefreshView(info.Env(), true);
  Close();
  return info.Env().Undefined();
}

}  // namespace hbr
