// napi-util.cc — argument reading and error construction shared by the addon's parts.
#include "napi-util.h"

#include <cerrno>
#include <cmath>
#include <cstring>

namespace stratakv {

namespace {

// kSafeIntegerMax is Number.MAX_SAFE_INTEGER (2^53 - 1).
constexpr uint64_t kSafeIntegerMax = 9007199254740991ull;

}  // namespace

void ThrowInvalidArgument(Napi::Env env, const std::string& message) {
  Napi::TypeError error = Napi::TypeError::New(env, message);
  error.Set("code", Napi::String::New(env, kInvalidArgumentCode));
  throw error;
}

namespace {

// ErrnoName gives the symbolic name Node users know ("ENOENT"); glibc >= 2.32 has a table.
std::string ErrnoName(int error_number) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char* name = strerrorname_np(error_number);
  if (name != nullptr) return name;
#endif
  return "E" + std::to_string(error_number);
}

}  // namespace

Napi::Error ErrnoError(Napi::Env env, int error_number, const std::string& syscall, const std::string& path) {
  std::string message = ErrnoName(error_number) + ": " + std::strerror(error_number) + ", " + syscall;
  if (!path.empty()) message += " '" + path + "'";
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, ErrnoName(error_number)));
  error.Set("errno", Napi::Number::New(env, -error_number));
  error.Set("syscall", Napi::String::New(env, syscall));
  if (!path.empty()) error.Set("path", Napi::String::New(env, path));
  return error;
}

ByteView GetByteView(Napi::Env env, Napi::Value value, const char* what) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    ThrowInvalidArgument(env, std::string(what) + " must be a Uint8Array");
  }
  Napi::Uint8Array array = value.As<Napi::Uint8Array>();
  return ByteView{array.Data(), array.ByteLength()};
}

uint64_t GetSafeInteger(Napi::Env env, Napi::Value value, const char* what, uint64_t maximum) {
  if (!value.IsNumber()) ThrowInvalidArgument(env, std::string(what) + " must be a number");
  double number = value.As<Napi::Number>().DoubleValue();
  if (!(number >= 0) || std::floor(number) != number || number > static_cast<double>(maximum)) {
    ThrowInvalidArgument(env, std::string(what) + " must be an integer in [0, " + std::to_string(maximum) + "]");
  }
  return static_cast<uint64_t>(number);
}

uint64_t GetUint64(Napi::Env env, Napi::Value value, const char* what) {
  if (value.IsBigInt()) {
    bool lossless = false;
    // napi_get_value_bigint_uint64 answers the value modulo 2^64 and says whether that lost
    // anything: a negative BigInt, or one of 2^64 or more, is not lossless.
    uint64_t result = value.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) ThrowInvalidArgument(env, std::string(what) + " must be a BigInt in [0, 2^64)");
    return result;
  }
  if (value.IsNumber()) return GetSafeInteger(env, value, what, kSafeIntegerMax);
  ThrowInvalidArgument(env, std::string(what) + " must be a BigInt or a number");
}

}  // namespace stratakv
