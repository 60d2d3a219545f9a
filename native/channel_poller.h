// ChannelPoller: the JS-visible owner of one connected socket (a Channel's): readable -> drain recvmsg
// into memory shared with JS (budgeted, recvmmsg; channel_poller.cc), writable -> flush the send queue
// (sendmmsg; channel_poller_send.cc); the received fds it holds.
#ifndef FDPASS_CHANNEL_POLLER_H_
#define FDPASS_CHANNEL_POLLER_H_

#include <napi.h>

#include <cstdint>
#include <deque>
#include <vector>

#include "poll_base.h"
#include "sys/message_io.h"
#include "unique_fd.h"

namespace fdpass {

class ChannelPoller : public Napi::ObjectWrap<ChannelPoller>, public PollBase {
 public:
  static Napi::Function Define(Napi::Env env);
  // new ChannelPoller(fd, socketType, bufferSize, onRead, onSent, onError, readBuffer, readInfo, sendFds,
  // readTaken): takes ownership of fd once it returns; when it throws, fd is still the caller's. The
  // three arrays are memory JS and C++ share, so that a read batch or a send crosses with no allocation:
  // readBuffer (at least bufferSize bytes) receives the batch's bytes, readInfo (READ_INFO_LENGTH int32s,
  // may be shared by every poller of the env; its layout: lib/native.ts) its layout and descriptors,
  // sendFds (253 int32s) the descriptors of send(). onRead(count, eof, errno, syscall) then reads both.
  // readTaken (Int32Array(1), per poller) counts the received fds JS handed out.
  explicit ChannelPoller(const Napi::CallbackInfo& info);
  ~ChannelPoller() override;

  // Closes the received fds JS has not handed to the application (readTaken says how many it has).
  // Received fds JS has not handed out stay through CloseHandle: the channel may still deliver them
  // after EOF.
  void DropHeld();
  // Env teardown dropped this poller from Addon::holders.
  void Untrack();

 private:
  // sendBatch's layout (described at NativeChannelPoller.sendBatch in lib/native.ts).
  static constexpr size_t kSendBatchFds = 2 * kMaxBatch;
  static constexpr size_t kSendBatchLayoutLength = kSendBatchFds + kMaxBatch * kMaxFdsPerMessage;

  // A message the kernel has not taken yet. Holds duplicates of the caller's fds (DESIGN.md §4).
  struct Outgoing {
    uint32_t id;
    std::vector<uint8_t> data;
    size_t offset = 0;          // bytes already sent (stream partial writes)
    std::vector<UniqueFd> fds;  // emptied once they went out with the first bytes
  };

  Napi::Value Send(const Napi::CallbackInfo& info);
  Napi::Value SendBatch(const Napi::CallbackInfo& info);
  bool Enqueue(Napi::Env env, const uint8_t* data, size_t len, const int* fds, size_t nfds, uint32_t* id);
  Napi::Value DropHeldMethod(const Napi::CallbackInfo& info);
  Napi::Value GetQueued(const Napi::CallbackInfo& info);

  void OnReadable() override;
  void OnWritable() override;
  bool WantsWritable() const override;
  bool DrainBeforeError() override;
  void OnClose() override;
  bool ReadBatch();  // true when something (messages, EOF, an error) was delivered
  size_t TakenCount() const;

  int socket_type_ = 0;
  bool write_failed_ = false;
  // The last read batch held one message: the next one's first message is read alone, without
  // counting the free descriptors, and more are read only if the queue holds more (ReadBatch).
  bool lone_ = true;
  uint32_t next_id_ = 1;
  std::deque<Outgoing> queue_;
  // Memory shared with JS (see the constructor), held by strong references.
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
  Napi::FunctionReference on_read_, on_sent_;
};

}  // namespace fdpass

#endif  // FDPASS_CHANNEL_POLLER_H_
