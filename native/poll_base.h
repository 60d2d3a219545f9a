// PollBase: what ChannelPoller and AcceptPoller share: one socket fd and its uv_poll_t on Node's loop.
// It owns the handle's lifecycle (init, start/stop, ref/unref, uv_close), the fd, the pin that keeps the
// JS object alive while libuv may call back, env teardown (Addon::live_pollers) and calls into JS.
#ifndef FDPASS_POLL_BASE_H_
#define FDPASS_POLL_BASE_H_

#include <napi.h>
#include <uv.h>

#include <initializer_list>
#include <memory>
#include <vector>

#include "addon.h"
#include "unique_fd.h"

namespace fdpass {

// libuv's uv__read reads at most 32 times per wakeup so one busy socket cannot starve the loop: so do
// a read batch and an accept batch.
constexpr int kReadBudget = 32;

class PollBase {
 public:
  // Stops polling and closes the fd. Idempotent. Env teardown calls it on every live poller.
  void CloseHandle();

  // The JS methods every poller has: readStart(), readStop(), close(), ref(), unref() and `fd`. T is
  // the ObjectWrap class deriving from PollBase.
  template <class T>
  static std::vector<typename Napi::ObjectWrap<T>::PropertyDescriptor> CommonMethods() {
    using W = Napi::ObjectWrap<T>;
    return {W::InstanceMethod("readStart", &T::ReadStart), W::InstanceMethod("readStop", &T::ReadStop),
            W::InstanceMethod("close", &T::Close),         W::InstanceMethod("ref", &T::RefLoop),
            W::InstanceMethod("unref", &T::UnrefLoop),     W::InstanceAccessor("fd", &T::GetFd, nullptr)};
  }

  Napi::Value ReadStart(const Napi::CallbackInfo& info);
  Napi::Value ReadStop(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value RefLoop(const Napi::CallbackInfo& info);
  Napi::Value UnrefLoop(const Napi::CallbackInfo& info);
  Napi::Value GetFd(const Napi::CallbackInfo& info);

 protected:
  explicit PollBase(Napi::Env env);
  virtual ~PollBase();
  PollBase(const PollBase&) = delete;
  PollBase& operator=(const PollBase&) = delete;

  // The callbacks close over the JS object that holds this poller: strong references from C++ would
  // make that cycle a GC root and an unclosed poller would never be collected. So `self` keeps them
  // (non-enumerable properties `name`) and C++ holds weak references; while polling, UpdatePolling
  // pins `self`, and with it the callbacks. False when JS can no longer run.
  struct Callback {
    const char* name;
    Napi::Function fn;
    Napi::FunctionReference* weak;
  };
  bool HoldCallbacks(Napi::Object self, std::initializer_list<Callback> callbacks);

  // Takes ownership of `fd` once it returns true (non-blocking, close-on-exec, polled by a uv_poll_t).
  // On false a JS exception is pending and `fd` is still the caller's.
  bool Open(Napi::Object self, int fd, const char* resource_name);

  // Starts, changes or stops the poll to match reading_ and WantsWritable(); pins the JS object while
  // libuv may call back.
  void UpdatePolling();
  // Calls a JS callback as an async-hooks-aware MakeCallback; routes a throw to 'uncaughtException'.
  void Call(const Napi::FunctionReference& fn, const std::vector<napi_value>& args);
  bool closed() const { return handle_ == nullptr; }

  // What the subclass does when the socket is readable (and reading_) or writable.
  virtual void OnReadable() = 0;
  virtual void OnWritable() {}
  virtual bool WantsWritable() const { return false; }
  // libuv reported a poll error (POLLERR): true when the subclass found progress to make first, so
  // that onError(status, "uv_poll") waits.
  virtual bool DrainBeforeError() { return false; }
  // CloseHandle's part for the subclass (queued data), after the fd closed.
  virtual void OnClose() {}

  napi_env env_;
  Addon* addon_;
  UniqueFd fd_;
  bool reading_ = false;
  Napi::FunctionReference on_error_;  // (errno, syscall, failedId)

 private:
  // The uv handle outlives this object until its close callback runs.
  struct Handle {
    uv_poll_t poll;
    Addon* addon;
    PollBase* owner;
  };

  static void OnPoll(uv_poll_t* poll, int status, int events);
  void SetPinned(bool pinned);

  Handle* handle_ = nullptr;
  int polling_events_ = 0;
  bool pinned_ = false;
  Napi::ObjectReference self_;  // weak; strong while pinned
  std::unique_ptr<Napi::AsyncContext> async_context_;
};

}  // namespace fdpass

#endif  // FDPASS_POLL_BASE_H_
