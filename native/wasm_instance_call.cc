// WasmInstance, part 2: calls and host imports.
#include "wasm_instance.h"

#include <algorithm>
#include <cmath>

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
  RefreshView(env);  // before JS can touch a view of memory the guest just grew or moved
  std::vector<napi_value> argv(imp->sig.params.size());
  for (size_t i = 0; i < imp->sig.params.size(); i++) argv[i] = FromWasm(env, args[i]);
  Napi::Value ret = imp->fn.Value().Call(env.Undefined(), argv.size(), argv.data());
  const size_t n = imp->sig.results.size();
  if (n == 1) {
    const char* want = ToWasm(ret, imp->sig.results[0], &results[0]);
    if (want != nullptr) return "import " + imp->label + " returned an invalid value: expected " + want;
  } else if (n > 1) {
    if (!ret.IsArray() || ret.As<Napi::Array>().Length() != n) {
      return "import " + imp->label + " must return an array of " + std::to_string(n) + " values";
    }
    Napi::Array arr = ret.As<Napi::Array>();
    for (size_t i = 0; i < n; i++) {
      const char* want = ToWasm(arr.Get(i), imp->sig.results[i], &results[i]);
      if (want != nullptr) return "import " + imp->label + " result " + std::to_string(i) + ": expected " + want;
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
  // The deadline covers the whole call, time spent in host imports included. A nested call (the
  // import called back into this instance) that reached the deadline sets deadline_hit_: the
  // coarse clock may still read a few ms short of it then.
  if (deadline_hit_ || (deadline_ns_ != UINT64_MAX && CoarseNowNs() >= deadline_ns_)) {
    deadline_hit_ = true;
    return wasmtime_trap_new_code(WASMTIME_TRAP_CODE_INTERRUPT);
  }
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
  // Wasmtime prefixes a trap caught by a guard page with "0: memory fault at wasm address X in
  // linear memory of size Y\n    1: ". Whether a fault is caught that way or by an explicit bounds
  // check depends on the memory's configuration (and on the memory64 lowering of wasm-lower.ts), so
  // the context is dropped: the same out-of-bounds access gives the same text everywhere.
  size_t lead = msg.find_first_not_of(" \n");
  if (lead != std::string::npos && msg.compare(lead, 32, "0: memory fault at wasm address ") == 0) {
    size_t cause = msg.find("\n");
    if (cause != std::string::npos) {
      cause = msg.find("1: ", cause);
      if (cause != std::string::npos) msg = msg.substr(cause + 3);
    }
  }
  size_t b = msg.find_first_not_of(" \n");
  size_t e = msg.find_last_not_of(" \n");
  return b == std::string::npos ? msg : msg.substr(b, e - b + 1);
}

static Napi::Array FramesToJs(Napi::Env env, const wasm_frame_vec_t& trace) {
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
  return frames;
}

std::string WasmInstance::RefusedGrowth() const {
  const char* what = limits_.refused_table ? "a table" : "a memory";
  if (limits_.refused_cap == 0) return std::string(what) + " growth was refused (its own maximum, or the allocator)";
  const char* unit = limits_.refused_table ? " elements" : " bytes";
  return std::string(what) + " of " + std::to_string(limits_.refused_desired) + unit + " was refused at the cap of " +
         std::to_string(limits_.refused_cap) + unit;
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
  // The message, trap code and wasm frames of the error or trap, which is then deleted (the frames
  // borrow from it).
  std::string msg;
  wasmtime_trap_code_t code = 0;
  bool has_code = false;
  wasm_frame_vec_t trace;
  if (error != nullptr) {
    wasmtime_error_wasm_trace(error, &trace);
  } else {
    wasm_message_t message;
    wasm_trap_message(trap, &message);
    msg.assign(message.data, message.size > 0 && message.data[message.size - 1] == '\0' ? message.size - 1 : message.size);
    wasm_byte_vec_delete(&message);
    has_code = wasmtime_trap_code(trap, &code);
    wasm_trap_trace(trap, &trace);
  }
  Napi::Array frames = FramesToJs(env, trace);
  wasm_frame_vec_delete(&trace);
  if (error != nullptr) {
    msg = TakeErrorMessage(error);
  } else {
    wasm_trap_delete(trap);
  }
  const char* code_name = has_code ? TrapCodeName(code) : (host_failure.empty() ? "trap" : "host");
  auto limit = [&](const char* kind, const std::string& text, const char* trap_code) {
    return MakeError(env, "LimitError", text,
                     {{"limit", Napi::String::New(env, kind)},
                      {"trapCode", Napi::String::New(env, trap_code)},
                      {"frames", frames},
                      {"cause", cause}});
  };
  // The epoch check traps only at the store's deadline (see BeginOutermost).
  if (has_code && code == WASMTIME_TRAP_CODE_INTERRUPT && deadline_ns_ != UINT64_MAX) deadline_hit_ = true;
  if (deadline_hit_) {
    return limit("time", what + " exceeded its time limit of " + FormatMs(call_limit_ms_) + " ms", "interrupt");
  }
  if (has_code && code == WASMTIME_TRAP_CODE_OUT_OF_FUEL) {
    return limit("fuel", what + " ran out of fuel (budget " + std::to_string(fuel_) + ")", code_name);
  }
  // A host import's failure has no trap code; Wasmtime's own text would only repeat it.
  const bool host = !host_failure.empty() && !has_code;
  const std::string text = host ? host_failure : TrapText(msg);
  const char* verb = error != nullptr && !host ? " failed: " : " trapped: ";
  if (limits_.refused > 0) return limit("memory", what + verb + text + " (" + RefusedGrowth() + ")", code_name);
  if (error != nullptr && !host) {
    return MakeError(env, "WasmError", what + verb + text,
                     {{"status", Napi::Number::New(env, 500)}, {"code", Napi::String::New(env, "ERR_WASM_CALL")}});
  }
  return MakeError(env, "WasmTrap", what + verb + text,
                   {{"trapCode", Napi::String::New(env, code_name)}, {"frames", frames}, {"cause", cause}});
}

Napi::Value WasmInstance::ExportIndex(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  if (!info[0].IsString()) throw InvalidArg(env, "exportIndex(name): name must be a string");
  auto it = func_index_.find(info[0].As<Napi::String>().Utf8Value());
  return Napi::Number::New(env, it == func_index_.end() ? -1 : it->second);
}


// call(index, ...args) -> undefined (no result) | value (one result) | array (several).
// The arguments come spread (no JS array to walk) and a single result comes back bare: the TS
// wrapper puts it in an array, which is cheaper in JS than through N-API.
Napi::Value WasmInstance::Call(const Napi::CallbackInfo& info) { return CallExport(info, 0, time_limit_ms_); }

Napi::Value WasmInstance::Caller(const Napi::CallbackInfo& info) {
  return BindMethod<WasmInstance, &WasmInstance::Call>(info.Env(), this, caller_link_, "call");
}

Napi::Value WasmInstance::CallLimited(const Napi::CallbackInfo& info) { return CallExport(info, 1, CallLimitArg(info)); }

double WasmInstance::CallLimitArg(const Napi::CallbackInfo& info) const {
  Napi::Env env = info.Env();
  CheckOpen(env);
  double ms = TimeLimitArg(env, info[0]);
  if (!interruptible_ && !std::isinf(ms)) {
    throw InvalidArg(env, "a time limit needs a module compiled with interruptible: true (the default)");
  }
  return ms;
}

Napi::Value WasmInstance::CallExport(const Napi::CallbackInfo& info, size_t at, double limit_ms) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  if (info.Length() <= at || !info[at].IsNumber()) throw InvalidArg(env, "call(index, ...args): index must be a number");
  int32_t index = info[at].As<Napi::Number>().Int32Value();
  if (index < 0 || static_cast<size_t>(index) >= funcs_.size()) throw InvalidArg(env, "call: no such export function");
  return Invoke(info, at + 1, funcs_[index], "call", limit_ms);
}

