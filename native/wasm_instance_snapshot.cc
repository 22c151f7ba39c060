// WasmInstance, part 4: snapshots.
#include "wasm_instance.h"

#include <cstring>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "errors.h"
#include "wasm_engine.h"

namespace hbr {

static constexpr uint64_t kWasmPage = 65536;

// Layout (little-endian), version 2:
//   header  "HBWASM\0\0" | u32 version (2) | u32 flags (0) | u8[32] module hash | u64 payload length
//   payload u32 memory count, then per memory: u32 name length, name, u64 byte length, bytes
//           u32 global count, then per global: u32 name length, name, u8 kind, value (kind 0 i32,
//           1 i64, 2 f32, 3 f64: 8 bytes of raw bits; kind 4 v128: 16 bytes)
//   trailer u64 XXH3-64 of every byte before it (header included)
// Version 1 (still read) had the checksum in the header and covering the payload only: its header
// fields are each checked for an exact value instead (magic, flags 0, module hash, length).
// Memories and globals are the instance's exported ones (the TS layer exports every mutable
// global and memory of the image before compiling), so the blob is complete for the instance.

static constexpr char kMagic[8] = {'H', 'B', 'W', 'A', 'S', 'M', 0, 0};
static constexpr uint32_t kVersion = 2;
static constexpr size_t kHeaderSize = 8 + 4 + 4 + 32 + 8;
static constexpr size_t kTrailerSize = 8;
static constexpr size_t kV1HeaderSize = kHeaderSize + 8;
static constexpr uint8_t kV128Kind = 4;

namespace {
struct Writer {
  uint8_t* p;
  void Bytes(const void* src, size_t n) {
    std::memcpy(p, src, n);
    p += n;
  }
  void U8(uint8_t v) { Bytes(&v, 1); }
  void U32(uint32_t v) { Bytes(&v, 4); }
  void U64(uint64_t v) { Bytes(&v, 8); }
};
struct Reader {
  const uint8_t* p;
  const uint8_t* end;
  bool ok = true;
  bool Has(uint64_t n) const { return ok && static_cast<uint64_t>(end - p) >= n; }
  void Bytes(void* dst, size_t n) {
    if (!Has(n)) {
      ok = false;
      return;
    }
    std::memcpy(dst, p, n);
    p += n;
  }
  uint8_t U8() { uint8_t v = 0; Bytes(&v, 1); return v; }
  uint32_t U32() { uint32_t v = 0; Bytes(&v, 4); return v; }
  uint64_t U64() { uint64_t v = 0; Bytes(&v, 8); return v; }
  std::string Str() {
    uint32_t n = U32();
    if (!Has(n)) { ok = false; return ""; }
    std::string s(reinterpret_cast<const char*>(p), n);
    p += n;
    return s;
  }
};
}  // namespace

static size_t GlobalValueSize(uint8_t kind) { return kind == kV128Kind ? 16 : 8; }

static Napi::Uint8Array HashArg(Napi::Env env, const Napi::Value& v) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().ByteLength() != 32) {
    throw InvalidArg(env, "module hash must be a 32-byte Uint8Array");
  }
  return v.As<Napi::Uint8Array>();
}

// Asks the kernel to back a large, not yet touched region with transparent huge pages, so that
// filling it takes one page fault per 2 MiB instead of one per 4 KiB. On virtual machines a page
// fault costs microseconds, and first-touch faults were most of the time of snapshotting into a
// fresh buffer or restoring into a fresh instance. Only the 2 MiB-aligned interior is advised; a
// kernel without THP (or another OS) ignores it.
static void AdviseHugePages(void* data, size_t len) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  if (len < 2 * kHuge) return;
  uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  uintptr_t end = (reinterpret_cast<uintptr_t>(data) + len) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data;
  (void)len;
#endif
}

uint64_t WasmInstance::SnapshotBytes() {
  wasmtime_context_t* ctx = Ctx();
  uint64_t payload = 4 + 4;
  for (const ExportMemory& m : memories_) payload += 4 + m.name.size() + 8 + wasmtime_memory_data_size(ctx, &m.memory);
  for (const ExportGlobal& g : globals_) payload += 4 + g.name.size() + 1 + GlobalValueSize(g.kind);
  return payload;
}

// Snapshots are taken and restored between calls only: inside a call (from a host import) the
// guest is half-way through its work, and restoring would pull its state from under its frames.
void WasmInstance::CheckSnapshotable(Napi::Env env, const char* what) const {
  CheckOpen(env);
  if (depth_ > 0) {
    throw Napi::TypeError::New(env, std::string("WasmInstance is busy: ") + what +
                                        " cannot run inside a call (from a host import)");
  }
  if (!uncapturable_.empty()) {
    throw MakeError(env, "SnapshotError",
                    std::string("cannot ") + what + ": " + uncapturable_ +
                        ", and snapshots capture only numeric and v128 values");
  }
}

