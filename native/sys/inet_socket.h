// TCP/UDP sockets bound with SO_REUSEPORT (socket(7)), for listeners shared between processes.
#ifndef FDPASS_SYS_INET_SOCKET_H_
#define FDPASS_SYS_INET_SOCKET_H_

#include <string>

#include "unix_socket.h"  // SysResult

namespace fdpass {

struct InetOptions {
  int family = 0;    // AF_INET or AF_INET6
  int type = 0;      // SOCK_STREAM or SOCK_DGRAM
  std::string host;  // numeric address (TS resolves names); IPv6 may carry a %zone
  int port = 0;
  int backlog = -1;  // >= 0: listen() (stream only)
  int v6only = -1;   // -1: kernel default, 0/1: IPV6_V6ONLY
  bool reuse_port = true;
};

// socket + SO_REUSEADDR (TCP) + SO_REUSEPORT (+ IPV6_V6ONLY) + bind (+ listen); NONBLOCK | CLOEXEC.
SysResult InetBind(const InetOptions& opts);

// Steers the SO_REUSEPORT group of `fd` to the sockets at `indices` (positions in the group, in the
// order they were bound): a classic BPF program (SO_ATTACH_REUSEPORT_CBPF) picks one by a hash of
// the client's source port. `count` 0 detaches it: the kernel's own hash over every socket again.
// Returns 0 or -errno.
int SteerReusePort(int fd, int family, const int* indices, int count);

}  // namespace fdpass

#endif  // FDPASS_SYS_INET_SOCKET_H_
