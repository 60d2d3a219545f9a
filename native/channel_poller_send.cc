// ChannelPoller's sending side: send() and sendBatch() (sendmsg/sendmmsg at once while nothing is
// queued), and the queue of what the kernel has not taken yet, flushed when the socket is writable.
// The rest of the class: channel_poller.cc.
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>

#include <algorithm>

#include "args.h"
#include "channel_poller.h"
#include "errors.h"
#include "sys/message_io.h"

namespace fdpass {

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

}  // namespace fdpass