Napi::Value WasmInstance::SnapshotSize(const Napi::CallbackInfo& info) {
  CheckSnapshotable(info.Env(), "snapshot()");
  return Napi::Number::New(info.Env(), static_cast<double>(kHeaderSize + SnapshotBytes() + kTrailerSize));
}

Napi::Value WasmInstance::Snapshot(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckSnapshotable(env, "snapshot()");
  Napi::Uint8Array hash = HashArg(env, info[0]);
  wasmtime_context_t* ctx = Ctx();
  const uint64_t payload = SnapshotBytes();
  // The caller passes the destination (JS allocates it uninitialised with Buffer.allocUnsafe, and
  // V8 owns and frees it); it must be exactly snapshotSize() bytes.
  const size_t total = kHeaderSize + payload + kTrailerSize;
  if (!info[1].IsBuffer() || info[1].As<Napi::Buffer<uint8_t>>().Length() != total) {
    throw InvalidArg(env, "snapshot(hash, into): into must be a Buffer of snapshotSize() bytes");
  }
  Napi::Buffer<uint8_t> buf = info[1].As<Napi::Buffer<uint8_t>>();
  AdviseHugePages(buf.Data(), total);
  Writer w{buf.Data()};
  w.Bytes(kMagic, 8);
  w.U32(kVersion);
  w.U32(0);
  w.Bytes(hash.Data(), 32);
  w.U64(payload);
  w.U32(static_cast<uint32_t>(memories_.size()));
  for (const ExportMemory& m : memories_) {
    uint64_t size = wasmtime_memory_data_size(ctx, &m.memory);
    w.U32(static_cast<uint32_t>(m.name.size()));
    w.Bytes(m.name.data(), m.name.size());
    w.U64(size);
    w.Bytes(wasmtime_memory_data(ctx, &m.memory), size);
  }
  w.U32(static_cast<uint32_t>(globals_.size()));
  for (const ExportGlobal& g : globals_) {
    wasmtime_val_t v;
    wasmtime_global_get(ctx, &g.global, &v);
    uint8_t bits[16] = {0};
    switch (v.kind) {
      case WASMTIME_I32: std::memcpy(bits, &v.of.i32, 4); break;
      case WASMTIME_I64: std::memcpy(bits, &v.of.i64, 8); break;
      case WASMTIME_F32: std::memcpy(bits, &v.of.f32, 4); break;
      case WASMTIME_F64: std::memcpy(bits, &v.of.f64, 8); break;
      case WASMTIME_V128: std::memcpy(bits, v.of.v128, 16); break;
      default: break;
    }
    w.U32(static_cast<uint32_t>(g.name.size()));
    w.Bytes(g.name.data(), g.name.size());
    w.U8(static_cast<uint8_t>(g.kind));
    w.Bytes(bits, GlobalValueSize(g.kind));
  }
  w.U64(Checksum64(buf.Data(), total - kTrailerSize));
  return buf;
}

