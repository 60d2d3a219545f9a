// ChannelPoller: a read batch (recvmsg into memory shared with JS, one call into JS per batch), the send
// queue, and the received fds held until JS hands them out. The poll itself: poll_base.cc.
#include "channel_poller.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "args.h"
#include "errors.h"
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
// sendBatch's layout (described at NativeChannelPoller.sendBatch in lib/native.ts).
constexpr size_t kSendBatchFds = 2 * kMaxBatch;
constexpr size_t kSendBatchLayoutLength = kSendBatchFds + kMaxBatch * kMaxFdsPerMessage;

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

// Flushes the queue front to back, up to kMaxBatch messages per sendmmsg, each with its own fds.
void ChannelPoller::OnWritable() {
  Napi::Env env(env_);
  uint32_t last_done = 0;
  int err = 0;
  uint32_t failed_id = 0;
  bool stream = socket_type_ == SOCK_STREAM;
  OutgoingMessage batch[kMaxBatch];
  // The dups' numbers, each message's in its own range (32 KiB: per thread, not on a Worker's stack).
  thread_local int raw[kMaxBatch * kMaxFdsPerMessage];
  while (!queue_.empty() && err == 0) {
    size_t n = std::min(queue_.size(), kMaxBatch);
    for (size_t i = 0; i < n; i++) {
      Outgoing& m = queue_[i];
      int* fds = raw + i * kMaxFdsPerMessage;
      for (size_t k = 0; k < m.fds.size(); k++) fds[k] = m.fds[k].get();
      batch[i] = {m.data.data() + m.offset, m.data.size() - m.offset, fds, m.fds.size(), 0};
    }
    int got = SendMessages(fd_.get(), stream, batch, n);
    if (got == -EAGAIN) break;
    if (got < 0) {
      err = got;
      failed_id = queue_.front().id;
      break;
    }
    for (int i = 0; i < got; i++) {
      Outgoing& m = queue_.front();
      // unix(7): the fds went out with the first byte; never attach them again.
      m.fds.clear();
      m.offset += batch[i].sent;
      if (m.offset < m.data.size()) break;  // partial stream write (the batch's last): the rest next

      last_done = m.id;
      queue_.pop_front();
    }
    // got < n: the kernel stopped (full, or an error that the next call reports): try again.
  }
  if (err != 0) {
    // The socket is broken for writing; every queued message fails (their dup'd fds close).
    write_failed_ = true;
    queue_.clear();
  }
  UpdatePolling();
  if (last_done != 0) Call(on_sent_, {Napi::Number::New(env, last_done)});
  if (err != 0 && !closed()) {
    Call(on_error_, {Napi::Number::New(env, err), Napi::String::New(env, "sendmmsg"),
                     Napi::Number::New(env, failed_id)});
  }
}

