// Argument readers: each re-checks what TS already validated and throws TypeError/RangeError on a
// mismatch, returning false so the caller can return at once (exceptions are off).
#ifndef FDPASS_ARGS_H_
#define FDPASS_ARGS_H_

#include <napi.h>

#include <climits>
#include <cmath>
#include <string>

#include "errors.h"

namespace fdpass {

inline bool ReadInt32(const Napi::CallbackInfo& info, size_t i, int* out, int min = INT_MIN,
                      int max = INT_MAX) {
  Napi::Value v = info[i];
  if (!v.IsNumber()) {
    ThrowTypeError(info.Env(), "ERR_INVALID_ARG_TYPE", "argument must be of type number");
    return false;
  }
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::trunc(d) != d || d < min || d > max) {
    ThrowRangeError(info.Env(), "ERR_OUT_OF_RANGE", "argument is out of range");
    return false;
  }
  *out = static_cast<int>(d);
  return true;
}

inline bool ReadFd(const Napi::CallbackInfo& info, size_t i, int* out) {
  return ReadInt32(info, i, out, 0, INT_MAX);
}

inline bool ReadBool(const Napi::CallbackInfo& info, size_t i, bool* out) {
  Napi::Value v = info[i];
  if (!v.IsBoolean()) {
    ThrowTypeError(info.Env(), "ERR_INVALID_ARG_TYPE", "argument must be of type boolean");
    return false;
  }
  *out = v.As<Napi::Boolean>().Value();
  return true;
}

inline bool ReadString(const Napi::CallbackInfo& info, size_t i, std::string* out) {
  Napi::Value v = info[i];
  if (!v.IsString()) {
    ThrowTypeError(info.Env(), "ERR_INVALID_ARG_TYPE", "argument must be of type string");
    return false;
  }
  *out = v.As<Napi::String>().Utf8Value();
  return true;
}

inline bool ReadFunction(const Napi::CallbackInfo& info, size_t i, Napi::Function* out) {
  Napi::Value v = info[i];
  if (!v.IsFunction()) {
    ThrowTypeError(info.Env(), "ERR_INVALID_ARG_TYPE", "argument must be of type function");
    return false;
  }
  *out = v.As<Napi::Function>();
  return true;
}

// A Uint8Array (Buffer) or null/undefined (no bytes).
inline bool ReadBytes(const Napi::CallbackInfo& info, size_t i, const uint8_t** data, size_t* len) {
  Napi::Value v = info[i];
  if (v.IsNull() || v.IsUndefined()) {
    *data = nullptr;
    *len = 0;
    return true;
  }
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    ThrowTypeError(info.Env(), "ERR_INVALID_ARG_TYPE", "argument must be a Uint8Array");
    return false;
  }
  Napi::Uint8Array a = v.As<Napi::Uint8Array>();
  *data = a.Data();
  *len = a.ByteLength();
  return true;
}

// A typed array of `type` with at least `min_length` elements: the memory shared with JS.
inline bool ReadTypedArray(const Napi::CallbackInfo& info, size_t i, napi_typedarray_type type,
                           size_t min_length, const char* what, Napi::TypedArray* out) {
  Napi::Value v = info[i];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) {
    ThrowTypeError(info.Env(), "ERR_INVALID_ARG_TYPE", what);
    return false;
  }
  Napi::TypedArray a = v.As<Napi::TypedArray>();
  if (a.ElementLength() < min_length) {
    ThrowRangeError(info.Env(), "ERR_OUT_OF_RANGE", what);
    return false;
  }
  *out = a;
  return true;
}

}  // namespace fdpass

#endif  // FDPASS_ARGS_H_
