// WriteTracker: which pages of a linear memory were written since a point in time, so that an
// incremental snapshot copies only those.
//
// Linux ≥ 6.7: the memory is registered with a userfaultfd in asynchronous write-protect mode
// (UFFD_FEATURE_WP_ASYNC): the kernel write-protects the pages, resolves the first write to each
// one by itself (no fault handler thread, no signal: Wasmtime's own SIGSEGV handling is not
// involved) and records it in the page table; the PAGEMAP_SCAN ioctl on /proc/self/pagemap then
// lists the written pages and write-protects them again, atomically, in one page-table walk
// (under 1 ms for 1 GiB). This is per address range, unlike soft-dirty bits (clear_refs is
// process-wide, and not built into every kernel).
//
// Anything the tracker cannot vouch for counts as written: when the kernel lacks the feature,
// when the memory moved (Wasmtime reallocates a memory that outgrows its reservation), when a
// part of the range is no longer registered (PM_SCAN_CHECK_WPASYNC fails the scan), pages zapped
// by madvise (reported as written). Pages a memory grew by since the last scan count when they
// are populated (present or swapped); an anonymous page never populated reads as zero.
#pragma once

#include <cstdint>
#include <vector>

namespace hbr {

struct DirtyRange {
  uint64_t offset;
  uint64_t length;
};

class WriteTracker {
 public:
  // Whether this kernel (and seccomp policy) supports the mechanism; probed once per process.
  static bool Supported();

  // Starts tracking [base, base + size) from now (registering it on first use, or again after the
  // memory moved). Without support it does nothing, and Collect reports everything.
  void Arm(uint8_t* base, uint64_t size);
  // The byte ranges of [0, size) written since the last Arm or Collect (sorted, disjoint,
  // page-aligned), and tracking restarts from now. Returns false when it could not tell and
  // reported the whole memory.
  bool Collect(uint8_t* base, uint64_t size, std::vector<DirtyRange>* out);
  // Forget the state: the next Collect reports the whole memory (after a failure between a
  // Collect and the snapshot that needed it).
  void Disarm() { armed_ = false; }
  // Stops tracking before the host rewrites the whole memory (a restore): write-protected pages
  // would each take a fault. Arm starts again afterwards; until then Collect reports everything.
  void Suspend();
  bool armed() const { return armed_; }

 private:
  bool Register(uint8_t* begin, uint64_t len);
  bool Protect(uint8_t* begin, uint64_t len, bool on);
  uint8_t* base_ = nullptr;
  uint64_t size_ = 0;  // tracked (registered and write-protected) bytes from base_
  bool armed_ = false;
};

}  // namespace hbr
