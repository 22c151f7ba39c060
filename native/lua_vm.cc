// LuaVM, part 1: construction (options, opening the libraries), the capped allocator, dispose and
// finalisation, print output, globals. The other parts are listed in lua_vm_internal.h.
#include "lua_vm.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "errors.h"
#include "lua_stdlib.h"
#include "lua_vm_internal.h"
#include "wasm_engine.h"  // TimeLimitArg

namespace hbr {

using namespace luavm;

namespace {

// ---- Allocation with a cap ----------------------------------------------------------------------

void* LuaAlloc(void* ud, void* ptr, size_t osize, size_t nsize) {
  auto* a = static_cast<LuaVM::Alloc*>(ud);
  size_t old = ptr != nullptr ? osize : 0;
  if (nsize == 0) {
    std::free(ptr);
    a->used -= old;
    return nullptr;
  }
  if (nsize > old && a->limit != 0 && a->used - old + nsize > a->limit) {
    a->refused = true;
    // Lua answers a refusal with a full (emergency) collection: charge it like collectgarbage().
    if (a->meter != nullptr) a->meter->credit -= static_cast<long long>(a->used >> 4);
    return nullptr;
  }
  void* p = std::realloc(ptr, nsize);
  if (p == nullptr) {
    if (nsize <= old) return ptr;  // Lua assumes shrinking never fails; the old block still fits
    a->refused = true;
    return nullptr;
  }
  a->used = a->used - old + nsize;
  return p;
}

int Panic(lua_State* L) {
  const char* msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(not a string)";
  std::fprintf(stderr, "hb-runtimes: Lua error outside a protected call (a bug): %s\n", msg);
  std::abort();
}

// Full collections until the heap stops shrinking (each one halves an oversized string table).
int CollectTrampoline(lua_State* L) {
  for (int i = 0; i < 16; i++) {
    int kb = lua_gc(L, LUA_GCCOUNT, 0);
    lua_gc(L, LUA_GCCOLLECT, 0);
    if (lua_gc(L, LUA_GCCOUNT, 0) >= kb) break;
  }
  return 0;
}

}  // namespace

namespace luavm {

// "not enough memory[ <context>][ (memoryLimit of N bytes reached)]".
std::string OutOfMemory(const char* context, const LuaVM::Alloc& a) {
  std::string m = "not enough memory";
  if (*context != '\0') m += std::string(" ") + context;
  if (a.limit != 0 && a.refused) m += " (memoryLimit of " + std::to_string(a.limit) + " bytes reached)";
  return m;
}

std::string LuaString(lua_State* L, int idx) {
  size_t len = 0;
  const char* s = lua_type(L, idx) == LUA_TSTRING ? lua_tolstring(L, idx, &len) : nullptr;
  return s != nullptr ? std::string(s, len) : std::string();
}

}  // namespace luavm

LuaArena& LuaVM::ArenaAt(int depth) {
  while (static_cast<int>(arenas_.size()) <= depth) arenas_.push_back(std::make_unique<LuaArena>());
  LuaArena& a = *arenas_[static_cast<size_t>(depth)];
  a.Clear();
  return a;
}

void LuaVM::CollectAfterRefusal() noexcept {
  if (L_ == nullptr) return;
  int top = lua_gettop(L_);
  if (lua_checkstack(L_, 2)) Protected(L_, CollectTrampoline, nullptr);
  lua_settop(L_, top);
}

void LuaVM::ResetPendingHostError() noexcept {
  host_err_ = nullptr;
  if (!host_err_set_) return;
  host_err_set_ = false;
  if (L_ != nullptr) {
    lua_rawgeti(L_, LUA_REGISTRYINDEX, aux_ref_);
    lua_pushboolean(L_, 0);
    lua_rawseti(L_, -2, kAuxHostErr);
    lua_pop(L_, 1);
  }
  try {
    if (!holder_.IsEmpty()) {
      Napi::Object h = holder_.Value();
      if (!h.IsEmpty()) h.Delete("error");
    }
  } catch (...) {
    // The environment cannot run JS (it is shutting down): the holder goes with it.
  }
}

// ---- Construction and lifecycle ----------------------------------------------------------------------

void LuaVM::Init(Napi::Env env, Napi::Object exports, Addon* addon) {
  Napi::Function ctor =
      DefineClass(env, "LuaVM",
                  {
                      InstanceMethod<&LuaVM::Load>("load"),
                      InstanceMethod<&LuaVM::LoadLimited>("loadLimited"),
                      InstanceMethod<&LuaVM::CallLimited>("callLimited"),
                      InstanceMethod<&LuaVM::CallPackedLimited>("callPackedLimited"),
                      InstanceMethod<&LuaVM::GetOutput>("output"),
                      InstanceMethod<&LuaVM::Call>("call"),
                      InstanceMethod<&LuaVM::Caller>("caller"),
                      InstanceMethod<&LuaVM::CallPacked>("callPacked"),
                      InstanceMethod<&LuaVM::SetGlobalFunction>("setGlobalFunction"),
                      InstanceMethod<&LuaVM::SetPackedHost>("setPackedHost"),
                      InstanceMethod<&LuaVM::Globals>("globals"),
                      InstanceMethod<&LuaVM::Snapshot>("snapshot"),
                      InstanceMethod<&LuaVM::MemoryUsed>("memoryUsed"),
                      InstanceMethod<&LuaVM::Dispose>("dispose"),
                      StaticMethod<&LuaVM::Restore>("restore"),
                      StaticMethod<&LuaVM::Check>("check"),
                  });
  addon->lua_vm_ctor = Napi::Persistent(ctor);
  exports.Set("LuaVM", ctor);
}

LuaVM::LuaVM(const Napi::CallbackInfo& info) : Napi::ObjectWrap<LuaVM>(info) {
  Napi::Env env = info.Env();
  Napi::Object self = info.This().As<Napi::Object>();
  if (napi_type_tag_object(env, self, &kLuaVMTag) != napi_ok) throw Napi::Error::New(env);

  uint16_t libs = kSafeLibs;
  if (info.Length() > 0 && !info[0].IsUndefined()) {
    if (!info[0].IsObject()) throw InvalidArg(env, "new LuaVM(options): options must be an object");
    Napi::Object o = info[0].As<Napi::Object>();
    Napi::Value lv = o.Get("libs");
    if (!lv.IsUndefined()) {
      if (!lv.IsArray()) throw InvalidArg(env, "new LuaVM(options): libs must be an array of library names");
      Napi::Array arr = lv.As<Napi::Array>();
      for (uint32_t i = 0; i < arr.Length(); i++) {
        Napi::Value n = arr.Get(i);
        std::string name = n.IsString() ? n.As<Napi::String>().Utf8Value() : std::string();
        const LuaLibInfo* found = nullptr;
        for (const LuaLibInfo& lib : kLuaLibs) {
          if (name == lib.name) found = &lib;
        }
        if (found == nullptr) throw InvalidArg(env, "new LuaVM(options): unknown library '" + name + "'");
        libs |= found->bit;
      }
    }
    auto limit = [&](const char* key) -> uint64_t {
      Napi::Value v = o.Get(key);
      if (v.IsUndefined()) return 0;
      double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
      if (!(d >= 1 && d <= 9007199254740991.0) || d != std::floor(d)) {
        throw InvalidArg(env, std::string("new LuaVM(options): ") + key + " must be a positive integer");
      }
      return static_cast<uint64_t>(d);
    };
    alloc_.limit = static_cast<size_t>(limit("memoryLimit"));
    budget_.limit = limit("instructionLimit");
    Napi::Value tl = o.Get("timeLimit");
    if (!tl.IsUndefined()) time_limit_ms_ = TimeLimitArg(env, tl);
    Napi::Value ol = o.Get("outputLimit");
    if (!ol.IsUndefined()) {
      double d = ol.IsNumber() ? ol.As<Napi::Number>().DoubleValue() : -1;
      if (!(d >= 0 && d <= 9007199254740991.0) || d != std::floor(d)) {
        throw InvalidArg(env, "new LuaVM(options): outputLimit must be a non-negative integer");
      }
      output_limit_ = static_cast<size_t>(d);
    }
    auto choice = [&](const char* key, const char* a, const char* b) -> bool {
      Napi::Value v = o.Get(key);
      if (v.IsUndefined()) return false;
      std::string c = v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
      if (c != a && c != b) throw InvalidArg(env, std::string("new LuaVM(options): ") + key + " must be '" + a + "' or '" + b + "'");
      return c == b;
    };
    print_stdout_ = choice("print", "capture", "stdout");
    clock_real_ = choice("clock", "fixed", "real");
  }

  Napi::Object holder = Napi::Object::New(env);
  Napi::Array fns = Napi::Array::New(env);
  holder.Set("fns", fns);
  self.DefineProperty(Napi::PropertyDescriptor::Value(Napi::Symbol::New(env, "hb-runtimes.LuaVM.host"), holder,
                                                      napi_default));
  holder_ = Napi::Weak(holder);
  fns_ = Napi::Weak(fns);

  OpenState(env, libs);
  Track(AddonOf(env));
}

void LuaVM::OpenState(Napi::Env env, uint16_t libs) {
  meter_.owner = this;
  Regrant(budget_, meter_);
  alloc_.meter = &meter_;
  L_ = lua_newstate(LuaAlloc, &alloc_);
  if (L_ == nullptr) {
    throw MakeError(env, "LuaMemoryError", OutOfMemory("to create a Lua state", alloc_));
  }
  hb_meter_of(L_) = &meter_;  // before anything that could charge it (new threads copy it)
  lua_atpanic(L_, Panic);
  active_ = L_;
  OpenCtx ctx{libs, 0};
  int st = Protected(L_, LuaOpenTrampoline, &ctx);
  if (st != LUA_OK) {
    std::string msg = LuaString(L_, -1);
    bool mem = st == LUA_ERRMEM || alloc_.refused;
    lua_close(L_);
    L_ = nullptr;
    active_ = nullptr;
    if (mem) {
      throw MakeError(env, "LuaMemoryError", OutOfMemory("to open the Lua libraries", alloc_));
    }
    throw MakeError(env, "LuaError", "could not open the Lua libraries: " + msg);
  }
  aux_ref_ = ctx.aux_ref;
  libs_ = libs;
  SeedRandom(rng_, kDefaultSeed);
  if (budget_.limit != 0 || !std::isinf(time_limit_ms_)) {
    budget_.step = budget_.limit != 0 ? static_cast<int>(std::min<uint64_t>(budget_.limit, kMaxHookStep)) : kMaxHookStep;
    lua_sethook(L_, CountHook, LUA_MASKCOUNT, budget_.step);
  }
}

LuaVM::~LuaVM() {
  Close();
  ReleaseBoundLink(caller_link_);
}

void LuaVM::Close() {
  if (L_ != nullptr) {
    // Host callbacks are refused from here on (InvokeHost checks closing_), so nothing that runs
    // inside lua_close can reach JS. SafeSetmetatable refuses __gc; a Lua finalizer that exists
    // anyway (opt-in libraries, a restored metatable) meets a spent budget: it errors on its first
    // instruction and C loops error at their first tick (lua_close drops finalizer errors). The
    // io library's C finalizers only close files.
    closing_ = true;
    budget_.exhausted = true;
    Regrant(budget_, meter_);
    lua_sethook(L_, CountHook, LUA_MASKCOUNT, 1);
    lua_close(L_);
    L_ = nullptr;
    active_ = nullptr;
  }
  try {
    holder_.Reset();
    fns_.Reset();
  } catch (...) {
    // Only fails when the environment is gone, and then the references went with it.
  }
  arenas_.clear();
  Untrack();
}

void LuaVM::CheckUsable(Napi::Env env, bool idle) {
  if (L_ == nullptr || close_pending_) throw ClosedError(env, kHandleName);
  if (idle && depth_ > 0) throw Napi::TypeError::New(env, "LuaVM is busy: this cannot be done during a call");
}

int LuaVM::Protected(lua_State* L, int (*fn)(lua_State*), void* ud) {
  lua_pushcfunction(L, fn);
  lua_pushlightuserdata(L, ud);
  return lua_pcall(L, 1, 0, 0);
}

Napi::Value LuaVM::Dispose(const Napi::CallbackInfo& info) {
  if (depth_ > 0) {
    close_pending_ = true;  // closed when the outermost call returns
  } else {
    Close();
  }
  return info.Env().Undefined();
}

Napi::Value LuaVM::MemoryUsed(const Napi::CallbackInfo& info) {
  CheckUsable(info.Env());
  return Napi::Number::New(info.Env(), static_cast<double>(alloc_.used));
}

Napi::Value LuaVM::GetOutput(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckUsable(env);
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Buffer<char>::Copy(env, output_.data(), output_.size()));
  out.Set(1u, Napi::Number::New(env, static_cast<double>(output_dropped_)));
  return out;
}

