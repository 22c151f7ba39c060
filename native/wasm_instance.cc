#include "wasm_instance.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <cstdint>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "errors.h"
#include "wasm_engine.h"
#include "wasm_module.h"

namespace hbr {

static const napi_type_tag kWasmInstanceTag = {0x6862722d696e7374ULL, 0x616e63652d776d31ULL};
static constexpr uint64_t kUnlimitedFuel = static_cast<uint64_t>(INT64_MAX);
static constexpr uint64_t kWasmPage = 65536;

// ---- value conversion ---------------------------------------------------------------------------

// JS value -> wasm value of `kind`. Returns an error text, empty on success. Never throws.
static std::string ToWasm(const Napi::Value& v, wasm_valkind_t kind, wasmtime_val_t* out) {
  napi_env env = v.Env();
  napi_valuetype t;
  napi_typeof(env, v, &t);
  switch (kind) {
    case WASM_I32: {
      out->kind = WASMTIME_I32;
      if (t == napi_number) {
        double d;
        napi_get_value_double(env, v, &d);
        if (d != std::floor(d) || d < -2147483648.0 || d > 4294967295.0) return "an i32 (integer in [-2^31, 2^32))";
        out->of.i32 = static_cast<int32_t>(static_cast<int64_t>(d));
        return "";
      }
      if (t == napi_bigint) {
        int64_t i;
        bool lossless;
        napi_get_value_bigint_int64(env, v, &i, &lossless);
        if (!lossless || i < -2147483648LL || i > 4294967295LL) return "an i32 (integer in [-2^31, 2^32))";
        out->of.i32 = static_cast<int32_t>(i);
        return "";
      }
      return "an i32 (number)";
    }
    case WASM_I64: {
      out->kind = WASMTIME_I64;
      if (t == napi_bigint) {
        int64_t i;
        bool lossless;
        napi_get_value_bigint_int64(env, v, &i, &lossless);
        if (!lossless) {
          uint64_t u;
          napi_get_value_bigint_uint64(env, v, &u, &lossless);
          if (!lossless) return "an i64 (bigint in [-2^63, 2^64))";
          i = static_cast<int64_t>(u);
        }
        out->of.i64 = i;
        return "";
      }
      if (t == napi_number) {
        double d;
        napi_get_value_double(env, v, &d);
        if (d != std::floor(d) || std::fabs(d) > 9007199254740991.0) return "an i64 (bigint, or a safe integer number)";
        out->of.i64 = static_cast<int64_t>(d);
        return "";
      }
      return "an i64 (bigint or number)";
    }
    case WASM_F32:
    case WASM_F64: {
      double d;
      if (t == napi_number) {
        napi_get_value_double(env, v, &d);
      } else if (t == napi_bigint) {
        int64_t i;
        bool lossless;
        napi_get_value_bigint_int64(env, v, &i, &lossless);
        d = static_cast<double>(i);
      } else {
        return kind == WASM_F32 ? "an f32 (number)" : "an f64 (number)";
      }
      if (kind == WASM_F32) {
        out->kind = WASMTIME_F32;
        out->of.f32 = static_cast<float>(d);
      } else {
        out->kind = WASMTIME_F64;
        out->of.f64 = d;
      }
      return "";
    }
    default:
      return std::string("a value of unsupported type ") + ValKindName(kind);
  }
}

static Napi::Value FromWasm(Napi::Env env, const wasmtime_val_t& v) {
  switch (v.kind) {
    case WASMTIME_I32: return Napi::Number::New(env, v.of.i32);
    case WASMTIME_I64: return Napi::BigInt::New(env, v.of.i64);
    case WASMTIME_F32: return Napi::Number::New(env, v.of.f32);
    case WASMTIME_F64: return Napi::Number::New(env, v.of.f64);
    default: return env.Null();
  }
}

static std::vector<wasm_valkind_t> Kinds(const wasm_valtype_vec_t* vec) {
  std::vector<wasm_valkind_t> out(vec->size);
  for (size_t i = 0; i < vec->size; i++) out[i] = wasm_valtype_kind(vec->data[i]);
  return out;
}

static const char* TrapCodeName(wasmtime_trap_code_t code) {
  switch (code) {
    case WASMTIME_TRAP_CODE_STACK_OVERFLOW: return "stack_overflow";
    case WASMTIME_TRAP_CODE_MEMORY_OUT_OF_BOUNDS: return "memory_out_of_bounds";
    case WASMTIME_TRAP_CODE_HEAP_MISALIGNED: return "heap_misaligned";
    case WASMTIME_TRAP_CODE_TABLE_OUT_OF_BOUNDS: return "table_out_of_bounds";
    case WASMTIME_TRAP_CODE_INDIRECT_CALL_TO_NULL: return "indirect_call_to_null";
    case WASMTIME_TRAP_CODE_BAD_SIGNATURE: return "bad_signature";
    case WASMTIME_TRAP_CODE_INTEGER_OVERFLOW: return "integer_overflow";
    case WASMTIME_TRAP_CODE_INTEGER_DIVISION_BY_ZERO: return "integer_division_by_zero";
    case WASMTIME_TRAP_CODE_BAD_CONVERSION_TO_INTEGER: return "bad_conversion_to_integer";
    case WASMTIME_TRAP_CODE_UNREACHABLE_CODE_REACHED: return "unreachable";
    case WASMTIME_TRAP_CODE_INTERRUPT: return "interrupt";
    case WASMTIME_TRAP_CODE_OUT_OF_FUEL: return "out_of_fuel";
    case WASMTIME_TRAP_CODE_NULL_REFERENCE: return "null_reference";
    case WASMTIME_TRAP_CODE_ALLOCATION_TOO_LARGE: return "allocation_too_large";
    case WASMTIME_TRAP_CODE_UNHANDLED_TAG: return "unhandled_exception";
    default: return "trap";
  }
}

// ---- lifecycle ----------------------------------------------------------------------------------

void WasmInstance::Init(Napi::Env env, Napi::Object exports, Addon* addon) {
  Napi::Function ctor = DefineClass(env, "WasmInstance",
                                    {
                                        InstanceMethod("exportIndex", &WasmInstance::ExportIndex),
                                        InstanceMethod("call", &WasmInstance::Call),
                                        InstanceMethod("callTable", &WasmInstance::CallTable),
                                        InstanceMethod("memorySize", &WasmInstance::MemorySize),
                                        InstanceMethod("memoryGrow", &WasmInstance::MemoryGrow),
                                        InstanceMethod("memoryRead", &WasmInstance::MemoryRead),
                                        InstanceMethod("memoryWrite", &WasmInstance::MemoryWrite),
                                        InstanceMethod("readCString", &WasmInstance::ReadCString),
                                        InstanceMethod("hasMemory", &WasmInstance::HasMemory),
                                        InstanceMethod("snapshotSize", &WasmInstance::SnapshotSize),
                                        InstanceMethod("snapshot", &WasmInstance::Snapshot),
                                        InstanceMethod("restore", &WasmInstance::Restore),
                                        InstanceMethod("fuelConsumed", &WasmInstance::FuelConsumed),
                                        InstanceMethod("dispose", &WasmInstance::Dispose),
                                    });
  addon->wasm_instance_ctor = Napi::Persistent(ctor);
  exports.Set("WasmInstance", ctor);
}

WasmInstance::WasmInstance(const Napi::CallbackInfo& info) : Napi::ObjectWrap<WasmInstance>(info) {
  Napi::Env env = info.Env();
  WasmModule* module = WasmModule::FromValue(env, info[0]);
  if (module == nullptr) throw InvalidArg(env, "WasmInstance: the first argument must be a WasmModule");
  if (!module->IsOpen()) throw ClosedError(env, "WasmModule");
  if (!info[1].IsArray()) throw InvalidArg(env, "WasmInstance: imports must be an array");
  if (info[2].IsObject()) {
    Napi::Object opts = info[2].As<Napi::Object>();
    if (opts.Has("fuel") && !opts.Get("fuel").IsUndefined()) fuel_ = ToOffset(env, opts.Get("fuel"), "fuel");
  }
  const bool metered_engine = (module->EngineFlags() & kEngineFuel) != 0;
  if (fuel_ != 0 && !metered_engine) {
    throw InvalidArg(env, "a fuel budget needs a module compiled with fuel metering (compile option fuel: true)");
  }
  store_ = wasmtime_store_new(AddonOf(env)->Engine(module->EngineFlags()), nullptr, nullptr);
  if (info[2].IsObject()) {
    Napi::Value max = info[2].As<Napi::Object>().Get("maxMemoryBytes");
    if (!max.IsUndefined()) {
      uint64_t bytes = ToOffset(env, max, "maxMemoryBytes");
      wasmtime_store_limiter(store_, static_cast<int64_t>(bytes), -1, -1, -1, -1);
    }
  }
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
  Track(AddonOf(env));
}

void WasmInstance::Instantiate(Napi::Env env, WasmModule* module, Napi::Array imports) {
  wasmtime_context_t* ctx = wasmtime_store_context(store_);
  if (module->EngineFlags() & kEngineFuel) wasmtime_context_set_fuel(ctx, kUnlimitedFuel);
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
    imp->params = Kinds(wasm_functype_params(ft));
    imp->results = Kinds(wasm_functype_results(ft));
    externs[i].kind = WASMTIME_EXTERN_FUNC;
    wasmtime_func_new(ctx, ft, &WasmInstance::Trampoline, imp.get(), nullptr, &externs[i].of.func);
    imports_.push_back(std::move(imp));
  }
  wasm_importtype_vec_delete(&types);
  if (!link_error.empty()) {
    throw MakeError(env, "WasmError", link_error, {{"code", Napi::String::New(env, "ERR_WASM_LINK")}});
  }

