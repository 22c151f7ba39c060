// LuaVM, part 4: host functions. setGlobalFunction binds a JS function to a path in _G as a C
// closure over LuaHostTrampoline (upvalue 1: its slot); InvokeHost runs the JS in a Frame, with
// arguments and results marshalled directly or packed (setPackedHost), and turns a JS exception
// into the Lua error of the call (a JS environment that cannot run any more ends the call).
#include <string>
#include <vector>

#include "errors.h"
#include "lua_packed.h"
#include "lua_vm_internal.h"

namespace hbr {

using namespace luavm;

namespace {

// ---- Trampolines (run inside lua_pcall; plain data in, no destructors) ---------------------------------

struct PushCtx {
  const LuaArena* arena;  // null: push the string s[0..len)
  const char* s;
  size_t len;
  PackedReader* packed = nullptr;  // set: push the next value of this packed stream
};

// Stack: [ctx] -> [value].
int PushTrampoline(lua_State* L) {
  PushCtx* c = static_cast<PushCtx*>(lua_touserdata(L, 1));
  if (c->packed != nullptr) {
    PushPacked(L, c->packed);
  } else if (c->arena != nullptr) {
    size_t pos = 0;
    PushNode(L, *c->arena, &pos);
  } else {
    lua_pushlstring(L, c->s, c->len);
  }
  return 1;
}

// Stack: [] -> [value] (status LUA_OK) or [error]. Needs 2 free slots.
int ProtectedPush(lua_State* L, PushCtx* ctx) {
  lua_pushcfunction(L, PushTrampoline);
  lua_pushlightuserdata(L, ctx);
  return lua_pcall(L, 1, 1, 0);
}

struct SetGlobalCtx {
  const char* path;
  size_t len;
  int slot;
};

// Sets _G[path] (creating intermediate tables, raw) to a new host closure. Stack: [ctx] -> [ctx].
int SetGlobalTrampoline(lua_State* L) {
  SetGlobalCtx* c = static_cast<SetGlobalCtx*>(lua_touserdata(L, 1));
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  const char* seg = c->path;
  const char* end = c->path + c->len;
  for (;;) {
    const char* dot = static_cast<const char*>(std::memchr(seg, '.', static_cast<size_t>(end - seg)));
    lua_pushlstring(L, seg, static_cast<size_t>((dot != nullptr ? dot : end) - seg));
    if (dot == nullptr) break;
    lua_pushvalue(L, -1);
    int t = lua_rawget(L, -3);
    if (t == LUA_TNIL) {
      lua_pop(L, 1);
      lua_newtable(L);
      lua_pushvalue(L, -2);
      lua_pushvalue(L, -2);
      lua_rawset(L, -5);
    } else if (t != LUA_TTABLE) {
      lua_pushlstring(L, c->path, static_cast<size_t>(dot - c->path));
      luaL_error(L, "cannot set '%s': '%s' is a %s, not a table", c->path, lua_tostring(L, -1), luaL_typename(L, -2));
    }
    lua_remove(L, -2);
    lua_remove(L, -2);
    seg = dot + 1;
  }
  // Already bound to this slot (a restored VM, or the same path registered again): the JS side
  // was replaced through the slot, and the Lua side stays as it is. Creating another closure would
  // change the state's object graph and serials, so a restored VM would not continue exactly as
  // the original.
  lua_pushvalue(L, -1);
  lua_rawget(L, -3);
  if (lua_tocfunction(L, -1) == LuaHostTrampoline && lua_getupvalue(L, -1, 1) != nullptr &&
      lua_tointeger(L, -1) == c->slot) {
    lua_settop(L, 1);
    return 0;
  }
  lua_settop(L, 3);
  lua_pushinteger(L, c->slot);
  lua_pushcclosure(L, LuaHostTrampoline, 1);
  lua_rawset(L, -3);
  lua_settop(L, 1);
  return 0;
}

// which N-API refuses in that state; any exception the probe leaves is cleared.
bool JsUnavailable(napi_env env) {
  napi_value global, v;
  if (napi_get_global(env, &global) != napi_ok) return true;
  if (napi_get_named_property(env, global, "undefined", &v) == napi_ok) return false;
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) napi_get_and_clear_last_exception(env, &v);
  return true;
}

// The message of a thrown JS value (its `message`, else its string form).
std::string JsErrorMessage(napi_env env, napi_value exc) {
  try {
    Napi::Value v(env, exc);
    if (v.IsObject()) {
      Napi::Value m = v.As<Napi::Object>().Get("message");
      if (m.IsString()) return m.As<Napi::String>().Utf8Value();
    }
    return v.ToString().Utf8Value();
  } catch (...) {
    return "(a JS exception that cannot be converted to a string)";
  }
}

}  // namespace

