// RAII owner of one file descriptor: every fd the C++ holds lives in one of these.
#ifndef FDPASS_UNIQUE_FD_H_
#define FDPASS_UNIQUE_FD_H_

#include <unistd.h>

namespace fdpass {

class UniqueFd {  // sole owner of one descriptor; move-only
 public:
  explicit UniqueFd(int fd = -1) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    reset(o.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  int release() noexcept {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  // close(2): never retried on EINTR, Linux releases the descriptor anyway.
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

}  // namespace fdpass

#endif  // FDPASS_UNIQUE_FD_H_
