// ChannelPoller: its construction and lifetime, a read batch (recvmsg into memory shared with JS, one
// call into JS per batch), and the received fds held until JS hands them out. Sending and the send
// queue: channel_poller_send.cc. The poll itself: poll_base.cc.
#include "channel_poller.h"

#include <errno.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "args.h"
#include "sys/fd_table.h"
#include "sys/message_io.h"

namespace fdpass {
namespace {

// readInfo's offsets (its layout is described once, at NativeChannelPollerConstructor in lib/native.ts).
constexpr size_t kReadInfoMessages = 2;
constexpr size_t kReadInfoFds = kReadInfoMessages + 2 * kReadBudget;
constexpr int32_t kDroppedCtrunc = 1;
constexpr int32_t kDroppedTrunc = 2;
constexpr size_t kReadFdsCapacity = static_cast<size_t>(kReadBudget) * kMaxFdsPerMessage;
constexpr size_t kReadInfoCred = kReadInfoFds + kReadFdsCapacity;
constexpr size_t kReadInfoLength = kReadInfoCred + 3 * static_cast<size_t>(kReadBudget);

}  // namespace

Napi::Function ChannelPoller::Define(Napi::Env env) {
  std::vector<PropertyDescriptor> props = CommonMethods<ChannelPoller>();
  props.insert(
      props.end(),
      {InstanceMethod<&ChannelPoller::Send>("send"), InstanceMethod<&ChannelPoller::SendBatch>("sendBatch"),
       InstanceMethod<&ChannelPoller::DropHeldMethod>("dropHeld"),
       InstanceAccessor<&ChannelPoller::GetQueued>("queued"),
       StaticValue("READ_BUDGET", Napi::Number::New(env, kReadBudget)),
       StaticValue("SEND_BATCH", Napi::Number::New(env, static_cast<double>(kMaxBatch))),
       StaticValue("SEND_BATCH_FDS", Napi::Number::New(env, static_cast<double>(kSendBatchFds))),
       StaticValue("SEND_BATCH_LAYOUT_LENGTH",
                   Napi::Number::New(env, static_cast<double>(kSendBatchLayoutLength))),
       StaticValue("READ_INFO_MESSAGES", Napi::Number::New(env, static_cast<double>(kReadInfoMessages))),
       StaticValue("READ_INFO_FDS", Napi::Number::New(env, static_cast<double>(kReadInfoFds))),
       StaticValue("DROPPED_CTRUNC", Napi::Number::New(env, kDroppedCtrunc)),
       StaticValue("DROPPED_TRUNC", Napi::Number::New(env, kDroppedTrunc)),
       StaticValue("READ_INFO_CRED", Napi::Number::New(env, static_cast<double>(kReadInfoCred))),
       StaticValue("READ_INFO_LENGTH", Napi::Number::New(env, static_cast<double>(kReadInfoLength)))});
  return DefineClass(env, "ChannelPoller", props);
}

ChannelPoller::ChannelPoller(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<ChannelPoller>(info), PollBase(info.Env()) {
  int fd, socket_type, buffer_size;
  Napi::Function on_read, on_sent, on_error;
  Napi::TypedArray read_buffer, read_info, send_fds, read_taken;
  if (!ReadFd(info, 0, &fd) || !ReadInt32(info, 1, &socket_type) ||
      !ReadInt32(info, 2, &buffer_size, 1, 1 << 26) || !ReadFunction(info, 3, &on_read) ||
      !ReadFunction(info, 4, &on_sent) || !ReadFunction(info, 5, &on_error) ||
      !ReadTypedArray(info, 6, napi_uint8_array, static_cast<size_t>(buffer_size),
                      "readBuffer must be a Uint8Array of at least bufferSize bytes", &read_buffer) ||
      !ReadTypedArray(info, 7, napi_int32_array, kReadInfoLength,
                      "readInfo must be an Int32Array of READ_INFO_LENGTH elements", &read_info) ||
      !ReadTypedArray(info, 8, napi_int32_array, static_cast<size_t>(kMaxFdsPerMessage),
                      "sendFds must be an Int32Array of 253 elements", &send_fds) ||
      !ReadTypedArray(info, 9, napi_int32_array, 1, "readTaken must be an Int32Array of 1 element",
                      &read_taken)) {
    return;
  }
  Napi::Object self = info.This().As<Napi::Object>();
  if (!HoldCallbacks(self, {{"_onRead", on_read, &on_read_},
                            {"_onSent", on_sent, &on_sent_},
                            {"_onError", on_error, &on_error_}}) ||
      !Open(self, fd, "fdpass:ChannelPoller")) {
    return;
  }
  socket_type_ = socket_type;
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
  addon_->holders.insert(this);
  tracked_ = true;
}

// GC backstop: an unclosed poller still frees its fd and the fds of messages JS never handed out.
ChannelPoller::~ChannelPoller() {
  CloseHandle();
  DropHeld();
  if (tracked_) addon_->holders.erase(this);
}

void ChannelPoller::DropHeld() {
  size_t taken = TakenCount();
  for (size_t k = taken; k < held_.size(); k++) ::close(held_[k]);
  held_.clear();
  if (read_taken_ != nullptr) *read_taken_ = 0;
}

void ChannelPoller::Untrack() { tracked_ = false; }

size_t ChannelPoller::TakenCount() const {
  if (read_taken_ == nullptr || *read_taken_ < 0) return 0;
  return std::min(static_cast<size_t>(*read_taken_), held_.size());
}

void ChannelPoller::OnClose() { queue_.clear(); }

bool ChannelPoller::WantsWritable() const { return !queue_.empty() && !write_failed_; }

// On a Unix socket POLLERR usually means a pending socket error (ECONNRESET: the peer closed with data
// of ours unread), and recvmsg returns the messages still queued before that error: read them first.
bool ChannelPoller::DrainBeforeError() {
  bool progressed = reading_ && ReadBatch();
  if (closed()) return true;
  if (progressed) {
    UpdatePolling();  // poll again: more messages, then the error itself
    return true;
  }
  if (!queue_.empty()) {
    OnWritable();  // sendmsg reports the socket's real error to the queued sends
    return true;
  }
  return false;
}

void ChannelPoller::OnReadable() { ReadBatch(); }

// One batch: up to kReadBudget messages, their bytes into readBuffer and their layout and descriptors
// into readInfo, then one call into JS, which copies out what it keeps before any user code runs.
// Nothing is allocated per message and no napi value is made per message or per descriptor.
// Each recvmmsg fills as many full-size slots as readBuffer has room for (a stream's chunks too: the
// kernel ends a chunk where another sender's fds begin), and each message is then moved down to lie
// right after the previous one.
bool ChannelPoller::ReadBatch() {
  napi_env env = env_;
  int32_t* info = read_info_;
  OwnedFds fds(info + kReadInfoFds, kReadFdsCapacity);  // closed here unless the batch reaches JS
  size_t offset = 0;
  uint32_t count = 0;
  bool eof = false;
  int err = 0;
  ReceivedMessage received[kMaxBatch];
  constexpr size_t kUnknownRoom = SIZE_MAX;
  size_t fd_free = kUnknownRoom;  // FreeDescriptorsAtLeast() when the batch first needs it

  // Messages that come one at a time (a request and its answer) are read one per wakeup with no count:
  // the count (a stat of /proc/self/fd) would cost more than the read. Once a wakeup finds more than
  // one, batches are read whole until one holds a single message again.
  bool lone = lone_;
  for (int calls = 0; calls < kReadBudget && count < static_cast<uint32_t>(kReadBudget) && !eof; calls++) {
    size_t room = (read_capacity_ - offset) / max_message_;  // full-size slots left
    size_t want = std::min(room, static_cast<size_t>(kReadBudget) - count);
    if (lone && count == 0) {
      want = std::min<size_t>(want, 1);
    } else if (lone) {
      if (!MayHaveMore(fd_.get(), socket_type_ == SOCK_STREAM)) break;
      lone = false;
    }
    // Room in the descriptor table. recvmmsg installs each message's fds before it reads the next,
    // and those it installed stay until it returns: one that meets EMFILE (MSG_CTRUNC) leaves the
    // table full, so every later message of the call loses all its fds, where read one by one (the
    // truncated fds closed first) it could have arrived; an oversized message's fds (MSG_TRUNC) fill
    // the table the same way. So only the first message of a batch, read when the application has
    // taken every message before it, may meet EMFILE (as it would alone); every other one is read
    // only when the free descriptors, less those this batch holds, leave room for 253 each. When
    // that room is short, the batch ends and the next one starts once this one has been taken.
    if (want > 1 || (want == 1 && count > 0)) {  // (a lone first message needs no count)
      if (fd_free == kUnknownRoom) fd_free = FreeDescriptorsAtLeast();
      size_t fit = (fd_free > fds.size() ? fd_free - fds.size() : 0) / kMaxFdsPerMessage;
      want = std::min(want, count == 0 ? std::max<size_t>(fit, 1) : fit);
    }
    if (want == 0) break;  // no room for a full-size message or its fds: next wakeup
    uint8_t* slots = read_data_ + offset;
    int got = ReceiveMessages(fd_.get(), slots, max_message_, want, &fds, received);
    if (got == -EAGAIN) break;
    // Datagram-style receives (seqpacket, dgram) report a pending ECONNRESET (the peer closed with our
    // data unread) before the messages still queued (net/core/datagram.c checks sock_error first) and
    // clear it: read on, the messages and then end-of-file follow.
    if (got == -ECONNRESET && socket_type_ != SOCK_STREAM) continue;
    if (got < 0) {
      err = got;
      break;
    }
    size_t mark = fds.size();  // where entry j's fds start, once those of the entries before it are taken off
    for (int j = 0; j < got; j++) mark -= received[j].nfds;
    for (int j = 0; j < got; j++) {
      const ReceivedMessage& m = received[j];
      // Zero bytes and no fds is EOF on a stream or seqpacket socket; on a datagram socket it is an
      // empty datagram. (An fd-only seqpacket message has fds, so it is never taken for EOF.) The
      // batch ends there: a later entry is EOF again or, after an empty seqpacket message that a peer
      // sent as a fake EOF, a message never delivered, whose fds close now (as they would have with
      // the socket, had it stayed in the kernel's queue).
      if (m.length == 0 && m.nfds == 0 && !m.fds_truncated && !m.data_truncated &&
          socket_type_ != SOCK_DGRAM) {
        fds.ShrinkTo(mark);
        eof = true;
        break;
      }
      mark += m.nfds;
      if (m.fds_truncated || m.data_truncated) {
        // The message is unusable: what arrived of its fds was closed; JS is told what was lost.
        info[kReadInfoMessages + 2 * count] = -1;
        info[kReadInfoMessages + 2 * count + 1] =
            (m.fds_truncated ? kDroppedCtrunc : 0) | (m.data_truncated ? kDroppedTrunc : 0);
        count++;
        continue;
      }
      // Its slot lies at or past offset: move the bytes down so the batch's messages lie back to back.
      const uint8_t* slot = slots + static_cast<size_t>(j) * max_message_;
      if (slot != read_data_ + offset && m.length > 0) memmove(read_data_ + offset, slot, m.length);
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
    if (static_cast<size_t>(got) < want) break;  // the queue is empty (MSG_WAITFORONE took what was there)
  }
  lone_ = count <= 1;
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
      (err != 0 ? napi_create_string_utf8(env, "recvmmsg", NAPI_AUTO_LENGTH, &args[3])
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

Napi::Value ChannelPoller::DropHeldMethod(const Napi::CallbackInfo& info) {
  DropHeld();
  return info.Env().Undefined();
}

Napi::Value ChannelPoller::GetQueued(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(queue_.size()));
}

}  // namespace fdpass
