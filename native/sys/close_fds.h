// Closing many descriptors in few system calls. No N-API here.
#ifndef FDPASS_SYS_CLOSE_FDS_H_
#define FDPASS_SYS_CLOSE_FDS_H_

#include <cstddef>

namespace fdpass {

// Closes fds[0, count), every one even if one fails; returns the first failure as -errno (0: none),
// as one close(2) each would (a descriptor not open: -EBADF; one listed twice: its second close).
// Runs of consecutive numbers (a received message's descriptors usually are: the kernel installs
// each at the lowest free number) go in one close_range(2) each, once one poll(2) has shown every
// listed descriptor open: a close(2) costs a system call per descriptor.
int CloseAll(const int* fds, size_t count);

}  // namespace fdpass

#endif  // FDPASS_SYS_CLOSE_FDS_H_