void LuaVM::Output(const char* s, size_t n) noexcept {
  if (print_stdout_) {
    std::fwrite(s, 1, n, stdout);
    return;
  }
  size_t room = output_limit_ > output_.size() ? output_limit_ - output_.size() : 0;
  size_t take = std::min(room, n);
  try {
    output_.append(s, take);
  } catch (...) {
    take = 0;
  }
  output_dropped_ += n - take;
}

// ---- globals -----------------------------------------------------------------------------------------

Napi::Value LuaVM::Globals(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckUsable(env);
  lua_State* L = active_;
  if (!lua_checkstack(L, 4)) throw MakeError(env, "LuaError", "Lua stack overflow");
  int top = lua_gettop(L);
  std::vector<std::pair<const char*, size_t>> names;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  lua_pushnil(L);
  while (lua_next(L, top + 1) != 0) {
    if (lua_type(L, -2) == LUA_TSTRING) {
      size_t len;
      const char* s = lua_tolstring(L, -2, &len);
      names.emplace_back(s, len);
    }
    lua_pop(L, 1);
  }
  // The key strings stay alive: they are keys of _G, which nothing modifies meanwhile.
  std::sort(names.begin(), names.end(), [](const auto& x, const auto& y) {
    int c = std::memcmp(x.first, y.first, std::min(x.second, y.second));
    return c != 0 ? c < 0 : x.second < y.second;
  });
  Napi::Array out = Napi::Array::New(env, names.size());
  for (size_t i = 0; i < names.size(); i++) {
    out.Set(static_cast<uint32_t>(i), Napi::String::New(env, names[i].first, names[i].second));
  }
  lua_settop(L, top);
  return out;
}

}  // namespace hbr