  wasm_trap_t* trap = nullptr;
  env_ = env;
  depth_++;  // the start function may call imports
  wasmtime_error_t* error = wasmtime_instance_new(ctx, module->Module(), externs.data(), externs.size(), &instance_, &trap);
  depth_--;
  if (error != nullptr || trap != nullptr) {
    Napi::Error err = CallError(env, error, trap, "instantiation");
    if (error != nullptr || trap == nullptr) {
      throw err;
    }
    throw err;
  }

  // Index the exports: functions by name, memories and mutable value globals in export order.
  char* name = nullptr;
  size_t name_len = 0;
  wasmtime_extern_t item;
  for (size_t i = 0; wasmtime_instance_export_nth(ctx, &instance_, i, &name, &name_len, &item); i++) {
    std::string export_name(name, name_len);
    if (item.kind == WASMTIME_EXTERN_FUNC) {
      wasm_functype_t* ft = wasmtime_func_type(ctx, &item.of.func);
      ExportFunc f{item.of.func, Kinds(wasm_functype_params(ft)), Kinds(wasm_functype_results(ft)), true};
      wasm_functype_delete(ft);
      for (auto* kinds : {&f.params, &f.results}) {
        for (wasm_valkind_t k : *kinds) f.numeric = f.numeric && (k == WASM_I32 || k == WASM_I64 || k == WASM_F32 || k == WASM_F64);
      }
      func_index_.emplace(export_name, static_cast<int>(funcs_.size()));
      funcs_.push_back(std::move(f));
    } else if (item.kind == WASMTIME_EXTERN_MEMORY) {
      memories_.push_back({export_name, item.of.memory});
    } else if (item.kind == WASMTIME_EXTERN_TABLE) {
      tables_.push_back(item.of.table);
    } else if (item.kind == WASMTIME_EXTERN_GLOBAL) {
      wasm_globaltype_t* gt = wasmtime_global_type(ctx, &item.of.global);
      wasm_valkind_t kind = wasm_valtype_kind(wasm_globaltype_content(gt));
      bool is_mutable = wasm_globaltype_mutability(gt) == WASM_VAR;
      wasm_globaltype_delete(gt);
      if (is_mutable && (kind == WASM_I32 || kind == WASM_I64 || kind == WASM_F32 || kind == WASM_F64)) {
        globals_.push_back({export_name, item.of.global, kind});
      }
    }
    wasmtime_extern_delete(&item);
  }
}

