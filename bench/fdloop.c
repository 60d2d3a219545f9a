// fdloop: the physical limit for the fd round trip, in C. The process makes a socket pair and forks:
// the parent sends N messages of 8 bytes, each with K copies of one listening TCP socket (SCM_RIGHTS);
// the child receives them, closes every fd and acknowledges the end. Both sides use non-blocking
// sockets driven by level-triggered epoll, and the receiver reads at most 32 messages per wakeup, as
// libuv's uv__read does, so it is the loop an event-driven runtime could at best reach.
// With `mmsg`, both sides batch: the sender sends 32 messages per sendmmsg, the receiver reads up to 32
// per recvmmsg (each message with its own control message) and closes each message's fds with one
// close_range per run of consecutive numbers (as fdpass's closeFds): the limit past one syscall per
// message and per fd.
//   fdloop <seqpacket|stream> <K> <N> [mmsg]
// Prints one JSON line: {"elapsed_ns":..,"sender_maxrss_kb":..,"receiver_maxrss_kb":..}
// Built by bench/run.ts with the system cc (cc -O2 -o fdloop fdloop.c).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_FDS 253     // SCM_MAX_FD
#define READ_BUDGET 32  // libuv uv__read

static void die(const char* what) {
  perror(what);
  exit(2);
}

// Closes p[0, count), each run of consecutive numbers in one close_range(2) (the kernel installs a
// message's fds at the lowest free numbers, so a message's usually are one run).
static void close_runs(const int* p, size_t count) {
  size_t start = 0;
  for (size_t j = 1; j <= count; j++) {
    if (j < count && p[j] == p[j - 1] + 1) continue;
    if (j - start < 3 || syscall(SYS_close_range, (unsigned)p[start], (unsigned)p[j - 1], 0u) != 0) {
      for (size_t k = start; k < j; k++) close(p[k]);
    }
    start = j;
  }
}

static long maxrss_kb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

static int wait_for(int ep, int sock, uint32_t events) {
  struct epoll_event ev = {.events = events, .data.fd = sock};
  if (epoll_ctl(ep, EPOLL_CTL_MOD, sock, &ev) < 0) die("epoll_ctl");
  struct epoll_event out;
  int n;
  do n = epoll_wait(ep, &out, 1, -1);
  while (n < 0 && errno == EINTR);
  if (n < 0) die("epoll_wait");
  return (int)out.events;
}

// Reads exactly len bytes (the ack or the ready signal) from a non-blocking socket through epoll.
static void read_exact(int ep, int sock, void* buf, size_t len) {
  size_t got = 0;
  while (got < len) {
    ssize_t n = recv(sock, (char*)buf + got, len - got, MSG_DONTWAIT);
    if (n > 0) {
      got += (size_t)n;
    } else if (n == 0) {
      fprintf(stderr, "fdloop: unexpected EOF\n");
      exit(2);
    } else if (errno == EAGAIN) {
      wait_for(ep, sock, EPOLLIN);
    } else if (errno != EINTR) {
      die("recv");
    }
  }
}

static void write_all(int ep, int sock, const void* buf, size_t len) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = send(sock, (const char*)buf + done, len - done, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) {
      done += (size_t)n;
    } else if (errno == EAGAIN) {
      wait_for(ep, sock, EPOLLOUT);
    } else if (errno != EINTR) {
      die("send");
    }
  }
}

// One recvmmsg of up to READ_BUDGET messages, each into its own slot and control buffer: closes every
// fd, counts bytes, messages and fds. Returns recvmmsg's result.
static int recv_batch(int sock, long* bytes, long* msgs, long* fds) {
  static char slots[READ_BUDGET][2048];
  static union {
    char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    struct cmsghdr align;
  } controls[READ_BUDGET];
  struct mmsghdr hdrs[READ_BUDGET];
  struct iovec iov[READ_BUDGET];
  memset(hdrs, 0, sizeof(hdrs));
  for (int i = 0; i < READ_BUDGET; i++) {
    iov[i].iov_base = slots[i];
    iov[i].iov_len = sizeof(slots[i]);
    hdrs[i].msg_hdr.msg_iov = &iov[i];
    hdrs[i].msg_hdr.msg_iovlen = 1;
    hdrs[i].msg_hdr.msg_control = controls[i].buf;
    hdrs[i].msg_hdr.msg_controllen = sizeof(controls[i].buf);
  }
  int got = recvmmsg(sock, hdrs, READ_BUDGET, MSG_DONTWAIT | MSG_WAITFORONE | MSG_CMSG_CLOEXEC, NULL);
  for (int i = 0; i < got; i++) {
    struct msghdr* msg = &hdrs[i].msg_hdr;
    if (hdrs[i].msg_len == 0) {
      fprintf(stderr, "fdloop: receiver saw EOF early\n");
      exit(2);
    }
    if (msg->msg_flags & MSG_CTRUNC) {
      fprintf(stderr, "fdloop: MSG_CTRUNC\n");
      exit(2);
    }
    for (struct cmsghdr* c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR(msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      int* p = (int*)CMSG_DATA(c);
      close_runs(p, count);
      *fds += (long)count;
    }
    *bytes += hdrs[i].msg_len;
    (*msgs)++;
  }
  return got;
}

static int receiver(int sock, int stream, int mmsg, long k, long n) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = sock};
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, sock, &ev) < 0) die("epoll");
  static char data[65536];
  union {
    char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    struct cmsghdr align;
  } control;
  long expect_bytes = n * 8, bytes = 0, msgs = 0, fds = 0;
  char ready = 'r';
  write_all(ep, sock, &ready, 1);
  while (stream ? bytes < expect_bytes : msgs < n) {
    struct epoll_event out;
    int r = epoll_wait(ep, &out, 1, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) die("epoll_wait");
    if (mmsg) {
      int got = recv_batch(sock, &bytes, &msgs, &fds);
      if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (got < 0) die("recvmmsg");
      continue;
    }
    for (int i = 0; i < READ_BUDGET; i++) {
      struct iovec iov = {.iov_base = data, .iov_len = sizeof(data)};
      struct msghdr msg = {.msg_iov = &iov,
                           .msg_iovlen = 1,
                           .msg_control = control.buf,
                           .msg_controllen = sizeof(control.buf)};
      ssize_t got = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0 && errno == EAGAIN) break;
      if (got < 0) die("recvmsg");
      if (got == 0) {
        fprintf(stderr, "fdloop: receiver saw EOF early\n");
        exit(2);
      }
      if (msg.msg_flags & MSG_CTRUNC) {
        fprintf(stderr, "fdloop: MSG_CTRUNC\n");
        exit(2);
      }
      for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int* p = (int*)CMSG_DATA(c);
        for (size_t j = 0; j < count; j++) close(p[j]);
        fds += (long)count;
      }
      bytes += got;
      msgs++;
    }
  }
  if (fds != n * k) {
    fprintf(stderr, "fdloop: received %ld fds, expected %ld\n", fds, n * k);
    exit(2);
  }
  int64_t ack = maxrss_kb();  // the ack carries the receiver's peak RSS
  write_all(ep, sock, &ack, sizeof(ack));
  char eof;
  (void)recv(sock, &eof, 1, 0);  // blocking is fine now: wait for the sender to close
  return 0;
}

