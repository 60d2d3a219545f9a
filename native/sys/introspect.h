// What a descriptor is: fstat type, socket domain/type/protocol, listening, local and peer address.
#ifndef FDPASS_SYS_INTROSPECT_H_
#define FDPASS_SYS_INTROSPECT_H_

#include <string>

namespace fdpass {

struct SocketAddress {
  int family = 0;       // AF_* or 0 when unknown/unavailable
  std::string address;  // numeric IP, or Unix path / abstract name (without the leading NUL)
  int port = 0;
  bool abstract = false;
  bool unnamed = false;  // AF_UNIX with no name (socketpair, unbound)
};

struct FdInfo {
  unsigned mode = 0;  // st_mode & S_IFMT
  bool is_socket = false;
  int domain = 0, type = 0, protocol = 0;
  bool listening = false;
  SocketAddress local;
  bool connected = false;   // getpeername succeeded
  bool connecting = false;  // TCP handshake under way (TCP_INFO state SYN_SENT or SYN_RECV)
  SocketAddress peer;
  bool cloexec = false;
  bool nonblocking = false;
};

// Returns 0 or -errno (EBADF for a closed fd) with the failing syscall in *syscall.
int Inspect(int fd, FdInfo* out, const char** syscall);

}  // namespace fdpass

#endif  // FDPASS_SYS_INTROSPECT_H_