WasmInstance::~WasmInstance() { Close(); }

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
  tables_.clear();
  globals_.clear();
  if (module_ != nullptr) module_->RemoveChild(this);
  module_ = nullptr;
  // Finalizer-safe: Reset only drops our reference count, it calls no JS.
  module_ref_.Reset();
  pending_error_.Reset();
  Untrack();
}

void WasmInstance::CheckOpen(Napi::Env env) const {
  if (store_ == nullptr || close_pending_) throw ClosedError(env, "WasmInstance");
}

Napi::Value WasmInstance::Dispose(const Napi::CallbackInfo& info) {
  Close();
  return info.Env().Undefined();
}

// ---- calls --------------------------------------------------------------------------------------

wasm_trap_t* WasmInstance::Trampoline(void* env, wasmtime_caller_t* caller, const wasmtime_val_t* args, size_t nargs,
                                      wasmtime_val_t* results, size_t nresults) {
  HostImport* imp = static_cast<HostImport*>(env);
  return imp->self->CallHost(imp, caller, args, results);
}

wasm_trap_t* WasmInstance::CallHost(HostImport* imp, wasmtime_caller_t* caller, const wasmtime_val_t* args,
                                    wasmtime_val_t* results) {
  // No C++ exception may unwind into Wasmtime's frames: everything is caught here.
  wasmtime_context_t* saved = caller_ctx_;
  caller_ctx_ = wasmtime_caller_context(caller);
  std::string failure;
  try {
    Napi::Env env(env_);
    Napi::HandleScope scope(env);
    std::vector<napi_value> argv(imp->params.size());
    for (size_t i = 0; i < imp->params.size(); i++) argv[i] = FromWasm(env, args[i]);
    Napi::Value ret = imp->fn.Value().Call(env.Undefined(), argv.size(), argv.data());
    const size_t n = imp->results.size();
    if (n == 1) {
      std::string want = ToWasm(ret, imp->results[0], &results[0]);
      if (!want.empty()) failure = "import " + imp->label + " returned an invalid value: expected " + want;
    } else if (n > 1) {
      if (!ret.IsArray() || ret.As<Napi::Array>().Length() != n) {
        failure = "import " + imp->label + " must return an array of " + std::to_string(n) + " values";
      } else {
        Napi::Array arr = ret.As<Napi::Array>();
        for (size_t i = 0; i < n && failure.empty(); i++) {
          std::string want = ToWasm(arr.Get(i), imp->results[i], &results[i]);
          if (!want.empty()) failure = "import " + imp->label + " result " + std::to_string(i) + ": expected " + want;
        }
      }
    }
    if (!failure.empty()) {
      pending_error_ = Napi::Persistent(static_cast<Napi::Value>(InvalidArg(env, failure).Value()));
    }
  } catch (const Napi::Error& e) {
    if (pending_error_.IsEmpty()) pending_error_ = Napi::Persistent(static_cast<Napi::Value>(e.Value()));
    failure = "import " + imp->label + " threw: " + e.Message();
  } catch (const std::exception& e) {
    failure = "import " + imp->label + " failed: " + e.what();
  } catch (...) {
    failure = "import " + imp->label + " failed";
  }
  caller_ctx_ = saved;
  if (failure.empty()) return nullptr;
  if (pending_failure_.empty()) {
    pending_label_ = imp->label;
    pending_failure_ = failure;
  }
  return wasmtime_trap_new(failure.data(), failure.size());
}

