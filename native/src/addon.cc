// addon.cc — the module entry point of stratakv_native: one Node-API module whose parts each
// register their functions. Loaded only through src/native/addon.ts.
#include <napi.h>

#include "parts.h"

namespace stratakv {
namespace {

Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new AddonData());
  InitCrc32c(env, exports);
  InitAlignedBuffer(env, exports);
  InitFileMapping(env, exports);
  InitAlignedFile(env, exports);
  InitStateDigest(env, exports);
  // abiVersion lets the wrapper refuse a stale build whose functions differ from its own.
  // 3: stateKeyHashes takes the lease as a BigInt.
  exports.Set("abiVersion", Napi::Number::New(env, 3));
  return exports;
}

}  // namespace
}  // namespace stratakv

// NODE_API_MODULE pastes the function name into an identifier, so it must be unqualified.
static Napi::Object Init(Napi::Env env, Napi::Object exports) { return stratakv::InitAddon(env, exports); }

NODE_API_MODULE(stratakv_native, Init)
