// The WASM snapshot format: writers and parsers (see wasm_snapshot_format.h for the layout).
#include "wasm_snapshot_format.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

#include "addon.h"

namespace hbr::snap {

const uint8_t kZeros[65536] = {};

bool AllZero(const uint8_t* p, size_t n) {
  uint64_t acc = 0;
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    uint64_t w[8];
    std::memcpy(w, p + i, 64);
    acc |= w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7];
    if (acc != 0) return false;
  }
  for (; i < n; i++) acc |= p[i];
  return acc == 0;
}

void FileWriter::Memory(const uint8_t* p, uint64_t n) {
  Flush();
  written_ += n;
  constexpr size_t kBlock = sizeof kZeros;
  constexpr size_t kSlice = size_t{4} << 20;
  for (uint64_t at = 0; at < n; at += kSlice) {
    size_t len = static_cast<size_t>(std::min<uint64_t>(kSlice, n - at));
    const uint8_t* slice = p + at;
    hash_.Update(slice, len);
    size_t run = 0;  // non-zero bytes from slice + done - run, not written yet
    size_t done = 0;
    for (; done < len; done += kBlock) {
      size_t b = std::min(kBlock, len - done);
      if (AllZero(slice + done, b)) {
        WriteAll(slice + done - run, run);
        run = 0;
        hole_ += b;
      } else {
        run += b;
      }
    }
    WriteAll(slice + done - run, run);
  }
}

void FileWriter::WriteAll(const uint8_t* p, size_t n) {
  if (n == 0) return;
  if (hole_ > 0) {
    if (::lseek(fd_, static_cast<off_t>(hole_), SEEK_CUR) < 0) throw std::system_error(errno, std::generic_category(), "lseek");
    hole_ = 0;
  }
  while (n > 0) {
    // Linux writes at most 0x7ffff000 bytes per call.
    ssize_t k = ::write(fd_, p, std::min<size_t>(n, size_t{1} << 30));
    if (k < 0) {
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::generic_category(), "write");
    }
    p += k;
    n -= static_cast<size_t>(k);
  }
}

void FileWriter::Flush() {
  WriteAll(buf_.data(), buf_.size());
  buf_.clear();
}

void FileWriter::Bytes(const void* src, size_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(src);
  written_ += n;
  if (n < kBuffer / 4) {
    hash_.Update(p, n);
    if (buf_.size() + n > kBuffer) Flush();
    buf_.insert(buf_.end(), p, p + n);
    return;
  }
  Flush();
  // Hash and write in slices that stay in cache between the two.
  constexpr size_t kSlice = size_t{4} << 20;
  for (size_t at = 0; at < n; at += kSlice) {
    size_t len = std::min(kSlice, n - at);
    hash_.Update(p + at, len);
    WriteAll(p + at, len);
  }
}

uint64_t FileWriter::Finish() {
  uint64_t sum = hash_.Digest();
  buf_.insert(buf_.end(), reinterpret_cast<const uint8_t*>(&sum), reinterpret_cast<const uint8_t*>(&sum) + 8);
  written_ += 8;
  Flush();
  return sum;
}

void ReadAt(int fd, uint64_t offset, uint8_t* dst, uint64_t n) {
  while (n > 0) {
    ssize_t k = ::pread(fd, dst, static_cast<size_t>(std::min<uint64_t>(n, uint64_t{1} << 30)), static_cast<off_t>(offset));
    if (k < 0) {
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::generic_category(), "read");
    }
    if (k == 0) throw Invalid("truncated (the file is shorter than it was)");
    dst += k;
    offset += static_cast<uint64_t>(k);
    n -= static_cast<uint64_t>(k);
  }
}

uint64_t IdOf(const uint8_t* data, size_t len) {
  if (len < kHeaderSize + kTrailerSize || std::memcmp(data, kMagic, 8) != 0) throw Invalid("not a WASM snapshot");
  uint64_t id = 0;
  uint32_t version = 0;
  std::memcpy(&version, data + 8, 4);
  if (version == 1) {
    std::memcpy(&id, data + kHeaderSize, 8);
  } else {
    std::memcpy(&id, data + len - kTrailerSize, 8);
  }
  return id;
}

