// LuaVM, part 3: load and call. Each runs in a Frame (lua_vm_internal.h) under lua_pcall with our
// message handler; the outcome becomes results (plain or packed) or a JS error (LuaSyntaxError,
// LuaRuntimeError with its traceback, LuaMemoryError, LimitError for a spent budget or deadline).
#include <algorithm>
#include <cstring>

#include "errors.h"
#include "lua_packed.h"
#include "lua_vm_internal.h"
#include "wasm_engine.h"  // TimeLimitArg

namespace hbr {

using namespace luavm;

namespace luavm {

// Keeps the error value; records the traceback in aux[kAuxTrace]. Stack: [err] -> [err].
int MsgHandler(lua_State* L) {
  lua_settop(L, 1);
  LuaVM::Budget& b = VmOf(L)->budget();
  b.in_handler = true;  // building the traceback charges the meter, which must not raise here
  luaL_traceback(L, L, nullptr, 1);
  b.in_handler = false;
  lua_rawgeti(L, LUA_REGISTRYINDEX, VmOf(L)->aux_ref());
  lua_insert(L, -2);
  lua_rawseti(L, -2, kAuxTrace);
  lua_settop(L, 1);
  return 1;
}

}  // namespace luavm

namespace {

// ---- Trampolines (run inside lua_pcall; plain data in, no destructors) ---------------------------------

struct CallCtx {
  const char* name;
  size_t len;
  const LuaArena* args;
  uint32_t nargs;
  int cache_slot;  // >= 0: remember the interned name in this cache slot
  PackedReader* packed = nullptr;  // set: the arguments are this packed stream, not `args`
};

// Stack: [] -> [callable]. Looks `name` ("f" or "a.b.f") up in _G with raw reads.
void PushCallable(lua_State* L, CallCtx* c) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  const char* seg = c->name;
  const char* end = c->name + c->len;
  for (;;) {
    const char* dot = static_cast<const char*>(std::memchr(seg, '.', static_cast<size_t>(end - seg)));
    lua_pushlstring(L, seg, static_cast<size_t>((dot != nullptr ? dot : end) - seg));
    if (c->cache_slot >= 0) {
      LuaVM* vm = VmOf(L);
      lua_rawgeti(L, LUA_REGISTRYINDEX, vm->aux_ref());
      lua_pushvalue(L, -2);
      lua_rawseti(L, -2, kAuxCache0 + c->cache_slot);
      lua_pop(L, 1);
      LuaVM::CacheEntry& e = vm->cache()[c->cache_slot];
      std::memcpy(e.name, c->name, c->len);
      e.len = c->len;
    }
    lua_rawget(L, -2);
    lua_remove(L, -2);
    if (dot == nullptr) break;
    if (lua_type(L, -1) != LUA_TTABLE) {
      lua_pushlstring(L, c->name, static_cast<size_t>(dot - c->name));
      luaL_error(L, "attempt to index a %s value ('%s')", luaL_typename(L, -2), lua_tostring(L, -1));
    }
    seg = dot + 1;
  }
  if (lua_type(L, -1) == LUA_TFUNCTION) return;
  if (luaL_getmetafield(L, -1, "__call") != LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  lua_pushlstring(L, c->name, c->len);
  if (std::memchr(c->name, '.', c->len) == nullptr) {
    luaL_error(L, "attempt to call a %s value (global '%s')", luaL_typename(L, -2), lua_tostring(L, -1));
  }
  luaL_error(L, "attempt to call a %s value ('%s')", luaL_typename(L, -2), lua_tostring(L, -1));
}

// Looks up the function, pushes the arguments and calls it. Stack: [ctx] -> [results...].
int CallTrampoline(lua_State* L) {
  CallCtx* c = static_cast<CallCtx*>(lua_touserdata(L, 1));
  lua_settop(L, 0);
  PushCallable(L, c);
  luaL_checkstack(L, static_cast<int>(c->nargs) + 4, "too many arguments");
  if (c->packed != nullptr) {
    for (uint32_t i = 0; i < c->nargs; i++) PushPacked(L, c->packed);
  } else {
    size_t pos = 0;
    for (uint32_t i = 0; i < c->nargs; i++) PushNode(L, *c->args, &pos);
  }
  lua_call(L, static_cast<int>(c->nargs), LUA_MULTRET);
  return lua_gettop(L);
}

bool LooksLikeMemoryError(lua_State* L, int idx) {
  if (lua_type(L, idx) != LUA_TSTRING) return false;
  size_t len;
  const char* s = lua_tolstring(L, idx, &len);
  static const char kNeedle[] = "not enough memory";
  return std::search(s, s + len, kNeedle, kNeedle + sizeof kNeedle - 1) != s + len;
}

}  // namespace

// ---- Errors ---------------------------------------------------------------------------------------------

Napi::Value LuaVM::TakeTrace(Napi::Env env, lua_State* L) {
  Napi::Value trace = env.Undefined();
  lua_rawgeti(L, LUA_REGISTRYINDEX, aux_ref_);
  if (lua_rawgeti(L, -1, kAuxTrace) == LUA_TSTRING) {
    size_t len;
    const char* s = lua_tolstring(L, -1, &len);
    trace = Napi::String::New(env, s, len);
  }
  lua_pop(L, 1);
  lua_pushboolean(L, 0);
  lua_rawseti(L, -2, kAuxTrace);
  lua_pop(L, 1);
  return trace;
}

Napi::Error LuaVM::ErrorFromStatus(Napi::Env env, lua_State* L, int status) {
  int err = lua_gettop(L);
  if (status == LUA_ERRMEM || (alloc_.refused && LooksLikeMemoryError(L, err))) {
    return MakeError(env, "LuaMemoryError", OutOfMemory("", alloc_));
  }
  Napi::Value trace = TakeTrace(env, L);

  std::string message;
  Napi::Value body = env.Undefined();
  Napi::Value cause = env.Undefined();
  switch (lua_type(L, err)) {
    case LUA_TSTRING:
      message = LuaString(L, err);
      if (host_err_ != nullptr && lua_tostring(L, err) == host_err_ && !holder_.IsEmpty()) {
        Napi::Object h = holder_.Value();
        if (!h.IsEmpty()) cause = h.Get("error");
      }
      break;
    case LUA_TNUMBER:
      body = Napi::Value(env, LuaToJs(env, L, err));
      message = body.ToString().Utf8Value();
      break;
    default:
      message = std::string("(error object is a ") + luaL_typename(L, err) + " value)";
      try {
        body = Napi::Value(env, LuaToJs(env, L, err));
      } catch (const Napi::Error&) {
        body = Napi::String::New(env, message);
      }
  }
  if (body.IsUndefined()) body = Napi::String::New(env, message);
  if (cause.IsUndefined()) return MakeError(env, "LuaRuntimeError", message, {{"trace", trace}, {"body", body}});
  return MakeError(env, "LuaRuntimeError", message, {{"trace", trace}, {"body", body}, {"cause", cause}});
}

Napi::Value LuaVM::Finish(Napi::Env env, lua_State* L, int base, int status, napi_value packed_into, bool bare) {
  budget_.in_handler = false;  // in case the message handler itself failed
  if (interrupted_) return env.Undefined();  // nothing can be thrown into a stopping environment
  if (budget_.exhausted) {
    Napi::Value trace = TakeTrace(env, L);
    if (budget_.timed_out) {
      throw MakeError(env, "LimitError", "time limit of " + FormatMs(budget_.time_limit_ms) + " ms exceeded",
                      {{"limit", Napi::String::New(env, "time")}, {"trace", trace}});
    }
    throw MakeError(env, "LimitError", "instruction limit of " + std::to_string(budget_.limit) + " exceeded",
                    {{"limit", Napi::String::New(env, "steps")}, {"trace", trace}});
  }
  if (status != LUA_OK) throw ErrorFromStatus(env, L, status);
  int n = lua_gettop(L) - (base + 1);
  if (bare && n == 1) {  // one number or boolean: the value itself (no array to build)
    int t = lua_type(L, base + 2);
    if (t == LUA_TNUMBER || t == LUA_TBOOLEAN) return Napi::Value(env, LuaToJs(env, L, base + 2, t));
  }
  napi_value arr;
  if (napi_create_array_with_length(env, static_cast<size_t>(n), &arr) != napi_ok) throw Napi::Error::New(env);
  for (int i = 0; i < n; i++) {
    int t = lua_type(L, base + 2 + i);
    if (t == LUA_TTABLE) return Napi::Value(env, PackedResults(env, L, base + 2, n, packed_into));  // all, packed
    napi_value v = LuaToJs(env, L, base + 2 + i, t);
    if (napi_set_element(env, arr, static_cast<uint32_t>(i), v) != napi_ok) throw Napi::Error::New(env);
  }
  return Napi::Value(env, arr);
}

// ---- load / call -----------------------------------------------------------------------------------------

namespace {
struct ChunkReader {
  const char* p;
  size_t n;
};
const char* ReadChunk(lua_State*, void* ud, size_t* size) {
  ChunkReader* r = static_cast<ChunkReader*>(ud);
  *size = r->n;
  r->n = 0;
  return *size == 0 ? nullptr : r->p;
}
}  // namespace

Napi::Value LuaVM::Load(const Napi::CallbackInfo& info) { return DoLoad(info, 0, -1); }

// loadLimited(timeLimit, code, name): load with this call's time limit.
Napi::Value LuaVM::LoadLimited(const Napi::CallbackInfo& info) { return DoLoad(info, 1, TimeLimitArg(info.Env(), info[0])); }

Napi::Value LuaVM::DoLoad(const Napi::CallbackInfo& info, size_t at, double limit_ms) {
  Napi::Env env = info.Env();
  CheckUsable(env);
  if (!info[at + 1].IsString()) throw InvalidArg(env, "LuaVM#load(code, name): name must be a string");
  std::string name = info[at + 1].As<Napi::String>().Utf8Value();
  std::string text;
  ChunkReader r{nullptr, 0};
  if (info[at].IsString()) {
    text = info[at].As<Napi::String>().Utf8Value();
    r = {text.data(), text.size()};
  } else if (info[at].IsTypedArray() && info[at].As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array) {
    Napi::Uint8Array a = info[at].As<Napi::Uint8Array>();
    r = {reinterpret_cast<const char*>(a.Data()), a.ByteLength()};
  } else {
    throw InvalidArg(env, "LuaVM#load(code, name): code must be a string or a Uint8Array");
  }

  if (depth_ == 0) call_limit_ms_ = limit_ms;  // a nested load shares the outermost call's deadline
  Frame frame(this, active_, true);
  lua_State* L = active_;
  if (!lua_checkstack(L, 8)) throw MakeError(env, "LuaError", "Lua stack overflow");
  int base = frame.base();
  lua_pushcfunction(L, MsgHandler);
  int st = lua_load(L, ReadChunk, &r, name.c_str(), "t");
  if (st != LUA_OK) {
    if (st == LUA_ERRMEM || alloc_.refused) throw ErrorFromStatus(env, L, LUA_ERRMEM);
    throw MakeError(env, "LuaSyntaxError", LuaString(L, -1));
  }
  st = lua_pcall(L, 0, LUA_MULTRET, base + 1);
  return Finish(env, L, base, st);
}

Napi::Value LuaVM::Call(const Napi::CallbackInfo& info) { return DoCall<false>(info, 0, -1); }

Napi::Value LuaVM::Caller(const Napi::CallbackInfo& info) {
  return BindMethod<LuaVM, &LuaVM::Call>(info.Env(), this, caller_link_, "call");
}

// callPacked(fn, buf, len, nargs): the arguments are the packed stream buf[0, len) of nargs values;
// packed results are written back into buf when they fit (see Finish).
Napi::Value LuaVM::CallPacked(const Napi::CallbackInfo& info) { return DoCall<true>(info, 0, -1); }

// callLimited(timeLimit, fn, ...args) and callPackedLimited(timeLimit, fn, buf, len, nargs).
Napi::Value LuaVM::CallLimited(const Napi::CallbackInfo& info) {
  return DoCall<false>(info, 1, TimeLimitArg(info.Env(), info[0]));
}
Napi::Value LuaVM::CallPackedLimited(const Napi::CallbackInfo& info) {
  return DoCall<true>(info, 1, TimeLimitArg(info.Env(), info[0]));
}

template <bool packed>
Napi::Value LuaVM::DoCall(const Napi::CallbackInfo& info, size_t at, double limit_ms) {
  Napi::Env env = info.Env();
  CheckUsable(env);
  if (info.Length() <= at) throw InvalidArg(env, "LuaVM#call(fn, ...args): fn must be a string");
  napi_value fnv = info[at];
  char small[kCacheNameMax];
  std::string big;
  const char* name = small;
  size_t len = 0;
  if (napi_get_value_string_utf8(env, fnv, small, sizeof small, &len) != napi_ok) {
    throw InvalidArg(env, "LuaVM#call(fn, ...args): fn must be a string");
  }
  if (len + 1 >= sizeof small) {
    big = Napi::Value(env, fnv).As<Napi::String>().Utf8Value();
    name = big.data();
    len = big.size();
  }
  uint32_t nargs = static_cast<uint32_t>(info.Length() - 1 - at);
  PackedReader reader{nullptr, nullptr};
  napi_value io = nullptr;
  if (packed) {
    io = info[at + 1];
    reader = ReadPackedArgs(env, info[at + 1], info[at + 2], info[at + 3], &nargs);
  }

  if (depth_ == 0) call_limit_ms_ = limit_ms;  // a nested call shares the outermost call's deadline
  Frame frame(this, active_, true);
  LuaArena& a = frame.arena();
  if (packed) {
    a.needs_protection = true;
  } else {
    ArenaBuilder builder(env, a, "LuaVM#call()");
    for (uint32_t i = 0; i < nargs; i++) builder.Add(info[at + i + 1], "args", i);
  }

  lua_State* L = active_;
  int base = frame.base();
  if (!lua_checkstack(L, static_cast<int>(nargs) + 8)) throw MakeError(env, "LuaError", "Lua stack overflow");
  lua_pushcfunction(L, MsgHandler);

  int slot = -1;
  bool plain = len < kCacheNameMax && std::memchr(name, '.', len) == nullptr;
  if (plain) {
    for (int i = 0; i < kCallCacheSize; i++) {
      if (cache_[i].len == len && std::memcmp(cache_[i].name, name, len) == 0) slot = i;
    }
  }
  int st;
  if (slot >= 0 && !a.needs_protection) {
    // Fast path: every step is non-raising (raw reads of existing slots, scalar pushes).
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    lua_rawgeti(L, LUA_REGISTRYINDEX, aux_ref_);
    lua_rawgeti(L, -1, kAuxCache0 + slot);
    lua_remove(L, -2);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    if (lua_type(L, -1) == LUA_TFUNCTION) {
      for (uint32_t i = 0; i < nargs; i++) PushScalar(L, a.nodes[i]);
      st = lua_pcall(L, static_cast<int>(nargs), LUA_MULTRET, base + 1);
      return Finish(env, L, base, st, nullptr, !packed);
    }
    lua_pop(L, 1);
  }
  CallCtx ctx{name, len, &a, nargs, -1, packed ? &reader : nullptr};
  if (plain && slot < 0) {
    ctx.cache_slot = cache_next_;
    cache_next_ = (cache_next_ + 1) % kCallCacheSize;
    cache_[ctx.cache_slot].len = 0;  // refilled inside the trampoline once the key is stored
  }
  lua_pushcfunction(L, CallTrampoline);
  lua_pushlightuserdata(L, &ctx);
  st = lua_pcall(L, 1, LUA_MULTRET, base + 1);
  return Finish(env, L, base, st, io, !packed);
}

}  // namespace hbr
