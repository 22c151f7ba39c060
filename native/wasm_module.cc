#include "wasm_module.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "errors.h"
#include "wasm_engine.h"
#include "wasm_instance.h"

namespace hbr {

static const napi_type_tag kWasmModuleTag = {0x6862722d6d6f6475ULL, 0x6c652d7761736d31ULL};

void WasmModule::Init(Napi::Env env, Napi::Object exports, Addon* addon) {
  Napi::Function ctor = DefineClass(env, "WasmModule",
                                    {
                                        StaticMethod("compile", &WasmModule::Compile),
                                        StaticMethod("deserialize", &WasmModule::Deserialize),
                                        StaticMethod("deserializeFile", &WasmModule::DeserializeFile),
                                        InstanceMethod("serialize", &WasmModule::Serialize),
                                        InstanceMethod("imports", &WasmModule::Imports),
                                        InstanceMethod("exports", &WasmModule::Exports),
                                        InstanceMethod("dispose", &WasmModule::Dispose),
                                    });
  addon->wasm_module_ctor = Napi::Persistent(ctor);
  exports.Set("WasmModule", ctor);
}

WasmModule* WasmModule::FromValue(Napi::Env env, Napi::Value value) {
  if (!value.IsObject()) return nullptr;
  bool ok = false;
  if (napi_check_object_type_tag(env, value, &kWasmModuleTag, &ok) != napi_ok || !ok) return nullptr;
  return Unwrap(value.As<Napi::Object>());
}

// new WasmModule(external, flags) is internal: modules come from compile() or deserialize().
WasmModule::WasmModule(const Napi::CallbackInfo& info) : Napi::ObjectWrap<WasmModule>(info) {
  Napi::Env env = info.Env();
  if (info.Length() != 2 || !info[0].IsExternal() || !info[1].IsNumber()) {
    throw Napi::TypeError::New(env, "WasmModule cannot be constructed directly: use WasmModule.compile()");
  }
  module_ = info[0].As<Napi::External<wasmtime_module_t>>().Data();
  flags_ = info[1].As<Napi::Number>().Uint32Value();
  info.This().As<Napi::Object>().TypeTag(&kWasmModuleTag);
  Track(AddonOf(env));
}

WasmModule::~WasmModule() { Close(); }

void WasmModule::Close() {
  std::vector<WasmInstance*> children;
  children.swap(children_);
  for (WasmInstance* child : children) child->Close();
  if (module_ != nullptr) wasmtime_module_delete(module_);
  module_ = nullptr;
  Untrack();
}

void WasmModule::RemoveChild(WasmInstance* child) {
  auto it = std::find(children_.begin(), children_.end(), child);
  if (it != children_.end()) children_.erase(it);
}

void WasmModule::CheckOpen(Napi::Env env) const {
  if (module_ == nullptr) throw ClosedError(env, "WasmModule");
}

Napi::Value WasmModule::Wrap(Napi::Env env, wasmtime_module_t* module, uint32_t flags) {
  Napi::External<wasmtime_module_t> ext = Napi::External<wasmtime_module_t>::New(env, module);
  try {
    return AddonOf(env)->wasm_module_ctor.New({ext, Napi::Number::New(env, flags)});
  } catch (...) {
    wasmtime_module_delete(module);
    throw;
  }
}

// Optional second argument: the engine profile (EngineFlags).
static uint32_t FlagsArg(const Napi::CallbackInfo& info) {
  if (info.Length() < 2 || info[1].IsUndefined()) return 0;
  if (!info[1].IsNumber()) throw InvalidArg(info.Env(), "engine flags must be a number");
  return info[1].As<Napi::Number>().Uint32Value() & (kEngineFlagsCount - 1);
}

static Napi::Uint8Array BytesArg(const Napi::CallbackInfo& info, const char* fn) {
  if (info.Length() < 1 || !info[0].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throw InvalidArg(info.Env(), std::string(fn) + ": bytes must be a Uint8Array");
  }
  return info[0].As<Napi::Uint8Array>();
}

Napi::Value WasmModule::Compile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Uint8Array bytes = BytesArg(info, "WasmModule.compile");
  const uint32_t flags = FlagsArg(info);
  wasmtime_module_t* module = nullptr;
  wasmtime_error_t* error = wasmtime_module_new(AddonOf(env)->Engine(flags), bytes.Data(), bytes.ByteLength(), &module);
  if (error != nullptr) {
    throw MakeError(env, "WasmError", "invalid WebAssembly module: " + TakeErrorMessage(error),
                    {{"code", Napi::String::New(env, "ERR_WASM_COMPILE")}});
  }
  return Wrap(env, module, flags);
}