// The readable cause of a trap message, without the backtrace Wasmtime prepends.
static std::string TrapText(std::string msg) {
  const std::string marker = "Caused by:\n";
  size_t at = msg.rfind(marker);
  if (at != std::string::npos) msg = msg.substr(at + marker.size());
  size_t b = msg.find_first_not_of(" \n");
  size_t e = msg.find_last_not_of(" \n");
  return b == std::string::npos ? msg : msg.substr(b, e - b + 1);
}

Napi::Error WasmInstance::CallError(Napi::Env env, wasmtime_error_t* error, wasm_trap_t* trap, const std::string& what) {
  Napi::Value cause = env.Undefined();
  if (!pending_error_.IsEmpty()) {
    cause = pending_error_.Value();
    pending_error_.Reset();
  }
  std::string host_failure;
  host_failure.swap(pending_failure_);
  pending_label_.clear();
  if (error != nullptr) {
    std::string msg = TakeErrorMessage(error);
    if (!host_failure.empty()) {
      return MakeError(env, "WasmTrap", what + " trapped: " + host_failure,
                       {{"trapCode", Napi::String::New(env, "host")}, {"frames", Napi::Array::New(env)}, {"cause", cause}});
    }
    return MakeError(env, "WasmError", what + " failed: " + TrapText(msg),
                     {{"status", Napi::Number::New(env, 500)}, {"code", Napi::String::New(env, "ERR_WASM_CALL")}});
  }
  wasm_message_t message;
  wasm_trap_message(trap, &message);
  std::string msg(message.data, message.size > 0 && message.data[message.size - 1] == '\0' ? message.size - 1 : message.size);
  wasm_byte_vec_delete(&message);
  wasmtime_trap_code_t code;
  const bool has_code = wasmtime_trap_code(trap, &code);
  const char* code_name = has_code ? TrapCodeName(code) : (host_failure.empty() ? "trap" : "host");
  wasm_frame_vec_t trace;
  wasm_trap_trace(trap, &trace);
  Napi::Array frames = Napi::Array::New(env, trace.size);
  for (size_t i = 0; i < trace.size; i++) {
    const wasm_frame_t* f = trace.data[i];
    Napi::Object fo = Napi::Object::New(env);
    fo.Set("funcIndex", wasm_frame_func_index(f));
    const wasm_name_t* fname = wasmtime_frame_func_name(f);
    if (fname != nullptr) fo.Set("funcName", Napi::String::New(env, fname->data, fname->size));
    fo.Set("moduleOffset", static_cast<double>(wasm_frame_module_offset(f)));
    frames.Set(i, fo);
  }
  wasm_frame_vec_delete(&trace);
  wasm_trap_delete(trap);
  const bool fuel = has_code && code == WASMTIME_TRAP_CODE_OUT_OF_FUEL;
  std::string text = what + " trapped: " + (host_failure.empty() || has_code ? TrapText(msg) : host_failure);
  if (fuel) text = what + " ran out of fuel (budget " + std::to_string(fuel_) + ")";
  return MakeError(env, fuel ? "LimitError" : "WasmTrap", text,
                   {{"trapCode", Napi::String::New(env, code_name)},
                    {"frames", frames},
                    {"limit", fuel ? Napi::String::New(env, "fuel") : env.Undefined()},
                    {"cause", cause}});
}

Napi::Value WasmInstance::ExportIndex(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  if (!info[0].IsString()) throw InvalidArg(env, "exportIndex(name): name must be a string");
  auto it = func_index_.find(info[0].As<Napi::String>().Utf8Value());
  return Napi::Number::New(env, it == func_index_.end() ? -1 : it->second);
}

// Raw (unchecked-call) representation of a converted value.
static wasmtime_val_raw_t ToRaw(const wasmtime_val_t& v) {
  wasmtime_val_raw_t r;
  std::memset(&r, 0, sizeof r);
  switch (v.kind) {
    case WASMTIME_I32: r.i32 = v.of.i32; break;
    case WASMTIME_I64: r.i64 = v.of.i64; break;
    case WASMTIME_F32: r.f32 = v.of.f32; break;
    default: r.f64 = v.of.f64; break;
  }
  return r;
}

static Napi::Value FromRaw(Napi::Env env, const wasmtime_val_raw_t& r, wasm_valkind_t kind) {
  switch (kind) {
    case WASM_I32: return Napi::Number::New(env, r.i32);
    case WASM_I64: return Napi::BigInt::New(env, r.i64);
    case WASM_F32: return Napi::Number::New(env, r.f32);
    default: return Napi::Number::New(env, r.f64);
  }
}

// call(index, ...args) -> undefined (no result) | value (one result) | array (several).
// The arguments come spread (no JS array to walk) and a single result comes back bare: the TS
// wrapper puts it in an array, which is cheaper in JS than through N-API.
Napi::Value WasmInstance::Call(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  if (info.Length() < 1 || !info[0].IsNumber()) throw InvalidArg(env, "call(index, ...args): index must be a number");
  int32_t index = info[0].As<Napi::Number>().Int32Value();
  if (index < 0 || static_cast<size_t>(index) >= funcs_.size()) throw InvalidArg(env, "call: no such export function");
  return Invoke(info, funcs_[index], "call");
}

