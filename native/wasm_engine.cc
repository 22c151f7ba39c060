#include "wasm_engine.h"

#include <cmath>
#include <stdexcept>

#include "errors.h"

namespace hbr {

wasm_engine_t* NewEngine(uint32_t flags) {
  wasm_config_t* config = wasm_config_new();
  if (config == nullptr) throw std::runtime_error("wasm_config_new failed");
  wasmtime_config_strategy_set(config, WASMTIME_STRATEGY_CRANELIFT);
  wasmtime_config_cranelift_opt_level_set(config, WASMTIME_OPT_LEVEL_SPEED);
  wasmtime_config_wasm_memory64_set(config, true);
  wasmtime_config_wasm_multi_value_set(config, true);
  wasmtime_config_wasm_bulk_memory_set(config, true);
  wasmtime_config_wasm_reference_types_set(config, true);
  wasmtime_config_wasm_gc_set(config, true);
  wasmtime_config_wasm_function_references_set(config, true);
  wasmtime_config_wasm_exceptions_set(config, true);
  // Floats: NaN bits would otherwise depend on the CPU and the compiler's choices.
  wasmtime_config_cranelift_nan_canonicalization_set(config, true);
  wasmtime_config_consume_fuel_set(config, (flags & kEngineFuel) != 0);
  if (flags & kEngineNoSpectre) {
    wasmtime_config_cranelift_flag_set(config, "enable_heap_access_spectre_mitigation", "false");
    wasmtime_config_cranelift_flag_set(config, "enable_table_access_spectre_mitigation", "false");
  }
  wasm_engine_t* engine = wasm_engine_new_with_config(config);  // takes ownership of config
  if (engine == nullptr) throw std::runtime_error("wasm_engine_new_with_config failed");
  return engine;
}

const char* ValKindName(wasm_valkind_t kind) {
  switch (kind) {
    case WASM_I32: return "i32";
    case WASM_I64: return "i64";
    case WASM_F32: return "f32";
    case WASM_F64: return "f64";
    case WASMTIME_V128: return "v128";
    case WASM_EXTERNREF: return "externref";
    case WASM_FUNCREF: return "funcref";
    default: return "anyref";
  }
}

static Napi::Array ValTypesToJs(Napi::Env env, const wasm_valtype_vec_t* vec) {
  Napi::Array out = Napi::Array::New(env, vec->size);
  for (size_t i = 0; i < vec->size; i++) out.Set(i, ValKindName(wasm_valtype_kind(vec->data[i])));
  return out;
}

Napi::Object FuncTypeToJs(Napi::Env env, const wasm_functype_t* type) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("params", ValTypesToJs(env, wasm_functype_params(type)));
  o.Set("results", ValTypesToJs(env, wasm_functype_results(type)));
  return o;
}

static Napi::String NameToJs(Napi::Env env, const wasm_name_t* name) {
  return Napi::String::New(env, name->data, name->size);
}

Napi::Object ExternTypeToJs(Napi::Env env, const wasm_name_t* module, const wasm_name_t* name,
                            const wasm_externtype_t* type) {
  Napi::Object o = Napi::Object::New(env);
  if (module != nullptr) o.Set("module", NameToJs(env, module));
  o.Set("name", NameToJs(env, name));
  switch (wasm_externtype_kind(type)) {
    case WASM_EXTERN_FUNC:
      o.Set("kind", "func");
      o.Set("type", FuncTypeToJs(env, wasm_externtype_as_functype_const(type)));
      break;
    case WASM_EXTERN_MEMORY: {
      const wasm_memorytype_t* mt = wasm_externtype_as_memorytype_const(type);
      Napi::Object d = Napi::Object::New(env);
      d.Set("min", Napi::BigInt::New(env, wasmtime_memorytype_minimum(mt)));
      uint64_t max = 0;
      if (wasmtime_memorytype_maximum(mt, &max)) d.Set("max", Napi::BigInt::New(env, max));
      d.Set("is64", wasmtime_memorytype_is64(mt));
      o.Set("kind", "memory");
      o.Set("detail", d);
      break;
    }
    case WASM_EXTERN_GLOBAL: {
      const wasm_globaltype_t* gt = wasm_externtype_as_globaltype_const(type);
      Napi::Object d = Napi::Object::New(env);
      d.Set("content", ValKindName(wasm_valtype_kind(wasm_globaltype_content(gt))));
      d.Set("mutable", wasm_globaltype_mutability(gt) == WASM_VAR);
      o.Set("kind", "global");
      o.Set("detail", d);
      break;
    }
    case WASM_EXTERN_TABLE:
      o.Set("kind", "table");
      break;
    default:
      o.Set("kind", "tag");
      break;
  }
  return o;
}

std::string TakeErrorMessage(wasmtime_error_t* error) {
  wasm_message_t msg;
  wasmtime_error_message(error, &msg);
  std::string out(msg.data, msg.size);
  wasm_byte_vec_delete(&msg);
  wasmtime_error_delete(error);
  return out;
}

uint64_t ToOffset(Napi::Env env, const Napi::Value& v, const char* what) {
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= 0) || d != std::floor(d) || d > 9007199254740991.0) {
      throw InvalidArg(env, std::string(what) + " must be a non-negative integer");
    }
    return static_cast<uint64_t>(d);
  }
  if (v.IsBigInt()) {
    bool lossless = true;
    uint64_t u = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) throw InvalidArg(env, std::string(what) + " must be a non-negative 64-bit integer");
    return u;
  }
  throw InvalidArg(env, std::string(what) + " must be a number or a bigint");
}

}  // namespace hbr
