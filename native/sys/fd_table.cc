// The descriptor table's free room: getrlimit(RLIMIT_NOFILE) and a count of /proc/self/fd.
#include "fd_table.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace fdpass {
namespace {

constexpr const char* kFdDir = "/proc/self/fd";

// The open descriptors listed one by one (kernels before 6.2 give /proc/self/fd no size), leaving out
// the listing's own. 0 when it cannot be opened (EMFILE included: then no descriptor is free anyway).
size_t CountByListing() {
  int dir;
  do {
    dir = open(kFdDir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  } while (dir < 0 && errno == EINTR);
  if (dir < 0) return 0;
  size_t count = 0;
  alignas(8) char buf[4096];
  for (;;) {
    long n = syscall(SYS_getdents64, dir, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // end, or an error: what was counted so far is all we know
    for (long off = 0; off < n;) {
      const struct dirent64* d = reinterpret_cast<const struct dirent64*>(buf + off);
      if (d->d_name[0] != '.') count++;
      off += d->d_reclen;
    }
  }
  close(dir);
  return count > 0 ? count - 1 : 0;  // the listing's own descriptor was among them
}

}  // namespace

size_t FreeDescriptorsAtLeast() {
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  // RLIMIT_NOFILE is never infinite (setrlimit caps it at fs.nr_open); a value that says so counts as
  // more than any batch needs.
  size_t soft =
      limit.rlim_cur == RLIM_INFINITY ? static_cast<size_t>(1) << 30 : static_cast<size_t>(limit.rlim_cur);
  struct stat st;
  size_t open_now = 0;
  if (stat(kFdDir, &st) == 0 && st.st_size > 0) {
    open_now = static_cast<size_t>(st.st_size);
  } else {
    open_now = CountByListing();
    if (open_now == 0) return 0;  // unknown (a process always holds some descriptor: its socket)
  }
  return soft > open_now ? soft - open_now : 0;
}

}  // namespace fdpass
