// One sendmsg/recvmsg carrying SCM_RIGHTS: control-message building and parsing. No N-API here.
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

// Receives one message into `buf` (capacity `cap`), descriptors CLOEXEC, appended to `fds`, and the
// sender's credentials when the socket has SO_PASSCRED.
// Returns 0 on success, -EAGAIN when nothing is queued, or another -errno.
// On truncation the message is still returned (flags set) so the caller can report it and close what
// arrived (fds->ShrinkTo(size before the call)).
int ReceiveMessage(int sock, void* buf, size_t cap, OwnedFds* fds, ReceivedMessage* out);

}  // namespace fdpass

#endif  // FDPASS_SYS_MESSAGE_IO_H_
