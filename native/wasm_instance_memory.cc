// WasmInstance, part 3: access to linear memory from the host.
#include "wasm_instance.h"

#include <cstring>

#include "errors.h"
#include "wasm_cow_memory.h"
#include "wasm_engine.h"

namespace hbr {

const WasmInstance::ExportMemory& WasmInstance::Memory(Napi::Env env) const {
  CheckOpen(env);
  if (memories_.empty()) {
    throw MakeError(env, "AoError", "the module exports no memory",
                    {{"status", Napi::Number::New(env, 400)}, {"code", Napi::String::New(env, "ERR_NO_MEMORY")}});
  }
  return memories_[0];
}

static Napi::Error OutOfBounds(Napi::Env env, const char* op, uint64_t ptr, uint64_t len, uint64_t size) {
  return MakeError(env, "AoError",
                   std::string(op) + " of " + std::to_string(len) + " bytes at " + std::to_string(ptr) +
                       " is out of bounds (memory size " + std::to_string(size) + ")",
                   {{"status", Napi::Number::New(env, 400)}, {"code", Napi::String::New(env, "ERR_OUT_OF_BOUNDS")}});
}

Napi::Value WasmInstance::HasMemory(const Napi::CallbackInfo& info) {
  CheckOpen(info.Env());
  return Napi::Boolean::New(info.Env(), !memories_.empty());
}

Napi::Value WasmInstance::MemorySize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const ExportMemory& m = Memory(env);
  return Napi::BigInt::New(env, static_cast<uint64_t>(wasmtime_memory_data_size(Ctx(), &m.memory)));
}

Napi::Value WasmInstance::MemoryGrow(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const ExportMemory& m = Memory(env);
  uint64_t delta = ToOffset(env, info[0], "pages");
  uint64_t prev = 0;
  const uint64_t refused = limits_.refused;
  wasmtime_error_t* error = wasmtime_memory_grow(Ctx(), &m.memory, delta, &prev);
  if (error != nullptr) {
    std::string text = "memory.grow(" + std::to_string(delta) + ") failed: " + TakeErrorMessage(error);
    if (limits_.refused != refused) {
      throw MakeError(env, "LimitError", text + " (" + RefusedGrowth() + ")", {{"limit", Napi::String::New(env, "memory")}});
    }
    throw MakeError(env, "AoError", text,
                    {{"status", Napi::Number::New(env, 400)}, {"code", Napi::String::New(env, "ERR_MEMORY_GROW")}});
  }
  RefreshView(env);
  return Napi::BigInt::New(env, prev);
}

Napi::Value WasmInstance::MemoryRead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const ExportMemory& m = Memory(env);
  uint64_t ptr = ToOffset(env, info[0], "ptr");
  uint64_t len = ToOffset(env, info[1], "len");
  wasmtime_context_t* ctx = Ctx();
  uint64_t size = wasmtime_memory_data_size(ctx, &m.memory);  // current size: it changes after grow
  if (ptr > size || len > size - ptr) throw OutOfBounds(env, "read", ptr, len, size);
  return Napi::Buffer<uint8_t>::Copy(env, wasmtime_memory_data(ctx, &m.memory) + ptr, len);
}

Napi::Value WasmInstance::MemoryWrite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const ExportMemory& m = Memory(env);
  uint64_t ptr = ToOffset(env, info[0], "ptr");
  if (!info[1].IsTypedArray()) throw InvalidArg(env, "write(ptr, bytes): bytes must be a Uint8Array");
  Napi::TypedArray ta = info[1].As<Napi::TypedArray>();
  const uint8_t* src = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  uint64_t len = ta.ByteLength();
  wasmtime_context_t* ctx = Ctx();
  uint64_t size = wasmtime_memory_data_size(ctx, &m.memory);
  if (ptr > size || len > size - ptr) throw OutOfBounds(env, "write", ptr, len, size);
  std::memcpy(wasmtime_memory_data(ctx, &m.memory) + ptr, src, len);
  return env.Undefined();
}

void WasmInstance::RefreshView(napi_env env, bool always) {
  if (view_ == nullptr) return;
  napi_value v = nullptr;
  napi_get_reference_value(env, view_, &v);
  if (v == nullptr) {  // collected
    napi_delete_reference(env, view_);
    view_ = nullptr;
    return;
  }
  if (!always && store_ != nullptr && !memories_.empty()) {
    wasmtime_context_t* ctx = Ctx();
    if (wasmtime_memory_data(ctx, &memories_[0].memory) == view_base_ &&
        wasmtime_memory_data_size(ctx, &memories_[0].memory) == view_size_) {
      return;
    }
  }
  napi_detach_arraybuffer(env, v);
  napi_delete_reference(env, view_);
  view_ = nullptr;
}

static Napi::Error NoExternalBuffers(Napi::Env env, const char* what) {
  return MakeError(env, "AoError", std::string(what) + ": external ArrayBuffers are not allowed in this runtime",
                   {{"status", Napi::Number::New(env, 500)}, {"code", Napi::String::New(env, "ERR_NO_EXTERNAL_BUFFERS")}});
}