Napi::Value WasmModule::Deserialize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Uint8Array bytes = BytesArg(info, "WasmModule.deserialize");
  const uint32_t flags = FlagsArg(info);
  wasmtime_module_t* module = nullptr;
  // Wasmtime checks the header (engine version and configuration) before using the code.
  wasmtime_error_t* error =
      wasmtime_module_deserialize(AddonOf(env)->Engine(flags), bytes.Data(), bytes.ByteLength(), &module);
  if (error != nullptr) {
    throw MakeError(env, "WasmError", "cannot load precompiled module: " + TakeErrorMessage(error),
                    {{"code", Napi::String::New(env, "ERR_WASM_DESERIALIZE")}});
  }
  return Wrap(env, module, flags);
}

// deserializeFile(path, offset, flags): Wasmtime's bytes from `offset` to the end of the file,
// mapped rather than read, so that no copy of the code passes through the JS heap; at offset 0,
// mapped and run in place.
Napi::Value WasmModule::DeserializeFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) {
    throw Napi::TypeError::New(env, "WasmModule.deserializeFile(path, offset, flags)");
  }
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  const int64_t offset = info[1].As<Napi::Number>().Int64Value();
  const uint32_t flags = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Uint32Value() : 0;
  auto fail = [&](const std::string& what) -> Napi::Value {
    throw MakeError(env, "WasmError", "cannot load precompiled module " + path + ": " + what,
                    {{"code", Napi::String::New(env, "ERR_WASM_DESERIALIZE")}});
  };
  if (offset == 0) {
    // The whole file is Wasmtime's bytes (the disk cache): Wasmtime maps it and runs the code in
    // place, without copying it into fresh memory (a sixth of the time, and processes loading the
    // same file share its pages). A file is only ever replaced by rename, which leaves mapped
    // code alone; changing one in place (truncating it) would fault the code that runs from it.
    wasmtime_module_t* module = nullptr;
    wasmtime_error_t* error = wasmtime_module_deserialize_file(AddonOf(env)->Engine(flags), path.c_str(), &module);
    if (error != nullptr) return fail(TakeErrorMessage(error));
    return Wrap(env, module, flags);
  }
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return fail(std::strerror(e));
  }
  if (offset < 0 || st.st_size <= offset) {
    close(fd);
    return fail("shorter than its header");
  }
  void* map = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;  // before close(), which may set it
  close(fd);
  if (map == MAP_FAILED) return fail(std::strerror(map_errno));
  wasmtime_module_t* module = nullptr;
  // Wasmtime checks the header (engine version and configuration) before using the code, and
  // copies the code out: the mapping is not needed after.
  wasmtime_error_t* error = wasmtime_module_deserialize(AddonOf(env)->Engine(flags), static_cast<const uint8_t*>(map) + offset,
                                                        static_cast<size_t>(st.st_size - offset), &module);
  munmap(map, static_cast<size_t>(st.st_size));
  if (error != nullptr) return fail(TakeErrorMessage(error));
  return Wrap(env, module, flags);
}

Napi::Value WasmModule::Serialize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  wasm_byte_vec_t out;
  wasmtime_error_t* error = wasmtime_module_serialize(module_, &out);
  if (error != nullptr) throw MakeError(env, "WasmError", "serialize failed: " + TakeErrorMessage(error));
  Napi::Buffer<uint8_t> buf = Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<uint8_t*>(out.data), out.size);
  wasm_byte_vec_delete(&out);
  return buf;
}

Napi::Value WasmModule::Imports(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  wasm_importtype_vec_t vec;
  wasmtime_module_imports(module_, &vec);
  Napi::Array out = Napi::Array::New(env, vec.size);
  for (size_t i = 0; i < vec.size; i++) {
    const wasm_importtype_t* it = vec.data[i];
    out.Set(i, ExternTypeToJs(env, wasm_importtype_module(it), wasm_importtype_name(it), wasm_importtype_type(it)));
  }
  wasm_importtype_vec_delete(&vec);
  return out;
}

Napi::Value WasmModule::Exports(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  wasm_exporttype_vec_t vec;
  wasmtime_module_exports(module_, &vec);
  Napi::Array out = Napi::Array::New(env, vec.size);
  for (size_t i = 0; i < vec.size; i++) {
    const wasm_exporttype_t* et = vec.data[i];
    out.Set(i, ExternTypeToJs(env, nullptr, wasm_exporttype_name(et), wasm_exporttype_type(et)));
  }
  wasm_exporttype_vec_delete(&vec);
  return out;
}

Napi::Value WasmModule::Dispose(const Napi::CallbackInfo& info) {
  Close();
  return info.Env().Undefined();
}

}  // namespace hbr