Napi::Value WasmInstance::Restore(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckSnapshotable(env, "restore()");
  if (!info[0].IsTypedArray()) throw InvalidArg(env, "restore(snapshot): snapshot must be a Uint8Array");
  Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
  Napi::Uint8Array hash = HashArg(env, info[1]);
  const uint8_t* data = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  const size_t len = ta.ByteLength();
  auto fail = [&](const std::string& why) {
    return MakeError(env, "SnapshotError", "invalid WASM snapshot: " + why);
  };
  if (len < 8 || std::memcmp(data, kMagic, 8) != 0) {
    if (len >= 6 && std::memcmp(data, "HBLUA", 5) == 0) throw fail("this is a Lua snapshot, not a WASM one");
    throw fail("bad magic (not an hb-runtimes WASM snapshot)");
  }
  if (len < 12) throw fail("truncated header");
  uint32_t version = 0;
  std::memcpy(&version, data + 8, 4);
  if (version != 1 && version != kVersion) {
    throw fail("unsupported version " + std::to_string(version) + " (this build reads versions 1 and 2)");
  }
  const size_t header = version == 1 ? kV1HeaderSize : kHeaderSize;
  const size_t trailer = version == 1 ? 0 : kTrailerSize;
  if (len < header + trailer) throw fail("truncated header");
  Reader r{data + 12, data + len - trailer};
  if (r.U32() != 0) throw fail("unknown flags");
  if (std::memcmp(r.p, hash.Data(), 32) != 0) throw fail("it was taken from a different module image");
  r.p += 32;
  uint64_t payload = r.U64();
  uint64_t sum = version == 1 ? r.U64() : 0;
  if (static_cast<uint64_t>(r.end - r.p) != payload) {
    throw fail(static_cast<uint64_t>(r.end - r.p) < payload ? "truncated" : "trailing bytes after the payload");
  }
  if (version == 1) {
    if (Checksum64(r.p, payload) != sum) throw fail("checksum mismatch");
  } else {
    std::memcpy(&sum, r.end, 8);
    if (Checksum64(data, len - kTrailerSize) != sum) throw fail("checksum mismatch");
  }

  // Parse and check everything against this instance before touching it.
  wasmtime_context_t* ctx = Ctx();
  struct MemPlan { const ExportMemory* m; const uint8_t* bytes; uint64_t size; };
  struct GlobalPlan { const ExportGlobal* g; const uint8_t* bits; };
  std::vector<MemPlan> mems;
  std::vector<GlobalPlan> globals;
  uint32_t nmem = r.U32();
  if (r.ok && nmem != memories_.size()) throw fail("it has " + std::to_string(nmem) + " memories, the instance " + std::to_string(memories_.size()));
  for (uint32_t i = 0; i < nmem && r.ok; i++) {
    std::string name = r.Str();
    uint64_t size = r.U64();
    if (!r.Has(size)) break;
    const ExportMemory& m = memories_[i];
    if (name != m.name) throw fail("memory '" + name + "' does not match the instance's '" + m.name + "'");
    if (size % kWasmPage != 0) throw fail("memory size is not a whole number of pages");
    uint64_t current = wasmtime_memory_data_size(ctx, &m.memory);
    if (size < current) {
      throw fail("memory '" + name + "' is " + std::to_string(size) + " bytes but the instance already has " +
                 std::to_string(current) + " (restore into a fresh instance)");
    }
    mems.push_back({&m, r.p, size});
    r.p += size;
  }
  uint32_t nglob = r.U32();
  if (r.ok && nglob != globals_.size()) throw fail("it has " + std::to_string(nglob) + " globals, the instance " + std::to_string(globals_.size()));
  for (uint32_t i = 0; i < nglob && r.ok; i++) {
    std::string name = r.Str();
    uint8_t kind = r.U8();
    const ExportGlobal& g = globals_[i];
    if (!r.ok) break;
    if (name != g.name || kind != g.kind || (version == 1 && kind == kV128Kind)) {
      throw fail("global '" + name + "' does not match the instance");
    }
    if (!r.Has(GlobalValueSize(kind))) break;
    globals.push_back({&g, r.p});
    r.p += GlobalValueSize(kind);
  }
  if (!r.ok || r.p != r.end) throw fail("malformed payload");

  // Apply: grow first (the only step that can fail), then copy.
  for (const MemPlan& p : mems) {
    uint64_t current = wasmtime_memory_data_size(ctx, &p.m->memory);
    if (p.size > current) {
      uint64_t prev = 0;
      wasmtime_error_t* error = wasmtime_memory_grow(ctx, &p.m->memory, (p.size - current) / kWasmPage, &prev);
      if (error != nullptr) throw fail("cannot grow memory '" + p.m->name + "': " + TakeErrorMessage(error));
    }
  }
  for (const MemPlan& p : mems) {
    uint8_t* dst = wasmtime_memory_data(ctx, &p.m->memory);
    AdviseHugePages(dst, p.size);
    std::memcpy(dst, p.bytes, p.size);
  }
  for (const GlobalPlan& p : globals) {
    wasmtime_val_t v;
    switch (p.g->kind) {
      case WASM_I32: v.kind = WASMTIME_I32; std::memcpy(&v.of.i32, p.bits, 4); break;
      case WASM_I64: v.kind = WASMTIME_I64; std::memcpy(&v.of.i64, p.bits, 8); break;
      case WASM_F32: v.kind = WASMTIME_F32; std::memcpy(&v.of.f32, p.bits, 4); break;
      case WASM_F64: v.kind = WASMTIME_F64; std::memcpy(&v.of.f64, p.bits, 8); break;
      default: v.kind = WASMTIME_V128; std::memcpy(v.of.v128, p.bits, 16); break;
    }
    wasmtime_error_t* error = wasmtime_global_set(ctx, &p.g->global, &v);
    if (error != nullptr) throw fail("cannot set global '" + p.g->name + "': " + TakeErrorMessage(error));
  }
  RefreshView(env);
  return env.Undefined();
}

}  // namespace hbr
