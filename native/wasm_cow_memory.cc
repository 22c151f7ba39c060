// CowMemory (see wasm_cow_memory.h).
#include "wasm_cow_memory.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>

#if defined(__linux__)
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace hbr {

#if defined(__linux__) && defined(MFD_CLOEXEC)
namespace {

// A copy rebases first once the memory's own pages exceed this share of its size: a copy then
// costs at most size / kRebaseShare bytes, a rebase the whole size once. (AOS 2 settles at about a
// hundredth of its 110 MB and never rebases; AOS 1, whose Lua collector dirties its 7.6 MB heap,
// rebases about every twelve messages.)
constexpr uint64_t kRebaseShare = 16;
constexpr uint64_t kBlock = 64 * 1024;  // zero blocks of the memory become holes of F

// Appends [offset, offset + length) to sorted `out`, merged with the last range it touches.
void Append(std::vector<pagemap::Region>* out, uint64_t offset, uint64_t length) {
  if (!out->empty() && offset <= out->back().offset + out->back().length) {
    uint64_t end = offset + length;
    if (end > out->back().offset + out->back().length) out->back().length = end - out->back().offset;
  } else {
    out->push_back({offset, length, 0});
  }
}

bool AllZero(const uint8_t* p, uint64_t n) {
  const uint64_t* w = reinterpret_cast<const uint64_t*>(p);
  uint64_t acc = 0;
  for (uint64_t i = 0; i < n / 8; i++) acc |= w[i];
  return acc == 0;
}

// A userfaultfd for filling copies (UFFDIO_COPY: our bytes go straight into new pages of the copy,
// where a write would first copy F's page in), or -1: then the copy is written by memcpy.
int FillFd() {
  static std::once_flag once;
  static int fd = -1;
  std::call_once(once, [] {
#if defined(__NR_userfaultfd)
    constexpr int kUserModeOnly = 1;  // UFFD_USER_MODE_ONLY
    int u = static_cast<int>(syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK | kUserModeOnly));
    if (u < 0) u = static_cast<int>(syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK));
    if (u < 0) return;
    uffdio_api api{};
    api.api = UFFD_API;
    api.features = UFFD_FEATURE_MISSING_SHMEM;
    if (ioctl(u, UFFDIO_API, &api) != 0) {
      close(u);
      return;
    }
    fd = u;
#endif
  });
  return fd;
}

// Fills `ranges` of the fresh private mapping `copy` from `src`. The mapping is registered for
// missing-page events only while UFFDIO_COPY runs; nothing else touches it meanwhile. False when it
// could not be unregistered: a fault in it would then wait for a handler forever, so the caller
// must unmap it without touching it.
bool Fill(uint8_t* copy, uint64_t size, const uint8_t* src, const std::vector<pagemap::Region>& ranges) {
  int u = FillFd();
  size_t done = 0;
  if (u >= 0 && !ranges.empty()) {
    uffdio_register r{};
    r.range.start = reinterpret_cast<uint64_t>(copy);
    r.range.len = size;
    r.mode = UFFDIO_REGISTER_MODE_MISSING;
    if (ioctl(u, UFFDIO_REGISTER, &r) == 0) {
      for (; done < ranges.size(); done++) {
        uffdio_copy c{};
        c.dst = reinterpret_cast<uint64_t>(copy + ranges[done].offset);
        c.src = reinterpret_cast<uint64_t>(src + ranges[done].offset);
        c.len = ranges[done].length;
        if (ioctl(u, UFFDIO_COPY, &c) != 0 || c.copy != static_cast<int64_t>(c.len)) break;  // the rest by memcpy
      }
      if (ioctl(u, UFFDIO_UNREGISTER, &r.range) != 0) return false;
    }
  }
  for (; done < ranges.size(); done++) {
    std::memcpy(copy + ranges[done].offset, src + ranges[done].offset, ranges[done].length);
  }
  return true;
}

bool WriteAll(int fd, const uint8_t* p, uint64_t n, uint64_t at) {
  while (n > 0) {
    ssize_t k = pwrite(fd, p, n > (uint64_t{1} << 30) ? (uint64_t{1} << 30) : n, static_cast<off_t>(at));
    if (k <= 0) return false;
    p += k;
    n -= static_cast<uint64_t>(k);
    at += static_cast<uint64_t>(k);
  }
  return true;
}

}  // namespace

bool CowMemory::Supported() {
  static std::once_flag once;
  static bool ok = false;
  std::call_once(once, [] {
    const char* off = std::getenv("HB_RUNTIMES_NO_COW");
    if (off != nullptr && *off != '\0' && *off != '0') return;
    int fd = memfd_create("hb-runtimes-probe", MFD_CLOEXEC);
    if (fd < 0) return;
    close(fd);
    ok = pagemap::Fd() >= 0;
  });
  return ok;
}

CowMemory::~CowMemory() { Reset(); }

void CowMemory::Reset() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  file_size_ = 0;
  base_ = nullptr;
  last_ = nullptr;
  last_size_ = 0;
  owned_.clear();
}

void CowMemory::Free(uint8_t* copy, uint64_t size) { munmap(copy, size); }

bool CowMemory::Owned(const uint8_t* base, uint64_t size, Ranges* out) {
  out->clear();
  pagemap::Query q;
  q.anyof = pagemap::kPresent | pagemap::kSwapped;
  q.report = pagemap::kPresent | pagemap::kSwapped | pagemap::kFile | pagemap::kPfnZero;
  Ranges found;
  if (!pagemap::Scan(base, base, base + size, q, &found)) return false;
  for (const pagemap::Region& r : found) {
    bool own = (r.categories & pagemap::kSwapped) != 0 ||
               (r.categories & (pagemap::kFile | pagemap::kPfnZero)) == 0;
    if (own) Append(out, r.offset, r.length);
  }
  return true;
}