Napi::Value WasmInstance::MemoryView(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const ExportMemory& m = Memory(env);
  RefreshView(env);
  if (view_ != nullptr) {
    napi_value v = nullptr;
    napi_get_reference_value(env, view_, &v);
    if (v != nullptr) return Napi::Value(env, v);
  }
  wasmtime_context_t* ctx = Ctx();
  uint8_t* base = wasmtime_memory_data(ctx, &m.memory);
  uint64_t size = wasmtime_memory_data_size(ctx, &m.memory);
  napi_ref self = nullptr;  // the view keeps the instance (and so the memory) alive
  if (napi_create_reference(env, info.This(), 1, &self) != napi_ok) throw Napi::Error::New(env, "memoryView: cannot reference the instance");
  napi_value ab = nullptr;
  napi_status st = napi_create_external_arraybuffer(
      env, base, static_cast<size_t>(size),
      [](napi_env e, void*, void* hint) { napi_delete_reference(e, static_cast<napi_ref>(hint)); }, self, &ab);
  if (st != napi_ok) {
    napi_delete_reference(env, self);
    throw NoExternalBuffers(env, "memoryView");
  }
  napi_create_reference(env, ab, 0, &view_);
  env_for_view_ = env;
  view_base_ = base;
  view_size_ = size;
  return Napi::Value(env, ab);
}

Napi::Value WasmInstance::MemoryCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const ExportMemory& m = Memory(env);
  wasmtime_context_t* ctx = Ctx();
  uint8_t* base = wasmtime_memory_data(ctx, &m.memory);
  uint64_t size = wasmtime_memory_data_size(ctx, &m.memory);
  if (cow_copy_ != nullptr) napi_delete_reference(env, cow_copy_);
  cow_copy_ = nullptr;
  bool lost = false;
  env_for_view_ = env;
  uint8_t* copy = depth_ == 0 && size > 0 && size % 4096 == 0 ? cow_.Copy(base, size, &lost) : nullptr;
  if (lost) {  // the memory could not be laid over its new file: its content is gone
    RefreshView(env, true);
    Close();
    throw MakeError(env, "AoError", "memoryCopy: the memory could not be remapped and is lost; the instance is disposed",
                    {{"status", Napi::Number::New(env, 500)}, {"code", Napi::String::New(env, "ERR_MEMORY_LOST")}});
  }
  if (copy == nullptr) {
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, static_cast<size_t>(size));
    if (size > 0) std::memcpy(ab.Data(), base, size);
    return ab;
  }
  napi_value ab = nullptr;
  napi_status st = napi_create_external_arraybuffer(
      env, copy, static_cast<size_t>(size),
      [](napi_env, void* data, void* hint) {
        CowMemory::Free(static_cast<uint8_t*>(data), reinterpret_cast<uintptr_t>(hint));
      },
      reinterpret_cast<void*>(static_cast<uintptr_t>(size)), &ab);
  if (st != napi_ok) {
    CowMemory::Free(copy, size);
    throw NoExternalBuffers(env, "memoryCopy");
  }
  napi_create_reference(env, ab, 0, &cow_copy_);
  return Napi::Value(env, ab);
}

Napi::Value WasmInstance::MemoryIsCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const ExportMemory& m = Memory(env);
  if (cow_copy_ == nullptr || depth_ > 0) return Napi::Boolean::New(env, false);
  napi_value last = nullptr;
  napi_get_reference_value(env, cow_copy_, &last);
  if (last == nullptr) return Napi::Boolean::New(env, false);  // collected
  Napi::Value arg = info[0];
  Napi::ArrayBuffer ab;
  if (arg.IsArrayBuffer()) {
    ab = arg.As<Napi::ArrayBuffer>();
  } else if (arg.IsTypedArray()) {
    Napi::TypedArray ta = arg.As<Napi::TypedArray>();
    ab = ta.ArrayBuffer();
    if (ta.ByteOffset() != 0 || ta.ByteLength() != ab.ByteLength()) return Napi::Boolean::New(env, false);
  } else {
    return Napi::Boolean::New(env, false);
  }
  if (!ab.StrictEquals(Napi::Value(env, last))) return Napi::Boolean::New(env, false);
  wasmtime_context_t* ctx = Ctx();
  bool same = cow_.Same(static_cast<const uint8_t*>(ab.Data()), ab.ByteLength(), wasmtime_memory_data(ctx, &m.memory),
                        wasmtime_memory_data_size(ctx, &m.memory));
  return Napi::Boolean::New(env, same);
}

Napi::Value WasmInstance::ReadCString(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const ExportMemory& m = Memory(env);
  uint64_t ptr = ToOffset(env, info[0], "ptr");
  wasmtime_context_t* ctx = Ctx();
  uint64_t size = wasmtime_memory_data_size(ctx, &m.memory);
  if (ptr >= size) throw OutOfBounds(env, "string read", ptr, 1, size);
  const uint8_t* base = wasmtime_memory_data(ctx, &m.memory) + ptr;
  const void* nul = std::memchr(base, 0, size - ptr);
  if (nul == nullptr) {
    throw MakeError(env, "AoError", "string at " + std::to_string(ptr) + " has no NUL terminator before the end of memory",
                    {{"status", Napi::Number::New(env, 400)}, {"code", Napi::String::New(env, "ERR_OUT_OF_BOUNDS")}});
  }
  return Napi::Buffer<uint8_t>::Copy(env, base, static_cast<const uint8_t*>(nul) - base);
}

}  // namespace hbr
