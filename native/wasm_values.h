// Conversions between JS values and Wasmtime values of the types JS can carry (i32, i64, f32, f64),
// shared by instantiation (host imports) and calls.
#pragma once

#include <napi.h>
#include <wasmtime.h>

#include <cstring>
#include <string>
#include <vector>

namespace hbr {

// JS value -> wasm value of `kind`. Returns what was expected (a static text) on failure, nullptr on
// success. Never throws.
const char* ToWasm(const Napi::Value& v, wasm_valkind_t kind, wasmtime_val_t* out);

Napi::Value FromWasm(Napi::Env env, const wasmtime_val_t& v);

// A function type as the JS boundary sees it. Only i32, i64, f32 and f64 values cross it; a
// function with any other type in its signature cannot be called from or into JavaScript, and
// `foreign` names the first such type ("a v128 parameter"), empty when there is none.
struct Signature {
  std::vector<wasm_valkind_t> params, results;
  std::string foreign;
};
Signature SignatureOf(const wasm_functype_t* type);

// Raw (unchecked-call) representation of a converted value.
inline wasmtime_val_raw_t ToRaw(const wasmtime_val_t& v) {
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

inline Napi::Value FromRaw(Napi::Env env, const wasmtime_val_raw_t& r, wasm_valkind_t kind) {
  switch (kind) {
    case WASM_I32: return Napi::Number::New(env, r.i32);
    case WASM_I64: return Napi::BigInt::New(env, r.i64);
    case WASM_F32: return Napi::Number::New(env, r.f32);
    default: return Napi::Number::New(env, r.f64);
  }
}

}  // namespace hbr
