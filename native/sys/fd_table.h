// How many more descriptors this process can take before EMFILE. No N-API here.
#ifndef FDPASS_SYS_FD_TABLE_H_
#define FDPASS_SYS_FD_TABLE_H_

#include <cstddef>

namespace fdpass {

// A lower bound on the descriptor numbers still free below the soft RLIMIT_NOFILE: the limit less the
// descriptors open now (those at or above the limit, left from before a lower limit, count too: only
// the bound gets lower). The count is /proc/self/fd's st_size (Linux 6.2+, O(1)), else its entries
// (older kernels: O(open fds)). 0 when it cannot be known (no /proc, or no descriptor free to list
// it): the caller must then assume no room. Another thread opening or closing descriptors meanwhile
// changes the answer, as it changes what any read finds.
size_t FreeDescriptorsAtLeast();

}  // namespace fdpass

#endif  // FDPASS_SYS_FD_TABLE_H_
