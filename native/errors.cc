#include "errors.h"

#include "addon.h"

namespace hbr {

Napi::Error MakeError(Napi::Env env, const char* cls, const std::string& message,
                      ErrorProps props) {
  Napi::Object p = Napi::Object::New(env);
  for (const auto& kv : props) p.Set(kv.first, kv.second);
  Addon* addon = AddonOf(env);
  if (addon != nullptr && !addon->error_classes.IsEmpty()) {
    Napi::Value ctor = addon->error_classes.Value().Get(cls);
    if (ctor.IsFunction()) {
      Napi::Object err = ctor.As<Napi::Function>().New({Napi::String::New(env, message), p});
      return Napi::Error(env, err);
    }
  }
  Napi::Error err = Napi::Error::New(env, message);
  Napi::Object obj = err.Value();
  for (const auto& kv : props) obj.Set(kv.first, kv.second);
  return err;
}

Napi::Error InvalidArg(Napi::Env env, const std::string& message) {
  return MakeError(env, "AoError", message,
                   {{"status", Napi::Number::New(env, 400)},
                    {"code", Napi::String::New(env, "ERR_INVALID_ARG")}});
}

Napi::Error ClosedError(Napi::Env env, const char* what) {
  return Napi::TypeError::New(env, std::string(what) + " is closed");
}

}  // namespace hbr