namespace {

// Reads the payload of a blob in memory.
struct MemoryReader {
  const uint8_t* p;
  const uint8_t* end;
  uint64_t Left() const { return static_cast<uint64_t>(end - p); }
  void Bytes(void* dst, uint64_t n) {
    if (Left() < n) throw Invalid("malformed payload");
    std::memcpy(dst, p, n);
    p += n;
  }
  Run Region(uint64_t offset, uint64_t n) {
    if (Left() < n) throw Invalid("malformed payload");
    Run r{offset, n, p, 0};
    p += n;
    return r;
  }
};

// Reads the payload of a file front to back through a buffer, hashing every byte it passes.
class StreamReader {
 public:
  StreamReader(int fd, uint64_t begin, uint64_t end, Hasher* hash) : fd_(fd), pos_(begin), end_(end), hash_(hash) {}
  uint64_t Left() const { return end_ - pos_; }
  void Bytes(void* dst, uint64_t n) {
    if (Left() < n) throw Invalid("malformed payload");
    uint8_t* out = static_cast<uint8_t*>(dst);
    while (n > 0) {
      Fill();
      size_t k = static_cast<size_t>(std::min<uint64_t>(n, have_ - used_));
      std::memcpy(out, buf_.data() + used_, k);
      Consume(k);
      out += k;
      n -= k;
    }
  }
  Run Region(uint64_t offset, uint64_t n) {
    if (Left() < n) throw Invalid("malformed payload");
    Run r{offset, n, nullptr, pos_};
    while (n > 0) {
      Fill();
      size_t k = static_cast<size_t>(std::min<uint64_t>(n, have_ - used_));
      Consume(k);
      n -= k;
    }
    return r;
  }

 private:
  void Fill() {
    if (used_ < have_) return;
    size_t want = static_cast<size_t>(std::min<uint64_t>(buf_.size(), end_ - pos_));
    ReadAt(fd_, pos_, buf_.data(), want);
    have_ = want;
    used_ = 0;
  }
  void Consume(size_t k) {
    hash_->Update(buf_.data() + used_, k);
    used_ += k;
    pos_ += k;
  }
  int fd_;
  uint64_t pos_;
  uint64_t end_;
  Hasher* hash_;
  std::vector<uint8_t> buf_ = std::vector<uint8_t>(size_t{4} << 20);
  size_t have_ = 0;
  size_t used_ = 0;
};

template <class R>
uint32_t U32(R& r) {
  uint32_t v = 0;
  r.Bytes(&v, 4);
  return v;
}
template <class R>
uint64_t U64(R& r) {
  uint64_t v = 0;
  r.Bytes(&v, 8);
  return v;
}
template <class R>
std::string Str(R& r) {
  uint32_t n = U32(r);
  if (r.Left() < n) throw Invalid("malformed payload");
  std::string s(n, '\0');
  r.Bytes(s.data(), n);
  return s;
}

// The payload, after the header; the reader ends where the payload ends.
template <class R>
void ParsePayload(R& r, uint32_t version, Plan* plan) {
  if (plan->delta) plan->parent = U64(r);
  uint32_t nmem = U32(r);
  for (uint32_t i = 0; i < nmem; i++) {
    MemoryPart m;
    m.name = Str(r);
    m.size = U64(r);
    if (m.size % kWasmPage != 0) throw Invalid("memory size is not a whole number of pages");
    if (!plan->delta) {
      m.runs.push_back(r.Region(0, m.size));
    } else {
      uint64_t nruns = U64(r);
      if (nruns > r.Left() / 16) throw Invalid("malformed payload");
      uint64_t at = 0;
      for (uint64_t k = 0; k < nruns; k++) {
        uint64_t off = U64(r);
        uint64_t len = U64(r);
        if (off < at || len == 0 || off > m.size || len > m.size - off) throw Invalid("a run of memory '" + m.name + "' is out of order or out of bounds");
        m.runs.push_back(r.Region(off, len));
        at = off + len;
      }
    }
    plan->memories.push_back(std::move(m));
  }
  uint32_t nglob = U32(r);
  for (uint32_t i = 0; i < nglob; i++) {
    GlobalPart g{};
    g.name = Str(r);
    r.Bytes(&g.kind, 1);
    if (g.kind > kV128Kind || (version == 1 && g.kind == kV128Kind)) throw Invalid("global '" + g.name + "' has an unknown kind");
    r.Bytes(g.bits, GlobalValueSize(g.kind));
    plan->globals.push_back(std::move(g));
  }
  if (r.Left() != 0) throw Invalid("malformed payload");
}

// Checks the header (`head` holds at least kHeaderSize bytes, kV1HeaderSize for version 1) and
// returns the payload length; sets plan->delta and version.
uint64_t ParseHeader(const uint8_t* head, uint64_t total, const uint8_t hash[32], uint32_t* version, Plan* plan) {
  if (total < 8 || std::memcmp(head, kMagic, 8) != 0) {
    if (total >= 6 && std::memcmp(head, "HBLUA", 5) == 0) throw Invalid("this is a Lua snapshot, not a WASM one");
    throw Invalid("bad magic (not an hb-runtimes WASM snapshot)");
  }
  if (total < 12) throw Invalid("truncated header");
  std::memcpy(version, head + 8, 4);
  if (*version != 1 && *version != kVersion) {
    throw Invalid("unsupported version " + std::to_string(*version) + " (this build reads versions 1 and 2)");
  }
  const uint64_t header = *version == 1 ? kV1HeaderSize : kHeaderSize;
  const uint64_t trailer = *version == 1 ? 0 : kTrailerSize;
  if (total < header + trailer) throw Invalid("truncated header");
  uint32_t flags = 0;
  std::memcpy(&flags, head + 12, 4);
  if (flags != 0 && !(*version == kVersion && flags == kFlagDelta)) throw Invalid("unknown flags");
  plan->delta = flags == kFlagDelta;
  if (std::memcmp(head + 16, hash, 32) != 0) throw Invalid("it was taken from a different module image");
  uint64_t payload = 0;
  std::memcpy(&payload, head + 48, 8);
  if (total - header - trailer != payload) {
    throw Invalid(total - header - trailer < payload ? "truncated" : "trailing bytes after the payload");
  }
  return payload;
}

}  // namespace