// send(data: Uint8Array | null, nfds: number) -> 0 when the kernel took it all, else the id that
// onSent(id) later reports. The descriptors are sendFds[0, nfds), staged there by JS (one typed-array
// write each instead of one napi call each). Throws a system error when the kernel refuses at once.
Napi::Value ChannelPoller::Send(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint8_t* data;
  size_t len;
  int nfds;
  if (!ReadBytes(info, 0, &data, &len) || !ReadInt32(info, 1, &nfds, 0, kMaxFdsPerMessage)) {
    return env.Undefined();
  }
  if (send_fds_ == nullptr) {  // the constructor stopped half-way (JS could no longer run)
    ThrowSystemError(env, -EBADF, "sendmsg");
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

  uint32_t id = 0;
  if (!Enqueue(env, data + sent, len - sent, sent == 0 ? fds : nullptr, sent == 0 ? count : 0, &id)) {
    return env.Undefined();
  }
  UpdatePolling();
  return Napi::Number::New(env, id);
}

// Queues what the kernel has not taken of one message: its unsent bytes and, when none of it went
// yet, duplicates of its fds, so that the caller may close its copies now (DESIGN.md §4). False (a
// system error thrown) when a dup fails; nothing of the message is queued then.
bool ChannelPoller::Enqueue(Napi::Env env, const uint8_t* data, size_t len, const int* fds, size_t nfds,
                            uint32_t* id) {
  Outgoing m;
  m.data.assign(data, data + len);
  m.fds.reserve(nfds);
  for (size_t k = 0; k < nfds; k++) {
    int dup = fcntl(fds[k], F_DUPFD_CLOEXEC, 0);
    if (dup < 0) {
      ThrowSystemError(env, -errno, "fcntl");
      return false;  // m's dups close here
    }
    m.fds.emplace_back(dup);
  }
  m.id = next_id_++;
  if (next_id_ == 0) next_id_ = 1;
  *id = m.id;
  queue_.push_back(std::move(m));
  return true;
}

// sendBatch(data: Uint8Array, layout: Int32Array, count) -> as send(), for `count` (<= SEND_BATCH)
// messages staged by JS: message i has layout[2i] bytes (back to back in data) and layout[2i + 1]
// fds (back to back in layout from SEND_BATCH_FDS). They leave in as few sendmmsg calls as the kernel
// allows, and what it does not take is queued behind them in order, as send() queues. Throws when
// the kernel refuses the first message at once; a later refusal is left to the queue (which reports
// it through onError), so that no message after a sent one is lost without a word.
Napi::Value ChannelPoller::SendBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint8_t* data;
  size_t len;
  Napi::TypedArray layout_array;
  int count;
  if (!ReadBytes(info, 0, &data, &len) ||
      !ReadTypedArray(info, 1, napi_int32_array, kSendBatchLayoutLength,
                      "layout must be an Int32Array of SEND_BATCH_LAYOUT_LENGTH elements", &layout_array) ||
      !ReadInt32(info, 2, &count, 0, static_cast<int>(kMaxBatch))) {
    return env.Undefined();
  }
  const int32_t* layout = layout_array.As<Napi::Int32Array>().Data();
  bool stream = socket_type_ == SOCK_STREAM;
  OutgoingMessage batch[kMaxBatch];
  size_t offset = 0, fd_offset = kSendBatchFds;
  for (int i = 0; i < count; i++) {
    int32_t mlen = layout[2 * i], nfds = layout[2 * i + 1];
    // lib/ staged and checked these; the re-check, as args.h does for arguments.
    if (mlen < 0 || static_cast<size_t>(mlen) > len - offset || nfds < 0 || nfds > kMaxFdsPerMessage ||
        (stream && mlen == 0 && nfds > 0)) {
      ThrowRangeError(env, "ERR_OUT_OF_RANGE", "a staged message's length or fd count is out of range");
      return env.Undefined();
    }
    const int32_t* fds = layout + fd_offset;
    for (int32_t k = 0; k < nfds; k++) {
      if (fds[k] < 0) {
        ThrowRangeError(env, "ERR_OUT_OF_RANGE", "fds must be integers >= 0");
        return env.Undefined();
      }
    }
    batch[i] = {data + offset, static_cast<size_t>(mlen), fds, static_cast<size_t>(nfds), 0};
    offset += static_cast<size_t>(mlen);
    fd_offset += static_cast<size_t>(nfds);
  }
  if (!fd_.valid()) {
    ThrowSystemError(env, -EBADF, "sendmmsg");
    return env.Undefined();
  }
  if (write_failed_) {
    ThrowSystemError(env, -EPIPE, "sendmmsg");
    return env.Undefined();
  }

  size_t done = 0;     // messages the kernel took whole
  size_t partial = 0;  // bytes it took of the next one (a stream's short write)
  while (queue_.empty() && done < static_cast<size_t>(count)) {
    size_t attempted = BatchLength(stream, batch + done, static_cast<size_t>(count) - done);
    int got = SendMessages(fd_.get(), stream, batch + done, attempted);
    if (got == -EAGAIN) break;
    if (got < 0) {
      if (done == 0) {
        ThrowSystemError(env, got, "sendmmsg");
        return env.Undefined();
      }
      break;  // the rest is queued: the queue's next sendmmsg meets the error and reports it
    }
    size_t took = static_cast<size_t>(got);
    OutgoingMessage& last = batch[done + took - 1];
    if (last.sent < last.len) {  // partial stream write: the rest waits in the queue, fds gone with it
      done += took - 1;
      partial = last.sent;
      break;
    }
    done += took;
    if (took < attempted) break;  // the kernel stopped: full (or an error the queue will meet)
  }
  uint32_t id = 0;
  for (size_t i = done; i < static_cast<size_t>(count); i++) {
    const OutgoingMessage& m = batch[i];
    size_t skip = i == done ? partial : 0;
    if (!Enqueue(env, static_cast<const uint8_t*>(m.data) + skip, m.len - skip, skip == 0 ? m.fds : nullptr,
                 skip == 0 ? m.nfds : 0, &id)) {
      UpdatePolling();  // what was queued before the failed dup still goes
      return env.Undefined();
    }
  }
  UpdatePolling();
  return Napi::Number::New(env, id);
}

Napi::Value ChannelPoller::DropHeldMethod(const Napi::CallbackInfo& info) {
  DropHeld();
  return info.Env().Undefined();
}

Napi::Value ChannelPoller::GetQueued(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(queue_.size()));
}

}  // namespace fdpass
