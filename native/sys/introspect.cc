// Descriptor introspection: fstat(2), getsockopt(SO_DOMAIN/SO_TYPE/SO_PROTOCOL/SO_ACCEPTCONN),
// getsockname(2), getpeername(2), fcntl(2) flags.
#include "introspect.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

namespace fdpass {
namespace {

int GetInt(int fd, int name, int* out) {
  socklen_t len = sizeof(*out);
  return getsockopt(fd, SOL_SOCKET, name, out, &len) < 0 ? -errno : 0;
}

void Decode(const struct sockaddr_storage& ss, socklen_t len, SocketAddress* out) {
  char text[INET6_ADDRSTRLEN];
  out->family = ss.ss_family;
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const struct sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, text, sizeof(text));
    out->address = text;
    out->port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const struct sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof(text));
    out->address = text;
    out->port = ntohs(a->sin6_port);
  } else if (ss.ss_family == AF_UNIX) {
    const auto* a = reinterpret_cast<const struct sockaddr_un*>(&ss);
    size_t path_len =
        len > offsetof(struct sockaddr_un, sun_path) ? len - offsetof(struct sockaddr_un, sun_path) : 0;
    if (path_len == 0) {
      out->unnamed = true;
    } else if (a->sun_path[0] == '\0') {
      out->abstract = true;
      out->address.assign(a->sun_path + 1, path_len - 1);
    } else {
      out->address.assign(a->sun_path, strnlen(a->sun_path, path_len));
    }
  }
}

}  // namespace

int Inspect(int fd, FdInfo* out, const char** syscall) {
  struct stat st;
  if (fstat(fd, &st) < 0) {
    *syscall = "fstat";
    return -errno;
  }
  out->mode = st.st_mode & S_IFMT;
  int fd_flags = fcntl(fd, F_GETFD);
  int fl_flags = fcntl(fd, F_GETFL);
  out->cloexec = fd_flags >= 0 && (fd_flags & FD_CLOEXEC) != 0;
  out->nonblocking = fl_flags >= 0 && (fl_flags & O_NONBLOCK) != 0;
  out->is_socket = S_ISSOCK(st.st_mode);
  if (!out->is_socket) return 0;

  *syscall = "getsockopt";
  int rc = GetInt(fd, SO_DOMAIN, &out->domain);
  if (rc == 0) rc = GetInt(fd, SO_TYPE, &out->type);
  if (rc == 0) rc = GetInt(fd, SO_PROTOCOL, &out->protocol);
  int accepting = 0;
  if (rc == 0) rc = GetInt(fd, SO_ACCEPTCONN, &accepting);
  if (rc < 0) return rc;
  out->listening = accepting != 0;

  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  memset(&ss, 0, sizeof(ss));
  if (getsockname(fd, reinterpret_cast<struct sockaddr*>(&ss), &len) < 0) {
    *syscall = "getsockname";
    return -errno;
  }
  Decode(ss, len, &out->local);

  len = sizeof(ss);
  memset(&ss, 0, sizeof(ss));
  if (getpeername(fd, reinterpret_cast<struct sockaddr*>(&ss), &len) == 0) {
    out->connected = true;
    Decode(ss, len, &out->peer);
  } else if ((out->domain == AF_INET || out->domain == AF_INET6) && out->type == SOCK_STREAM &&
             !out->listening) {
    // getpeername fails both for a socket that never connected and for one still in its handshake:
    // only the TCP state tells them apart (listen(2) on a connecting socket is EINVAL).
    struct tcp_info ti;
    socklen_t ti_len = sizeof(ti);
    memset(&ti, 0, sizeof(ti));
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &ti_len) == 0) {
      out->connecting = ti.tcpi_state == TCP_SYN_SENT || ti.tcpi_state == TCP_SYN_RECV;
    }
  }
  return 0;
}

}  // namespace fdpass