// callTable(index, ...args): calls element `index` of the first exported table (call_indirect from
// the host), e.g. for emscripten's invoke_* trampolines. Same conventions as call().
Napi::Value WasmInstance::CallTable(const Napi::CallbackInfo& info) { return CallElement(info, 0, time_limit_ms_); }

Napi::Value WasmInstance::CallTableLimited(const Napi::CallbackInfo& info) {
  return CallElement(info, 1, CallLimitArg(info));
}

Napi::Value WasmInstance::CallElement(const Napi::CallbackInfo& info, size_t at, double limit_ms) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  if (tables_.empty()) throw InvalidArg(env, "callTable: the module exports no table");
  uint64_t index = ToOffset(env, info[at], "table index");
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
  return Invoke(info, at + 1, f, "callTable", limit_ms);
}

void WasmInstance::BeginOutermost(wasmtime_context_t* ctx, double limit_ms) {
  limits_.refused = 0;
  deadline_hit_ = false;
  call_limit_ms_ = limit_ms;
  if (std::isinf(limit_ms)) {
    deadline_ns_ = UINT64_MAX;
    if (!epoch_far_) {  // no deadline: one the epoch never reaches
      wasmtime_context_set_epoch_deadline(ctx, uint64_t{1} << 40);
      epoch_far_ = true;
    }
    return;
  }
  deadline_ns_ = CoarseNowNs() + static_cast<uint64_t>(limit_ms * 1e6);
  wasmtime_context_set_epoch_deadline(ctx, EpochTicker::Ticks(limit_ms));
  epoch_far_ = false;
  ticker_->Enter();
  ticking_ = true;
}