// callTable(index, ...args): calls element `index` of the first exported table (call_indirect from
// the host), e.g. for emscripten's invoke_* trampolines. Same conventions as call().
Napi::Value WasmInstance::CallTable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  if (tables_.empty()) throw InvalidArg(env, "callTable: the module exports no table");
  uint64_t index = ToOffset(env, info[0], "table index");
  wasmtime_context_t* ctx = Ctx();
  wasmtime_val_t item;
  if (!wasmtime_table_get(ctx, &tables_[0], index, &item)) {
    throw MakeError(env, "WasmTrap", "callTable: index " + std::to_string(index) + " is out of the table's bounds",
                    {{"trapCode", Napi::String::New(env, "table_out_of_bounds")}, {"frames", Napi::Array::New(env)}});
  }
  if (item.kind != WASMTIME_FUNCREF || wasmtime_funcref_is_null(&item.of.funcref)) {
    wasmtime_val_unroot(&item);
    throw MakeError(env, "WasmTrap", "callTable: element " + std::to_string(index) + " is not a function",
                    {{"trapCode", Napi::String::New(env, "indirect_call_to_null")}, {"frames", Napi::Array::New(env)}});
  }
  wasm_functype_t* ft = wasmtime_func_type(ctx, &item.of.funcref);
  ExportFunc f{item.of.funcref, Kinds(wasm_functype_params(ft)), Kinds(wasm_functype_results(ft)), true};
  wasm_functype_delete(ft);
  for (auto* kinds : {&f.params, &f.results}) {
    for (wasm_valkind_t k : *kinds) f.numeric = f.numeric && (k == WASM_I32 || k == WASM_I64 || k == WASM_F32 || k == WASM_F64);
  }
  return Invoke(info, f, "callTable");
}

// Converts info[1..] per `f`'s signature, calls it, converts the results back (see Call).
Napi::Value WasmInstance::Invoke(const Napi::CallbackInfo& info, const ExportFunc& f, const char* what) {
  Napi::Env env = info.Env();
  const size_t nargs = info.Length() - 1;
  if (nargs != f.params.size()) {
    throw InvalidArg(env, "expected " + std::to_string(f.params.size()) + " argument" +
                              (f.params.size() == 1 ? "" : "s") + ", got " + std::to_string(nargs));
  }
  const size_t nres = f.results.size();
  const size_t slots = std::max<size_t>(1, std::max(nargs, nres));
  wasmtime_val_t small[8];
  wasmtime_val_raw_t small_raw[8];
  std::vector<wasmtime_val_t> big;
  std::vector<wasmtime_val_raw_t> big_raw;
  wasmtime_val_t* vals = small;
  wasmtime_val_raw_t* raw = small_raw;
  if (slots > 8) {
    big.resize(slots);
    big_raw.resize(slots);
    vals = big.data();
    raw = big_raw.data();
  }
  for (size_t i = 0; i < nargs; i++) {
    std::string want = ToWasm(info[i + 1], f.params[i], &vals[i]);
    if (!want.empty()) throw InvalidArg(env, "argument " + std::to_string(i) + " must be " + want);
    raw[i] = ToRaw(vals[i]);
  }

  wasmtime_context_t* ctx = Ctx();
  const bool outermost = depth_ == 0;
  const bool metered = fuel_ != 0;
  if (outermost) {
    env_ = env;
    if (metered) wasmtime_context_set_fuel(ctx, fuel_);
  }
  wasm_trap_t* trap = nullptr;
  wasmtime_error_t* error = nullptr;
  depth_++;
  if (f.numeric) {
    error = wasmtime_func_call_unchecked(ctx, &f.func, raw, slots, &trap);
  } else {
    error = wasmtime_func_call(ctx, &f.func, vals, nargs, vals, nres, &trap);
  }
  depth_--;
  if (outermost && metered) {
    uint64_t left = 0;
    wasmtime_context_get_fuel(ctx, &left);
    fuel_consumed_ = fuel_ - left;
  }
  if (error != nullptr || trap != nullptr) {
    Napi::Error err = CallError(env, error, trap, what);
    if (outermost && close_pending_) {
      close_pending_ = false;
      Close();
    }
    throw err;
  }
  if (!pending_error_.IsEmpty()) pending_error_.Reset();  // an import failed but the guest recovered
  pending_failure_.clear();
  Napi::Value out;
  if (nres == 0) {
    out = env.Undefined();
  } else if (nres == 1) {
    out = f.numeric ? FromRaw(env, raw[0], f.results[0]) : FromWasm(env, vals[0]);
  } else {
    Napi::Array arr = Napi::Array::New(env, nres);
    for (size_t i = 0; i < nres; i++) arr.Set(i, f.numeric ? FromRaw(env, raw[i], f.results[i]) : FromWasm(env, vals[i]));
    out = arr;
  }
  if (outermost && close_pending_) {
    close_pending_ = false;
    Close();
  }
  return out;
}

Napi::Value WasmInstance::FuelConsumed(const Napi::CallbackInfo& info) {
  CheckOpen(info.Env());
  return Napi::BigInt::New(info.Env(), fuel_consumed_);
}

// ---- memory -------------------------------------------------------------------------------------

