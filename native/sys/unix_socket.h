// AF_UNIX sockets: socket/bind/listen/connect/accept4/socketpair and SO_PEERCRED. No N-API here.
#ifndef FDPASS_SYS_UNIX_SOCKET_H_
#define FDPASS_SYS_UNIX_SOCKET_H_

#include <sys/types.h>

#include <string>

#include "../unique_fd.h"

namespace fdpass {

// A Unix socket name: a filesystem path, or a Linux abstract name (unix(7)) without its leading NUL.
struct UnixName {
  std::string name;
  bool abstract = false;
};

// Result of a multi-step operation: fd >= 0, or err (-errno) with the syscall that failed.
struct SysResult {
  int fd = -1;
  int err = 0;
  const char* syscall = "";
};

// The two ways a SysResult ends: failed in `syscall` with `err` (-errno), or with a new fd.
inline SysResult SysFail(int err, const char* syscall) {
  SysResult r;
  r.err = err;
  r.syscall = syscall;
  return r;
}
inline SysResult SysOk(UniqueFd* fd) {
  SysResult r;
  r.fd = fd->release();
  return r;
}

// socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC)
SysResult UnixSocket(int type);

// Creates a socket bound to `name`; for stream/seqpacket also listening with `backlog`.
// A filesystem socket's file never has more permission bits than `mode` (it is created with no
// more, then set to `mode`), so no one can connect or send to it with looser permissions. A stale
// socket file (nobody accepts on it) is replaced; anything else at the path is left alone (EADDRINUSE).
SysResult UnixListen(int type, const UnixName& name, int backlog, unsigned mode);

// Creates a socket connected to `name`. Non-blocking: -EAGAIN when the listener's queue is full.
SysResult UnixConnect(int type, const UnixName& name);

// accept4(..., SOCK_NONBLOCK | SOCK_CLOEXEC). Returns the fd or -errno (-EAGAIN when none waits).
int UnixAccept(int listener);

// socketpair(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC). Returns 0 or -errno.
int UnixSocketPair(int type, int out[2]);

struct PeerCred {
  int pid;
  unsigned uid;
  unsigned gid;
};
// getsockopt(SO_PEERCRED). Returns 0 or -errno.
int GetPeerCred(int sock, PeerCred* out);

}  // namespace fdpass

#endif  // FDPASS_SYS_UNIX_SOCKET_H_
