// WriteTracker (see wasm_write_tracker.h): userfaultfd asynchronous write protection plus
// PAGEMAP_SCAN (pagemap.h). The userfaultfd constants are those of the kernel's UAPI
// (linux/userfaultfd.h of 6.7), defined here because the build machine's headers may predate them.
#include "wasm_write_tracker.h"

#include "pagemap.h"

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

// One userfaultfd for the process, shared by every instance and environment (ioctls on it are
// thread-safe; each instance's ranges are its own). Opened on first use and kept for the life of
// the process; -1 when unsupported (PAGEMAP_SCAN, pagemap.h, is needed as well).
int Open() {
  const char* off = std::getenv("HB_RUNTIMES_NO_WRITE_TRACKING");
  if ((off != nullptr && *off != '\0' && *off != '0') || pagemap::Fd() < 0) return -1;
  // User-mode-only works for unprivileged processes under vm.unprivileged_userfaultfd = 0 (5.11+).
  int uffd = static_cast<int>(syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK | kUserModeOnly));
  if (uffd < 0) uffd = static_cast<int>(syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (uffd < 0) return -1;
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = kFeatureWpAsync | kFeatureWpUnpopulated;
  if (ioctl(uffd, UFFDIO_API, &api) != 0) {
    close(uffd);
    return -1;
  }
  return uffd;
}

int Uffd() {
  static std::once_flag once;
  static int fd = -1;
  std::call_once(once, [] { fd = Open(); });
  return fd;
}

// Adds the regions of [begin, end) matching `q` to `out` (merged, as offsets from `base`).
bool Scan(uint8_t* base, uint8_t* begin, uint8_t* end, const pagemap::Query& q, std::vector<DirtyRange>* out) {
  std::vector<pagemap::Region> found;
  if (!pagemap::Scan(base, begin, end, q, out != nullptr ? &found : nullptr)) return false;
  for (const pagemap::Region& r : found) {
    if (!out->empty() && out->back().offset + out->back().length == r.offset) {
      out->back().length += r.length;
    } else {
      out->push_back({r.offset, r.length});
    }
  }
  return true;
}

// Written pages, write-protected again; failing where the range is not (all) registered.
pagemap::Query Written() {
  pagemap::Query q;
  q.flags = pagemap::kWpMatching | pagemap::kCheckWpAsync;
  q.all = pagemap::kWritten;
  q.report = pagemap::kWritten;
  return q;
}
// Populated pages (present or swapped).
pagemap::Query Populated() {
  pagemap::Query q;
  q.anyof = pagemap::kPresent | pagemap::kSwapped;
  q.report = q.anyof;
  return q;
}

}  // namespace

bool WriteTracker::Supported() { return Uffd() >= 0; }

bool WriteTracker::Register(uint8_t* begin, uint64_t len) {
  uffdio_register r{};
  r.range.start = reinterpret_cast<uint64_t>(begin);
  r.range.len = len;
  r.mode = UFFDIO_REGISTER_MODE_WP;
  return ioctl(Uffd(), UFFDIO_REGISTER, &r) == 0;
}

bool WriteTracker::Protect(uint8_t* begin, uint64_t len, bool on) {
  uffdio_writeprotect w{};
  w.range.start = reinterpret_cast<uint64_t>(begin);
  w.range.len = len;
  w.mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0;
  return ioctl(Uffd(), UFFDIO_WRITEPROTECT, &w) == 0;
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
    bool ok = Scan(base, base, base + size_, Written(), nullptr);
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
  if (ok) ok = Scan(base, base, base + size_, Written(), out);
  if (ok && size > size_) {
    // Grown since: not registered yet, so what is populated there counts (an anonymous page never
    // populated is zero); then it is registered and protected like the rest.
    ok = Scan(base, base + size_, base + size, Populated(), out) &&
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
