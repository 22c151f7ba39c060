// WriteTracker (see wasm_write_tracker.h): userfaultfd asynchronous write protection plus
// PAGEMAP_SCAN. The constants are those of the kernel's UAPI (linux/userfaultfd.h, linux/fs.h of
// 6.7), defined here because the build machine's headers may predate them.
#include "wasm_write_tracker.h"

#include <cstdlib>
#include <mutex>

#if defined(__linux__)
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace hbr {

#if defined(__linux__) && defined(__NR_userfaultfd)
namespace {

constexpr uint64_t kFeatureWpUnpopulated = 1 << 13;  // UFFD_FEATURE_WP_UNPOPULATED
constexpr uint64_t kFeatureWpAsync = 1 << 15;        // UFFD_FEATURE_WP_ASYNC
constexpr int kUserModeOnly = 1;                     // UFFD_USER_MODE_ONLY

struct PageRegion {
  uint64_t start, end, categories;
};
struct PmScanArg {
  uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted, category_mask,
      category_anyof_mask, return_mask;
};
const unsigned long kPagemapScan = _IOWR('f', 16, PmScanArg);
constexpr uint64_t kScanWpMatching = 1 << 0;
constexpr uint64_t kScanCheckWpAsync = 1 << 1;
constexpr uint64_t kPageIsWritten = 1 << 1;
constexpr uint64_t kPageIsPresent = 1 << 3;
constexpr uint64_t kPageIsSwapped = 1 << 4;

// One userfaultfd and one pagemap descriptor for the process, shared by every instance and
// environment (ioctls on them are thread-safe; each instance's ranges are its own). Opened on first
// use and kept for the life of the process; -1 when unsupported.
struct Fds {
  int uffd = -1;
  int pagemap = -1;
};

Fds Open() {
  Fds fds;
  const char* off = std::getenv("HB_RUNTIMES_NO_WRITE_TRACKING");
  if (off != nullptr && *off != '\0' && *off != '0') return fds;
  // User-mode-only works for unprivileged processes under vm.unprivileged_userfaultfd = 0 (5.11+).
  int uffd = static_cast<int>(syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK | kUserModeOnly));
  if (uffd < 0) uffd = static_cast<int>(syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (uffd < 0) return fds;
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = kFeatureWpAsync | kFeatureWpUnpopulated;
  int pagemap = -1;
  if (ioctl(uffd, UFFDIO_API, &api) == 0) pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (pagemap < 0) {
    close(uffd);
    return fds;
  }
  // Probe PAGEMAP_SCAN itself (ENOTTY before 6.7) on an empty range.
  PmScanArg probe{};
  probe.size = sizeof probe;
  if (ioctl(pagemap, kPagemapScan, &probe) < 0) {
    close(uffd);
    close(pagemap);
    return fds;
  }
  fds.uffd = uffd;
  fds.pagemap = pagemap;
  return fds;
}

const Fds& Shared() {
  static std::once_flag once;
  static Fds fds;
  std::call_once(once, [] { fds = Open(); });
  return fds;
}

// Scans [begin, end): adds the regions matching (`mask` all / `anyof` any) to `out` as offsets from
// `base`, write-protecting them when `wp`. Returns false on failure (e.g. EPERM from
// kScanCheckWpAsync: a part of the range is not registered).
bool Scan(uint8_t* base, uint8_t* begin, uint8_t* end, uint64_t flags, uint64_t mask, uint64_t anyof,
          std::vector<DirtyRange>* out) {
  constexpr size_t kVec = 1024;
  PageRegion vec[kVec];
  uint64_t at = reinterpret_cast<uint64_t>(begin);
  const uint64_t stop = reinterpret_cast<uint64_t>(end);
  while (at < stop) {
    PmScanArg a{};
    a.size = sizeof a;
    a.flags = flags;
    a.start = at;
    a.end = stop;
    a.vec = out != nullptr ? reinterpret_cast<uint64_t>(vec) : 0;
    a.vec_len = out != nullptr ? kVec : 0;
    a.category_mask = mask;
    a.category_anyof_mask = anyof;
    a.return_mask = mask | anyof;
    long n = ioctl(Shared().pagemap, kPagemapScan, &a);
    if (n < 0) return false;
    for (long i = 0; i < n && out != nullptr; i++) {
      uint64_t off = vec[i].start - reinterpret_cast<uint64_t>(base);
      uint64_t len = vec[i].end - vec[i].start;
      if (!out->empty() && out->back().offset + out->back().length == off) {
        out->back().length += len;
      } else {
        out->push_back({off, len});
      }
    }
    if (a.walk_end <= at) return false;
    at = a.walk_end;
  }
  return true;
}

}  // namespace

bool WriteTracker::Supported() { return Shared().uffd >= 0; }

bool WriteTracker::Register(uint8_t* begin, uint64_t len) {
  uffdio_register r{};
  r.range.start = reinterpret_cast<uint64_t>(begin);
  r.range.len = len;
  r.mode = UFFDIO_REGISTER_MODE_WP;
  return ioctl(Shared().uffd, UFFDIO_REGISTER, &r) == 0;
}

bool WriteTracker::Protect(uint8_t* begin, uint64_t len, bool on) {
  uffdio_writeprotect w{};
  w.range.start = reinterpret_cast<uint64_t>(begin);
  w.range.len = len;
  w.mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0;
  return ioctl(Shared().uffd, UFFDIO_WRITEPROTECT, &w) == 0;
}

void WriteTracker::Suspend() {
  if (armed_ && !Protect(base_, size_, false)) base_ = nullptr;  // re-register from scratch in Arm
  armed_ = false;
}

void WriteTracker::Arm(uint8_t* base, uint64_t size) {
  if (!Supported() || size == 0) {
    armed_ = false;
    return;
  }
  if (armed_ && base == base_ && size >= size_) {
    // Same mapping: re-protect what was written, and take in what the memory grew by.
    bool ok = Scan(base, base, base + size_, kScanWpMatching | kScanCheckWpAsync, kPageIsWritten, 0, nullptr);
    if (ok && size > size_) ok = Register(base + size_, size - size_) && Protect(base + size_, size - size_, true);
    armed_ = ok;
    size_ = size;
    if (ok) return;
  }
  // First use, or the memory moved: register (again) and write-protect everything.
  base_ = base;
  size_ = size;
  armed_ = Register(base, size) && Protect(base, size, true);
}

bool WriteTracker::Collect(uint8_t* base, uint64_t size, std::vector<DirtyRange>* out) {
  out->clear();
  bool ok = armed_ && base == base_ && size >= size_;
  if (ok) ok = Scan(base, base, base + size_, kScanWpMatching | kScanCheckWpAsync, kPageIsWritten, 0, out);
  if (ok && size > size_) {
    // Grown since: not registered yet, so what is populated there counts (an anonymous page never
    // populated is zero); then it is registered and protected like the rest.
    ok = Scan(base, base + size_, base + size, 0, 0, kPageIsPresent | kPageIsSwapped, out) &&
         Register(base + size_, size - size_) && Protect(base + size_, size - size_, true);
    size_ = size;
  }
  if (!ok) {
    out->clear();
    if (size > 0) out->push_back({0, size});
    Arm(base, size);
    return false;
  }
  return true;
}

#else  // no userfaultfd: everything counts as written

bool WriteTracker::Supported() { return false; }
bool WriteTracker::Register(uint8_t*, uint64_t) { return false; }
bool WriteTracker::Protect(uint8_t*, uint64_t, bool) { return false; }
void WriteTracker::Suspend() { armed_ = false; }
void WriteTracker::Arm(uint8_t*, uint64_t) { armed_ = false; }
bool WriteTracker::Collect(uint8_t*, uint64_t size, std::vector<DirtyRange>* out) {
  out->clear();
  if (size > 0) out->push_back({0, size});
  return false;
}

#endif

}  // namespace hbr
