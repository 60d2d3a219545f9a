// PollBase: one socket, one uv_poll_t on Node's loop, no blocking syscall and no threads.
// libuv docs/src/poll.rst: readiness is only a hint (EAGAIN is normal), and the poll handle must be
// stopped (uv_close) before the fd is closed.
#include "poll_base.h"

#include <errno.h>
#include <fcntl.h>

#include "errors.h"

namespace fdpass {
namespace {

// napi_set_element runs NAPI_PREAMBLE, which fails once the environment can no longer call into JS.
bool CanCallJs(napi_env env) {
  napi_value probe, undefined;
  if (napi_create_array(env, &probe) != napi_ok || napi_get_undefined(env, &undefined) != napi_ok)
    return false;
  return napi_set_element(env, probe, 0, undefined) == napi_ok;
}

// Receivers adopt fds they may have inherited (spawn stdio): make them ours.
int MakeNonBlockingCloexec(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -errno;
  int fdfl = fcntl(fd, F_GETFD);
  if (fdfl < 0 || fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) < 0) return -errno;
  return 0;
}

}  // namespace

PollBase::PollBase(Napi::Env env) : env_(env), addon_(Addon::From(env)) {}

// GC backstop: an unclosed poller still frees its fd. (A subclass's destructor closes first, so that
// OnClose still reaches it.)
PollBase::~PollBase() { CloseHandle(); }

bool PollBase::HoldCallbacks(Napi::Object self, std::initializer_list<Callback> callbacks) {
  std::vector<napi_property_descriptor> props;
  for (const Callback& c : callbacks) {
    props.push_back({c.name, nullptr, nullptr, nullptr, nullptr, c.fn, napi_default, nullptr});
  }
  if (napi_define_properties(env_, self, props.size(), props.data()) != napi_ok) return false;
  for (const Callback& c : callbacks) *c.weak = Napi::Weak(c.fn);
  return true;
}

bool PollBase::Open(Napi::Object self, int fd, const char* resource_name) {
  // One rule for every failure here: never close `fd` (node-addon-api deletes the half-built object,
  // so fd_ takes the fd only once nothing can fail); the caller does.
  int rc = MakeNonBlockingCloexec(fd);
  if (rc < 0) {
    ThrowSystemError(env_, rc, "fcntl");
    return false;
  }
  self_ = Napi::Weak(self);
  async_context_ = std::make_unique<Napi::AsyncContext>(env_, resource_name);

  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env_, &loop);
  handle_ = new Handle();
  handle_->addon = addon_;
  handle_->owner = this;
  // uv_poll_init checks the fd with epoll_ctl: a regular file is EPERM, an fd another handle of this
  // loop watches is EEXIST.
  rc = uv_poll_init(loop, &handle_->poll, fd);
  if (rc < 0) {
    delete handle_;
    handle_ = nullptr;
    ThrowSystemError(env_, rc, "uv_poll_init");
    return false;
  }
  handle_->poll.data = handle_;
  fd_.reset(fd);
  addon_->live_pollers.insert(this);
  return true;
}

void PollBase::CloseHandle() {
  if (handle_ != nullptr) {
    uv_poll_stop(&handle_->poll);
    handle_->owner = nullptr;
    addon_->pending_closes++;
    uv_close(reinterpret_cast<uv_handle_t*>(&handle_->poll), [](uv_handle_t* h) {
      Handle* handle = static_cast<Handle*>(h->data);
      Addon* addon = handle->addon;
      delete handle;
      addon->CloseDone();
    });
    handle_ = nullptr;
    addon_->live_pollers.erase(this);
  }
  // uv_close removed the fd from epoll synchronously (uv__platform_invalidate_fd): safe to close now.
  fd_.reset();
  OnClose();
  reading_ = false;
  polling_events_ = 0;
  SetPinned(false);
}

