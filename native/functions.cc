// The synchronous natives: socket creation, accept-free Unix and inet setup, introspection, dup/close,
// reaping children (waitpid, PR_SET_CHILD_SUBREAPER) and a send that never blocks. Each validates,
// makes one system call (its own or a sys/ function's), and returns plain values (fds as numbers
// now owned by JS).
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "addon.h"
#include "args.h"
#include "errors.h"
#include "sys/close_fds.h"
#include "sys/inet_socket.h"
#include "sys/introspect.h"
#include "sys/message_io.h"
#include "sys/unix_socket.h"

namespace fdpass {
namespace {

bool ReadSocketType(const Napi::CallbackInfo& info, size_t i, int* out) {
  if (!ReadInt32(info, i, out)) return false;
  if (*out != SOCK_STREAM && *out != SOCK_SEQPACKET && *out != SOCK_DGRAM) {
    ThrowTypeError(info.Env(), "ERR_INVALID_ARG_VALUE", "unsupported socket type");
    return false;
  }
  return true;
}

Napi::Value Result(Napi::Env env, const SysResult& r) {
  if (r.fd < 0) {
    ThrowSystemError(env, r.err, r.syscall);
    return env.Undefined();
  }
  return Napi::Number::New(env, r.fd);
}

// socketPair(type) -> [fd, fd]
Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int type;
  if (!ReadSocketType(info, 0, &type)) return env.Undefined();
  int fds[2];
  int rc = UnixSocketPair(type, fds);
  if (rc < 0) {
    ThrowSystemError(env, rc, "socketpair");
    return env.Undefined();
  }
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Number::New(env, fds[0]));
  out.Set(1u, Napi::Number::New(env, fds[1]));
  return out;
}

// unixListen(type, name, abstract, backlog, mode) -> fd
Napi::Value UnixListenFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int type, backlog, mode;
  UnixName name;
  if (!ReadSocketType(info, 0, &type) || !ReadString(info, 1, &name.name) ||
      !ReadBool(info, 2, &name.abstract) || !ReadInt32(info, 3, &backlog, 0) ||
      !ReadInt32(info, 4, &mode, 0, 07777)) {
    return env.Undefined();
  }
  return Result(env, UnixListen(type, name, backlog, static_cast<unsigned>(mode)));
}

// unixConnect(type, name, abstract) -> fd; EAGAIN (queue full) is thrown for JS to retry
Napi::Value UnixConnectFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int type;
  UnixName name;
  if (!ReadSocketType(info, 0, &type) || !ReadString(info, 1, &name.name) ||
      !ReadBool(info, 2, &name.abstract)) {
    return env.Undefined();
  }
  return Result(env, UnixConnect(type, name));
}

// peerCred(fd) -> [pid, uid, gid]
Napi::Value PeerCredFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ReadFd(info, 0, &fd)) return env.Undefined();
  PeerCred cred;
  int rc = GetPeerCred(fd, &cred);
  if (rc < 0) {
    ThrowSystemError(env, rc, "getsockopt");
    return env.Undefined();
  }
  Napi::Array out = Napi::Array::New(env, 3);
  out.Set(0u, Napi::Number::New(env, cred.pid));
  out.Set(1u, Napi::Number::New(env, cred.uid));
  out.Set(2u, Napi::Number::New(env, cred.gid));
  return out;
}

// inetBind(family, type, host, port, backlog, v6only, reusePort) -> fd
Napi::Value InetBindFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  InetOptions o;
  if (!ReadInt32(info, 0, &o.family) || !ReadInt32(info, 1, &o.type) || !ReadString(info, 2, &o.host) ||
      !ReadInt32(info, 3, &o.port, 0, 65535) || !ReadInt32(info, 4, &o.backlog, -1) ||
      !ReadInt32(info, 5, &o.v6only, -1, 1) || !ReadBool(info, 6, &o.reuse_port)) {
    return env.Undefined();
  }
  if ((o.family != AF_INET && o.family != AF_INET6) || (o.type != SOCK_STREAM && o.type != SOCK_DGRAM)) {
    ThrowTypeError(env, "ERR_INVALID_ARG_VALUE", "unsupported family or socket type");
    return env.Undefined();
  }
  return Result(env, InetBind(o));
}

Napi::Object AddressObject(Napi::Env env, const SocketAddress& a) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("family", Napi::Number::New(env, a.family));
  o.Set("address", Napi::String::New(env, a.address));
  o.Set("port", Napi::Number::New(env, a.port));
  o.Set("abstract", Napi::Boolean::New(env, a.abstract));
  o.Set("unnamed", Napi::Boolean::New(env, a.unnamed));
  return o;
}

