// sendmsg/sendmmsg/recvmmsg carrying SCM_RIGHTS (unix(7), cmsg(3)), each message its own control message.
#include "message_io.h"

#include <errno.h>
#include <linux/sockios.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>

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

namespace {

// Writes one SCM_RIGHTS control message for fds[0, nfds) into `control` (CMSG_SPACE(4 * nfds) bytes,
// aligned) and points `msg` at it.
void AttachFds(struct msghdr* msg, char* control, const int* fds, size_t nfds) {
  memset(control, 0, CMSG_SPACE(sizeof(int) * nfds));  // only what the kernel reads
  msg->msg_control = control;
  msg->msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
  struct cmsghdr* cmsg = CMSG_FIRSTHDR(msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
  memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * nfds);
}

// Takes ownership of every descriptor a received message carries, whatever else is wrong with the
// message, so that none can leak. Only SOL_SOCKET/SCM_RIGHTS carries fds (libuv checks neither level
// nor MSG_CTRUNC). A truncated message's descriptors are closed again at once.
void ParseReceived(struct msghdr* msg, size_t length, OwnedFds* fds, ReceivedMessage* out) {
  size_t mark = fds->size();
  out->length = length;
  out->nfds = 0;
  out->fds_truncated = false;
  out->has_cred = false;
  for (struct cmsghdr* cmsg = CMSG_FIRSTHDR(msg); cmsg != nullptr; cmsg = CMSG_NXTHDR(msg, cmsg)) {
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
  out->data_truncated = (msg->msg_flags & MSG_TRUNC) != 0;
  if ((msg->msg_flags & MSG_CTRUNC) != 0) out->fds_truncated = true;
  if (out->data_truncated || out->fds_truncated) {
    fds->ShrinkTo(mark);
    out->nfds = 0;
  }
}

// One batch's control buffers (about 33 KiB each way): per thread (each Node environment runs on its
// own), not on the stack of a Worker's smaller thread.
struct BatchBuffers {
  struct mmsghdr headers[kMaxBatch];
  struct iovec iov[kMaxBatch];
  ControlBuffer control[kMaxBatch];
};
thread_local BatchBuffers batch_buffers;

}  // namespace

size_t BatchLength(bool stream, const OutgoingMessage* msgs, size_t count) {
  size_t n = std::min(count, kMaxBatch);
  if (!stream) return n;
  for (size_t i = 0; i < n; i++) {
    if (msgs[i].len > kStreamAtomicBytes) return i + 1;  // only the last message may be cut short
  }
  return n;
}

int SendMessages(int sock, bool stream, OutgoingMessage* msgs, size_t count) {
  BatchBuffers& b = batch_buffers;
  count = BatchLength(stream, msgs, count);
  size_t n = 0;
  while (n < count) {
    OutgoingMessage& m = msgs[n];
    if (m.nfds > static_cast<size_t>(kMaxFdsPerMessage)) {
      if (n == 0) return -EINVAL;
      break;
    }
    struct msghdr* h = &b.headers[n].msg_hdr;
    memset(&b.headers[n], 0, sizeof(b.headers[n]));
    b.iov[n].iov_base = const_cast<void*>(m.data);
    b.iov[n].iov_len = m.len;
    h->msg_iov = &b.iov[n];
    h->msg_iovlen = 1;
    if (m.nfds > 0) AttachFds(h, b.control[n].buf, m.fds, m.nfds);
    m.sent = 0;
    n++;
  }
  int got;
  do {
    got = sendmmsg(sock, b.headers, static_cast<unsigned int>(n), MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (got < 0 && errno == EINTR);
  if (got < 0) return -errno;
  for (int i = 0; i < got; i++) msgs[i].sent = b.headers[i].msg_len;
  return got;
}

int ReceiveMessages(int sock, void* base, size_t cap, size_t count, OwnedFds* fds, ReceivedMessage* out) {
  BatchBuffers& b = batch_buffers;
  if (count > kMaxBatch) count = kMaxBatch;
  for (size_t i = 0; i < count; i++) {
    memset(&b.headers[i], 0, sizeof(b.headers[i]));
    b.iov[i].iov_base = static_cast<char*>(base) + i * cap;
    b.iov[i].iov_len = cap;
    struct msghdr* h = &b.headers[i].msg_hdr;
    h->msg_iov = &b.iov[i];
    h->msg_iovlen = 1;
    h->msg_control = b.control[i].buf;
    h->msg_controllen = sizeof(b.control[i].buf);
  }
  int got;
  do {
    got = recvmmsg(sock, b.headers, static_cast<unsigned int>(count),
                   MSG_CMSG_CLOEXEC | MSG_DONTWAIT | MSG_WAITFORONE, nullptr);
  } while (got < 0 && errno == EINTR);
  if (got < 0) return -errno;
  for (int i = 0; i < got; i++) ParseReceived(&b.headers[i].msg_hdr, b.headers[i].msg_len, fds, &out[i]);
  return got;
}

bool MayHaveMore(int sock, bool stream) {
  if (stream) {
    int queued = 0;
    return ioctl(sock, SIOCINQ, &queued) != 0 || queued > 0;
  }
  char byte;
  ssize_t got;
  do {
    got = recv(sock, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  } while (got < 0 && errno == EINTR);
  return got >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
}

}  // namespace fdpass