const WasmInstance::ExportMemory& WasmInstance::Memory(Napi::Env env) const {
  CheckOpen(env);
  if (memories_.empty()) {
    throw MakeError(env, "AoError", "the module exports no memory",
                    {{"status", Napi::Number::New(env, 400)}, {"code", Napi::String::New(env, "ERR_NO_MEMORY")}});
  }
  return memories_[0];
}

static Napi::Error OutOfBounds(Napi::Env env, const char* op, uint64_t ptr, uint64_t len, uint64_t size) {
  return MakeError(env, "AoError",
                   std::string(op) + " of " + std::to_string(len) + " bytes at " + std::to_string(ptr) +
                       " is out of bounds (memory size " + std::to_string(size) + ")",
                   {{"status", Napi::Number::New(env, 400)}, {"code", Napi::String::New(env, "ERR_OUT_OF_BOUNDS")}});
}

Napi::Value WasmInstance::HasMemory(const Napi::CallbackInfo& info) {
  CheckOpen(info.Env());
  return Napi::Boolean::New(info.Env(), !memories_.empty());
}

Napi::Value WasmInstance::MemorySize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const ExportMemory& m = Memory(env);
  return Napi::BigInt::New(env, static_cast<uint64_t>(wasmtime_memory_data_size(Ctx(), &m.memory)));
}

Napi::Value WasmInstance::MemoryGrow(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const ExportMemory& m = Memory(env);
  uint64_t delta = ToOffset(env, info[0], "pages");
  uint64_t prev = 0;
  wasmtime_error_t* error = wasmtime_memory_grow(Ctx(), &m.memory, delta, &prev);
  if (error != nullptr) {
    throw MakeError(env, "AoError", "memory.grow(" + std::to_string(delta) + ") failed: " + TakeErrorMessage(error),
                    {{"status", Napi::Number::New(env, 400)}, {"code", Napi::String::New(env, "ERR_MEMORY_GROW")}});
  }
  return Napi::BigInt::New(env, prev);
}

Napi::Value WasmInstance::MemoryRead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const ExportMemory& m = Memory(env);
  uint64_t ptr = ToOffset(env, info[0], "ptr");
  uint64_t len = ToOffset(env, info[1], "len");
  wasmtime_context_t* ctx = Ctx();
  uint64_t size = wasmtime_memory_data_size(ctx, &m.memory);  // current size: it changes after grow
  if (ptr > size || len > size - ptr) throw OutOfBounds(env, "read", ptr, len, size);
  return Napi::Buffer<uint8_t>::Copy(env, wasmtime_memory_data(ctx, &m.memory) + ptr, len);
}

Napi::Value WasmInstance::MemoryWrite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const ExportMemory& m = Memory(env);
  uint64_t ptr = ToOffset(env, info[0], "ptr");
  if (!info[1].IsTypedArray()) throw InvalidArg(env, "write(ptr, bytes): bytes must be a Uint8Array");
  Napi::TypedArray ta = info[1].As<Napi::TypedArray>();
  const uint8_t* src = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  uint64_t len = ta.ByteLength();
  wasmtime_context_t* ctx = Ctx();
  uint64_t size = wasmtime_memory_data_size(ctx, &m.memory);
  if (ptr > size || len > size - ptr) throw OutOfBounds(env, "write", ptr, len, size);
  std::memcpy(wasmtime_memory_data(ctx, &m.memory) + ptr, src, len);
  return env.Undefined();
}

Napi::Value WasmInstance::ReadCString(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const ExportMemory& m = Memory(env);
  uint64_t ptr = ToOffset(env, info[0], "ptr");
  wasmtime_context_t* ctx = Ctx();
  uint64_t size = wasmtime_memory_data_size(ctx, &m.memory);
  if (ptr >= size) throw OutOfBounds(env, "string read", ptr, 1, size);
  const uint8_t* base = wasmtime_memory_data(ctx, &m.memory) + ptr;
  const void* nul = std::memchr(base, 0, size - ptr);
  if (nul == nullptr) {
    throw MakeError(env, "AoError", "string at " + std::to_string(ptr) + " has no NUL terminator before the end of memory",
                    {{"status", Napi::Number::New(env, 400)}, {"code", Napi::String::New(env, "ERR_OUT_OF_BOUNDS")}});
  }
  return Napi::Buffer<uint8_t>::Copy(env, base, static_cast<const uint8_t*>(nul) - base);
}

// ---- snapshots ----------------------------------------------------------------------------------
//
// Layout (little-endian), version 1:
//   header  "HBWASM\0\0" | u32 version | u32 flags (0) | u8[32] module hash | u64 payload length
//           | u64 XXH3-64 of the payload
//   payload u32 memory count, then per memory: u32 name length, name, u64 byte length, bytes
//           u32 global count, then per global: u32 name length, name, u8 kind, u64 raw bits
// Memories and globals are the instance's exported ones (the TS layer exports every mutable
// global and memory of the image before compiling), so the blob is complete for the instance.

static constexpr char kMagic[8] = {'H', 'B', 'W', 'A', 'S', 'M', 0, 0};
static constexpr uint32_t kVersion = 1;
static constexpr size_t kHeaderSize = 8 + 4 + 4 + 32 + 8 + 8;

