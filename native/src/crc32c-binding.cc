// crc32c-binding.cc — the JavaScript face of crc32c.h. Synchronous: at the best kernel's
// speed a whole 64 MiB snapshot block costs a few milliseconds, less than a worker hop.
#include <napi.h>

#include "crc32c.h"
#include "napi-util.h"
#include "parts.h"

namespace stratakv {
namespace {

uint32_t GetSeed(const Napi::CallbackInfo& info, size_t index) {
  if (info.Length() <= index || info[index].IsUndefined()) return 0;
  return static_cast<uint32_t>(GetSafeInteger(info.Env(), info[index], "seed", 0xffffffffu));
}

// crc32c(data, seed?) with the best kernel.
Napi::Value Crc32cBinding(const Napi::CallbackInfo& info) {
  ByteView view = GetByteView(info.Env(), info[0], "data");
  return Napi::Number::New(info.Env(), Crc32c(GetSeed(info, 1), view.data, view.length));
}

// crc32cWith(name, data, seed?) runs one named kernel, so tests check every kernel this CPU has.
Napi::Value Crc32cWithBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) ThrowInvalidArgument(env, "implementation must be a string");
  std::string name = info[0].As<Napi::String>().Utf8Value();
  for (int index = 0; index < static_cast<int>(Crc32cImplementation::kCount); index++) {
    Crc32cImplementation implementation = static_cast<Crc32cImplementation>(index);
    if (name != Crc32cImplementationName(implementation)) continue;
    Crc32cKernel kernel = Crc32cKernelFor(implementation);
    if (kernel == nullptr) ThrowInvalidArgument(env, "this CPU cannot run CRC32C implementation " + name);
    ByteView view = GetByteView(env, info[1], "data");
    return Napi::Number::New(env, ~kernel(~GetSeed(info, 2), view.data, view.length));
  }
  ThrowInvalidArgument(env, "unknown CRC32C implementation " + name);
}

// crc32cImplementations() lists the kernels this CPU runs, slowest first.
Napi::Value Crc32cImplementationsBinding(const Napi::CallbackInfo& info) {
  Napi::Array names = Napi::Array::New(info.Env());
  for (int index = 0; index < static_cast<int>(Crc32cImplementation::kCount); index++) {
    Crc32cImplementation implementation = static_cast<Crc32cImplementation>(index);
    if (Crc32cKernelFor(implementation) == nullptr) continue;
    names.Set(names.Length(), Napi::String::New(info.Env(), Crc32cImplementationName(implementation)));
  }
  return names;
}

}  // namespace

void InitCrc32c(Napi::Env env, Napi::Object exports) {
  exports.Set("crc32c", Napi::Function::New(env, Crc32cBinding, "crc32c"));
  exports.Set("crc32cWith", Napi::Function::New(env, Crc32cWithBinding, "crc32cWith"));
  exports.Set("crc32cImplementations", Napi::Function::New(env, Crc32cImplementationsBinding, "crc32cImplementations"));
  exports.Set("crc32cBest", Napi::String::New(env, Crc32cImplementationName(Crc32cBest())));
}

}  // namespace stratakv
