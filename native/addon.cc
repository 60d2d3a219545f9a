// Module init: exports table, per-env Addon state and its async cleanup hook (Workers, exit).
#include "addon.h"

#include "accept_poller.h"
#include "channel_poller.h"

namespace fdpass {
namespace {

// Env teardown (process exit or Worker end): close every live poller, then let teardown go on once
// their uv_close callbacks ran (napi_add_async_cleanup_hook exists for exactly this).
void OnTeardown(napi_async_cleanup_hook_handle handle, void* arg) {
  Addon* addon = static_cast<Addon*>(arg);
  addon->cleanup_hook = handle;
  std::set<PollBase*> live;
  live.swap(addon->live_pollers);
  for (PollBase* p : live) p->CloseHandle();
  // Fds read into a JS inbox but never handed out: no JS runs any more to take or close them.
  std::set<ChannelPoller*> holders;
  holders.swap(addon->holders);
  for (ChannelPoller* p : holders) {
    p->DropHeld();
    p->Untrack();
  }
  if (addon->pending_closes == 0) {
    addon->cleanup_hook = nullptr;
    napi_remove_async_cleanup_hook(handle);
  }
}

Napi::Value SetErrorFactory(const Napi::CallbackInfo& info) {
  if (!info[0].IsFunction()) {
    Napi::TypeError::New(info.Env(), "factory must be a function").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  Addon::From(info.Env())->error_factory = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

}  // namespace

void Addon::CloseDone() {
  pending_closes--;
  if (pending_closes == 0 && cleanup_hook != nullptr) {
    napi_async_cleanup_hook_handle h = cleanup_hook;
    cleanup_hook = nullptr;
    napi_remove_async_cleanup_hook(h);
  }
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
#ifdef FDPASS_SANITIZER_BUILD
  InitSanitizerBuild(env, exports);
#endif
  Addon* addon = new Addon();
  env.SetInstanceData<Addon>(addon);  // deleted by node-addon-api's default finalizer
  napi_add_async_cleanup_hook(env, OnTeardown, addon, nullptr);

  exports.Set("setErrorFactory", Napi::Function::New(env, SetErrorFactory, "setErrorFactory"));
  exports.Set("ChannelPoller", ChannelPoller::Define(env));
  exports.Set("AcceptPoller", AcceptPoller::Define(env));
  RegisterFunctions(env, exports);
  return exports;
}

}  // namespace fdpass

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return fdpass::Init(env, exports); }

NODE_API_MODULE(NODE_GYP_MODULE_NAME, InitAddon)
