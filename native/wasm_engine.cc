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
  wasmtime_config_epoch_interruption_set(config, (flags & kEngineNoEpoch) == 0);
  if (flags & kEngineNoSpectre) {
    wasmtime_config_cranelift_flag_set(config, "enable_heap_access_spectre_mitigation", "false");
    wasmtime_config_cranelift_flag_set(config, "enable_table_access_spectre_mitigation", "false");
  }
  wasm_engine_t* engine = wasm_engine_new_with_config(config);  // takes ownership of config
  if (engine == nullptr) throw std::runtime_error("wasm_engine_new_with_config failed");
  return engine;
}

wasm_valkind_t ValKindOf(const wasm_valtype_t* type) {
  wasmtime_valtype_t t;
  wasmtime_valtype_new(type, &t);
  wasm_valkind_t kind = kRefKind;
  switch (t.kind) {
    case WASMTIME_VALTYPE_KIND_I32: kind = WASM_I32; break;
    case WASMTIME_VALTYPE_KIND_I64: kind = WASM_I64; break;
    case WASMTIME_VALTYPE_KIND_F32: kind = WASM_F32; break;
    case WASMTIME_VALTYPE_KIND_F64: kind = WASM_F64; break;
    case WASMTIME_VALTYPE_KIND_V128: kind = WASMTIME_V128; break;
    default: break;
  }
  wasmtime_valtype_delete(&t);
  return kind;
}

// The heap type's name, and whether `(ref null X)` has a short form ("funcref", "nullref", ...).
static const char* HeapTypeName(wasmtime_heaptype_kind_t kind, const char** nullable_short) {
  switch (kind) {
    case WASMTIME_HEAPTYPE_KIND_EXTERN: *nullable_short = "externref"; return "extern";
    case WASMTIME_HEAPTYPE_KIND_NOEXTERN: *nullable_short = "nullexternref"; return "noextern";
    case WASMTIME_HEAPTYPE_KIND_FUNC: *nullable_short = "funcref"; return "func";
    case WASMTIME_HEAPTYPE_KIND_CONCRETE_FUNC: return "$func";
    case WASMTIME_HEAPTYPE_KIND_NOFUNC: *nullable_short = "nullfuncref"; return "nofunc";
    case WASMTIME_HEAPTYPE_KIND_ANY: *nullable_short = "anyref"; return "any";
    case WASMTIME_HEAPTYPE_KIND_NONE: *nullable_short = "nullref"; return "none";
    case WASMTIME_HEAPTYPE_KIND_EQ: *nullable_short = "eqref"; return "eq";
    case WASMTIME_HEAPTYPE_KIND_I31: *nullable_short = "i31ref"; return "i31";
    case WASMTIME_HEAPTYPE_KIND_ARRAY: *nullable_short = "arrayref"; return "array";
    case WASMTIME_HEAPTYPE_KIND_CONCRETE_ARRAY: return "$array";
    case WASMTIME_HEAPTYPE_KIND_STRUCT: *nullable_short = "structref"; return "struct";
    case WASMTIME_HEAPTYPE_KIND_CONCRETE_STRUCT: return "$struct";
    case WASMTIME_HEAPTYPE_KIND_EXN: *nullable_short = "exnref"; return "exn";
    case WASMTIME_HEAPTYPE_KIND_CONCRETE_EXN: return "$exn";
    case WASMTIME_HEAPTYPE_KIND_NOEXN: *nullable_short = "nullexnref"; return "noexn";
    default: return "?";
  }
}

std::string ValTypeName(const wasm_valtype_t* type) {
  wasmtime_valtype_t t;
  wasmtime_valtype_new(type, &t);
  std::string name;
  switch (t.kind) {
    case WASMTIME_VALTYPE_KIND_I32: name = "i32"; break;
    case WASMTIME_VALTYPE_KIND_I64: name = "i64"; break;
    case WASMTIME_VALTYPE_KIND_F32: name = "f32"; break;
    case WASMTIME_VALTYPE_KIND_F64: name = "f64"; break;
    case WASMTIME_VALTYPE_KIND_V128: name = "v128"; break;
    default: {
      const char* nullable_short = nullptr;
      const char* heap = HeapTypeName(t.reftype.heaptype.kind, &nullable_short);
      if (t.reftype.nullable && nullable_short != nullptr) {
        name = nullable_short;
      } else {
        name = std::string(t.reftype.nullable ? "(ref null " : "(ref ") + heap + ")";
      }
      break;
    }
  }
  wasmtime_valtype_delete(&t);
  return name;
}

static Napi::Array ValTypesToJs(Napi::Env env, const wasm_valtype_vec_t* vec) {
  Napi::Array out = Napi::Array::New(env, vec->size);
  for (size_t i = 0; i < vec->size; i++) out.Set(i, ValTypeName(vec->data[i]));
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
      d.Set("content", ValTypeName(wasm_globaltype_content(gt)));
      d.Set("mutable", wasm_globaltype_mutability(gt) == WASM_VAR);
      o.Set("kind", "global");
      o.Set("detail", d);
      break;
    }
    case WASM_EXTERN_TABLE: {
      // Not wasm_tabletype_limits(): it panics on a 64-bit table whose limits exceed 32 bits.
      const wasm_tabletype_t* tt = wasm_externtype_as_tabletype_const(type);
      Napi::Object d = Napi::Object::New(env);
      d.Set("element", ValTypeName(wasm_tabletype_element(tt)));
      o.Set("kind", "table");
      o.Set("detail", d);
      break;
    }
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

std::string FormatMs(double ms) {
  std::string s = std::to_string(ms);
  s.erase(s.find_last_not_of('0') + 1);
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

double TimeLimitArg(Napi::Env env, const Napi::Value& v) {
  double ms = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : std::nan("");
  if (!(ms > 0)) throw InvalidArg(env, "timeLimit must be a positive number of milliseconds, or Infinity");
  return ms > 1e12 ? INFINITY : ms;
}

}  // namespace hbr
