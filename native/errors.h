// System errors as Node-style Error objects, built by the factory lib/native.ts registers at load
// (systemError, lib/errors.ts).
#ifndef FDPASS_ERRORS_H_
#define FDPASS_ERRORS_H_

#include <napi.h>

namespace fdpass {

// Returns the Error for `err` (-errno) from `syscall`; C++ never formats messages itself.
Napi::Value MakeSystemError(Napi::Env env, int err, const char* syscall);
// Throws MakeSystemError(...) as a pending exception; the caller returns right after.
void ThrowSystemError(Napi::Env env, int err, const char* syscall);
void ThrowTypeError(Napi::Env env, const char* code, const char* message);
void ThrowRangeError(Napi::Env env, const char* code, const char* message);

}  // namespace fdpass

#endif  // FDPASS_ERRORS_H_
