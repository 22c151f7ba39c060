#include "wasm_values.h"

#include <cmath>
#include <tuple>

#include "wasm_engine.h"

namespace hbr {

const char* ToWasm(const Napi::Value& v, wasm_valkind_t kind, wasmtime_val_t* out) {
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
        return nullptr;
      }
      if (t == napi_bigint) {
        int64_t i;
        bool lossless;
        napi_get_value_bigint_int64(env, v, &i, &lossless);
        if (!lossless || i < -2147483648LL || i > 4294967295LL) return "an i32 (integer in [-2^31, 2^32))";
        out->of.i32 = static_cast<int32_t>(i);
        return nullptr;
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
        return nullptr;
      }
      if (t == napi_number) {
        double d;
        napi_get_value_double(env, v, &d);
        if (d != std::floor(d) || std::fabs(d) > 9007199254740991.0) return "an i64 (bigint, or a safe integer number)";
        out->of.i64 = static_cast<int64_t>(d);
        return nullptr;
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
      return nullptr;
    }
    default:
      return "a value of a type JavaScript cannot carry";
  }
}

Napi::Value FromWasm(Napi::Env env, const wasmtime_val_t& v) {
  switch (v.kind) {
    case WASMTIME_I32: return Napi::Number::New(env, v.of.i32);
    case WASMTIME_I64: return Napi::BigInt::New(env, v.of.i64);
    case WASMTIME_F32: return Napi::Number::New(env, v.of.f32);
    case WASMTIME_F64: return Napi::Number::New(env, v.of.f64);
    default: return env.Null();
  }
}

static bool IsNumeric(wasm_valkind_t k) { return k == WASM_I32 || k == WASM_I64 || k == WASM_F32 || k == WASM_F64; }

Signature SignatureOf(const wasm_functype_t* type) {
  Signature sig;
  const wasm_valtype_vec_t* params = wasm_functype_params(type);
  const wasm_valtype_vec_t* results = wasm_functype_results(type);
  for (auto [vec, out, what] : {std::make_tuple(params, &sig.params, " parameter"), std::make_tuple(results, &sig.results, " result")}) {
    out->resize(vec->size);
    for (size_t i = 0; i < vec->size; i++) {
      (*out)[i] = ValKindOf(vec->data[i]);
      if (sig.foreign.empty() && !IsNumeric((*out)[i])) {
        std::string name = ValTypeName(vec->data[i]);
        sig.foreign = std::string(name[0] == 'i' || name[0] == 'a' || name[0] == 'e' ? "an " : "a ") + name + what;
      }
    }
  }
  return sig;
}

}  // namespace hbr