static int sender(int sock, int stream, int mmsg, long k, long n, pid_t child) {
  int lsock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (lsock < 0 || bind(lsock, (struct sockaddr*)&addr, sizeof(addr)) < 0 || listen(lsock, 16) < 0) {
    die("listen");
  }
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = sock};
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, sock, &ev) < 0) die("epoll");
  char ready;
  read_exact(ep, sock, &ready, 1);

  union {
    char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    struct cmsghdr align;
  } control;
  memset(&control, 0, sizeof(control));
  char payload[8] = "fdpass!";
  struct iovec iov = {.iov_base = payload, .iov_len = sizeof(payload)};
  struct msghdr msg = {.msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = control.buf,
                       .msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)k)};
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)k);
  int* p = (int*)CMSG_DATA(c);
  for (long j = 0; j < k; j++) p[j] = lsock;

  // The batch: READ_BUDGET copies of the message (the same payload and control message).
  struct mmsghdr batch[READ_BUDGET];
  for (int j = 0; j < READ_BUDGET; j++) batch[j] = (struct mmsghdr){.msg_hdr = msg};

  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long i = 0; mmsg && i < n;) {
    unsigned int want = n - i < READ_BUDGET ? (unsigned int)(n - i) : READ_BUDGET;
    int w = sendmmsg(sock, batch, want, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) {
      wait_for(ep, sock, EPOLLOUT);
      continue;
    }
    if (w < 0) die("sendmmsg");
    // A partial stream write can only be the last one taken (the next message then got EAGAIN).
    unsigned int last = batch[w - 1].msg_len;
    if (stream && last < sizeof(payload)) write_all(ep, sock, payload + last, sizeof(payload) - last);
    i += w;
  }
  for (long i = 0; !mmsg && i < n;) {
    ssize_t w = sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) {
      wait_for(ep, sock, EPOLLOUT);
      continue;
    }
    if (w < 0) die("sendmsg");
    // unix(7): on a partial stream write the fds went with the first byte; send the rest without them.
    if (stream && w < (ssize_t)sizeof(payload)) write_all(ep, sock, payload + w, sizeof(payload) - (size_t)w);
    i++;
  }
  int64_t receiver_rss;
  read_exact(ep, sock, &receiver_rss, sizeof(receiver_rss));
  clock_gettime(CLOCK_MONOTONIC, &t1);
  close(sock);
  int status;
  waitpid(child, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "fdloop: receiver failed\n");
    return 2;
  }
  long long ns = (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
  printf("{\"elapsed_ns\":%lld,\"sender_maxrss_kb\":%ld,\"receiver_maxrss_kb\":%lld}\n", ns, maxrss_kb(),
         (long long)receiver_rss);
  return 0;
}

int main(int argc, char** argv) {
  int mmsg = argc == 5 && strcmp(argv[4], "mmsg") == 0;
  if (argc != 4 && !mmsg) {
    fprintf(stderr, "usage: fdloop <seqpacket|stream> <K> <N> [mmsg]\n");
    return 2;
  }
  int stream = strcmp(argv[1], "stream") == 0;
  if (!stream && strcmp(argv[1], "seqpacket") != 0) {
    fprintf(stderr, "fdloop: socket type must be seqpacket or stream\n");
    return 2;
  }
  long k = atol(argv[2]), n = atol(argv[3]);
  if (k < 1 || k > MAX_FDS || n < 1) {
    fprintf(stderr, "fdloop: need 1 <= K <= 253 and N >= 1\n");
    return 2;
  }
  int sv[2];
  int type = stream ? SOCK_STREAM : SOCK_SEQPACKET;
  if (socketpair(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) die("socketpair");
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    close(sv[0]);
    return receiver(sv[1], stream, mmsg, k, n);
  }
  close(sv[1]);
  return sender(sv[0], stream, mmsg, k, n, pid);
}
