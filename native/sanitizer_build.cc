// What only the sanitizer build holds (binding.gyp sanitize=1, never shipped): UBSan's report path,
// and deliberate bugs that npm run test:asan triggers first, to prove a report really fails the run.
#include <dlfcn.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <string>

#include "addon.h"

namespace fdpass {
namespace {

// gcc's UBSan is a runtime of its own (libubsan) beside ASan's; next to ASan it runs as a plugin that
// never applies UBSAN_OPTIONS=log_path, so its reports went to stderr, where a test's child hides
// them. Hand libubsan's own copy of the report path the log_path of UBSAN_OPTIONS.
void RouteUbsanReports() {
  const char* options = std::getenv("UBSAN_OPTIONS");
  const char* key = options != nullptr ? std::strstr(options, "log_path=") : nullptr;
  if (key == nullptr) return;
  key += std::strlen("log_path=");
  std::string path(key, std::strcspn(key, ":"));
  void* ubsan = dlopen("libubsan.so.1", RTLD_NOW | RTLD_NOLOAD);
  if (ubsan == nullptr) return;
  auto set_report_path = reinterpret_cast<void (*)(const char*)>(dlsym(ubsan, "__sanitizer_set_report_path"));
  if (set_report_path != nullptr) set_report_path(path.c_str());
  dlclose(ubsan);
}

char* volatile lost_canary;

// sanitizerCanary(kind): "heap-overflow", "use-after-free", "leak" or "ubsan".
Napi::Value SanitizerCanary(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) {
    Napi::TypeError::New(env, "kind must be a string").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string kind = info[0].As<Napi::String>().Utf8Value();
  volatile size_t index = 8;  // volatile: the compiler may neither see nor fold the bug
  if (kind == "heap-overflow") {
    volatile char* p = new char[index];  // a size only known at run time: ASan's, not UBSan's, catch
    p[index] = 1;
    delete[] p;
  } else if (kind == "use-after-free") {
    volatile char* p = new char[index];
    delete[] p;
    p[0] = 1;
  } else if (kind == "leak") {
    lost_canary = new char[64];
    lost_canary = nullptr;
  } else if (kind == "ubsan") {
    volatile int big = INT_MAX;
    volatile int sum = big + static_cast<int>(index);  // signed overflow
    (void)sum;
  } else {
    Napi::TypeError::New(env, "unknown canary").ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

}  // namespace

void InitSanitizerBuild(Napi::Env env, Napi::Object exports) {
  RouteUbsanReports();
  exports.Set("sanitizerCanary", Napi::Function::New(env, SanitizerCanary, "sanitizerCanary"));
}

}  // namespace fdpass
