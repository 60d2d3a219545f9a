// Per-environment state (main thread or Worker): the error factory, live pollers, teardown.
#ifndef FDPASS_ADDON_H_
#define FDPASS_ADDON_H_

#include <napi.h>
#include <node_api.h>

#include <set>

namespace fdpass {

class PollBase;
class ChannelPoller;

struct Addon {
  Napi::FunctionReference error_factory;                  // (errno, syscall) -> Error, from lib/errors.ts
  std::set<PollBase*> live_pollers;                       // open pollers, closed at env teardown
  std::set<ChannelPoller*> holders;                       // channel pollers: may hold received fds (DropHeld)
  size_t pending_closes = 0;                              // uv_close callbacks still to run
  napi_async_cleanup_hook_handle cleanup_hook = nullptr;  // set while teardown waits for closes

  static Addon* From(Napi::Env env) { return env.GetInstanceData<Addon>(); }
  // Called from a uv_close callback: lets env teardown finish once every handle is closed.
  void CloseDone();
};

// Exports of functions.cc (the synchronous, stateless natives).
void RegisterFunctions(Napi::Env env, Napi::Object exports);

#ifdef FDPASS_SANITIZER_BUILD
// sanitizer_build.cc, in the sanitizer build only (binding.gyp sanitize=1).
void InitSanitizerBuild(Napi::Env env, Napi::Object exports);
#endif

Napi::Object Init(Napi::Env env, Napi::Object exports);

}  // namespace fdpass

#endif  // FDPASS_ADDON_H_
