// One sendmsg/recvmsg carrying SCM_RIGHTS (unix(7), cmsg(3)).
#include "message_io.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

namespace fdpass {
namespace {

// Aligned control buffer big enough for SCM_MAX_FD descriptors and one SCM_CREDENTIALS (SO_PASSCRED
// sockets get both on one datagram), as cmsg(3) recommends.
union ControlBuffer {
  char buf[CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage) + CMSG_SPACE(sizeof(struct ucred))];
  struct cmsghdr align;
};

}  // namespace

ssize_t SendMessage(int sock, const void* data, size_t len, const int* fds, size_t nfds) {
  struct iovec iov;
  iov.iov_base = const_cast<void*>(data);
  iov.iov_len = len;

  struct msghdr msg;
  memset(&msg, 0, sizeof(msg));
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;

  ControlBuffer control;
  if (nfds > 0) {
    if (nfds > static_cast<size_t>(kMaxFdsPerMessage)) return -EINVAL;
    memset(control.buf, 0, CMSG_SPACE(sizeof(int) * nfds));  // only what the kernel reads
    msg.msg_control = control.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * nfds);
  }

  ssize_t n;
  do {
    n = sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return -errno;
  return n;
}

int ReceiveMessage(int sock, void* buf, size_t cap, OwnedFds* fds, ReceivedMessage* out) {
  struct iovec iov;
  iov.iov_base = buf;
  iov.iov_len = cap;

  ControlBuffer control;
  struct msghdr msg;
  memset(&msg, 0, sizeof(msg));
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof(control.buf);

  ssize_t n;
  do {
    n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return -errno;

  out->length = static_cast<size_t>(n);
  out->nfds = 0;
  out->fds_truncated = false;
  out->has_cred = false;
  // Take ownership of every descriptor first, whatever else is wrong with the message, so that none
  // can leak. Only SOL_SOCKET/SCM_RIGHTS carries fds (libuv checks neither level nor MSG_CTRUNC).
  for (struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg); cmsg != nullptr; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
    if (cmsg->cmsg_level != SOL_SOCKET) continue;
    if (cmsg->cmsg_type == SCM_CREDENTIALS && cmsg->cmsg_len >= CMSG_LEN(sizeof(struct ucred))) {
      struct ucred cred;
      memcpy(&cred, CMSG_DATA(cmsg), sizeof(cred));
      out->has_cred = true;
      out->pid = cred.pid;
      out->uid = static_cast<int>(cred.uid);
      out->gid = static_cast<int>(cred.gid);
      continue;
    }
    if (cmsg->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char* p = CMSG_DATA(cmsg);
    for (size_t i = 0; i < count; i++) {
      int fd;
      memcpy(&fd, p + i * sizeof(int), sizeof(int));
      if (fds->Push(fd)) {
        out->nfds++;
      } else {
        out->fds_truncated = true;  // closed by Push: the caller's array is full
      }
    }
  }
  out->data_truncated = (msg.msg_flags & MSG_TRUNC) != 0;
  if ((msg.msg_flags & MSG_CTRUNC) != 0) out->fds_truncated = true;
  return 0;
}

}  // namespace fdpass
