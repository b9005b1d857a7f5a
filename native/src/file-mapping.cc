// file-mapping.cc — read-only file mappings for snapshot reads.
//
// The file is mapped MAP_PRIVATE with write permission on the pages: JavaScript cannot mark
// an ArrayBuffer read-only, and a store into a PROT_READ page would kill the process with
// SIGSEGV. Private pages turn such a store into a copy that never reaches the file, so the
// file stays read-only in the sense that matters.
//
// close() detaches the ArrayBuffer (every view over it becomes length 0) before the memory
// goes, so JavaScript cannot hold a dangling mapping; a native write still reading the
// mapping pins it and the unmap waits for it (native-region.h).
//
// Where external buffers are refused (V8 sandbox) the file is read into an ordinary
// ArrayBuffer instead; close() detaches that too, so both behave alike.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "napi-util.h"
#include "native-region.h"
#include "parts.h"

namespace stratakv {
namespace {

// kMappingBytesMax bounds a mapped file: address space is plentiful, but a snapshot larger
// than this is not one we wrote.
constexpr uint64_t kMappingBytesMax = uint64_t{1} << 36;
// kCopyBytesMax bounds the copying fallback, which holds the whole file in memory.
constexpr uint64_t kCopyBytesMax = uint64_t{1} << 31;

class FileMapping : public Napi::ObjectWrap<FileMapping> {
 public:
  static Napi::Function DefineClass(Napi::Env env) {
    return ObjectWrap<FileMapping>::DefineClass(
        env, "FileMapping",
        {InstanceAccessor<&FileMapping::GetBuffer>("buffer"), InstanceAccessor<&FileMapping::GetExternal>("external"),
         InstanceMethod<&FileMapping::Close>("close")});
  }

  explicit FileMapping(const Napi::CallbackInfo& info) : ObjectWrap<FileMapping>(info) {}

  ~FileMapping() override {
    if (region_ != nullptr) RegionLetGo(region_);
  }

  // Adopt gives the handle its buffer; called once, right after construction.
  void Adopt(Napi::ArrayBuffer buffer, NativeRegion* region) {
    buffer_ = Napi::Persistent(buffer);
    region_ = region;
    if (region_ != nullptr) RegionHold(region_);
  }

 private:
  Napi::Value GetBuffer(const Napi::CallbackInfo& info) {
    if (closed_ || buffer_.IsEmpty()) return info.Env().Undefined();
    return buffer_.Value();
  }

  Napi::Value GetExternal(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), region_ != nullptr); }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (closed_) return info.Env().Undefined();  // closing twice is harmless, like fs close of a handle
    closed_ = true;
    if (!buffer_.IsEmpty()) {
      Napi::ArrayBuffer buffer = buffer_.Value();
      if (!buffer.IsDetached()) buffer.Detach();
      buffer_.Reset();
    }
    if (region_ != nullptr) {
      RegionDetached(info.Env(), region_);
      RegionLetGo(region_);
      region_ = nullptr;
    }
    return info.Env().Undefined();
  }

  Napi::Reference<Napi::ArrayBuffer> buffer_;
  NativeRegion* region_ = nullptr;
  bool closed_ = false;
};

// FdCloser closes a descriptor when the function it guards returns or throws.
struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) close(fd);
  }
};

Napi::ArrayBuffer CopyWholeFile(Napi::Env env, int fd, size_t length, const std::string& path) {
  if (length > kCopyBytesMax) throw ErrnoError(env, EFBIG, "read", path);  // too large to copy
  Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, length);
  uint8_t* data = static_cast<uint8_t*>(buffer.Data());
  size_t done = 0;
  while (done < length) {
    ssize_t count = pread(fd, data + done, length - done, static_cast<off_t>(done));
    if (count < 0 && errno == EINTR) continue;
    if (count < 0) throw ErrnoError(env, errno, "pread", path);
    if (count == 0) break;  // the file shrank meanwhile: the rest reads as zeros
    done += static_cast<size_t>(count);
  }
  return buffer;
}

// mapFile(path) -> FileMapping. Synchronous: open, fstat and mmap take microseconds on a
// local disk; the pages are read later, on first touch.
Napi::Value MapFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) ThrowInvalidArgument(env, "path must be a string");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  FdCloser file{open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (file.fd < 0) throw ErrnoError(env, errno, "open", path);
  struct stat status;
  if (fstat(file.fd, &status) != 0) throw ErrnoError(env, errno, "fstat", path);
  // What the file is, not how we were called, so these are system errors like mmap's own.
  if (!S_ISREG(status.st_mode)) throw ErrnoError(env, S_ISDIR(status.st_mode) ? EISDIR : ENODEV, "mmap", path);
  uint64_t length = static_cast<uint64_t>(status.st_size);
  if (length > kMappingBytesMax) throw ErrnoError(env, EFBIG, "mmap", path);

  AddonData* data = env.GetInstanceData<AddonData>();
  Napi::Object handle = data->file_mapping_constructor.New({});
  FileMapping* mapping = FileMapping::Unwrap(handle);
  if (length == 0) {
    mapping->Adopt(Napi::ArrayBuffer::New(env, 0), nullptr);
    return handle;
  }
  if (ExternalBuffersAllowed()) {
    void* memory = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE, file.fd, 0);
    if (memory == MAP_FAILED) throw ErrnoError(env, errno, "mmap", path);
    NativeRegion* region = RegionTrack(RegionKind::kMapping, static_cast<uint8_t*>(memory), length);
    napi_value buffer;
    if (RegionToArrayBuffer(env, region, &buffer)) {
      mapping->Adopt(Napi::ArrayBuffer(env, buffer), region);
      return handle;
    }
    RegionDiscard(region);
  }
  mapping->Adopt(CopyWholeFile(env, file.fd, length, path), nullptr);
  return handle;
}

}  // namespace

void InitFileMapping(Napi::Env env, Napi::Object exports) {
  AddonData* data = env.GetInstanceData<AddonData>();
  Napi::Function constructor = FileMapping::DefineClass(env);
  data->file_mapping_constructor = Napi::Persistent(constructor);
  exports.Set("FileMapping", constructor);
  exports.Set("mapFile", Napi::Function::New(env, MapFile, "mapFile"));
  exports.Set("mappingBytesMax", Napi::Number::New(env, static_cast<double>(kMappingBytesMax)));
}

}  // namespace stratakv
