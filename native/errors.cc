// System errors: C++ passes (errno, syscall) to the TS factory; TS owns names and messages.
#include "errors.h"

#include "addon.h"

namespace fdpass {

Napi::Value MakeSystemError(Napi::Env env, int err, const char* syscall) {
  Addon* addon = Addon::From(env);
  if (addon != nullptr && !addon->error_factory.IsEmpty()) {
    return addon->error_factory.Call({Napi::Number::New(env, err), Napi::String::New(env, syscall)});
  }
  // Only before lib/native.ts registered the factory (never in normal use).
  Napi::Error e = Napi::Error::New(env, syscall);
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e.Value();
}

void ThrowSystemError(Napi::Env env, int err, const char* syscall) {
  Napi::Value e = MakeSystemError(env, err, syscall);
  if (env.IsExceptionPending() || e.IsEmpty()) return;  // the factory itself threw
  napi_throw(env, e);
}

void ThrowTypeError(Napi::Env env, const char* code, const char* message) {
  Napi::Error e = Napi::TypeError::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  e.ThrowAsJavaScriptException();
}

void ThrowRangeError(Napi::Env env, const char* code, const char* message) {
  Napi::Error e = Napi::RangeError::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  e.ThrowAsJavaScriptException();
}

}  // namespace fdpass
