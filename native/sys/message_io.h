// One sendmsg/recvmsg carrying SCM_RIGHTS: control-message building and parsing. No N-API here.
#ifndef FDPASS_SYS_MESSAGE_IO_H_
#define FDPASS_SYS_MESSAGE_IO_H_

#include <sys/types.h>

#include <cstddef>
#include <vector>

#include "../unique_fd.h"

namespace fdpass {

// SCM_MAX_FD in the kernel (include/net/scm.h): more in one message is EINVAL.
constexpr int kMaxFdsPerMessage = 253;

// Sends `len` bytes of `data` with `nfds` descriptors attached (nfds may be 0).
// Returns the number of bytes the kernel took (a stream may take fewer) or -errno.
// Never raises SIGPIPE (MSG_NOSIGNAL).
ssize_t SendMessage(int sock, const void* data, size_t len, const int* fds, size_t nfds);

struct ReceivedMessage {
  size_t length = 0;           // bytes written into the caller's buffer
  std::vector<UniqueFd> fds;   // owned until handed to JS
  bool data_truncated = false; // MSG_TRUNC: datagram larger than the buffer
  bool fds_truncated = false;  // MSG_CTRUNC: some fds were lost in the kernel
};

// Receives one message into `buf` (capacity `cap`), descriptors CLOEXEC.
// Returns 0 on success, -EAGAIN when nothing is queued, or another -errno.
// On truncation the message is still returned (flags set) so the caller can report it; its fds close
// with the ReceivedMessage.
int ReceiveMessage(int sock, void* buf, size_t cap, ReceivedMessage* out);

}  // namespace fdpass

#endif  // FDPASS_SYS_MESSAGE_IO_H_