Plan ParseBlob(const uint8_t* data, size_t len, const uint8_t hash[32]) {
  Plan plan;
  uint32_t version = 0;
  uint8_t head[kV1HeaderSize] = {0};
  std::memcpy(head, data, std::min<size_t>(len, sizeof head));
  uint64_t payload = ParseHeader(head, len, hash, &version, &plan);
  const size_t header = version == 1 ? kV1HeaderSize : kHeaderSize;
  if (version == 1) {
    std::memcpy(&plan.id, data + kHeaderSize, 8);
    if (Checksum64(data + header, payload) != plan.id) throw Invalid("checksum mismatch");
  } else {
    std::memcpy(&plan.id, data + len - kTrailerSize, 8);
    if (Checksum64(data, len - kTrailerSize) != plan.id) throw Invalid("checksum mismatch");
  }
  MemoryReader r{data + header, data + header + payload};
  ParsePayload(r, version, &plan);
  return plan;
}

Plan ParseFile(int fd, uint64_t file_size, const uint8_t hash[32]) {
  Plan plan;
  uint32_t version = 0;
  uint8_t head[kV1HeaderSize] = {0};
  const uint64_t head_len = std::min<uint64_t>(file_size, sizeof head);
  ReadAt(fd, 0, head, head_len);
  ParseHeader(head, file_size, hash, &version, &plan);
  if (version != kVersion) throw Invalid("snapshot files are version 2");
  if (plan.delta) throw Invalid("this is an incremental snapshot: restore it after its base (restore(base, ...deltas))");
  Hasher h;
  h.Update(head, kHeaderSize);
  StreamReader r(fd, kHeaderSize, file_size - kTrailerSize, &h);
  ParsePayload(r, version, &plan);
  ReadAt(fd, file_size - kTrailerSize, reinterpret_cast<uint8_t*>(&plan.id), 8);
  if (h.Digest() != plan.id) throw Invalid("checksum mismatch");
  return plan;
}

}  // namespace hbr::snap
