// CowMemory: copies of a linear memory that cost what the guest wrote, not the memory's size
// (Linux ≥ 6.7; elsewhere Copy returns nullptr and the caller copies the bytes).
//
// The memory is laid over a memfd F holding its content at the last rebase: its accessible range
// becomes a private mapping of F (MAP_FIXED at the same address, so Wasmtime's base and the
// instance's views are unchanged). The guest's writes then land in pages of its own, which
// PAGEMAP_SCAN tells apart from F's pages. A copy is another private mapping of F with those
// pages written into it: it shares F's pages with the memory and with the other copies, and no
// later write on either side shows through (private mappings never see each other's writes, and F
// itself is never written after the rebase that made it). Those pages go into the copy by
// UFFDIO_COPY where a userfaultfd can be had (one copy of each; a plain write would first copy F's
// page in). When the pages of the memory's own reach a share of its size, the next copy rebases:
// a new F from the whole memory (zero blocks left as holes), the memory laid over it again.
// Earlier copies keep the F they map.
//
// Same() proves, without comparing the whole memory, that a copy still equals the memory: both
// have exactly the pages of their own the copy was made with, and those compare equal.
#pragma once

#include <cstdint>
#include <vector>

#include "pagemap.h"

namespace hbr {

class CowMemory {
 public:
  // memfd_create and PAGEMAP_SCAN (probed once per process; HB_RUNTIMES_NO_COW=1 turns it off).
  static bool Supported();
  CowMemory() = default;
  CowMemory(const CowMemory&) = delete;
  CowMemory& operator=(const CowMemory&) = delete;
  ~CowMemory();

  // A private mapping of `size` bytes holding what [base, base + size) holds now, to be released
  // with Free; nullptr when unsupported or a step failed (the caller then copies).
  // Precondition: size > 0, page-aligned. Sets *lost when laying the memory over a new file
  // failed after its old mapping was gone: the memory's content is then lost (zero).
  uint8_t* Copy(uint8_t* base, uint64_t size, bool* lost);
  // Whether `copy` (of `copy_size` bytes: the last Copy, still mapped) and [base, base + size)
  // hold the same bytes now. False when that cannot be proven; never true when they differ.
  bool Same(const uint8_t* copy, uint64_t copy_size, uint8_t* base, uint64_t size);
  static void Free(uint8_t* copy, uint64_t size);
  // Forgets the file (copies keep mapping it); the next Copy starts afresh.
  void Release() { Reset(); }

 private:
  using Ranges = std::vector<pagemap::Region>;
  // The pages of [base, base + size) that are the process's own: present and neither F's nor the
  // zero page, or swapped out.
  static bool Owned(const uint8_t* base, uint64_t size, Ranges* out);
  static bool SameRanges(const Ranges& a, const Ranges& b);
  Ranges Populated(uint8_t* base, uint64_t size, const Ranges& owned) const;
  bool Rebase(uint8_t* base, uint64_t size, const Ranges& owned, bool* lost);
  void Reset();

  int fd_ = -1;               // F
  uint64_t file_size_ = 0;    // F's length
  uint8_t* base_ = nullptr;   // the memory laid over F
  const uint8_t* last_ = nullptr;  // the last copy
  uint64_t last_size_ = 0;
  Ranges owned_;              // the memory's own pages when it was made
};

}  // namespace hbr
