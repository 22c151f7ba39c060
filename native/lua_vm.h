// LuaVM: one Lua 5.3 state per handle (stub; the full class is being written).
#pragma once

#include <napi.h>

#include "addon.h"

struct lua_State;

namespace hbr {

class LuaVM : public Napi::ObjectWrap<LuaVM>, public Closable {
 public:
  static void Init(Napi::Env env, Napi::Object exports, Addon* addon);
  explicit LuaVM(const Napi::CallbackInfo& info);
  ~LuaVM() override;
  void Close() override;

 private:
  lua_State* L_ = nullptr;
};

}  // namespace hbr