bool CowMemory::SameRanges(const Ranges& a, const Ranges& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++) {
    if (a[i].offset != b[i].offset || a[i].length != b[i].length) return false;
  }
  return true;
}

// Where the memory may hold non-zero bytes: all of it, unless it is laid over F already; then the
// pages of its own, F's data extents (SEEK_DATA: reading F's holes through the memory would
// allocate them) and what it grew by past F. Sorted and merged.
CowMemory::Ranges CowMemory::Populated(uint8_t* base, uint64_t size, const Ranges& owned) const {
  Ranges out;
  if (fd_ < 0 || base != base_) {
    out.push_back({0, size, 0});
    return out;
  }
  Ranges all = owned;
  const uint64_t end = file_size_ < size ? file_size_ : size;
  for (uint64_t at = 0; at < end;) {
    off_t data = lseek(fd_, static_cast<off_t>(at), SEEK_DATA);
    if (data < 0 || static_cast<uint64_t>(data) >= end) break;
    off_t hole = lseek(fd_, data, SEEK_HOLE);
    uint64_t stop = hole < 0 || static_cast<uint64_t>(hole) > end ? end : static_cast<uint64_t>(hole);
    all.push_back({static_cast<uint64_t>(data), stop - static_cast<uint64_t>(data), 0});
    at = stop;
  }
  if (size > end) all.push_back({end, size - end, 0});
  std::sort(all.begin(), all.end(), [](const pagemap::Region& a, const pagemap::Region& b) { return a.offset < b.offset; });
  for (const pagemap::Region& r : all) Append(&out, r.offset, r.length);
  return out;
}

bool CowMemory::Rebase(uint8_t* base, uint64_t size, const Ranges& owned, bool* lost) {
  int fd = memfd_create("hb-runtimes-memory", MFD_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ftruncate(fd, static_cast<off_t>(size)) == 0;
  for (const pagemap::Region& r : Populated(base, size, owned)) {
    for (uint64_t at = r.offset; ok && at < r.offset + r.length; at += kBlock) {
      uint64_t n = r.offset + r.length - at < kBlock ? r.offset + r.length - at : kBlock;
      if (!AllZero(base + at, n)) ok = WriteAll(fd, base + at, n, at);  // zero blocks stay holes
    }
  }
  if (!ok) {
    close(fd);
    return false;
  }
  // Same address, same content: the guest, Wasmtime and every view see no change.
  void* at = mmap(base, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0);
  if (at == MAP_FAILED) {
    // The old mapping may be gone already: keep the range accessible (zero) and say so.
    mmap(base, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS, -1, 0);
    close(fd);
    Reset();
    *lost = true;
    return false;
  }
  if (fd_ >= 0) close(fd_);  // copies that map the old F keep it
  fd_ = fd;
  file_size_ = size;
  base_ = base;
  return true;
}

uint8_t* CowMemory::Copy(uint8_t* base, uint64_t size, bool* lost) {
  *lost = false;
  if (!Supported()) return nullptr;
  last_ = nullptr;
  Ranges owned;
  if (fd_ < 0 || base != base_) {
    if (!Rebase(base, size, owned, lost)) return nullptr;
  } else {
    if (!Owned(base, size, &owned)) return nullptr;
    uint64_t bytes = 0;
    for (const pagemap::Region& r : owned) bytes += r.length;
    if (bytes > size / kRebaseShare) {
      if (!Rebase(base, size, owned, lost)) return nullptr;
      owned.clear();
    }
  }
  if (size > file_size_) {  // grown since the rebase: F grows by zeros (holes)
    if (ftruncate(fd_, static_cast<off_t>(size)) != 0) return nullptr;
    file_size_ = size;
  }
  void* m = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd_, 0);
  if (m == MAP_FAILED) return nullptr;
  uint8_t* copy = static_cast<uint8_t*>(m);
  if (!Fill(copy, size, base, owned)) {
    munmap(copy, size);
    return nullptr;
  }
  last_ = copy;
  last_size_ = size;
  owned_ = std::move(owned);
  return copy;
}

bool CowMemory::Same(const uint8_t* copy, uint64_t copy_size, uint8_t* base, uint64_t size) {
  if (copy == nullptr || copy != last_ || copy_size != last_size_ || size != copy_size || base != base_) return false;
  Ranges now;
  if (!Owned(base, size, &now) || !SameRanges(now, owned_)) return false;
  if (!Owned(copy, size, &now) || !SameRanges(now, owned_)) return false;
  for (const pagemap::Region& r : owned_) {
    if (std::memcmp(copy + r.offset, base + r.offset, r.length) != 0) return false;
  }
  return true;
}

#else

bool CowMemory::Supported() { return false; }
CowMemory::~CowMemory() = default;
void CowMemory::Reset() {}
void CowMemory::Free(uint8_t*, uint64_t) {}
bool CowMemory::Owned(const uint8_t*, uint64_t, Ranges*) { return false; }
bool CowMemory::SameRanges(const Ranges&, const Ranges&) { return false; }
bool CowMemory::Rebase(uint8_t*, uint64_t, const Ranges&, bool*) { return false; }
CowMemory::Ranges CowMemory::Populated(uint8_t*, uint64_t, const Ranges&) const { return {}; }
uint8_t* CowMemory::Copy(uint8_t*, uint64_t, bool* lost) {
  *lost = false;
  return nullptr;
}
bool CowMemory::Same(const uint8_t*, uint64_t, uint8_t*, uint64_t) { return false; }

#endif

}  // namespace hbr