int LuaHostTrampoline(lua_State* L) {
  LuaVM* vm = VmOf(L);
  int n = vm->InvokeHost(L);
  if (n < 0) return lua_error(L);
  // A host function that returns past the deadline (or after the budget ran out) ends the call.
  if (vm->budget().deadline_ns != UINT64_MAX && !Charge(vm, 0) && vm->InCall()) RaiseLimit(L);
  return n;
}

// ---- Host functions ------------------------------------------------------------------------------------

const std::string* LuaVM::HostPath(int64_t slot) const {
  if (slot < 0 || static_cast<size_t>(slot) >= host_paths_.size()) return nullptr;
  return &host_paths_[static_cast<size_t>(slot)];
}

int LuaVM::SlotForPath(const std::string& path) {
  for (size_t i = 0; i < host_paths_.size(); i++) {
    if (host_paths_[i] == path) return static_cast<int>(i);
  }
  host_paths_.push_back(path);
  return static_cast<int>(host_paths_.size() - 1);
}

// setPackedHost(entry, pack): the JS functions that run host functions called with a table
// argument (entry(fn, packedArgs)) and pack an object or array a host function returned (pack(v)).
// Both return the packed value in a Uint8Array.
Napi::Value LuaVM::SetPackedHost(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckUsable(env);
  if (!info[0].IsFunction() || !info[1].IsFunction()) {
    throw InvalidArg(env, "LuaVM#setPackedHost(entry, pack): entry and pack must be functions");
  }
  holder_.Value().Set("packedHost", info[0]);
  holder_.Value().Set("packValue", info[1]);
  return env.Undefined();
}

Napi::Value LuaVM::PackedHostEntry(const char* which) {
  Napi::Object h = holder_.IsEmpty() ? Napi::Object() : holder_.Value();
  return h.IsEmpty() ? Env().Undefined() : h.Get(which);
}

Napi::Value LuaVM::SetGlobalFunction(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckUsable(env);
  if (!info[0].IsString()) throw InvalidArg(env, "LuaVM#setGlobalFunction(path, fn): path must be a string");
  if (!info[1].IsFunction()) throw InvalidArg(env, "LuaVM#setGlobalFunction(path, fn): fn must be a function");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int slot = SlotForPath(path);
  fns_.Value().Set(static_cast<uint32_t>(slot), info[1]);
  lua_State* L = active_;
  if (!lua_checkstack(L, 4)) throw MakeError(env, "LuaError", "Lua stack overflow");
  SetGlobalCtx ctx{path.data(), path.size(), slot};
  int st = Protected(L, SetGlobalTrampoline, &ctx);
  if (st != LUA_OK) {
    std::string msg = LuaString(L, -1);
    lua_pop(L, 1);
    if (st == LUA_ERRMEM) throw MakeError(env, "LuaMemoryError", "not enough memory");
    throw InvalidArg(env, "LuaVM#setGlobalFunction(): " + msg);
  }
  return env.Undefined();
}