namespace {
struct Writer {
  uint8_t* p;
  void Bytes(const void* src, size_t n) {
    std::memcpy(p, src, n);
    p += n;
  }
  void U8(uint8_t v) { Bytes(&v, 1); }
  void U32(uint32_t v) { Bytes(&v, 4); }
  void U64(uint64_t v) { Bytes(&v, 8); }
};
struct Reader {
  const uint8_t* p;
  const uint8_t* end;
  bool ok = true;
  bool Has(uint64_t n) const { return ok && static_cast<uint64_t>(end - p) >= n; }
  void Bytes(void* dst, size_t n) {
    if (!Has(n)) {
      ok = false;
      return;
    }
    std::memcpy(dst, p, n);
    p += n;
  }
  uint8_t U8() { uint8_t v = 0; Bytes(&v, 1); return v; }
  uint32_t U32() { uint32_t v = 0; Bytes(&v, 4); return v; }
  uint64_t U64() { uint64_t v = 0; Bytes(&v, 8); return v; }
  std::string Str() {
    uint32_t n = U32();
    if (!Has(n)) { ok = false; return ""; }
    std::string s(reinterpret_cast<const char*>(p), n);
    p += n;
    return s;
  }
};
}  // namespace

static Napi::Uint8Array HashArg(Napi::Env env, const Napi::Value& v) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().ByteLength() != 32) {
    throw InvalidArg(env, "module hash must be a 32-byte Uint8Array");
  }
  return v.As<Napi::Uint8Array>();
}

// Asks the kernel to back a large, not yet touched region with transparent huge pages, so that
// filling it takes one page fault per 2 MiB instead of one per 4 KiB. On virtual machines a page
// fault costs microseconds, and first-touch faults were most of the time of snapshotting into a
// fresh buffer or restoring into a fresh instance. Only the 2 MiB-aligned interior is advised; a
// kernel without THP (or another OS) ignores it.
static void AdviseHugePages(void* data, size_t len) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  if (len < 2 * kHuge) return;
  uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  uintptr_t end = (reinterpret_cast<uintptr_t>(data) + len) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data;
  (void)len;
#endif
}

uint64_t WasmInstance::SnapshotBytes() {
  wasmtime_context_t* ctx = Ctx();
  uint64_t payload = 4 + 4;
  for (const ExportMemory& m : memories_) payload += 4 + m.name.size() + 8 + wasmtime_memory_data_size(ctx, &m.memory);
  for (const ExportGlobal& g : globals_) payload += 4 + g.name.size() + 1 + 8;
  return payload;
}

Napi::Value WasmInstance::SnapshotSize(const Napi::CallbackInfo& info) {
  CheckOpen(info.Env());
  return Napi::Number::New(info.Env(), static_cast<double>(kHeaderSize + SnapshotBytes()));
}

Napi::Value WasmInstance::Snapshot(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  Napi::Uint8Array hash = HashArg(env, info[0]);
  wasmtime_context_t* ctx = Ctx();
  const uint64_t payload = SnapshotBytes();
  // The caller passes the destination (JS allocates it uninitialised with Buffer.allocUnsafe, and
  // V8 owns and frees it); it must be exactly snapshotSize() bytes.
  const size_t total = kHeaderSize + payload;
  if (!info[1].IsBuffer() || info[1].As<Napi::Buffer<uint8_t>>().Length() != total) {
    throw InvalidArg(env, "snapshot(hash, into): into must be a Buffer of snapshotSize() bytes");
  }
  Napi::Buffer<uint8_t> buf = info[1].As<Napi::Buffer<uint8_t>>();
  AdviseHugePages(buf.Data(), total);
  Writer w{buf.Data()};
  w.Bytes(kMagic, 8);
  w.U32(kVersion);
  w.U32(0);
  w.Bytes(hash.Data(), 32);
  w.U64(payload);
  uint8_t* checksum_at = w.p;
  w.U64(0);
  uint8_t* payload_at = w.p;
  w.U32(static_cast<uint32_t>(memories_.size()));
  for (const ExportMemory& m : memories_) {
    uint64_t size = wasmtime_memory_data_size(ctx, &m.memory);
    w.U32(static_cast<uint32_t>(m.name.size()));
    w.Bytes(m.name.data(), m.name.size());
    w.U64(size);
    w.Bytes(wasmtime_memory_data(ctx, &m.memory), size);
  }
  w.U32(static_cast<uint32_t>(globals_.size()));
  for (const ExportGlobal& g : globals_) {
    wasmtime_val_t v;
    wasmtime_global_get(ctx, &g.global, &v);
    uint64_t bits = 0;
    switch (v.kind) {
      case WASMTIME_I32: bits = static_cast<uint32_t>(v.of.i32); break;
      case WASMTIME_I64: bits = static_cast<uint64_t>(v.of.i64); break;
      case WASMTIME_F32: std::memcpy(&bits, &v.of.f32, 4); break;
      case WASMTIME_F64: std::memcpy(&bits, &v.of.f64, 8); break;
      default: break;
    }
    w.U32(static_cast<uint32_t>(g.name.size()));
    w.Bytes(g.name.data(), g.name.size());
    w.U8(static_cast<uint8_t>(g.kind));
    w.U64(bits);
  }
  uint64_t sum = Checksum64(payload_at, payload);
  std::memcpy(checksum_at, &sum, 8);
  return buf;
}

