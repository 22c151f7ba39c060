#include "lua_vm.h"

extern "C" {
#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"
}

namespace hbr {

void LuaVM::Init(Napi::Env env, Napi::Object exports, Addon* addon) {
  Napi::Function ctor = DefineClass(env, "LuaVM", {});
  addon->lua_vm_ctor = Napi::Persistent(ctor);
  exports.Set("LuaVM", ctor);
}

LuaVM::LuaVM(const Napi::CallbackInfo& info) : Napi::ObjectWrap<LuaVM>(info) {
  L_ = luaL_newstate();
  Track(AddonOf(info.Env()));
}

LuaVM::~LuaVM() { Close(); }

void LuaVM::Close() {
  if (L_ != nullptr) lua_close(L_);
  L_ = nullptr;
  Untrack();
}

}  // namespace hbr
