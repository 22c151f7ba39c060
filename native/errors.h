// Errors thrown by the addon are instances of the TypeScript classes in src/errors.ts, handed to
// the addon by native.ts at load time. C++ code builds them here and throws them as Napi::Error
// (C++ exceptions are on: NAPI_CPP_EXCEPTIONS).
#pragma once

#include <napi.h>

#include <initializer_list>
#include <string>
#include <utility>

namespace hbr {

using ErrorProps = std::initializer_list<std::pair<const char*, Napi::Value>>;

// `new <cls>(message, {props})`, falling back to a plain Error with the same props when the
// classes were not registered (only possible if the addon is loaded without native.ts).
Napi::Error MakeError(Napi::Env env, const char* cls, const std::string& message,
                      ErrorProps props = {});

// An AoError with status 400 and code ERR_INVALID_ARG.
Napi::Error InvalidArg(Napi::Env env, const std::string& message);

// A plain TypeError, for use of a closed or busy handle (a programming error, not a fault).
Napi::Error ClosedError(Napi::Env env, const char* what);

}  // namespace hbr
