// Wasmtime engine configuration and the small conversions shared by WasmModule and WasmInstance.
#pragma once

#include <napi.h>
#include <wasmtime.h>

#include <string>

namespace hbr {

// A new engine with hb-runtimes' configuration: Cranelift, memory64, exceptions (+ the GC types
// they need), NaN canonicalisation (deterministic floats), fuel metering. Throws std::runtime_error.
wasm_engine_t* NewEngine();

// "i32", "i64", ... for a value type.
const char* ValKindName(wasm_valkind_t kind);

// {params: [...], results: [...]} for a function type.
Napi::Object FuncTypeToJs(Napi::Env env, const wasm_functype_t* type);

// {name, module?, kind, type?, detail?} for an import or export type.
Napi::Object ExternTypeToJs(Napi::Env env, const wasm_name_t* module, const wasm_name_t* name,
                            const wasm_externtype_t* type);

// Takes ownership of `error`: its message, and the error is deleted.
std::string TakeErrorMessage(wasmtime_error_t* error);

// A non-negative integer offset or length from a JS number or bigint (64-bit safe).
uint64_t ToOffset(Napi::Env env, const Napi::Value& v, const char* what);

}  // namespace hbr
