// Poller: one socket, one uv_poll_t on Node's loop, no blocking syscall and no threads.
// libuv docs/src/poll.rst: readiness is only a hint (EAGAIN is normal), and the poll handle must be
// stopped (uv_close) before the fd is closed.
#include "poller.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>

#include <algorithm>

#include "args.h"
#include "errors.h"
#include "sys/message_io.h"
#include "sys/unix_socket.h"

namespace fdpass {
namespace {

// libuv's uv__read reads at most 32 times per wakeup so one busy socket cannot starve the loop.
constexpr int kReadBudget = 32;

// readInfo, the int32s a read batch leaves for JS: its layout is described once, in lib/native.ts
// (NativePollerConstructor); these are its offsets, exported to JS as Poller.READ_INFO_* statics.
constexpr size_t kReadInfoMessages = 2;
constexpr size_t kReadInfoFds = kReadInfoMessages + 2 * kReadBudget;
constexpr int32_t kDroppedCtrunc = 1;
constexpr int32_t kDroppedTrunc = 2;
constexpr size_t kReadFdsCapacity = static_cast<size_t>(kReadBudget) * kMaxFdsPerMessage;
constexpr size_t kReadInfoCred = kReadInfoFds + kReadFdsCapacity;
constexpr size_t kReadInfoLength = kReadInfoCred + 3 * static_cast<size_t>(kReadBudget);

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

Napi::Function Poller::Define(Napi::Env env) {
  return DefineClass(
      env, "Poller",
      {InstanceMethod<&Poller::Send>("send"), InstanceMethod<&Poller::ReadStart>("readStart"),
       InstanceMethod<&Poller::ReadStop>("readStop"), InstanceMethod<&Poller::Close>("close"),
       InstanceMethod<&Poller::DropHeldMethod>("dropHeld"), InstanceMethod<&Poller::Ref>("ref"),
       InstanceMethod<&Poller::Unref>("unref"), InstanceAccessor<&Poller::GetFd>("fd"),
       InstanceAccessor<&Poller::GetQueued>("queued"),
       StaticValue("READ_BUDGET", Napi::Number::New(env, kReadBudget)),
       StaticValue("READ_INFO_MESSAGES", Napi::Number::New(env, static_cast<double>(kReadInfoMessages))),
       StaticValue("READ_INFO_FDS", Napi::Number::New(env, static_cast<double>(kReadInfoFds))),
       StaticValue("DROPPED_CTRUNC", Napi::Number::New(env, kDroppedCtrunc)),
       StaticValue("DROPPED_TRUNC", Napi::Number::New(env, kDroppedTrunc)),
       StaticValue("READ_INFO_CRED", Napi::Number::New(env, static_cast<double>(kReadInfoCred))),
       StaticValue("READ_INFO_LENGTH", Napi::Number::New(env, static_cast<double>(kReadInfoLength)))});
}

Poller::Poller(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Poller>(info) {
  Napi::Env env = info.Env();
  addon_ = Addon::From(env);
  int fd, mode, socket_type, buffer_size;
  Napi::Function on_read, on_sent, on_error;
  if (!ReadFd(info, 0, &fd) || !ReadInt32(info, 1, &mode, kMessages, kAccept) ||
      !ReadInt32(info, 2, &socket_type) || !ReadInt32(info, 3, &buffer_size, 1, 1 << 26) ||
      !ReadFunction(info, 4, &on_read) || !ReadFunction(info, 5, &on_sent) ||
      !ReadFunction(info, 6, &on_error)) {
    return;
  }
  // One rule for every failure below: the constructor never closes `fd` when it throws (node-addon-api
  // deletes the half-built object, so fd_ takes the fd only once nothing can fail); the caller does.
  Napi::TypedArray read_buffer, read_info, send_fds, read_taken;
  if (mode == kMessages &&
      (!ReadTypedArray(info, 7, napi_uint8_array, static_cast<size_t>(buffer_size),
                       "readBuffer must be a Uint8Array of at least bufferSize bytes", &read_buffer) ||
       !ReadTypedArray(info, 8, napi_int32_array, kReadInfoLength,
                       "readInfo must be an Int32Array of READ_INFO_LENGTH elements", &read_info) ||
       !ReadTypedArray(info, 9, napi_int32_array, static_cast<size_t>(kMaxFdsPerMessage),
                       "sendFds must be an Int32Array of 253 elements", &send_fds) ||
       !ReadTypedArray(info, 10, napi_int32_array, 1, "readTaken must be an Int32Array of 1 element",
                       &read_taken))) {
    return;
  }
  int rc = MakeNonBlockingCloexec(fd);
  if (rc < 0) {
    ThrowSystemError(env, rc, "fcntl");
    return;
  }
  mode_ = mode;
  socket_type_ = socket_type;
  if (mode_ == kMessages) {
    Napi::Uint8Array bytes = read_buffer.As<Napi::Uint8Array>();
    read_data_ = bytes.Data();
    read_capacity_ = bytes.ByteLength();
    max_message_ = static_cast<size_t>(buffer_size);
    read_info_ = read_info.As<Napi::Int32Array>().Data();
    send_fds_ = send_fds.As<Napi::Int32Array>().Data();
    read_buffer_ref_ = Napi::Persistent(bytes);
    read_info_ref_ = Napi::Persistent(read_info.As<Napi::Int32Array>());
    send_fds_ref_ = Napi::Persistent(send_fds.As<Napi::Int32Array>());
    read_taken_ = read_taken.As<Napi::Int32Array>().Data();
    read_taken_ref_ = Napi::Persistent(read_taken.As<Napi::Int32Array>());
    *read_taken_ = 0;
  }
  // The callbacks close over the JS Channel, which holds this object: strong references from C++ would
  // make that cycle a GC root and an unclosed channel would never be collected. So the JS object keeps
  // them (non-enumerable properties) and C++ holds weak references; while polling, UpdatePolling pins
  // the object, and with it the callbacks.
  Napi::Object self = info.This().As<Napi::Object>();
  napi_property_descriptor props[] = {
      {"_onRead", nullptr, nullptr, nullptr, nullptr, on_read, napi_default, nullptr},
      {"_onSent", nullptr, nullptr, nullptr, nullptr, on_sent, napi_default, nullptr},
      {"_onError", nullptr, nullptr, nullptr, nullptr, on_error, napi_default, nullptr}};
  if (napi_define_properties(env, self, 3, props) != napi_ok) return;
  on_read_ = Napi::Weak(on_read);
  on_sent_ = Napi::Weak(on_sent);
  on_error_ = Napi::Weak(on_error);
  async_context_ = std::make_unique<Napi::AsyncContext>(env, "fdpass:Poller");

  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  handle_ = new Handle();
  handle_->addon = addon_;
  handle_->owner = this;
  // uv_poll_init checks the fd with epoll_ctl: a regular file is EPERM, an fd another handle of this
  // loop watches is EEXIST.
  rc = uv_poll_init(loop, &handle_->poll, fd);
  if (rc < 0) {
    delete handle_;
    handle_ = nullptr;
    ThrowSystemError(env, rc, "uv_poll_init");
    return;
  }
  handle_->poll.data = handle_;
  fd_.reset(fd);
  addon_->live_pollers.insert(this);
  if (mode_ == kMessages) {
    addon_->holders.insert(this);
    tracked_ = true;
  }
}

// GC backstop: an unclosed Poller still frees its fd and the fds of messages JS never handed out.
Poller::~Poller() {
  CloseHandle();
  DropHeld();
  if (tracked_) addon_->holders.erase(this);
}

void Poller::DropHeld() {
  size_t taken = TakenCount();
  for (size_t k = taken; k < held_.size(); k++) ::close(held_[k]);
  held_.clear();
  if (read_taken_ != nullptr) *read_taken_ = 0;
}

void Poller::Untrack() { tracked_ = false; }

size_t Poller::TakenCount() const {
  if (read_taken_ == nullptr || *read_taken_ < 0) return 0;
  return std::min(static_cast<size_t>(*read_taken_), held_.size());
}

void Poller::CloseHandle() {
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
  queue_.clear();
  reading_ = false;
  polling_events_ = 0;
  if (pinned_) {
    pinned_ = false;
    Napi::ObjectWrap<Poller>::Unref();
  }
}

void Poller::UpdatePolling() {
  if (handle_ == nullptr) return;
  int events = 0;
  if (reading_) events |= UV_READABLE;
  if (!queue_.empty() && !write_failed_) events |= UV_WRITABLE;
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
  bool want_pin = events != 0;
  if (want_pin && !pinned_) {
    pinned_ = true;
    Napi::ObjectWrap<Poller>::Ref();
  } else if (!want_pin && pinned_) {
    pinned_ = false;
    Napi::ObjectWrap<Poller>::Unref();
  }
}

void Poller::OnPoll(uv_poll_t* poll, int status, int events) {
  Handle* handle = static_cast<Handle*>(poll->data);
  Poller* self = handle->owner;
  if (self == nullptr) return;
  Napi::HandleScope scope(self->Env());
  if (!CanCallJs(self->Env())) {
    // Env teardown (Worker terminate, process.exit, FreeEnvironment's last loop turn): JS is gone.
    // Leave everything in the kernel; the cleanup hook closes the socket.
    uv_poll_stop(&handle->poll);
    self->polling_events_ = 0;
    return;
  }
  if (status < 0) {
    // libuv reports POLLERR as UV_EBADF and stops the handle. On a Unix socket POLLERR usually means a
    // pending socket error (ECONNRESET: the peer closed with data of ours unread), and recvmsg returns
    // the messages still queued before that error: read them first, the error comes last.
    self->polling_events_ = 0;
    bool progressed = false;
    if (self->mode_ == kMessages && self->reading_) progressed = self->OnReadableMessages();
    if (self->handle_ == nullptr) return;
    if (progressed) {
      self->UpdatePolling();  // poll again: more messages, then the error itself
      return;
    }
    if (!self->queue_.empty()) {
      self->OnWritable();  // sendmsg reports the socket's real error to the queued sends
      return;
    }
    self->reading_ = false;
    self->UpdatePolling();
    self->Call(self->on_error_,
               {Napi::Number::New(self->Env(), status), Napi::String::New(self->Env(), "uv_poll"),
                Napi::Number::New(self->Env(), 0)});
    return;
  }
  if ((events & UV_WRITABLE) != 0) self->OnWritable();
  if (self->handle_ == nullptr) return;  // JS closed us from a callback
  if ((events & UV_READABLE) != 0 && self->reading_) {
    if (self->mode_ == kAccept) {
      self->OnReadableAccept();
    } else {
      self->OnReadableMessages();
    }
  }
}

void Poller::Call(const Napi::FunctionReference& fn, const std::vector<napi_value>& args) {
  napi_env env = Env();
  if (fn.IsEmpty()) return;
  napi_value callback = fn.Value();
  if (callback == nullptr) return;  // collected with its object: nobody is listening any more
  napi_value result;
  napi_status status =
      napi_make_callback(env, *async_context_, Value(), callback, args.size(), args.data(), &result);
  if (status == napi_ok) return;
  // The callback threw: route it to 'uncaughtException' as Node does for its own callbacks.
  // (When the env is shutting down there is nothing to report to.)
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
    napi_value error;
    if (napi_get_and_clear_last_exception(env, &error) == napi_ok) napi_fatal_exception(env, error);
  }
}

// One batch: up to kReadBudget messages, their bytes into readBuffer and their layout and descriptors
// into readInfo, then one call into JS, which copies out what it keeps before any user code runs.
// Nothing is allocated per message and no napi value is made per message or per descriptor.
bool Poller::OnReadableMessages() {
  napi_env env = Env();
  int32_t* info = read_info_;
  OwnedFds fds(info + kReadInfoFds, kReadFdsCapacity);  // closed here unless the batch reaches JS
  size_t offset = 0;
  uint32_t count = 0;
  bool eof = false;
  int err = 0;

  for (int i = 0; i < kReadBudget; i++) {
    if (read_capacity_ - offset < max_message_) break;  // no room for a full-size message: next wakeup
    size_t mark = fds.size();
    ReceivedMessage m;
    int rc = ReceiveMessage(fd_.get(), read_data_ + offset, max_message_, &fds, &m);
    if (rc == -EAGAIN) break;
    // Datagram-style receives (seqpacket, dgram) report a pending ECONNRESET (the peer closed with our
    // data unread) before the messages still queued (net/core/datagram.c checks sock_error first) and
    // clear it: read on, the messages and then end-of-file follow.
    if (rc == -ECONNRESET && socket_type_ != SOCK_STREAM) continue;
    if (rc < 0) {
      err = rc;
      break;
    }
    // Zero bytes and no fds is EOF on a stream or seqpacket socket; on a datagram socket it is an
    // empty datagram. (An fd-only seqpacket message has fds, so it is never taken for EOF.)
    if (m.length == 0 && m.nfds == 0 && !m.fds_truncated && socket_type_ != SOCK_DGRAM) {
      eof = true;
      break;
    }
    if (m.fds_truncated || m.data_truncated) {
      // The message is unusable: what arrived of its fds closes now; JS is told what was lost.
      fds.ShrinkTo(mark);
      info[kReadInfoMessages + 2 * count] = -1;
      info[kReadInfoMessages + 2 * count + 1] =
          (m.fds_truncated ? kDroppedCtrunc : 0) | (m.data_truncated ? kDroppedTrunc : 0);
      count++;
      continue;
    }
    info[kReadInfoMessages + 2 * count] = static_cast<int32_t>(m.length);
    info[kReadInfoMessages + 2 * count + 1] = static_cast<int32_t>(m.nfds);
    int32_t* cred = info + kReadInfoCred + 3 * count;
    cred[0] = m.has_cred ? m.pid : -1;
    if (m.has_cred) {
      cred[1] = m.uid;
      cred[2] = m.gid;
    }
    offset += m.length;
    count++;
  }
  info[0] = static_cast<int32_t>(count);
  info[1] = static_cast<int32_t>(fds.size());

  if (eof || err != 0) {
    reading_ = false;
    UpdatePolling();
  }
  if (count == 0 && !eof && err == 0) return false;
  napi_value args[4];
  if (napi_create_uint32(env, count, &args[0]) != napi_ok ||
      napi_get_boolean(env, eof, &args[1]) != napi_ok || napi_create_int32(env, err, &args[2]) != napi_ok ||
      (err != 0 ? napi_create_string_utf8(env, "recvmsg", NAPI_AUTO_LENGTH, &args[3])
                : napi_get_undefined(env, &args[3])) != napi_ok) {
    // JS can no longer run: the batch's fds close here instead of leaking into a dead batch.
    reading_ = false;
    UpdatePolling();
    return false;
  }
  // The batch's fds stay ours until JS hands each message to the application (it counts them in
  // readTaken, in order): a Worker ending or a GC of the channel then closes those never handed out.
  held_.erase(held_.begin(), held_.begin() + static_cast<std::ptrdiff_t>(TakenCount()));
  held_.insert(held_.end(), info + kReadInfoFds, info + kReadInfoFds + fds.size());
  *read_taken_ = 0;
  fds.Release();
  Call(on_read_, {args[0], args[1], args[2], args[3]});
  return true;
}

void Poller::OnReadableAccept() {
  Napi::Env env = Env();
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
  Call(on_read_, {fds, env.Undefined(), Napi::Boolean::New(env, false), Napi::Number::New(env, err),
                  Napi::String::New(env, "accept4")});
}

void Poller::OnWritable() {
  Napi::Env env = Env();
  uint32_t last_done = 0;
  int err = 0;
  uint32_t failed_id = 0;
  while (!queue_.empty()) {
    Outgoing& m = queue_.front();
    std::vector<int> raw;
    raw.reserve(m.fds.size());
    for (auto& fd : m.fds) raw.push_back(fd.get());
    size_t len = m.data.size() - m.offset;
    ssize_t n = SendMessage(fd_.get(), m.data.data() + m.offset, len, raw.data(), raw.size());
    if (n == -EAGAIN) break;
    if (n < 0) {
      err = static_cast<int>(n);
      failed_id = m.id;
      break;
    }
    // unix(7): the fds went out with the first byte; never attach them again.
    m.fds.clear();
    m.offset += static_cast<size_t>(n);
    if (m.offset < m.data.size()) continue;  // partial stream write: send the rest
    last_done = m.id;
    queue_.pop_front();
  }
  if (err != 0) {
    // The socket is broken for writing; every queued message fails (their dup'd fds close).
    write_failed_ = true;
    queue_.clear();
  }
  UpdatePolling();
  if (last_done != 0) Call(on_sent_, {Napi::Number::New(env, last_done)});
  if (err != 0 && handle_ != nullptr) {
    Call(on_error_,
         {Napi::Number::New(env, err), Napi::String::New(env, "sendmsg"), Napi::Number::New(env, failed_id)});
  }
}

// send(data: Uint8Array | null, nfds: number) -> 0 when the kernel took it all, else the id that
// onSent(id) later reports. The descriptors are sendFds[0, nfds), staged there by JS (one typed-array
// write each instead of one napi call each). Throws a system error when the kernel refuses at once.
Napi::Value Poller::Send(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint8_t* data;
  size_t len;
  int nfds;
  if (!ReadBytes(info, 0, &data, &len) || !ReadInt32(info, 1, &nfds, 0, kMaxFdsPerMessage)) {
    return env.Undefined();
  }
  if (send_fds_ == nullptr) {
    ThrowTypeError(env, "ERR_INVALID_ARG_VALUE", "send() needs a message-mode poller");
    return env.Undefined();
  }
  const int* fds = send_fds_;
  size_t count = static_cast<size_t>(nfds);
  for (size_t k = 0; k < count; k++) {
    if (fds[k] < 0) {  // lib/ validated them; the re-check, as args.h does for arguments
      ThrowRangeError(env, "ERR_OUT_OF_RANGE", "fds must be integers >= 0");
      return env.Undefined();
    }
  }
  if (!fd_.valid()) {
    ThrowSystemError(env, -EBADF, "sendmsg");
    return env.Undefined();
  }
  if (write_failed_) {
    ThrowSystemError(env, -EPIPE, "sendmsg");
    return env.Undefined();
  }
  if (socket_type_ == SOCK_STREAM && len == 0 && count > 0) {
    // unix(7): a stream silently drops fds sent with no data byte. lib/ pads; this is the re-check.
    ThrowTypeError(env, "ERR_INVALID_ARG_VALUE", "a stream message with fds needs data");
    return env.Undefined();
  }

  size_t sent = 0;
  if (queue_.empty()) {
    ssize_t n = SendMessage(fd_.get(), data, len, fds, count);
    if (n >= 0 && static_cast<size_t>(n) == len) return Napi::Number::New(env, 0);
    if (n < 0 && n != -EAGAIN) {
      ThrowSystemError(env, static_cast<int>(n), "sendmsg");
      return env.Undefined();
    }
    if (n > 0) sent = static_cast<size_t>(n);
  }

  Outgoing m;
  m.id = next_id_++;
  if (next_id_ == 0) next_id_ = 1;
  m.data.assign(data + sent, data + len);
  if (sent == 0) {
    // Not sent yet: hold duplicates so the caller may close its copies now (DESIGN.md §4).
    m.fds.reserve(count);
    for (size_t k = 0; k < count; k++) {
      int dup = fcntl(fds[k], F_DUPFD_CLOEXEC, 0);
      if (dup < 0) {
        int e = -errno;
        ThrowSystemError(env, e, "fcntl");
        return env.Undefined();  // m's dups close here
      }
      m.fds.emplace_back(dup);
    }
  }
  uint32_t id = m.id;
  queue_.push_back(std::move(m));
  UpdatePolling();
  return Napi::Number::New(env, id);
}

Napi::Value Poller::ReadStart(const Napi::CallbackInfo& info) {
  if (fd_.valid()) {
    reading_ = true;
    UpdatePolling();
  }
  return info.Env().Undefined();
}

Napi::Value Poller::ReadStop(const Napi::CallbackInfo& info) {
  reading_ = false;
  UpdatePolling();
  return info.Env().Undefined();
}

Napi::Value Poller::Close(const Napi::CallbackInfo& info) {
  CloseHandle();
  return info.Env().Undefined();
}

Napi::Value Poller::DropHeldMethod(const Napi::CallbackInfo& info) {
  DropHeld();
  return info.Env().Undefined();
}

Napi::Value Poller::Ref(const Napi::CallbackInfo& info) {
  if (handle_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(&handle_->poll));
  return info.Env().Undefined();
}

Napi::Value Poller::Unref(const Napi::CallbackInfo& info) {
  if (handle_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(&handle_->poll));
  return info.Env().Undefined();
}

Napi::Value Poller::GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_.get()); }

Napi::Value Poller::GetQueued(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(queue_.size()));
}

}  // namespace fdpass
