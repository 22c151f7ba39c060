// The WASM snapshot format (version 2; docs/wasm.md): constants, writers and the parser shared by
// the blob, file and delta forms (wasm_instance_snapshot*.cc). Nothing here knows an instance: a
// parse gives a plan (what memories, runs and globals a blob holds, and where their bytes are), and
// the instance checks the plan against itself before it applies anything.
//
// Layout (little-endian):
//   header  "HBWASM\0\0" | u32 version (2) | u32 flags | u8[32] module hash | u64 payload length
//   payload flags 0 (full):  u32 memory count, then per memory: u32 name length, name, u64 byte
//                            length, bytes
//           flags 1 (delta): u64 id of the parent snapshot, u32 memory count, then per memory:
//                            u32 name length, name, u64 byte length, u64 run count, then per run:
//                            u64 offset, u64 length, bytes (runs sorted, disjoint, inside the memory)
//           then (both) u32 global count, per global: u32 name length, name, u8 kind, value (kind 0
//           i32, 1 i64, 2 f32, 3 f64: 8 bytes of raw bits; kind 4 v128: 16 bytes)
//   trailer u64 XXH3-64 of every byte before it (header included): also the snapshot's id
// Version 1 (still read; full only) had the checksum in the header and covering the payload only.
#pragma once

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

extern "C" {
struct hb_xxh3_t;
hb_xxh3_t* hb_xxh3_new();
void hb_xxh3_update(hb_xxh3_t* state, const uint8_t* data, size_t len);
uint64_t hb_xxh3_digest(const hb_xxh3_t* state);
void hb_xxh3_free(hb_xxh3_t* state);
}

namespace hbr::snap {

constexpr char kMagic[8] = {'H', 'B', 'W', 'A', 'S', 'M', 0, 0};
constexpr uint32_t kVersion = 2;
constexpr uint32_t kFlagDelta = 1;
constexpr size_t kHeaderSize = 8 + 4 + 4 + 32 + 8;
constexpr size_t kTrailerSize = 8;
constexpr size_t kV1HeaderSize = kHeaderSize + 8;
constexpr uint8_t kV128Kind = 4;
constexpr uint64_t kWasmPage = 65536;

inline size_t GlobalValueSize(uint8_t kind) { return kind == kV128Kind ? 16 : 8; }

// A blob or file that is not a whole, valid snapshot: the message becomes a SnapshotError.
struct Invalid : std::runtime_error {
  explicit Invalid(const std::string& why) : std::runtime_error(why) {}
};

// Streaming XXH3-64, owned.
class Hasher {
 public:
  Hasher() : s_(hb_xxh3_new()) {}
  ~Hasher() { hb_xxh3_free(s_); }
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;
  void Update(const void* p, size_t n) { hb_xxh3_update(s_, static_cast<const uint8_t*>(p), n); }
  uint64_t Digest() const { return hb_xxh3_digest(s_); }

 private:
  hb_xxh3_t* s_;
};

// Writes into a buffer of the right size (the caller computes it first).
struct BufferWriter {
  uint8_t* p;
  void Bytes(const void* src, size_t n) {
    std::memcpy(p, src, n);
    p += n;
  }
  void U8(uint8_t v) { Bytes(&v, 1); }
  void U32(uint32_t v) { Bytes(&v, 4); }
  void U64(uint64_t v) { Bytes(&v, 8); }
  void Memory(const uint8_t* src, uint64_t n) { Bytes(src, static_cast<size_t>(n)); }
};

// Writes to a file descriptor in chunks, hashing every byte: small fields go through a buffer,
// large ones (memory contents) straight from where they are. Throws std::system_error.
class FileWriter {
 public:
  explicit FileWriter(int fd) : fd_(fd) { buf_.reserve(kBuffer); }
  void Bytes(const void* src, size_t n);
  // Memory contents: like Bytes, but 64 KiB blocks of zeros are skipped with lseek, leaving holes
  // (the file reads the same; a mostly empty memory takes little disk and no write bandwidth).
  void Memory(const uint8_t* p, uint64_t n);
  void U8(uint8_t v) { Bytes(&v, 1); }
  void U32(uint32_t v) { Bytes(&v, 4); }
  void U64(uint64_t v) { Bytes(&v, 8); }
  // Writes what is buffered, then the trailer (the checksum of everything before it); returns it.
  uint64_t Finish();
  uint64_t written() const { return written_; }

 private:
  static constexpr size_t kBuffer = 1 << 20;
  void Flush();
  void WriteAll(const uint8_t* p, size_t n);
  int fd_;
  std::vector<uint8_t> buf_;
  Hasher hash_;
  uint64_t written_ = 0;
  uint64_t hole_ = 0;  // bytes of zeros not written yet (seeked over before the next write)
};

// Whether n bytes at p are all zero.
bool AllZero(const uint8_t* p, size_t n);
// 64 KiB of zeros.
extern const uint8_t kZeros[65536];

// Where a run's bytes are: in memory (`src`), or at `file_off` of the file being restored.
struct Run {
  uint64_t offset;
  uint64_t length;
  const uint8_t* src;
  uint64_t file_off;
};
struct MemoryPart {
  std::string name;
  uint64_t size;  // the memory's byte length in this snapshot
  std::vector<Run> runs;
};
struct GlobalPart {
  std::string name;
  uint8_t kind;
  uint8_t bits[16];
};
struct Plan {
  bool delta = false;
  uint64_t parent = 0;  // delta: the id of the snapshot it follows
  uint64_t id = 0;      // the trailer (v1: the header checksum)
  std::vector<MemoryPart> memories;
  std::vector<GlobalPart> globals;
};

// Parses and verifies (magic, version, flags, image hash, length, checksum, structure) a blob held
// in memory; runs point into it. Throws Invalid.
Plan ParseBlob(const uint8_t* data, size_t len, const uint8_t hash[32]);
// The same for a full snapshot in a file, read once from start to end through a small buffer (the
// checksum covers every byte); runs give file offsets. Throws Invalid (or std::system_error).
Plan ParseFile(int fd, uint64_t file_size, const uint8_t hash[32]);
// The id (trailer) of a blob, without verifying it; Invalid when it is too short to have one.
uint64_t IdOf(const uint8_t* data, size_t len);

// Asks the kernel to back a large, not yet touched region with transparent huge pages.
void AdviseHugePages(void* data, size_t len);

// Reads exactly n bytes at `offset` (pread, in chunks). Throws std::system_error; a short file is
// Invalid("truncated").
void ReadAt(int fd, uint64_t offset, uint8_t* dst, uint64_t n);

}  // namespace hbr::snap
