// napi-util.h — small helpers shared by the addon's parts: argument reading and the errors
// the TypeScript wrapper turns into StrataError (it matches the `code` property).
#ifndef STRATAKV_NATIVE_NAPI_UTIL_H_
#define STRATAKV_NATIVE_NAPI_UTIL_H_

#include <napi.h>

#include <cstdint>
#include <string>

namespace stratakv {

// kInvalidArgumentCode marks an argument the addon refused; the wrapper checks first, so
// reaching it means a caller bypassed the wrapper.
inline constexpr const char* kInvalidArgumentCode = "ERR_STRATAKV_INVALID_ARGUMENT";

// ThrowInvalidArgument throws a TypeError carrying kInvalidArgumentCode.
[[noreturn]] void ThrowInvalidArgument(Napi::Env env, const std::string& message);

// ErrnoError builds an Error like Node's own system errors: code ("ENOENT"), errno, syscall
// and path, so the wrapper can report which call failed on which file.
Napi::Error ErrnoError(Napi::Env env, int error_number, const std::string& syscall, const std::string& path);

// ByteView is the memory behind a Uint8Array argument.
struct ByteView {
  uint8_t* data;
  size_t length;
};

// GetByteView reads a Uint8Array argument or throws kInvalidArgumentCode.
ByteView GetByteView(Napi::Env env, Napi::Value value, const char* what);

// GetSafeInteger reads a non-negative integer argument no larger than `maximum`.
uint64_t GetSafeInteger(Napi::Env env, Napi::Value value, const char* what, uint64_t maximum);

// GetUint64 reads a u64 argument exactly: a BigInt in [0, 2^64), or a Number that is a safe
// integer >= 0. A negative or wider BigInt, or any other Number, throws kInvalidArgumentCode.
uint64_t GetUint64(Napi::Env env, Napi::Value value, const char* what);

}  // namespace stratakv

#endif  // STRATAKV_NATIVE_NAPI_UTIL_H_