void WasmInstance::EndOutermost() {
  if (ticking_) {
    ticker_->Leave();
    ticking_ = false;
  }
}

Napi::Value WasmInstance::Invoke(const Napi::CallbackInfo& info, size_t first, const ExportFunc& f, const char* what,
                                 double limit_ms) {
  Napi::Env env = info.Env();
  if (!f.sig.foreign.empty()) throw ForeignTypeError(env, ForeignTypeMessage(f.label, f.sig.foreign));
  const std::vector<wasm_valkind_t>& params = f.sig.params;
  const size_t nargs = info.Length() - first;
  if (nargs != params.size()) {
    throw InvalidArg(env, "expected " + std::to_string(params.size()) + " argument" +
                              (params.size() == 1 ? "" : "s") + ", got " + std::to_string(nargs));
  }
  const size_t nres = f.sig.results.size();
  const size_t slots = std::max<size_t>(1, std::max(nargs, nres));
  wasmtime_val_raw_t small_raw[8];
  std::vector<wasmtime_val_raw_t> big_raw;
  wasmtime_val_raw_t* raw = small_raw;
  if (slots > 8) {
    big_raw.resize(slots);
    raw = big_raw.data();
  }
  for (size_t i = 0; i < nargs; i++) {
    wasmtime_val_t v;
    const char* want = ToWasm(info[first + i], params[i], &v);
    if (want != nullptr) throw InvalidArg(env, "argument " + std::to_string(i) + " must be " + want);
    raw[i] = ToRaw(v);
  }

  wasmtime_context_t* ctx = Ctx();
  const bool outermost = depth_ == 0;
  const bool metered = fuel_ != 0;
  if (outermost) {
    env_ = env;
    if (metered) DiscardError(wasmtime_context_set_fuel(ctx, fuel_));
    BeginOutermost(ctx, limit_ms);
  }
  wasm_trap_t* trap = nullptr;
  depth_++;
  // Unchecked: the arguments were converted to the function's own (numeric) types above.
  wasmtime_error_t* error = wasmtime_func_call_unchecked(ctx, &f.func, raw, slots, &trap);
  depth_--;
  if (outermost) EndOutermost();
  if (outermost && metered) fuel_consumed_ = fuel_ - FuelLeft(ctx);
  RefreshView(env);  // the guest may have grown or moved memory
  if (error != nullptr || trap != nullptr) {
    Napi::Error err = CallError(env, error, trap, what);
    if (outermost && close_pending_) {
      close_pending_ = false;
      RefreshView(env, true);
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