int LuaVM::InvokeHost(lua_State* L) noexcept {
  // Every outcome leaves exactly one value on the stack: the result (return 1) or an error (-1).
  auto fail = [&](const std::string& msg, napi_value err) -> int {
    lua_settop(L, 0);
    PushCtx ctx{nullptr, msg.data(), msg.size()};
    if (ProtectedPush(L, &ctx) == LUA_OK && L_ != nullptr) {
      host_err_set_ = true;
      lua_rawgeti(L, LUA_REGISTRYINDEX, aux_ref_);
      lua_pushvalue(L, -2);
      lua_rawseti(L, -2, kAuxHostErr);
      lua_pop(L, 1);
      if (err != nullptr) {
        host_err_ = lua_tostring(L, -1);
        try {
          Napi::Object h = holder_.Value();
          if (!h.IsEmpty()) h.Set("error", Napi::Value(Env(), err));
        } catch (...) {
          host_err_ = nullptr;
        }
      }
    }
    return -1;
  };
  // The environment refuses to run JS (worker termination, teardown; a termination caught by
  // the call surfaces as an exception too): end the whole call like a spent budget, so that a
  // script looping over pcall stops as well.
  auto interrupt = [&]() -> int {
    interrupted_ = true;
    budget_.exhausted = true;
    Regrant(budget_, meter_);
    lua_sethook(L, CountHook, LUA_MASKCOUNT, 1);
    return fail("JS cannot run any more in this environment", nullptr);
  };
  if (closing_ || L_ == nullptr) return fail("host functions are disabled while the LuaVM closes", nullptr);
  if (meter_.finalizing > 0) return fail("host functions cannot be called from __gc finalizers", nullptr);
  if (interrupted_) return interrupt();
  try {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    int64_t slot = lua_tointeger(L, lua_upvalueindex(1));
    Napi::Value fn = fns_.IsEmpty() ? env.Undefined() : fns_.Value().Get(static_cast<uint32_t>(slot));
    if (!fn.IsFunction()) {
      const std::string* path = HostPath(slot);
      return fail("host function '" + (path != nullptr ? *path : std::string("?")) +
                      "' is not registered (after a restore, register it again with setGlobalFunction)",
                  nullptr);
    }
    int nargs = lua_gettop(L);
    napi_value small[8];
    std::vector<napi_value> big;
    napi_value* argv = small;
    if (nargs > 8) {
      big.resize(static_cast<size_t>(nargs));
      argv = big.data();
    }
    // With a table among the arguments, the JS entry (setPackedHost) gets them packed and calls
    // fn: packedHost(fn, buffer) returns the result packed in a Uint8Array.
    napi_value callee = fn;
    size_t argc = static_cast<size_t>(nargs);
    int i = 0;
    for (int t; i < nargs && (t = lua_type(L, i + 1)) != LUA_TTABLE; i++) argv[i] = LuaToJs(env, L, i + 1, t);
    if (i < nargs) {
      Napi::Value entry = PackedHostEntry("packedHost");
      if (entry.IsFunction()) {
        callee = entry;
        argc = 2;
        argv[0] = fn;
        argv[1] = PackedResults(env, L, 1, nargs, nullptr);
      } else {
        for (; i < nargs; i++) argv[i] = LuaToJs(env, L, i + 1);
      }
    }
    lua_settop(L, 0);

    Frame frame(this, L, false);
    napi_value undefined, result;
    napi_get_undefined(env, &undefined);
    // A call into JS that failed: its exception becomes the Lua error (or the call ends, when JS
    // cannot run any more).
    auto jsFailed = [&]() -> int {
      napi_value exc = nullptr;
      bool pending = false;
      napi_is_exception_pending(env, &pending);
      if (pending) napi_get_and_clear_last_exception(env, &exc);
      if (exc == nullptr || JsUnavailable(env)) return interrupt();
      return fail(JsErrorMessage(env, exc), exc);
    };
    napi_status st = napi_call_function(env, undefined, callee, argc, argv, &result);
    if (st != napi_ok) return jsFailed();
    napi_valuetype rt = napi_undefined;
    if (napi_typeof(env, result, &rt) != napi_ok) throw Napi::Error::New(env);
    bool bytes = false;
    if (callee == fn && rt == napi_object && napi_is_typedarray(env, result, &bytes) == napi_ok && !bytes) {
      // An object or array result: packed by JS (one call) instead of one N-API call per property.
      Napi::Value pack = PackedHostEntry("packValue");
      if (pack.IsFunction()) {
        callee = pack;
        st = napi_call_function(env, undefined, pack, 1, &result, &result);
        if (st != napi_ok) return jsFailed();
      }
    }
    if (callee != fn) {
      PackedReader reader = ReadPackedValue(env, result);
      PushCtx ctx{nullptr, nullptr, 0, &reader};
      return ProtectedPush(L, &ctx) == LUA_OK ? 1 : -1;
    }
    LuaArena& a = frame.arena();
    ArenaBuilder(env, a, "host function result").AddTyped(result, rt, "", 0);
    if (!a.needs_protection) {
      PushScalar(L, a.nodes[0]);
      return 1;
    }
    PushCtx ctx{&a, nullptr, 0};
    return ProtectedPush(L, &ctx) == LUA_OK ? 1 : -1;
  } catch (const Napi::Error& e) {
    if (JsUnavailable(Env())) return interrupt();
    try {
      return fail(e.Message(), e.Value());
    } catch (...) {
      return fail("host function failed", nullptr);
    }
  } catch (const std::exception& e) {
    return fail(std::string("host function failed: ") + e.what(), nullptr);
  } catch (...) {
    return fail("host function failed", nullptr);
  }
}

}  // namespace hbr
