// Wasmtime engine configuration and the small conversions shared by WasmModule and WasmInstance.
#pragma once

#include <napi.h>
#include <wasmtime.h>

#include <string>

namespace hbr {

// Engine profiles: code compiled for one engine only runs in stores of that engine, so each
// combination of these code-generation switches is its own engine.
enum EngineFlags : uint32_t {
  kEngineFuel = 1,            // fuel metering compiled in (per-call budgets); costs ~20% speed
  kEngineNoSpectre = 2,       // Cranelift without Spectre mitigations on heap/table bounds checks
  kEngineFlagsCount = 4,
};

// A new engine with hb-runtimes' configuration: Cranelift, memory64, exceptions (+ the GC types
// they need), NaN canonicalisation (deterministic floats), plus the profile `flags`.
// Throws std::runtime_error.
wasm_engine_t* NewEngine(uint32_t flags);

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
