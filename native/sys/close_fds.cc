// Closing many descriptors in few system calls: close_range(2) (Linux 5.9) per run of consecutive
// numbers, after one poll(2) that finds any listed descriptor not open (POLLNVAL), so that it still
// fails as close(2) fails it. Kernels without close_range get one close(2) each.
#include "close_fds.h"

#include <errno.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <vector>

namespace fdpass {
namespace {

// Fewer descriptors than this: one close(2) each costs no more system calls than poll + close_range.
constexpr size_t kRangeFrom = 3;

std::atomic<bool> no_close_range{false};  // ENOSYS once: every later call closes one by one

int CloseOne(int fd) { return ::close(fd) < 0 && errno != EINTR ? -errno : 0; }

int CloseEach(const int* fds, size_t count) {
  int first = 0;
  for (size_t k = 0; k < count; k++) {
    int rc = CloseOne(fds[k]);
    if (first == 0) first = rc;
  }
  return first;
}

bool CloseRange(int lo, int hi) {
#ifdef SYS_close_range
  if (no_close_range.load(std::memory_order_relaxed)) return false;
  if (syscall(SYS_close_range, static_cast<unsigned>(lo), static_cast<unsigned>(hi), 0u) == 0) return true;
  if (errno == ENOSYS) no_close_range.store(true, std::memory_order_relaxed);
#else
  (void)lo;
  (void)hi;
#endif
  return false;
}

}  // namespace

int CloseAll(const int* fds, size_t count) {
  if (count < kRangeFrom || no_close_range.load(std::memory_order_relaxed)) return CloseEach(fds, count);
  std::vector<pollfd> polled(count);
  for (size_t k = 0; k < count; k++) polled[k] = {fds[k], 0, 0};
  std::sort(polled.begin(), polled.end(), [](const pollfd& a, const pollfd& b) { return a.fd < b.fd; });
  bool repeated = false;
  for (size_t k = 1; k < count; k++) repeated = repeated || polled[k].fd == polled[k - 1].fd;
  int rc;
  do {
    rc = ::poll(polled.data(), count, 0);
  } while (rc < 0 && errno == EINTR);
  // A descriptor listed twice, or one not open (or poll refused the list): one by one, as close(2).
  if (repeated || rc < 0 || polled.front().fd < 0) return CloseEach(fds, count);
  for (const pollfd& p : polled) {
    if (p.revents & POLLNVAL) return CloseEach(fds, count);
  }
  size_t start = 0;
  for (size_t k = 1; k <= count; k++) {
    if (k < count && polled[k].fd == polled[k - 1].fd + 1) continue;
    int lo = polled[start].fd, hi = polled[k - 1].fd;
    if (lo == hi || !CloseRange(lo, hi)) {
      for (size_t j = start; j < k; j++) CloseOne(polled[j].fd);  // open, per poll: close(2) succeeds
    }
    start = k;
  }
  return 0;
}

}  // namespace fdpass
