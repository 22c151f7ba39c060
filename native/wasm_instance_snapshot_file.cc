// WasmInstance, part 5: snapshots of any size, to and from a file descriptor (the TS layer opens,
// syncs and renames the file). Memory contents go between the file and the linear memory in
// chunks, with no buffer of the whole snapshot: the only bound is the file system. The bytes are
// those of the blob form (wasm_instance_snapshot.cc), so either form restores the other.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <system_error>

#include "errors.h"
#include "wasm_instance.h"
#include "wasm_snapshot_format.h"

namespace hbr {

static int FdArg(Napi::Env env, const Napi::Value& v) {
  if (!v.IsNumber() || v.As<Napi::Number>().Int32Value() < 0) throw InvalidArg(env, "fd must be a file descriptor");
  return v.As<Napi::Number>().Int32Value();
}

static Napi::Uint8Array HashArg32(Napi::Env env, const Napi::Value& v) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().ByteLength() != 32) {
    throw InvalidArg(env, "module hash must be a 32-byte Uint8Array");
  }
  return v.As<Napi::Uint8Array>();
}

static Napi::Error IoError(Napi::Env env, const std::system_error& e, const char* what) {
  return MakeError(env, "AoError", std::string(what) + ": " + e.what(),
                   {{"status", Napi::Number::New(env, 500)}, {"code", Napi::String::New(env, "ERR_SNAPSHOT_IO")}});
}

Napi::Value WasmInstance::SnapshotToFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckSnapshotable(env, "snapshotToFile()");
  Napi::Uint8Array hash = HashArg32(env, info[0]);
  int fd = FdArg(env, info[1]);
  snap::FileWriter w(fd);
  uint64_t sum = 0;
  try {
    WriteFull(w, hash.Data(), SnapshotBytes());
    sum = w.Finish();
  } catch (const std::system_error& e) {
    throw IoError(env, e, "snapshotToFile()");
  }
  MarkSnapshot(sum);
  Napi::Object out = Napi::Object::New(env);
  out.Set("bytes", Napi::Number::New(env, static_cast<double>(w.written())));
  out.Set("id", Napi::BigInt::New(env, sum));
  return out;
}

bool WasmInstance::CopyFromFile(int fd, uint64_t file_size, const snap::Plan& plan, const std::vector<uint8_t*>& dsts,
                                const std::vector<uint64_t>& fresh) {
  snap::Hasher h;
  std::vector<uint8_t> buf(size_t{4} << 20);
  uint64_t pos = 0;
  // Bytes between the memories (header, names, sizes; globals at the end) go through `buf`.
  auto pass = [&](uint64_t to) {
    while (pos < to) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), to - pos));
      snap::ReadAt(fd, pos, buf.data(), n);
      h.Update(buf.data(), n);
      pos += n;
    }
  };
  // Where the next hole of the file starts at or after `at` (`end` when none, or when the file
  // system cannot tell).
  auto data_end = [&](uint64_t at, uint64_t end) -> uint64_t {
    off_t hole = lseek(fd, static_cast<off_t>(at), SEEK_HOLE);
    return hole < 0 ? end : std::min<uint64_t>(end, static_cast<uint64_t>(hole));
  };
  auto data_start = [&](uint64_t at, uint64_t end) -> uint64_t {
    off_t data = lseek(fd, static_cast<off_t>(at), SEEK_DATA);
    return data < 0 ? end : std::min<uint64_t>(end, static_cast<uint64_t>(data));
  };
  constexpr uint64_t kChunk = uint64_t{64} << 20;
  for (size_t i = 0; i < plan.memories.size(); i++) {
    const snap::Run& r = plan.memories[i].runs[0];
    pass(r.file_off);
    // No huge-page advice here (unlike blob restores): with the file filling the page cache,
    // faulting in huge pages makes the kernel compact memory, and a fresh 5 GiB restore took
    // 18 s with it against 8-15 s without.
    const uint64_t end = r.file_off + r.length;
    while (pos < end) {
      // Data: read into memory and hash it there. A hole (a snapshotToFile of zeros): hash zeros,
      // and write them only where the memory is not fresh (grown by this restore, so zero).
      uint64_t stop = data_end(pos, end);
      for (; pos < stop;) {
        uint64_t n = std::min(kChunk, stop - pos);
        uint8_t* dst = dsts[i] + (pos - r.file_off);
        snap::ReadAt(fd, pos, dst, n);
        h.Update(dst, static_cast<size_t>(n));
        pos += n;
      }
      if (pos >= end) break;
      uint64_t next = data_start(pos, end);
      if (next == pos) {  // not a hole after all (the file changed, or no SEEK_HOLE): read a chunk
        uint64_t n = std::min<uint64_t>(sizeof snap::kZeros, end - pos);
        uint8_t* dst = dsts[i] + (pos - r.file_off);
        snap::ReadAt(fd, pos, dst, n);
        h.Update(dst, static_cast<size_t>(n));
        pos += n;
        continue;
      }
      for (; pos < next;) {
        uint64_t n = std::min<uint64_t>(sizeof snap::kZeros, next - pos);
        uint64_t off = pos - r.file_off;
        if (off < fresh[i]) std::memset(dsts[i] + off, 0, std::min<uint64_t>(n, fresh[i] - off));
        h.Update(snap::kZeros, static_cast<size_t>(n));
        pos += n;
      }
    }
  }
  pass(file_size - snap::kTrailerSize);
  return h.Digest() == plan.id;
}

Napi::Value WasmInstance::RestoreFromFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckSnapshotable(env, "restoreFromFile()");
  int fd = FdArg(env, info[0]);
  if (!info[1].IsNumber()) throw InvalidArg(env, "restoreFromFd(fd, size, hash, deltas): size must be a number");
  const uint64_t file_size = static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value());
  Napi::Uint8Array hash = HashArg32(env, info[2]);
  if (!info[3].IsArray()) throw InvalidArg(env, "restoreFromFd(fd, size, hash, deltas): deltas must be an array");
  try {
    std::vector<snap::Plan> plans;
    plans.push_back(snap::ParseFile(fd, file_size, hash.Data()));
    std::vector<snap::Plan> deltas = ParseBlobs(env, info[3].As<Napi::Array>(), hash.Data(), 1);
    for (snap::Plan& p : deltas) plans.push_back(std::move(p));
    ApplyPlans(env, plans, fd, file_size);
  } catch (const snap::Invalid& e) {
    throw MakeError(env, "SnapshotError", std::string("invalid WASM snapshot: ") + e.what());
  } catch (const std::system_error& e) {
    throw IoError(env, e, "restoreFromFile()");
  }
  return env.Undefined();
}

}  // namespace hbr
