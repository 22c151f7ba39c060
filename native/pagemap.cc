// PAGEMAP_SCAN (see pagemap.h). The ioctl's structures are those of the kernel's UAPI (linux/fs.h of
// 6.7), defined here because the build machine's headers may predate them.
#include "pagemap.h"

#include <cstdlib>
#include <mutex>

#if defined(__linux__)
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>
#endif

namespace hbr::pagemap {

#if defined(__linux__)
namespace {

struct PageRegion {
  uint64_t start, end, categories;
};
struct PmScanArg {
  uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted, category_mask,
      category_anyof_mask, return_mask;
};
const unsigned long kPagemapScan = _IOWR('f', 16, PmScanArg);

int Open() {
  const char* off = std::getenv("HB_RUNTIMES_NO_PAGEMAP");
  if (off != nullptr && *off != '\0' && *off != '0') return -1;
  int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  PmScanArg probe{};  // ENOTTY before 6.7; an empty range otherwise
  probe.size = sizeof probe;
  if (ioctl(fd, kPagemapScan, &probe) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

int Fd() {
  static std::once_flag once;
  static int fd = -1;
  std::call_once(once, [] { fd = Open(); });
  return fd;
}

bool Scan(const uint8_t* base, const uint8_t* begin, const uint8_t* end, const Query& q, std::vector<Region>* out) {
  if (Fd() < 0) return false;
  constexpr size_t kVec = 1024;
  PageRegion vec[kVec];
  uint64_t at = reinterpret_cast<uint64_t>(begin);
  const uint64_t stop = reinterpret_cast<uint64_t>(end);
  while (at < stop) {
    PmScanArg a{};
    a.size = sizeof a;
    a.flags = q.flags;
    a.start = at;
    a.end = stop;
    a.vec = out != nullptr ? reinterpret_cast<uint64_t>(vec) : 0;
    a.vec_len = out != nullptr ? kVec : 0;
    a.category_inverted = q.inverted;
    a.category_mask = q.all;
    a.category_anyof_mask = q.anyof;
    a.return_mask = q.report;
    long n = ioctl(Fd(), kPagemapScan, &a);
    if (n < 0) return false;
    for (long i = 0; i < n && out != nullptr; i++) {
      uint64_t off = vec[i].start - reinterpret_cast<uint64_t>(base);
      uint64_t len = vec[i].end - vec[i].start;
      if (!out->empty() && out->back().offset + out->back().length == off && out->back().categories == vec[i].categories) {
        out->back().length += len;
      } else {
        out->push_back({off, len, vec[i].categories});
      }
    }
    if (a.walk_end <= at) return false;
    at = a.walk_end;
  }
  return true;
}

#else

int Fd() { return -1; }
bool Scan(const uint8_t*, const uint8_t*, const uint8_t*, const Query&, std::vector<Region>*) { return false; }

#endif

}  // namespace hbr::pagemap