void PollBase::UpdatePolling() {
  if (handle_ == nullptr) return;
  int events = 0;
  if (reading_) events |= UV_READABLE;
  if (WantsWritable()) events |= UV_WRITABLE;
  if (events != polling_events_) {
    polling_events_ = events;
    if (events == 0) {
      uv_poll_stop(&handle_->poll);
    } else {
      int rc = uv_poll_start(&handle_->poll, events, OnPoll);
      if (rc < 0) polling_events_ = 0;  // only on a closed loop; the JS side sees no events
    }
  }
  // While libuv may call back, keep the JS object (and its callbacks) from being collected.
  SetPinned(events != 0);
}

void PollBase::SetPinned(bool pinned) {
  if (pinned == pinned_) return;
  pinned_ = pinned;
  if (pinned) {
    self_.Ref();
  } else {
    self_.Unref();
  }
}

void PollBase::OnPoll(uv_poll_t* poll, int status, int events) {
  Handle* handle = static_cast<Handle*>(poll->data);
  PollBase* self = handle->owner;
  if (self == nullptr) return;
  Napi::HandleScope scope(self->env_);
  if (!CanCallJs(self->env_)) {
    // Env teardown (Worker terminate, process.exit, FreeEnvironment's last loop turn): JS is gone.
    // Leave everything in the kernel; the cleanup hook closes the socket.
    uv_poll_stop(&handle->poll);
    self->polling_events_ = 0;
    return;
  }
  if (status < 0) {
    // libuv reports POLLERR as UV_EBADF and stops the handle: the subclass reads what is still queued
    // before the error first (see ChannelPoller::DrainBeforeError); the error comes last.
    self->polling_events_ = 0;
    if (self->DrainBeforeError()) return;
    self->reading_ = false;
    self->UpdatePolling();
    self->Call(self->on_error_, {Napi::Number::New(self->env_, status),
                                 Napi::String::New(self->env_, "uv_poll"), Napi::Number::New(self->env_, 0)});
    return;
  }
  if ((events & UV_WRITABLE) != 0) self->OnWritable();
  if (self->handle_ == nullptr) return;  // JS closed us from a callback
  if ((events & UV_READABLE) != 0 && self->reading_) self->OnReadable();
}

void PollBase::Call(const Napi::FunctionReference& fn, const std::vector<napi_value>& args) {
  if (fn.IsEmpty()) return;
  napi_value callback = fn.Value();
  if (callback == nullptr) return;  // collected with its object: nobody is listening any more
  napi_value result;
  napi_status status =
      napi_make_callback(env_, *async_context_, self_.Value(), callback, args.size(), args.data(), &result);
  if (status == napi_ok) return;
  // The callback threw: route it to 'uncaughtException' as Node does for its own callbacks.
  // (When the env is shutting down there is nothing to report to.)
  bool pending = false;
  if (napi_is_exception_pending(env_, &pending) == napi_ok && pending) {
    napi_value error;
    if (napi_get_and_clear_last_exception(env_, &error) == napi_ok) napi_fatal_exception(env_, error);
  }
}

Napi::Value PollBase::ReadStart(const Napi::CallbackInfo& info) {
  if (fd_.valid()) {
    reading_ = true;
    UpdatePolling();
  }
  return info.Env().Undefined();
}

Napi::Value PollBase::ReadStop(const Napi::CallbackInfo& info) {
  reading_ = false;
  UpdatePolling();
  return info.Env().Undefined();
}

Napi::Value PollBase::Close(const Napi::CallbackInfo& info) {
  CloseHandle();
  return info.Env().Undefined();
}

Napi::Value PollBase::RefLoop(const Napi::CallbackInfo& info) {
  if (handle_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(&handle_->poll));
  return info.Env().Undefined();
}

Napi::Value PollBase::UnrefLoop(const Napi::CallbackInfo& info) {
  if (handle_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(&handle_->poll));
  return info.Env().Undefined();
}

Napi::Value PollBase::GetFd(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), fd_.get());
}

}  // namespace fdpass