// inspect(fd) -> { mode, isSocket, domain, type, protocol, listening, local, connected, peer, ... }
Napi::Value InspectFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ReadFd(info, 0, &fd)) return env.Undefined();
  FdInfo fi;
  const char* syscall = "fstat";
  int rc = Inspect(fd, &fi, &syscall);
  if (rc < 0) {
    ThrowSystemError(env, rc, syscall);
    return env.Undefined();
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("mode", Napi::Number::New(env, fi.mode));
  o.Set("isSocket", Napi::Boolean::New(env, fi.is_socket));
  o.Set("cloexec", Napi::Boolean::New(env, fi.cloexec));
  o.Set("nonblocking", Napi::Boolean::New(env, fi.nonblocking));
  if (fi.is_socket) {
    o.Set("domain", Napi::Number::New(env, fi.domain));
    o.Set("type", Napi::Number::New(env, fi.type));
    o.Set("protocol", Napi::Number::New(env, fi.protocol));
    o.Set("listening", Napi::Boolean::New(env, fi.listening));
    o.Set("local", AddressObject(env, fi.local));
    o.Set("connected", Napi::Boolean::New(env, fi.connected));
    o.Set("connecting", Napi::Boolean::New(env, fi.connecting));
    if (fi.connected) o.Set("peer", AddressObject(env, fi.peer));
  }
  return o;
}

// dup(fd) -> a new CLOEXEC descriptor for the same open file
Napi::Value DupFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ReadFd(info, 0, &fd)) return env.Undefined();
  int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) {
    int err = -errno;
    ThrowSystemError(env, err, "fcntl");
    return env.Undefined();
  }
  return Napi::Number::New(env, dup);
}

// listen(fd, backlog): makes a bound stream socket someone else created listen, so that adoption can
// fail here, with the caller's fd untouched, instead of inside Node (whose failed listen closes it)
Napi::Value ListenFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd, backlog;
  if (!ReadFd(info, 0, &fd) || !ReadInt32(info, 1, &backlog, 0)) return env.Undefined();
  if (::listen(fd, backlog) < 0) {
    int err = -errno;
    ThrowSystemError(env, err, "listen");
  }
  return env.Undefined();
}

// setCloexec(fd): sets FD_CLOEXEC on a descriptor this process inherited (sd_listen_fds(3) does the
// same for LISTEN_FDS), so that children spawned later do not inherit it
Napi::Value SetCloexecFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ReadFd(info, 0, &fd)) return env.Undefined();
  int flags = fcntl(fd, F_GETFD);
  if (flags < 0 || ((flags & FD_CLOEXEC) == 0 && fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0)) {
    int err = -errno;
    ThrowSystemError(env, err, "fcntl");
  }
  return env.Undefined();
}

// close(fd): EBADF is an error (a double close is a bug worth seeing); EINTR is not retried
Napi::Value CloseFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ReadFd(info, 0, &fd)) return env.Undefined();
  if (::close(fd) < 0 && errno != EINTR) {
    int err = -errno;
    ThrowSystemError(env, err, "close");
  }
  return env.Undefined();
}

// closeFds(fds: Int32Array, count: number) -> the first errno (0 if none): closes fds[0, count) in one
// call instead of one napi call each, consecutive numbers in one close_range (sys/close_fds.h). Every
// fd is closed even when one fails; close(2) is never retried and EINTR is no failure (Linux releases
// the descriptor anyway), as in closeFd.
Napi::Value CloseFdsFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::TypedArray array;
  int count;
  if (!ReadTypedArray(info, 0, napi_int32_array, 0, "fds must be an Int32Array", &array) ||
      !ReadInt32(info, 1, &count, 0, INT_MAX)) {
    return env.Undefined();
  }
  if (static_cast<size_t>(count) > array.ElementLength()) {
    ThrowRangeError(env, "ERR_OUT_OF_RANGE", "count exceeds the array");
    return env.Undefined();
  }
  const int32_t* fds = array.As<Napi::Int32Array>().Data();
  return Napi::Number::New(env, CloseAll(fds, static_cast<size_t>(count)));
}

// waitpid(pid) -> [pid, status] | null: reaps one exited child without blocking (WNOHANG). For a
// process that is PID 1 (or a subreaper): libuv waits only for the children it spawned, so orphans
// reparented to it stay zombies unless someone waits for them by pid.
Napi::Value WaitpidFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int pid;
  if (!ReadInt32(info, 0, &pid, 1, INT_MAX)) return env.Undefined();
  int status = 0;
  pid_t rc;
  do {
    rc = ::waitpid(pid, &status, WNOHANG);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    ThrowSystemError(env, -errno, "waitpid");
    return env.Undefined();
  }
  if (rc == 0) return env.Null();
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Number::New(env, rc));
  out.Set(1u, Napi::Number::New(env, status));
  return out;
}

// setChildSubreaper() -> undefined: prctl(PR_SET_CHILD_SUBREAPER, 1). Orphans among this process's
// descendants (e.g. a server a generation started with setsid, whose parent exited) are reparented to
// it instead of to PID 1, so that it can still find them, stop them and reap them (prctl(2)).
Napi::Value SetChildSubreaperFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (prctl(PR_SET_CHILD_SUBREAPER, 1UL, 0UL, 0UL, 0UL) < 0) ThrowSystemError(env, -errno, "prctl");
  return env.Undefined();
}

