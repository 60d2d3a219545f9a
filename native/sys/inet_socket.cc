// TCP/UDP sockets with SO_REUSEPORT: every socket in a group must set it before bind (socket(7)).
#include "inet_socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <vector>

#include "../unique_fd.h"

namespace fdpass {
namespace {

int SetFlag(int fd, int level, int name, int value) {
  return setsockopt(fd, level, name, &value, sizeof(value)) < 0 ? -errno : 0;
}

// Splits "addr%zone" (RFC 4007) into the address and sin6_scope_id: a zone is an interface name
// (if_nametoindex(3)) or a number. Returns 0, -EINVAL for a malformed address or -ENODEV for an
// unknown interface (libuv ignores that silently; we refuse it).
int ParseScopedIPv6(const std::string& host, struct sockaddr_in6* a, const char** syscall) {
  *syscall = "bind";
  size_t percent = host.find('%');
  std::string address = host.substr(0, percent);
  if (inet_pton(AF_INET6, address.c_str(), &a->sin6_addr) != 1) return -EINVAL;
  if (percent == std::string::npos) return 0;
  std::string zone = host.substr(percent + 1);
  if (zone.empty()) return -EINVAL;
  if (zone.find_first_not_of("0123456789") == std::string::npos) {
    unsigned long index = strtoul(zone.c_str(), nullptr, 10);
    if (index == 0 || index > UINT32_MAX) {
      *syscall = "if_nametoindex";  // no interface has index 0
      return -ENODEV;
    }
    a->sin6_scope_id = static_cast<uint32_t>(index);
    return 0;
  }
  unsigned index = if_nametoindex(zone.c_str());
  if (index == 0) {
    int err = -errno;
    *syscall = "if_nametoindex";
    return err == 0 ? -ENODEV : err;
  }
  a->sin6_scope_id = index;
  return 0;
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
    const char* syscall;
    int rc = ParseScopedIPv6(opts.host, a, &syscall);
    if (rc < 0) return SysFail(rc, syscall);
    len = sizeof(*a);
  } else {
    return SysFail(-EAFNOSUPPORT, "socket");
  }

  UniqueFd fd(socket(opts.family, opts.type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return SysFail(-errno, "socket");

  // SO_REUSEADDR only for TCP, where it lets a restart bind past connections in TIME_WAIT. On UDP
  // (socket(7)) it lets a second socket with the flag bind the same address and take its datagrams:
  // a port in use must stay EADDRINUSE, and a SO_REUSEPORT group admits only its own uid's sockets.
  int rc = opts.type == SOCK_STREAM ? SetFlag(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1) : 0;
  if (rc == 0 && opts.reuse_port) rc = SetFlag(fd.get(), SOL_SOCKET, SO_REUSEPORT, 1);
  if (rc == 0 && opts.family == AF_INET6 && opts.v6only >= 0)
    rc = SetFlag(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, opts.v6only);
  if (rc < 0) return SysFail(rc, "setsockopt");

  if (bind(fd.get(), reinterpret_cast<struct sockaddr*>(&ss), len) < 0) return SysFail(-errno, "bind");
  if (opts.type == SOCK_STREAM && opts.backlog >= 0 && listen(fd.get(), opts.backlog) < 0)
    return SysFail(-errno, "listen");

  return SysOk(&fd);
}

int SteerReusePort(int fd, int family, const int* indices, int count) {
  if (count == 0) {
    int unused = 0;
    return setsockopt(fd, SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, &unused, sizeof(unused)) < 0 ? -errno : 0;
  }
  if (count < 0 || count > 2000) return -EINVAL;  // BPF_MAXINSNS: 4 + 2 per index
  // The program sees the packet from past the TCP/UDP header (the payload; a SYN has none), so the
  // source port is read through the network header (SKF_NET_OFF) after an IP header without options.
  // connect(2) prefers even ports: the port is mixed (Knuth's multiplicative hash) before the modulo.
  const uint32_t port_offset = static_cast<uint32_t>(SKF_NET_OFF) + (family == AF_INET6 ? 40 : 20);
  std::vector<sock_filter> code;
  code.push_back(BPF_STMT(BPF_LD | BPF_H | BPF_ABS, port_offset));
  code.push_back(BPF_STMT(BPF_ALU | BPF_MUL | BPF_K, 2654435761u));
  code.push_back(BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 16));
  code.push_back(BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, static_cast<uint32_t>(count)));
  for (int k = 0; k < count; k++) {
    code.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(k), 0, 1));
    code.push_back(BPF_STMT(BPF_RET | BPF_K, static_cast<uint32_t>(indices[k])));
  }
  code.push_back(BPF_STMT(BPF_RET | BPF_K, static_cast<uint32_t>(indices[0])));
  sock_fprog prog{static_cast<unsigned short>(code.size()), code.data()};
  return setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog)) < 0 ? -errno : 0;
}

}  // namespace fdpass
