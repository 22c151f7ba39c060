// Bound calls: a JS function that reaches its native handle through its callback data instead of
// unwrapping `this` (V8's private-property lookup, a fifth to a third of a small call's cost).
//
// The handle and every function made for it share a BoundLink, freed by the last of its owners;
// the handle's destructor clears `self`, so a function that outlives its handle throws instead of
// touching freed memory. Everything runs on the handle's JS thread.
#pragma once

#include <napi.h>

#include "errors.h"

namespace hbr {

struct BoundLink {
  void* self;
  int owners;
};

// The callback of a bound function: `(self->*Method)(info)`, or ClosedError ("<T::kHandleName> is
// closed", as the handle's own methods say) once the handle is gone.
template <class T, Napi::Value (T::*Method)(const Napi::CallbackInfo&)>
Napi::Value BoundCallback(const Napi::CallbackInfo& info) {
  T* self = static_cast<T*>(static_cast<BoundLink*>(info.Data())->self);
  if (self == nullptr) throw ClosedError(info.Env(), T::kHandleName);
  return (self->*Method)(info);
}

// A function calling `Method` of `self`; `link` is the handle's own (created on first use).
template <class T, Napi::Value (T::*Method)(const Napi::CallbackInfo&)>
Napi::Function BindMethod(Napi::Env env, T* self, BoundLink*& link, const char* name) {
  if (link == nullptr) link = new BoundLink{self, 1};
  Napi::Function fn = Napi::Function::New(env, &BoundCallback<T, Method>, name, link);
  link->owners++;
  fn.AddFinalizer(
      [](Napi::Env, BoundLink* l) {
        if (--l->owners == 0) delete l;
      },
      link);
  return fn;
}

// For the handle's destructor.
inline void ReleaseBoundLink(BoundLink*& link) {
  if (link == nullptr) return;
  link->self = nullptr;
  if (--link->owners == 0) delete link;
  link = nullptr;
}

}  // namespace hbr
