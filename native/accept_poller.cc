// AcceptPoller: an accept batch (accept4 until EAGAIN or the budget), one call into JS per batch. The
// poll itself: poll_base.cc.
#include "accept_poller.h"

#include <errno.h>

#include <vector>

#include "args.h"
#include "sys/unix_socket.h"

namespace fdpass {

Napi::Function AcceptPoller::Define(Napi::Env env) {
  return DefineClass(env, "AcceptPoller", CommonMethods<AcceptPoller>());
}

AcceptPoller::AcceptPoller(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<AcceptPoller>(info), PollBase(info.Env()) {
  int fd;
  Napi::Function on_accept, on_error;
  if (!ReadFd(info, 0, &fd) || !ReadFunction(info, 1, &on_accept) || !ReadFunction(info, 2, &on_error)) {
    return;
  }
  Napi::Object self = info.This().As<Napi::Object>();
  if (!HoldCallbacks(self, {{"_onAccept", on_accept, &on_accept_}, {"_onError", on_error, &on_error_}}))
    return;
  Open(self, fd, "fdpass:AcceptPoller");
}

// GC backstop: an unclosed poller still frees its fd.
AcceptPoller::~AcceptPoller() { CloseHandle(); }

void AcceptPoller::OnReadable() {
  Napi::Env env(env_);
  Napi::Array fds = Napi::Array::New(env);
  uint32_t count = 0;
  int err = 0;
  bool built = true;
  std::vector<UniqueFd> held;
  for (int i = 0; i < kReadBudget; i++) {
    int fd = UnixAccept(fd_.get());
    if (fd == -EAGAIN) break;
    if (fd == -ECONNABORTED) continue;  // the client gave up before we accepted: not our error
    if (fd < 0) {
      err = fd;  // EMFILE and friends: JS pauses accepting for a while
      break;
    }
    held.emplace_back(fd);
    built = built && fds.Set(count++, Napi::Number::New(env, fd));
  }
  if (!built) return;  // JS can no longer run: the accepted fds close with `held`
  for (auto& fd : held) fd.release();
  if (count == 0 && err == 0) return;
  Call(on_accept_, {fds, Napi::Number::New(env, err), Napi::String::New(env, "accept4")});
}

}  // namespace fdpass
