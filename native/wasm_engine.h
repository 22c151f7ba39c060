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
  kEngineNoEpoch = 4,         // no epoch checks compiled in: no deadline possible (interruptible: false)
  kEngineFlagsCount = 8,
};

// A new engine with hb-runtimes' configuration: Cranelift, memory64, exceptions (+ the GC types
// they need), NaN canonicalisation (deterministic floats), epoch interruption (the wall-clock
// deadlines of calls), plus the profile `flags`.
// Throws std::runtime_error.
wasm_engine_t* NewEngine(uint32_t flags);

// Value types. wasm_valtype_kind() aborts the process (Wasmtime 48 C API) on v128 and on every
// reference type other than nullable funcref and externref, so nothing in the addon calls it:
// types are read through wasmtime_valtype_new, which covers the whole type system.
//
// The kind of `type`: WASM_I32, WASM_I64, WASM_F32, WASM_F64, WASMTIME_V128, or kRefKind for any
// reference type.
constexpr wasm_valkind_t kRefKind = 0xff;
wasm_valkind_t ValKindOf(const wasm_valtype_t* type);

// Its name in the text format: "i32", "v128", "funcref", "(ref null $func)", ...
std::string ValTypeName(const wasm_valtype_t* type);

// {params: [...], results: [...]} for a function type.
Napi::Object FuncTypeToJs(Napi::Env env, const wasm_functype_t* type);

// {name, module?, kind, type?, detail?} for an import or export type.
Napi::Object ExternTypeToJs(Napi::Env env, const wasm_name_t* module, const wasm_name_t* name,
                            const wasm_externtype_t* type);

// Takes ownership of `error`: its message, and the error is deleted.
std::string TakeErrorMessage(wasmtime_error_t* error);

// A non-negative integer offset or length from a JS number or bigint (64-bit safe).
uint64_t ToOffset(Napi::Env env, const Napi::Value& v, const char* what);

// A time limit in milliseconds: a positive number, or Infinity (also for anything above ~31 years).
double TimeLimitArg(Napi::Env env, const Napi::Value& v);
// "10000", "0.5": a time limit in messages.
std::string FormatMs(double ms);

// Deletes an error the caller has no use for (nullptr is fine).
inline void DiscardError(wasmtime_error_t* error) {
  if (error != nullptr) wasmtime_error_delete(error);
}

// Fuel left in a store of a metered engine.
inline uint64_t FuelLeft(const wasmtime_context_t* ctx) {
  uint64_t left = 0;
  DiscardError(wasmtime_context_get_fuel(ctx, &left));
  return left;
}

}  // namespace hbr
