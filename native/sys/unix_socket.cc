// AF_UNIX sockets (unix(7)): creation, names, accept, peer credentials.
#include "unix_socket.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "../unique_fd.h"

namespace fdpass {
namespace {

// Fills a sockaddr_un; returns its length or -ENAMETOOLONG / -EINVAL.
int MakeAddress(const UnixName& name, struct sockaddr_un* addr) {
  memset(addr, 0, sizeof(*addr));
  addr->sun_family = AF_UNIX;
  size_t offset = name.abstract ? 1 : 0;  // abstract: sun_path[0] is NUL
  // A filesystem path needs room for its terminating NUL; an abstract name uses every byte.
  size_t room = sizeof(addr->sun_path) - offset - (name.abstract ? 0 : 1);
  if (name.name.empty() && !name.abstract) return -EINVAL;
  if (name.name.size() > room) return -ENAMETOOLONG;
  if (!name.abstract && memchr(name.name.data(), '\0', name.name.size()) != nullptr) return -EINVAL;
  memcpy(addr->sun_path + offset, name.name.data(), name.name.size());
  return static_cast<int>(offsetof(struct sockaddr_un, sun_path) + offset + name.name.size() +
                          (name.abstract ? 0 : 1));
}

int ConnectFd(int fd, const struct sockaddr_un* addr, int len) {
  int rc;
  do {
    rc = connect(fd, reinterpret_cast<const struct sockaddr*>(addr), static_cast<socklen_t>(len));
  } while (rc < 0 && errno == EINTR);
  return rc < 0 ? -errno : 0;
}

// True when `path` is a socket file that no one accepts on (connect says ECONNREFUSED).
bool IsStaleSocket(int type, const struct sockaddr_un* addr, int len) {
  struct stat st;
  if (lstat(addr->sun_path, &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
  UniqueFd probe(socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!probe.valid()) return false;
  return ConnectFd(probe.get(), addr, len) == -ECONNREFUSED;
}

}  // namespace

SysResult UnixSocket(int type) {
  UniqueFd fd(socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return SysFail(-errno, "socket");
  return SysOk(&fd);
}

SysResult UnixListen(int type, const UnixName& name, int backlog, unsigned mode) {
  struct sockaddr_un addr;
  int len = MakeAddress(name, &addr);
  if (len < 0) return SysFail(len, "bind");

  SysResult created = UnixSocket(type);
  if (created.fd < 0) return created;
  UniqueFd fd(created.fd);
  // unix(7) SO_PASSCRED: each datagram then carries its sender's SCM_CREDENTIALS (a datagram socket
  // has no SO_PEERCRED to check). Set before bind so that no datagram arrives without them.
  int on = 1;
  if (type == SOCK_DGRAM && setsockopt(fd.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) < 0) {
    return SysFail(-errno, "setsockopt");
  }

  // bind(2) creates the socket file with the socket inode's mode less the umask (unix_bind_bsd in
  // net/unix/af_unix.c). Narrowed first, the file is never wider than `mode`, not even before the
  // chmod below: a datagram socket takes datagrams from the moment it is bound, with no listen(2).
  if (!name.abstract && fchmod(fd.get(), static_cast<mode_t>(mode)) < 0) return SysFail(-errno, "fchmod");
  int rc = bind(fd.get(), reinterpret_cast<struct sockaddr*>(&addr), static_cast<socklen_t>(len));
  int err = rc < 0 ? -errno : 0;  // before the stale-socket probe's own syscalls overwrite errno
  if (err == -EADDRINUSE && !name.abstract && IsStaleSocket(type, &addr, len)) {
    // A previous owner died without unlinking: replace its file. A live listener keeps EADDRINUSE.
    unlink(addr.sun_path);
    rc = bind(fd.get(), reinterpret_cast<struct sockaddr*>(&addr), static_cast<socklen_t>(len));
    err = rc < 0 ? -errno : 0;
  }
  if (err < 0) return SysFail(err, "bind");

  // The umask may have taken bits that `mode` asks for: they are added now, nothing wider.
  if (!name.abstract && chmod(addr.sun_path, static_cast<mode_t>(mode)) < 0) {
    int err = -errno;
    unlink(addr.sun_path);
    return SysFail(err, "chmod");
  }
  if (type != SOCK_DGRAM && listen(fd.get(), backlog) < 0) {
    int err = -errno;
    if (!name.abstract) unlink(addr.sun_path);
    return SysFail(err, "listen");
  }
  return SysOk(&fd);
}

SysResult UnixConnect(int type, const UnixName& name) {
  struct sockaddr_un addr;
  int len = MakeAddress(name, &addr);
  if (len < 0) return SysFail(len, "connect");

  SysResult created = UnixSocket(type);
  if (created.fd < 0) return created;
  UniqueFd fd(created.fd);
  int rc = ConnectFd(fd.get(), &addr, len);
  if (rc < 0) return SysFail(rc, "connect");
  return SysOk(&fd);
}

int UnixAccept(int listener) {
  int fd;
  do {
    fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  return fd < 0 ? -errno : fd;
}

int UnixSocketPair(int type, int out[2]) {
  if (socketpair(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, out) < 0) return -errno;
  return 0;
}

int GetPeerCred(int sock, PeerCred* out) {
  struct ucred cred;
  socklen_t len = sizeof(cred);
  if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return -errno;
  out->pid = cred.pid;
  out->uid = cred.uid;
  out->gid = cred.gid;
  return 0;
}

}  // namespace fdpass
