// state-digest-binding.cc — the state digest's per-key hashes (src/storage/state-digest.ts)
// in one call: content = SHA-256(u32 LE key length | key | value)[0, 16), full =
// SHA-256(content | createRevision | modRevision | version | lease, u64 LE each)[0, 16), and
// the key's leaf (the top 16 bits of its CRC32c). The lease is any u64 (a BigInt), the other
// counters safe integers. The JavaScript version allocates a buffer per input and per digest
// and pays crypto's per-call set-up twice per key; apply() hashes every key written and every
// key overwritten, so that showed as most of the digest's cost.
// SHA-256 is OpenSSL's, the one Node is built with (its symbols are exported to addons).
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <napi.h>
#include <openssl/sha.h>

#include <cstdint>
#include <cstring>

#include "crc32c.h"
#include "napi-util.h"
#include "parts.h"

namespace stratakv {
namespace {

constexpr size_t kDigestBytes = 16;
constexpr uint64_t kSafeIntegerMax = 9007199254740991ull;

void PutU64(uint8_t* target, uint64_t value) {
  for (int byte = 0; byte < 8; byte++) target[byte] = static_cast<uint8_t>(value >> (8 * byte));
}

// stateKeyHashes(key, value, createRevision, modRevision, version, lease, out) writes full
// (16 bytes) then content (16 bytes) into out (32 bytes) and answers the key's leaf.
Napi::Value StateKeyHashesBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ByteView key = GetByteView(env, info[0], "key");
  ByteView value = GetByteView(env, info[1], "value");
  uint8_t counters[32];
  PutU64(counters, GetSafeInteger(env, info[2], "createRevision", kSafeIntegerMax));
  PutU64(counters + 8, GetSafeInteger(env, info[3], "modRevision", kSafeIntegerMax));
  PutU64(counters + 16, GetSafeInteger(env, info[4], "version", kSafeIntegerMax));
  // The lease id is a u64 (etcd's ids use the top bits): a BigInt, or a safe-integer Number.
  PutU64(counters + 24, GetUint64(env, info[5], "lease"));
  ByteView out = GetByteView(env, info[6], "out");
  if (out.length != 2 * kDigestBytes) ThrowInvalidArgument(env, "out must be 32 bytes");
  if (key.length > 0xffffffffu) ThrowInvalidArgument(env, "key is too long");

  uint8_t length[4];
  const uint32_t keyLength = static_cast<uint32_t>(key.length);
  for (int byte = 0; byte < 4; byte++) length[byte] = static_cast<uint8_t>(keyLength >> (8 * byte));
  uint8_t content[SHA256_DIGEST_LENGTH];
  SHA256_CTX context;
  SHA256_Init(&context);
  SHA256_Update(&context, length, sizeof(length));
  SHA256_Update(&context, key.data, key.length);
  SHA256_Update(&context, value.data, value.length);
  SHA256_Final(content, &context);

  uint8_t input[kDigestBytes + sizeof(counters)];
  std::memcpy(input, content, kDigestBytes);
  std::memcpy(input + kDigestBytes, counters, sizeof(counters));
  uint8_t full[SHA256_DIGEST_LENGTH];
  SHA256(input, sizeof(input), full);

  uint8_t* target = out.data;
  std::memcpy(target, full, kDigestBytes);
  std::memcpy(target + kDigestBytes, content, kDigestBytes);
  const uint32_t crc = Crc32c(0, key.data, key.length);
  return Napi::Number::New(env, crc >> 16);
}

}  // namespace

void InitStateDigest(Napi::Env env, Napi::Object exports) {
  exports.Set("stateKeyHashes", Napi::Function::New(env, StateKeyHashesBinding, "stateKeyHashes"));
}

}  // namespace stratakv
