// TCP/UDP sockets with SO_REUSEPORT: every socket in a group must set it before bind (socket(7)).
#include "inet_socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "../unique_fd.h"

namespace fdpass {
namespace {

int SetFlag(int fd, int level, int name, int value) {
  return setsockopt(fd, level, name, &value, sizeof(value)) < 0 ? -errno : 0;
}

}  // namespace

SysResult InetBind(const InetOptions& opts) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  socklen_t len;
  if (opts.family == AF_INET) {
    auto* a = reinterpret_cast<struct sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<uint16_t>(opts.port));
    if (inet_pton(AF_INET, opts.host.c_str(), &a->sin_addr) != 1) return SysFail(-EINVAL, "bind");
    len = sizeof(*a);
  } else if (opts.family == AF_INET6) {
    auto* a = reinterpret_cast<struct sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(opts.port));
    if (inet_pton(AF_INET6, opts.host.c_str(), &a->sin6_addr) != 1) return SysFail(-EINVAL, "bind");
    len = sizeof(*a);
  } else {
    return SysFail(-EAFNOSUPPORT, "socket");
  }

  UniqueFd fd(socket(opts.family, opts.type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return SysFail(-errno, "socket");

  int rc = SetFlag(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1);
  if (rc == 0 && opts.reuse_port) rc = SetFlag(fd.get(), SOL_SOCKET, SO_REUSEPORT, 1);
  if (rc == 0 && opts.family == AF_INET6 && opts.v6only >= 0)
    rc = SetFlag(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, opts.v6only);
  if (rc < 0) return SysFail(rc, "setsockopt");

  if (bind(fd.get(), reinterpret_cast<struct sockaddr*>(&ss), len) < 0) return SysFail(-errno, "bind");
  if (opts.type == SOCK_STREAM && opts.backlog >= 0 && listen(fd.get(), opts.backlog) < 0)
    return SysFail(-errno, "listen");

  return SysOk(&fd);
}

}  // namespace fdpass
