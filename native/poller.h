// Poller: the JS-visible owner of one socket fd and its uv_poll_t on Node's loop.
// Message mode: readable -> drain recvmsg (budgeted), writable -> flush the send queue.
// Accept mode: readable -> accept4 until EAGAIN (budgeted).
#ifndef FDPASS_POLLER_H_
#define FDPASS_POLLER_H_

#include <napi.h>
#include <uv.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "addon.h"
#include "unique_fd.h"

namespace fdpass {

class Poller : public Napi::ObjectWrap<Poller> {
 public:
  static Napi::Function Define(Napi::Env env);
  // new Poller(fd, mode, socketType, bufferSize, onRead, onSent, onError[, readBuffer, readInfo,
  // sendFds, readTaken]): takes ownership of fd once it returns; when it throws, fd is still the
  // caller's. readTaken (Int32Array(1), per poller) counts the received fds JS handed out. Message mode needs
  // the three arrays (memory JS and C++ share, so that a read batch or a send crosses with no allocation):
  // readBuffer (at least bufferSize bytes) receives the batch's bytes, readInfo (Poller.READ_INFO_LENGTH
  // int32s, may be shared by every poller of the env; layout: lib/native.ts) its lengths and descriptors,
  // sendFds (253 int32s) the descriptors of send(). onRead(count, eof, errno, syscall) then reads both.
  explicit Poller(const Napi::CallbackInfo& info);
  ~Poller() override;

  // Stops polling, closes the fd and drops queued messages (their duplicated fds close). Idempotent.
  // Received fds JS has not handed out yet stay: the channel may still deliver them after EOF.
  void CloseHandle();
  // Closes the received fds JS has not handed to the application (readTaken says how many it has).
  void DropHeld();
  // Env teardown dropped this poller from Addon::holders.
  void Untrack();

 private:
  enum Mode { kMessages = 0, kAccept = 1 };

  // A message the kernel has not taken yet. Holds duplicates of the caller's fds (DESIGN.md §4).
  struct Outgoing {
    uint32_t id;
    std::vector<uint8_t> data;
    size_t offset = 0;          // bytes already sent (stream partial writes)
    std::vector<UniqueFd> fds;  // emptied once they went out with the first bytes
  };

  // The uv handle outlives this object until its close callback runs.
  struct Handle {
    uv_poll_t poll;
    Addon* addon;
    Poller* owner;
  };

  Napi::Value Send(const Napi::CallbackInfo& info);
  Napi::Value ReadStart(const Napi::CallbackInfo& info);
  Napi::Value ReadStop(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value DropHeldMethod(const Napi::CallbackInfo& info);
  Napi::Value Ref(const Napi::CallbackInfo& info);
  Napi::Value Unref(const Napi::CallbackInfo& info);
  Napi::Value GetFd(const Napi::CallbackInfo& info);
  Napi::Value GetQueued(const Napi::CallbackInfo& info);

  static void OnPoll(uv_poll_t* poll, int status, int events);
  bool OnReadableMessages();  // true when something (messages, EOF, an error) was delivered
  void OnReadableAccept();
  void OnWritable();
  void UpdatePolling();
  size_t TakenCount() const;
  // Calls a JS callback as an async-hooks-aware MakeCallback; routes a throw to 'uncaughtException'.
  void Call(const Napi::FunctionReference& fn, const std::vector<napi_value>& args);

  Addon* addon_;
  Handle* handle_ = nullptr;
  UniqueFd fd_;
  int mode_ = kMessages;
  int socket_type_ = 0;
  bool reading_ = false;
  bool write_failed_ = false;
  bool pinned_ = false;  // a strong reference keeps this object alive while the poll is active
  int polling_events_ = 0;
  uint32_t next_id_ = 1;
  std::deque<Outgoing> queue_;
  // Message mode: memory shared with JS (see the constructor), held by strong references.
  Napi::Reference<Napi::Uint8Array> read_buffer_ref_;
  Napi::Reference<Napi::Int32Array> read_info_ref_, send_fds_ref_;
  uint8_t* read_data_ = nullptr;
  size_t read_capacity_ = 0;
  size_t max_message_ = 0;  // bufferSize: room one recvmsg needs
  int32_t* read_info_ = nullptr;
  int32_t* send_fds_ = nullptr;
  // Received fds delivered to JS in a read batch and not yet handed to the application: the first
  // *read_taken_ of them were (JS counts them there, in order, before user code sees a message).
  std::vector<int> held_;
  Napi::Reference<Napi::Int32Array> read_taken_ref_;
  int32_t* read_taken_ = nullptr;
  bool tracked_ = false;  // in Addon::holders
  Napi::FunctionReference on_read_, on_sent_, on_error_;
  std::unique_ptr<Napi::AsyncContext> async_context_;
};

}  // namespace fdpass

#endif  // FDPASS_POLLER_H_
