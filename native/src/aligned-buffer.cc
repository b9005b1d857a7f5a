// aligned-buffer.cc — page-aligned buffers for O_DIRECT I/O, lent to JavaScript as external
// ArrayBuffers. Where the runtime refuses external buffers (a V8 sandbox) the caller gets an
// ordinary ArrayBuffer instead, marked external: false, rather than a crash.
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "aligned-file.h"
#include "napi-util.h"
#include "native-region.h"
#include "parts.h"

namespace stratakv {
namespace {

// kAlignedBufferBytesMax bounds one allocation: snapshot blocks are far smaller, and a
// larger request is a bug better caught here than by the OOM killer.
constexpr uint64_t kAlignedBufferBytesMax = uint64_t{1} << 30;

size_t Alignment() {
  static const size_t alignment = std::max<size_t>(static_cast<size_t>(sysconf(_SC_PAGESIZE)), kDirectIoAlignment);
  return alignment;
}

Napi::Object Described(Napi::Env env, Napi::Value buffer, bool external) {
  Napi::Object result = Napi::Object::New(env);
  result.Set("buffer", buffer);
  result.Set("external", Napi::Boolean::New(env, external));
  return result;
}

// allocateAligned(byteLength) -> { buffer: ArrayBuffer, external: boolean }, zero-filled so
// JavaScript never reads what another allocation left behind.
Napi::Value AllocateAligned(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t length = static_cast<size_t>(GetSafeInteger(env, info[0], "byteLength", kAlignedBufferBytesMax));
  if (length == 0 || !ExternalBuffersAllowed()) return Described(env, Napi::ArrayBuffer::New(env, length), false);
  size_t alignment = Alignment();
  size_t rounded = (length + alignment - 1) / alignment * alignment;
  void* memory = nullptr;
  int error_number = posix_memalign(&memory, alignment, rounded);
  if (error_number != 0) throw ErrnoError(env, error_number, "posix_memalign", "");
  std::memset(memory, 0, rounded);
  NativeRegion* region = RegionTrack(RegionKind::kAligned, static_cast<uint8_t*>(memory), length);
  napi_value buffer;
  if (!RegionToArrayBuffer(env, region, &buffer)) {
    RegionDiscard(region);
    return Described(env, Napi::ArrayBuffer::New(env, length), false);
  }
  return Described(env, Napi::Value(env, buffer), true);
}

// alignmentOffset(view, alignment) is the view's address modulo alignment (tests prove
// page alignment with it without the addon handing out raw addresses).
Napi::Value AlignmentOffset(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ByteView view = GetByteView(env, info[0], "view");
  uint64_t alignment = GetSafeInteger(env, info[1], "alignment", uint64_t{1} << 30);
  if (alignment == 0) ThrowInvalidArgument(env, "alignment must be positive");
  return Napi::Number::New(env, static_cast<double>(reinterpret_cast<uintptr_t>(view.data) % alignment));
}

// regionStats() -> { regions, bytes, pinned }: memory the addon still holds for JavaScript.
Napi::Value RegionStatsBinding(const Napi::CallbackInfo& info) {
  RegionStats stats = GetRegionStats();
  Napi::Object result = Napi::Object::New(info.Env());
  result.Set("regions", Napi::Number::New(info.Env(), static_cast<double>(stats.regions)));
  result.Set("bytes", Napi::Number::New(info.Env(), static_cast<double>(stats.bytes)));
  result.Set("pinned", Napi::Number::New(info.Env(), static_cast<double>(stats.pinned)));
  return result;
}

// setExternalBuffersAllowed(allowed) switches to the copying fallback, for tests.
Napi::Value SetExternalBuffersAllowedBinding(const Napi::CallbackInfo& info) {
  if (!info[0].IsBoolean()) ThrowInvalidArgument(info.Env(), "allowed must be a boolean");
  SetExternalBuffersAllowed(info[0].As<Napi::Boolean>().Value());
  return info.Env().Undefined();
}

}  // namespace

void InitAlignedBuffer(Napi::Env env, Napi::Object exports) {
  exports.Set("allocateAligned", Napi::Function::New(env, AllocateAligned, "allocateAligned"));
  exports.Set("alignmentOffset", Napi::Function::New(env, AlignmentOffset, "alignmentOffset"));
  exports.Set("regionStats", Napi::Function::New(env, RegionStatsBinding, "regionStats"));
  exports.Set("setExternalBuffersAllowed",
              Napi::Function::New(env, SetExternalBuffersAllowedBinding, "setExternalBuffersAllowed"));
  exports.Set("pageBytes", Napi::Number::New(env, static_cast<double>(Alignment())));
  exports.Set("alignedBufferBytesMax", Napi::Number::New(env, static_cast<double>(kAlignedBufferBytesMax)));
}

}  // namespace stratakv
