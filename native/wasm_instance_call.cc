// WasmInstance, part 2: calls and host imports.
#include "wasm_instance.h"

#include <algorithm>

#include "errors.h"
#include "wasm_engine.h"
#include "wasm_module.h"
#include "wasm_values.h"

namespace hbr {

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

wasm_trap_t* WasmInstance::Trampoline(void* env, wasmtime_caller_t* caller, const wasmtime_val_t* args, size_t nargs,
                                      wasmtime_val_t* results, size_t nresults) {
  HostImport* imp = static_cast<HostImport*>(env);
  return imp->self->CallHost(imp, caller, args, results);
}

// "<what> has a v128 parameter, which JavaScript cannot carry (...)".
static std::string ForeignTypeMessage(const std::string& what, const std::string& foreign) {
  return what + " has " + foreign + ", which JavaScript cannot carry (only i32, i64, f32 and f64 values cross)";
}

static Napi::Error ForeignTypeError(Napi::Env env, const std::string& message) {
  return MakeError(env, "WasmError", message,
                   {{"status", Napi::Number::New(env, 400)}, {"code", Napi::String::New(env, "ERR_WASM_TYPE")}});
}

// Calls the JS function of `imp` and converts its results; returns a failure text, empty on success.
std::string WasmInstance::CallJs(Napi::Env env, HostImport* imp, const wasmtime_val_t* args, wasmtime_val_t* results) {
  std::vector<napi_value> argv(imp->sig.params.size());
  for (size_t i = 0; i < imp->sig.params.size(); i++) argv[i] = FromWasm(env, args[i]);
  Napi::Value ret = imp->fn.Value().Call(env.Undefined(), argv.size(), argv.data());
  const size_t n = imp->sig.results.size();
  if (n == 1) {
    std::string want = ToWasm(ret, imp->sig.results[0], &results[0]);
    if (!want.empty()) return "import " + imp->label + " returned an invalid value: expected " + want;
  } else if (n > 1) {
    if (!ret.IsArray() || ret.As<Napi::Array>().Length() != n) {
      return "import " + imp->label + " must return an array of " + std::to_string(n) + " values";
    }
    Napi::Array arr = ret.As<Napi::Array>();
    for (size_t i = 0; i < n; i++) {
      std::string want = ToWasm(arr.Get(i), imp->sig.results[i], &results[i]);
      if (!want.empty()) return "import " + imp->label + " result " + std::to_string(i) + ": expected " + want;
    }
  }
  return "";
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
    Napi::Value error;
    if (!imp->sig.foreign.empty()) {
      // Linked so that the module instantiates; JS can neither receive nor return these values.
      failure = ForeignTypeMessage("import " + imp->label, imp->sig.foreign);
      error = ForeignTypeError(env, failure).Value();
    } else {
      failure = CallJs(env, imp, args, results);
      if (!failure.empty()) error = InvalidArg(env, failure).Value();
    }
    if (!failure.empty() && pending_error_.IsEmpty()) pending_error_ = Napi::Persistent(error);
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
  ExportFunc f{item.of.funcref, SignatureOf(ft), "table element " + std::to_string(index)};
  wasm_functype_delete(ft);
  return Invoke(info, f, "callTable");
}

// Converts info[1..] per `f`'s signature, calls it, converts the results back (see Call).
Napi::Value WasmInstance::Invoke(const Napi::CallbackInfo& info, const ExportFunc& f, const char* what) {
  Napi::Env env = info.Env();
  if (!f.sig.foreign.empty()) throw ForeignTypeError(env, ForeignTypeMessage(f.label, f.sig.foreign));
  const std::vector<wasm_valkind_t>& params = f.sig.params;
  const size_t nargs = info.Length() - 1;
  if (nargs != params.size()) {
    throw InvalidArg(env, "expected " + std::to_string(params.size()) + " argument" +
                              (params.size() == 1 ? "" : "s") + ", got " + std::to_string(nargs));
  }
  const size_t nres = f.sig.results.size();
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
    std::string want = ToWasm(info[i + 1], params[i], &vals[i]);
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
  // Unchecked: the arguments were converted to the function's own (numeric) types above.
  error = wasmtime_func_call_unchecked(ctx, &f.func, raw, slots, &trap);
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
    out = FromRaw(env, raw[0], f.sig.results[0]);
  } else {
    Napi::Array arr = Napi::Array::New(env, nres);
    for (size_t i = 0; i < nres; i++) arr.Set(i, FromRaw(env, raw[i], f.sig.results[i]));
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

}  // namespace hbr
