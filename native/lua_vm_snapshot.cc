// LuaVM, part 5: snapshot, check and restore of a VM (the format itself is in lua_snapshot_*.cc),
// and the VM's own pointers that snapshots refer to by name.
#include <algorithm>
#include <cstdlib>
#include <vector>

#include "errors.h"
#include "lua_snapshot.h"
#include "lua_stdlib.h"
#include "lua_vm_internal.h"

namespace hbr {

using namespace luavm;

// Snapshots name these pointers (a C function in a snapshot is written as its name).
const LuaNamedPointer* LuaVmPointers(size_t* n) {
  static const LuaNamedPointer kPointers[] = {
      {"hb.host", reinterpret_cast<const void*>(&LuaHostTrampoline), kPtrCFunction},
      {"hb.load", reinterpret_cast<const void*>(&SafeLoad), kPtrCFunction},
      {"hb.xpcall", reinterpret_cast<const void*>(&GuardedXpcall), kPtrCFunction},
      {"hb.xpcall#k", reinterpret_cast<const void*>(&FinishPcall), kPtrKFunction},
      {"hb.xpcall#handler", reinterpret_cast<const void*>(&GuardedHandler), kPtrCFunction},
      {"hb.setmetatable", reinterpret_cast<const void*>(&SafeSetmetatable), kPtrCFunction},
      {"hb.collectgarbage", reinterpret_cast<const void*>(&SafeCollectgarbage), kPtrCFunction},
      {"hb.load#reader", reinterpret_cast<const void*>(&ChargedReader), kPtrCFunction},
      {"hb.math.random", reinterpret_cast<const void*>(&MathRandom), kPtrCFunction},
      {"hb.math.randomseed", reinterpret_cast<const void*>(&MathRandomseed), kPtrCFunction},
      {"hb.searcher", reinterpret_cast<const void*>(&SearcherLuaText), kPtrCFunction},
      {"hb.msghandler", reinterpret_cast<const void*>(&MsgHandler), kPtrCFunction},
      {"hb.print", reinterpret_cast<const void*>(&OutputPrint), kPtrCFunction},
      {"hb.os.time", reinterpret_cast<const void*>(&ClockTime), kPtrCFunction},
      {"hb.os.date", reinterpret_cast<const void*>(&ClockDate), kPtrCFunction},
      {"hb.os.clock", reinterpret_cast<const void*>(&ClockClock), kPtrCFunction},
      {"hb.counthook", reinterpret_cast<const void*>(&CountHook), kPtrHook},
      {"hb.limit", static_cast<const void*>(&kLimitSentinel), kPtrLightUserdata},
  };
  *n = sizeof(kPointers) / sizeof(kPointers[0]);
  return kPointers;
}

Napi::Value LuaVM::Snapshot(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckUsable(env, true);
  // snapshot(spare): `spare` bytes of room after the snapshot (for the seal).
  size_t spare = info[0].IsNumber() ? static_cast<size_t>(std::max(0.0, std::min(info[0].As<Napi::Number>().DoubleValue(), 4096.0))) : 0;
  Napi::Value blob = SerializeLuaState(env, L_, aux_ref_, libs_, rng_, host_paths_, spare);
  if (blob.IsUndefined()) throw MakeError(env, "LuaMemoryError", OutOfMemory("to snapshot the state", alloc_));
  return blob;
}

Napi::Value LuaVM::Check(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throw InvalidArg(env, "LuaVM.check(snapshot): snapshot must be a Uint8Array");
  }
  Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
  ReadLuaSnapshot(env, bytes.Data(), bytes.ByteLength());
  return env.Undefined();
}

Napi::Value LuaVM::Restore(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throw InvalidArg(env, "LuaVM.restore(snapshot): snapshot must be a Uint8Array");
  }
  Napi::Object opts = Napi::Object::New(env);
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Object o = info[1].As<Napi::Object>();
    for (const char* key : {"memoryLimit", "instructionLimit", "timeLimit", "print", "outputLimit", "clock"}) {
      Napi::Value v = o.Get(key);
      if (!v.IsUndefined()) opts.Set(key, v);
    }
  }
  Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
  // Everything is validated before a state exists.
  LuaSnapshotPrefix pre = ReadLuaSnapshot(env, bytes.Data(), bytes.ByteLength());
  Napi::Array libs = Napi::Array::New(env);
  uint32_t n = 0;
  for (const LuaLibInfo& lib : kLuaLibs) {
    if ((pre.libs & lib.bit) != 0) libs.Set(n++, lib.name);
  }
  opts.Set("libs", libs);

  Napi::Object obj = AddonOf(env)->lua_vm_ctor.New({opts});
  bool tagged = false;
  if (napi_check_object_type_tag(env, obj, &kLuaVMTag, &tagged) != napi_ok || !tagged) {
    throw Napi::TypeError::New(env, "LuaVM.restore(): the constructor did not produce a LuaVM");
  }
  LuaVM* vm = Unwrap(obj);
  std::vector<int> slots;
  for (const std::string& p : pre.host_paths) slots.push_back(vm->SlotForPath(p));
  LuaRestoreCtx ctx{&pre, slots.data(), kAuxSize};
  lua_State* L = vm->L_;
  int st = lua_checkstack(L, 8) ? vm->Protected(L, LuaRestoreTrampoline, &ctx) : LUA_ERRMEM;
  std::free(ctx.objs_mem);
  std::free(ctx.scratch_mem);
  if (st != LUA_OK) {
    std::string msg = LuaString(L, -1);
    bool mem = st == LUA_ERRMEM || vm->alloc_.refused;
    vm->Close();
    if (mem) {
      throw MakeError(env, "LuaMemoryError", OutOfMemory("to restore the snapshot", vm->alloc_));
    }
    throw MakeError(env, "SnapshotError", msg);
  }
  vm->aux_ref_ = static_cast<int>(pre.aux_ref);
  std::copy(pre.rng, pre.rng + 4, vm->rng_);
  return obj;
}

}  // namespace hbr