// steerReusePort(fd, family, indices: Int32Array, count): the SO_REUSEPORT group of fd sends new
// connections (datagrams) to the sockets at those positions only; count 0: to all again.
Napi::Value SteerReusePortFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int family;
  Napi::TypedArray array;
  int count;
  if (!ReadFd(info, 0, &fd) || !ReadInt32(info, 1, &family) ||
      !ReadTypedArray(info, 2, napi_int32_array, 0, "indices must be an Int32Array", &array) ||
      !ReadInt32(info, 3, &count, 0, 2000)) {
    return env.Undefined();
  }
  if (static_cast<size_t>(count) > array.ElementLength()) {
    ThrowRangeError(env, "ERR_OUT_OF_RANGE", "count exceeds the array");
    return env.Undefined();
  }
  int rc = SteerReusePort(fd, family, array.As<Napi::Int32Array>().Data(), count);
  if (rc < 0) ThrowSystemError(env, rc, "setsockopt");
  return env.Undefined();
}

// sendNoWait(fd, data) -> bytes the kernel took: one send(2) with MSG_DONTWAIT on a stream socket this
// process shares (the supervisor's stderr under journald), so that a reader that stopped reading
// cannot block the caller, while the open file description stays blocking for the others who hold it.
Napi::Value SendNoWaitFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  const uint8_t* data;
  size_t len;
  if (!ReadFd(info, 0, &fd) || !ReadBytes(info, 1, &data, &len)) return env.Undefined();
  ssize_t n = SendMessage(fd, data, len, nullptr, 0);
  if (n < 0) {
    ThrowSystemError(env, static_cast<int>(n), "send");
    return env.Undefined();
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

void SetConstants(Napi::Env env, Napi::Object exports) {
  Napi::Object c = Napi::Object::New(env);
  c.Set("SOCK_STREAM", Napi::Number::New(env, SOCK_STREAM));
  c.Set("SOCK_DGRAM", Napi::Number::New(env, SOCK_DGRAM));
  c.Set("SOCK_SEQPACKET", Napi::Number::New(env, SOCK_SEQPACKET));
  c.Set("AF_UNIX", Napi::Number::New(env, AF_UNIX));
  c.Set("AF_INET", Napi::Number::New(env, AF_INET));
  c.Set("AF_INET6", Napi::Number::New(env, AF_INET6));
  c.Set("S_IFSOCK", Napi::Number::New(env, S_IFSOCK));
  c.Set("S_IFREG", Napi::Number::New(env, S_IFREG));
  c.Set("S_IFIFO", Napi::Number::New(env, S_IFIFO));
  c.Set("S_IFCHR", Napi::Number::New(env, S_IFCHR));
  c.Set("S_IFBLK", Napi::Number::New(env, S_IFBLK));
  c.Set("S_IFDIR", Napi::Number::New(env, S_IFDIR));
  c.Set("S_IFLNK", Napi::Number::New(env, S_IFLNK));
  c.Set("MAX_FDS_PER_MESSAGE", Napi::Number::New(env, kMaxFdsPerMessage));
  exports.Set("constants", c);
}

}  // namespace

void RegisterFunctions(Napi::Env env, Napi::Object exports) {
  exports.Set("socketPair", Napi::Function::New(env, SocketPair, "socketPair"));
  exports.Set("unixListen", Napi::Function::New(env, UnixListenFn, "unixListen"));
  exports.Set("unixConnect", Napi::Function::New(env, UnixConnectFn, "unixConnect"));
  exports.Set("peerCred", Napi::Function::New(env, PeerCredFn, "peerCred"));
  exports.Set("inetBind", Napi::Function::New(env, InetBindFn, "inetBind"));
  exports.Set("inspect", Napi::Function::New(env, InspectFn, "inspect"));
  exports.Set("dup", Napi::Function::New(env, DupFn, "dup"));
  exports.Set("listen", Napi::Function::New(env, ListenFn, "listen"));
  exports.Set("close", Napi::Function::New(env, CloseFn, "close"));
  exports.Set("setCloexec", Napi::Function::New(env, SetCloexecFn, "setCloexec"));
  exports.Set("closeFds", Napi::Function::New(env, CloseFdsFn, "closeFds"));
  exports.Set("waitpid", Napi::Function::New(env, WaitpidFn, "waitpid"));
  exports.Set("setChildSubreaper", Napi::Function::New(env, SetChildSubreaperFn, "setChildSubreaper"));
  exports.Set("sendNoWait", Napi::Function::New(env, SendNoWaitFn, "sendNoWait"));
  exports.Set("steerReusePort", Napi::Function::New(env, SteerReusePortFn, "steerReusePort"));
  SetConstants(env, exports);
}

}  // namespace fdpass
