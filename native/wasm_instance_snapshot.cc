// WasmInstance, part 4: snapshots (format: wasm_snapshot_format.h): full blobs, deltas, restore.
// Files: wasm_instance_snapshot_file.cc.
#include "wasm_instance.h"

#include <cstring>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "errors.h"
#include "wasm_engine.h"
#include "wasm_snapshot_format.h"

namespace hbr {

using snap::kHeaderSize;
using snap::kTrailerSize;
using snap::kV128Kind;
using snap::kWasmPage;
using snap::GlobalValueSize;

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
void snap::AdviseHugePages(void* data, size_t len) {
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


// The bits of a global's value, as the format stores them (unused bytes zero).
static void GlobalBits(const wasmtime_val_t& v, uint8_t bits[16]) {
  std::memset(bits, 0, 16);
  switch (v.kind) {
    case WASMTIME_I32: std::memcpy(bits, &v.of.i32, 4); break;
    case WASMTIME_I64: std::memcpy(bits, &v.of.i64, 8); break;
    case WASMTIME_F32: std::memcpy(bits, &v.of.f32, 4); break;
    case WASMTIME_F64: std::memcpy(bits, &v.of.f64, 8); break;
    case WASMTIME_V128: std::memcpy(bits, v.of.v128, 16); break;
    default: break;
  }
}

template <class W>
void WasmInstance::WriteGlobals(W& w) {
  wasmtime_context_t* ctx = Ctx();
  w.U32(static_cast<uint32_t>(globals_.size()));
  for (const ExportGlobal& g : globals_) {
    wasmtime_val_t v;
    wasmtime_global_get(ctx, &g.global, &v);
    uint8_t bits[16];
    GlobalBits(v, bits);
    w.U32(static_cast<uint32_t>(g.name.size()));
    w.Bytes(g.name.data(), g.name.size());
    w.U8(static_cast<uint8_t>(g.kind));
    w.Bytes(bits, GlobalValueSize(g.kind));
  }
}

template <class W>
void WasmInstance::WriteFull(W& w, const uint8_t* hash, uint64_t payload) {
  wasmtime_context_t* ctx = Ctx();
  w.Bytes(snap::kMagic, 8);
  w.U32(snap::kVersion);
  w.U32(0);
  w.Bytes(hash, 32);
  w.U64(payload);
  w.U32(static_cast<uint32_t>(memories_.size()));
  for (const ExportMemory& m : memories_) {
    uint64_t size = wasmtime_memory_data_size(ctx, &m.memory);
    w.U32(static_cast<uint32_t>(m.name.size()));
    w.Bytes(m.name.data(), m.name.size());
    w.U64(size);
    w.Memory(wasmtime_memory_data(ctx, &m.memory), size);
  }
  WriteGlobals(w);
}
template void WasmInstance::WriteFull(snap::FileWriter&, const uint8_t*, uint64_t);

void WasmInstance::MarkSnapshot(uint64_t id) {
  has_last_ = true;
  last_id_ = id;
  if (!track_writes_) return;
  wasmtime_context_t* ctx = Ctx();
  for (size_t i = 0; i < memories_.size(); i++) {
    trackers_[i].Arm(wasmtime_memory_data(ctx, &memories_[i].memory), wasmtime_memory_data_size(ctx, &memories_[i].memory));
  }
}

Napi::Value WasmInstance::Snapshot(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckSnapshotable(env, "snapshot()");
  Napi::Uint8Array hash = HashArg(env, info[0]);
  const uint64_t payload = SnapshotBytes();
  // The caller passes the destination (JS allocates it uninitialised with Buffer.allocUnsafe, and
  // V8 owns and frees it); it must be exactly snapshotSize() bytes.
  const size_t total = kHeaderSize + payload + kTrailerSize;
  if (!info[1].IsBuffer() || info[1].As<Napi::Buffer<uint8_t>>().Length() != total) {
    throw InvalidArg(env, "snapshot(hash, into): into must be a Buffer of snapshotSize() bytes");
  }
  Napi::Buffer<uint8_t> buf = info[1].As<Napi::Buffer<uint8_t>>();
  snap::AdviseHugePages(buf.Data(), total);
  snap::BufferWriter w{buf.Data()};
  WriteFull(w, hash.Data(), payload);
  uint64_t sum = Checksum64(buf.Data(), total - kTrailerSize);
  w.U64(sum);
  MarkSnapshot(sum);
  return buf;
}

Napi::Value WasmInstance::SnapshotDelta(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckSnapshotable(env, "snapshot()");
  Napi::Uint8Array hash = HashArg(env, info[0]);
  bool lossless = false;
  const uint64_t since = info[1].IsBigInt() ? info[1].As<Napi::BigInt>().Uint64Value(&lossless) : 0;
  if (!lossless) throw InvalidArg(env, "snapshotDelta(hash, since): since must be a snapshot id (bigint)");
  if (!has_last_ || since != last_id_) {
    throw MakeError(env, "SnapshotError",
                    has_last_ ? "cannot take an incremental snapshot: `since` is not this instance's latest snapshot (deltas "
                                "follow the snapshot taken or restored last)"
                              : "cannot take an incremental snapshot: this instance has no snapshot yet (take or restore a "
                                "full one first)");
  }
  wasmtime_context_t* ctx = Ctx();
  // "auto": tracking starts now; this delta (nothing tracked yet) holds every page.
  if (!track_never_) track_writes_ = true;
  std::vector<std::vector<DirtyRange>> dirty(memories_.size());
  try {
    uint64_t payload = 8 + 4 + 4;
    for (size_t i = 0; i < memories_.size(); i++) {
      const ExportMemory& m = memories_[i];
      uint8_t* base = wasmtime_memory_data(ctx, &m.memory);
      uint64_t size = wasmtime_memory_data_size(ctx, &m.memory);
      if (track_writes_) {
        trackers_[i].Collect(base, size, &dirty[i]);
      } else if (size > 0) {
        dirty[i].push_back({0, size});
      }
      payload += 4 + m.name.size() + 8 + 8;
      for (const DirtyRange& r : dirty[i]) payload += 16 + r.length;
    }
    for (const ExportGlobal& g : globals_) payload += 4 + g.name.size() + 1 + GlobalValueSize(g.kind);
    const uint64_t total = kHeaderSize + payload + kTrailerSize;
    Napi::Buffer<uint8_t> buf = Napi::Buffer<uint8_t>::New(env, static_cast<size_t>(total));
    snap::BufferWriter w{buf.Data()};
    w.Bytes(snap::kMagic, 8);
    w.U32(snap::kVersion);
    w.U32(snap::kFlagDelta);
    w.Bytes(hash.Data(), 32);
    w.U64(payload);
    w.U64(last_id_);
    w.U32(static_cast<uint32_t>(memories_.size()));
    for (size_t i = 0; i < memories_.size(); i++) {
      const ExportMemory& m = memories_[i];
      const uint8_t* base = wasmtime_memory_data(ctx, &m.memory);
      w.U32(static_cast<uint32_t>(m.name.size()));
      w.Bytes(m.name.data(), m.name.size());
      w.U64(wasmtime_memory_data_size(ctx, &m.memory));
      w.U64(dirty[i].size());
      for (const DirtyRange& r : dirty[i]) {
        w.U64(r.offset);
        w.U64(r.length);
        w.Bytes(base + r.offset, r.length);
      }
    }
    WriteGlobals(w);
    uint64_t sum = Checksum64(buf.Data(), total - kTrailerSize);
    w.U64(sum);
    has_last_ = true;
    last_id_ = sum;
    return buf;
  } catch (...) {
    // The pages collected are protected again but made it into no snapshot: start over.
    for (WriteTracker& t : trackers_) t.Disarm();
    throw;
  }
}

void WasmInstance::CheckPlans(const std::vector<snap::Plan>& plans) {
  using snap::Invalid;
  wasmtime_context_t* ctx = Ctx();
  for (size_t k = 0; k < plans.size(); k++) {
    const snap::Plan& p = plans[k];
    const std::string which = k == 0 ? "" : "delta " + std::to_string(k) + ": ";
    if (k == 0 && p.delta) throw Invalid("the first snapshot is incremental: restore its base first (restore(base, ...deltas))");
    if (k > 0 && !p.delta) throw Invalid(which + "a full snapshot where an incremental one was expected");
    if (k > 0 && p.parent != plans[k - 1].id) {
      throw Invalid(which + "it does not follow the snapshot before it (it was taken after a different snapshot)");
    }
    if (p.memories.size() != memories_.size()) {
      throw Invalid(which + "it has " + std::to_string(p.memories.size()) + " memories, the instance " + std::to_string(memories_.size()));
    }
    for (size_t i = 0; i < memories_.size(); i++) {
      const snap::MemoryPart& m = p.memories[i];
      if (m.name != memories_[i].name) throw Invalid(which + "memory '" + m.name + "' does not match the instance's '" + memories_[i].name + "'");
      if (k > 0 && m.size < plans[k - 1].memories[i].size) throw Invalid(which + "memory '" + m.name + "' shrank");
    }
    if (p.globals.size() != globals_.size()) {
      throw Invalid(which + "it has " + std::to_string(p.globals.size()) + " globals, the instance " + std::to_string(globals_.size()));
    }
    for (size_t i = 0; i < globals_.size(); i++) {
      if (p.globals[i].name != globals_[i].name || p.globals[i].kind != globals_[i].kind) {
        throw Invalid(which + "global '" + p.globals[i].name + "' does not match the instance");
      }
    }
  }
  for (size_t i = 0; i < memories_.size(); i++) {
    uint64_t size = plans.back().memories[i].size;
    uint64_t current = wasmtime_memory_data_size(ctx, &memories_[i].memory);
    if (size < current) {
      throw Invalid("memory '" + memories_[i].name + "' is " + std::to_string(size) + " bytes but the instance already has " +
                    std::to_string(current) + " (restore into a fresh instance)");
    }
  }
}

void WasmInstance::ApplyPlans(Napi::Env env, const std::vector<snap::Plan>& plans, int fd, uint64_t file_size) {
  CheckPlans(plans);
  wasmtime_context_t* ctx = Ctx();
  auto fail = [&](const std::string& why) { return MakeError(env, "SnapshotError", "invalid WASM snapshot: " + why); };
  for (WriteTracker& t : trackers_) t.Suspend();  // armed again by MarkSnapshot at the end
  // Grow first (the only step that can fail before anything is written).
  std::vector<uint64_t> before(memories_.size());
  for (size_t i = 0; i < memories_.size(); i++) {
    const ExportMemory& m = memories_[i];
    uint64_t current = wasmtime_memory_data_size(ctx, &m.memory);
    before[i] = current;
    uint64_t size = plans.back().memories[i].size;
    if (size > current) {
      uint64_t prev = 0;
      wasmtime_error_t* error = wasmtime_memory_grow(ctx, &m.memory, (size - current) / kWasmPage, &prev);
      if (error != nullptr) throw fail("cannot grow memory '" + m.name + "': " + TakeErrorMessage(error));
    }
  }
  // The base: every memory in full, then zeros up to what the instance had (a delta's memory may
  // be larger than its base's).
  if (fd < 0) {
    for (size_t i = 0; i < memories_.size(); i++) {
      const snap::Run& r = plans[0].memories[i].runs[0];
      uint8_t* dst = wasmtime_memory_data(ctx, &memories_[i].memory);
      snap::AdviseHugePages(dst, r.length);
      std::memcpy(dst, r.src, r.length);
    }
  } else {
    std::vector<uint8_t*> dsts(memories_.size());
    for (size_t i = 0; i < memories_.size(); i++) dsts[i] = wasmtime_memory_data(ctx, &memories_[i].memory);
    bool same = false;
    std::string why = "its checksum no longer matches";
    try {
      same = CopyFromFile(fd, file_size, plans[0], dsts, before);
    } catch (const std::exception& e) {
      why = e.what();
    }
    if (!same) {
      Close();
      throw MakeError(env, "SnapshotError",
                      "invalid WASM snapshot: the file changed while it was being restored (" + why +
                          "); the instance, half restored, was disposed",
                      {{"disposed", Napi::Boolean::New(env, true)}});
    }
  }
  for (size_t i = 0; i < memories_.size(); i++) {
    uint64_t base_size = plans[0].memories[i].size;
    if (before[i] > base_size) std::memset(wasmtime_memory_data(ctx, &memories_[i].memory) + base_size, 0, before[i] - base_size);
  }
  for (size_t k = 1; k < plans.size(); k++) {
    for (size_t i = 0; i < memories_.size(); i++) {
      uint8_t* dst = wasmtime_memory_data(ctx, &memories_[i].memory);
      for (const snap::Run& r : plans[k].memories[i].runs) std::memcpy(dst + r.offset, r.src, r.length);
    }
  }
  for (size_t i = 0; i < globals_.size(); i++) {
    const ExportGlobal& g = globals_[i];
    const uint8_t* bits = plans.back().globals[i].bits;
    wasmtime_val_t v;
    switch (g.kind) {
      case WASM_I32: v.kind = WASMTIME_I32; std::memcpy(&v.of.i32, bits, 4); break;
      case WASM_I64: v.kind = WASMTIME_I64; std::memcpy(&v.of.i64, bits, 8); break;
      case WASM_F32: v.kind = WASMTIME_F32; std::memcpy(&v.of.f32, bits, 4); break;
      case WASM_F64: v.kind = WASMTIME_F64; std::memcpy(&v.of.f64, bits, 8); break;
      default: v.kind = WASMTIME_V128; std::memcpy(v.of.v128, bits, 16); break;
    }
    wasmtime_error_t* error = wasmtime_global_set(ctx, &g.global, &v);
    if (error != nullptr) throw fail("cannot set global '" + g.name + "': " + TakeErrorMessage(error));
  }
  MarkSnapshot(plans.back().id);
}

// The blobs of restore([full, ...deltas]) / restoreFromFd(.., deltas), parsed and verified.
std::vector<snap::Plan> WasmInstance::ParseBlobs(Napi::Env env, const Napi::Array& blobs, const uint8_t* hash,
                                                 size_t first_index) {
  std::vector<snap::Plan> plans;
  for (uint32_t k = 0; k < blobs.Length(); k++) {
    Napi::Value b = blobs.Get(k);
    if (!b.IsTypedArray()) throw InvalidArg(env, "restore(snapshot, ...deltas): every snapshot must be a Uint8Array");
    Napi::TypedArray ta = b.As<Napi::TypedArray>();
    const uint8_t* data = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    try {
      plans.push_back(snap::ParseBlob(data, ta.ByteLength(), hash));
    } catch (const snap::Invalid& e) {
      size_t index = first_index + k;
      throw snap::Invalid(index == 0 ? e.what() : "delta " + std::to_string(index) + ": " + e.what());
    }
  }
  return plans;
}

Napi::Value WasmInstance::Restore(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckSnapshotable(env, "restore()");
  if (!info[0].IsArray() || info[0].As<Napi::Array>().Length() == 0) {
    throw InvalidArg(env, "restore(snapshots, hash): snapshots must be a non-empty array of Uint8Array");
  }
  Napi::Uint8Array hash = HashArg(env, info[1]);
  try {
    std::vector<snap::Plan> plans = ParseBlobs(env, info[0].As<Napi::Array>(), hash.Data(), 0);
    ApplyPlans(env, plans, -1, 0);
  } catch (const snap::Invalid& e) {
    throw MakeError(env, "SnapshotError", std::string("invalid WASM snapshot: ") + e.what());
  }
  return env.Undefined();
}

}  // namespace hbr
