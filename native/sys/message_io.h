// sendmsg/recvmsg carrying SCM_RIGHTS, one message or a batch (sendmmsg/recvmmsg, each message with its
// own control message): control-message building and parsing. No N-API here.
#ifndef FDPASS_SYS_MESSAGE_IO_H_
#define FDPASS_SYS_MESSAGE_IO_H_

#include <sys/types.h>
#include <unistd.h>

#include <cstddef>

namespace fdpass {

// SCM_MAX_FD in the kernel (include/net/scm.h): more in one message is EINVAL.
constexpr int kMaxFdsPerMessage = 253;

// Sends `len` bytes of `data` with `nfds` descriptors attached (nfds may be 0).
// Returns the number of bytes the kernel took (a stream may take fewer) or -errno.
// Never raises SIGPIPE (MSG_NOSIGNAL).
ssize_t SendMessage(int sock, const void* data, size_t len, const int* fds, size_t nfds);

// Most messages one SendMessages/ReceiveMessages call carries (a read batch's budget).
constexpr size_t kMaxBatch = 32;

// On a stream, a message of at most this many bytes leaves whole or not at all: unix_stream_sendmsg
// sends it as one skb (it splits only past min(sndbuf / 2 - 64, one page's head + 32 KiB)). A batch
// may hold a partially sent message only as its last one: sendmmsg goes on to the next message after
// a partial write, which would put that message's bytes in the middle of the unsent rest.
constexpr size_t kStreamAtomicBytes = 2048;

struct OutgoingMessage {
  const void* data;
  size_t len;
  const int* fds;
  size_t nfds;
  size_t sent;  // out: bytes the kernel took (a stream's last message may be short)
};

// How many of msgs[0, count) one SendMessages call attempts: at most kMaxBatch, and on a stream up to
// and including the first message longer than kStreamAtomicBytes.
size_t BatchLength(bool stream, const OutgoingMessage* msgs, size_t count);

// Sends msgs[0, count) with one sendmmsg, each message with its own SCM_RIGHTS (if it has fds). On a
// stream only the first message longer than kStreamAtomicBytes, if any, ends the call.
// Returns how many messages the kernel took (each msgs[i].sent set; only the last may be short, and
// then only on a stream) or -errno when it took none. An error after the first message is left for
// the next call (the kernel reports it again then). Never raises SIGPIPE.
int SendMessages(int sock, bool stream, OutgoingMessage* msgs, size_t count);

// Descriptors held in a caller-provided int array (e.g. memory JS reads directly), so that a batch of
// received messages needs no allocation. Owns slots [0, size()): closes them unless Release()d.
class OwnedFds {
 public:
  OwnedFds(int* slots, size_t capacity) noexcept : slots_(slots), capacity_(capacity) {}
  OwnedFds(const OwnedFds&) = delete;
  OwnedFds& operator=(const OwnedFds&) = delete;
  ~OwnedFds() { ShrinkTo(0); }

  size_t size() const noexcept { return size_; }
  // Takes ownership of `fd`; when full, closes it and returns false (never leaks).
  bool Push(int fd) noexcept {
    if (size_ == capacity_) {
      ::close(fd);
      return false;
    }
    slots_[size_++] = fd;
    return true;
  }
  // Closes the descriptors past the first `n` (a dropped message's).
  void ShrinkTo(size_t n) noexcept {
    while (size_ > n) ::close(slots_[--size_]);
  }
  // Ownership of every slot passed on (to JS): nothing is closed any more.
  void Release() noexcept { size_ = 0; }

 private:
  int* slots_;
  size_t capacity_;
  size_t size_ = 0;
};

struct ReceivedMessage {
  size_t length = 0;            // bytes written into the caller's buffer
  size_t nfds = 0;              // descriptors appended to the caller's OwnedFds
  bool data_truncated = false;  // MSG_TRUNC: datagram larger than the buffer
  bool fds_truncated = false;   // MSG_CTRUNC (or no room in `fds`): some fds were lost
  bool has_cred = false;        // SCM_CREDENTIALS arrived (the receiver set SO_PASSCRED)
  int pid = 0, uid = 0, gid = 0;
};

// Receives up to `count` (<= kMaxBatch) messages with one recvmmsg (MSG_WAITFORONE: what is queued,
// never a wait): message i into base + i * cap (capacity cap), its descriptors (CLOEXEC) appended to
// `fds` in message order, its layout and the sender's credentials (SO_PASSCRED) in out[i].
// Returns how many messages arrived (> 0), -EAGAIN when nothing is queued, or another -errno.
// A truncated message (MSG_TRUNC, MSG_CTRUNC) is still returned, flags set, so that the caller can
// report it; the descriptors that arrived with it are closed here (out[i].nfds is 0), so every
// descriptor of the batch has one owner whatever the caller drops.
int ReceiveMessages(int sock, void* base, size_t cap, size_t count, OwnedFds* fds, ReceivedMessage* out);

// False when nothing is queued to read, true otherwise or when it cannot tell. On a stream the
// queued bytes (SIOCINQ); on seqpacket and dgram a peek at the next message, since SIOCINQ gives only
// its length and a message of descriptors alone has none (the peek installs no descriptors).
bool MayHaveMore(int sock, bool stream);

}  // namespace fdpass

#endif  // FDPASS_SYS_MESSAGE_IO_H_