Napi::Value WasmInstance::Restore(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  if (!info[0].IsTypedArray()) throw InvalidArg(env, "restore(snapshot): snapshot must be a Uint8Array");
  Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
  Napi::Uint8Array hash = HashArg(env, info[1]);
  const uint8_t* data = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  const size_t len = ta.ByteLength();
  auto fail = [&](const std::string& why) {
    return MakeError(env, "SnapshotError", "invalid WASM snapshot: " + why);
  };
  if (len < 8 || std::memcmp(data, kMagic, 6) != 0) {
    if (len >= 6 && std::memcmp(data, "HBLUA", 5) == 0) throw fail("this is a Lua snapshot, not a WASM one");
    throw fail("bad magic (not an hb-runtimes WASM snapshot)");
  }
  if (len < kHeaderSize) throw fail("truncated header");
  Reader r{data + 8, data + len};
  uint32_t version = r.U32();
  if (version != kVersion) throw fail("unsupported version " + std::to_string(version));
  r.U32();
  if (std::memcmp(r.p, hash.Data(), 32) != 0) throw fail("it was taken from a different module image");
  r.p += 32;
  uint64_t payload = r.U64();
  uint64_t sum = r.U64();
  if (static_cast<uint64_t>(r.end - r.p) != payload) {
    throw fail(static_cast<uint64_t>(r.end - r.p) < payload ? "truncated" : "trailing bytes after the payload");
  }
  if (Checksum64(r.p, payload) != sum) throw fail("checksum mismatch");

  // Parse and check everything against this instance before touching it.
  wasmtime_context_t* ctx = Ctx();
  struct MemPlan { const ExportMemory* m; const uint8_t* bytes; uint64_t size; };
  struct GlobalPlan { const ExportGlobal* g; uint64_t bits; };
  std::vector<MemPlan> mems;
  std::vector<GlobalPlan> globals;
  uint32_t nmem = r.U32();
  if (r.ok && nmem != memories_.size()) throw fail("it has " + std::to_string(nmem) + " memories, the instance " + std::to_string(memories_.size()));
  for (uint32_t i = 0; i < nmem && r.ok; i++) {
    std::string name = r.Str();
    uint64_t size = r.U64();
    if (!r.Has(size)) break;
    const ExportMemory& m = memories_[i];
    if (name != m.name) throw fail("memory '" + name + "' does not match the instance's '" + m.name + "'");
    if (size % kWasmPage != 0) throw fail("memory size is not a whole number of pages");
    uint64_t current = wasmtime_memory_data_size(ctx, &m.memory);
    if (size < current) {
      throw fail("memory '" + name + "' is " + std::to_string(size) + " bytes but the instance already has " +
                 std::to_string(current) + " (restore into a fresh instance)");
    }
    mems.push_back({&m, r.p, size});
    r.p += size;
  }
  uint32_t nglob = r.U32();
  if (r.ok && nglob != globals_.size()) throw fail("it has " + std::to_string(nglob) + " globals, the instance " + std::to_string(globals_.size()));
  for (uint32_t i = 0; i < nglob && r.ok; i++) {
    std::string name = r.Str();
    uint8_t kind = r.U8();
    uint64_t bits = r.U64();
    if (!r.ok) break;
    const ExportGlobal& g = globals_[i];
    if (name != g.name || kind != g.kind) throw fail("global '" + name + "' does not match the instance");
    globals.push_back({&g, bits});
  }
  if (!r.ok || r.p != r.end) throw fail("malformed payload");

  // Apply: grow first (the only step that can fail), then copy.
  for (const MemPlan& p : mems) {
    uint64_t current = wasmtime_memory_data_size(ctx, &p.m->memory);
    if (p.size > current) {
      uint64_t prev = 0;
      wasmtime_error_t* error = wasmtime_memory_grow(ctx, &p.m->memory, (p.size - current) / kWasmPage, &prev);
      if (error != nullptr) throw fail("cannot grow memory '" + p.m->name + "': " + TakeErrorMessage(error));
    }
  }
  for (const MemPlan& p : mems) {
    uint8_t* dst = wasmtime_memory_data(ctx, &p.m->memory);
    AdviseHugePages(dst, p.size);
    std::memcpy(dst, p.bytes, p.size);
  }
  for (const GlobalPlan& p : globals) {
    wasmtime_val_t v;
    switch (p.g->kind) {
      case WASM_I32: v.kind = WASMTIME_I32; v.of.i32 = static_cast<int32_t>(static_cast<uint32_t>(p.bits)); break;
      case WASM_I64: v.kind = WASMTIME_I64; v.of.i64 = static_cast<int64_t>(p.bits); break;
      case WASM_F32: v.kind = WASMTIME_F32; std::memcpy(&v.of.f32, &p.bits, 4); break;
      default: v.kind = WASMTIME_F64; std::memcpy(&v.of.f64, &p.bits, 8); break;
    }
    wasmtime_error_t* error = wasmtime_global_set(ctx, &p.g->global, &v);
    if (error != nullptr) throw fail("cannot set global '" + p.g->name + "': " + TakeErrorMessage(error));
  }
  return env.Undefined();
}

}  // namespace hbr
