// PAGEMAP_SCAN (Linux ≥ 6.7): one ioctl on /proc/self/pagemap that walks the page tables of an
// address range and lists its pages by category (present, swapped, file-backed, the shared zero
// page, written since a userfaultfd write-protect), optionally write-protecting them again.
// Shared by WriteTracker (what was written since a snapshot) and CowMemory (which pages of a
// private file mapping are the process's own copies).
#pragma once

#include <cstdint>
#include <vector>

namespace hbr::pagemap {

// Page categories (linux/fs.h).
constexpr uint64_t kWritten = 1 << 1;   // PAGE_IS_WRITTEN (needs userfaultfd write-protect)
constexpr uint64_t kFile = 1 << 2;      // PAGE_IS_FILE: a page of the file (or shmem) itself
constexpr uint64_t kPresent = 1 << 3;   // PAGE_IS_PRESENT
constexpr uint64_t kSwapped = 1 << 4;   // PAGE_IS_SWAPPED
constexpr uint64_t kPfnZero = 1 << 5;   // PAGE_IS_PFNZERO: the shared zero page
// Scan flags.
constexpr uint64_t kWpMatching = 1 << 0;     // PM_SCAN_WP_MATCHING: write-protect what matched
constexpr uint64_t kCheckWpAsync = 1 << 1;   // PM_SCAN_CHECK_WPASYNC: fail unless registered

struct Region {
  uint64_t offset;      // from the base given to Scan
  uint64_t length;
  uint64_t categories;  // those of `want.report`
};

struct Query {
  uint64_t flags = 0;
  uint64_t all = 0;       // category_mask: every one of these (after `inverted`)
  uint64_t anyof = 0;     // category_anyof_mask: at least one of these
  uint64_t inverted = 0;  // category_inverted: these bits are negated before matching
  uint64_t report = 0;    // return_mask: which categories each region carries
};

// The pagemap descriptor (opened and probed once per process), or -1 where PAGEMAP_SCAN is not
// available (another OS, an older kernel, or HB_RUNTIMES_NO_PAGEMAP set).
int Fd();

// Scans [begin, end) and appends the matching regions to `out` (if not null) as offsets from
// `base`, adjacent regions with the same categories merged. False on failure (then `out` holds a
// prefix).
bool Scan(const uint8_t* base, const uint8_t* begin, const uint8_t* end, const Query& q, std::vector<Region>* out);

}  // namespace hbr::pagemap
