// aligned-file.cc — files written and read in aligned blocks, off the JavaScript thread.
//
// A file opened with direct: true asks for O_DIRECT (fcntl after open, so a filesystem that
// refuses it — tmpfs, some overlays — leaves the descriptor usable as buffered I/O; the
// handle's `direct` says which was used). Every call runs as an async worker on the libuv
// pool, so the event loop keeps serving while a snapshot is written; positional I/O lets
// several blocks be in flight at once.
//
// A handle never closes its descriptor while an operation on it is running (close() refuses;
// the wrapper waits first), because a reused descriptor number would send the late write to
// another file.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "aligned-file.h"
#include "napi-util.h"
#include "native-region.h"
#include "parts.h"

namespace stratakv {
namespace {

// kBusyCode marks close() called while operations are running (a wrapper bug).
constexpr const char* kBusyCode = "ERR_STRATAKV_BUSY";
// kClosedCode marks an operation on a closed handle (a wrapper bug).
constexpr const char* kClosedCode = "ERR_STRATAKV_CLOSED";
// JavaScript numbers are exact up to 2^53; offsets beyond are refused, not rounded.
constexpr uint64_t kOffsetMax = (uint64_t{1} << 53) - 1;

[[noreturn]] void ThrowCoded(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  throw error;
}

// PromiseWorker is an async worker settled through a promise with Node-style system errors.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, const char* name, std::string path)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)), path_(std::move(path)) {}

  Napi::Promise Start() {
    Napi::Promise promise = deferred_.Promise();
    Queue();  // the worker deletes itself after OnOK/OnError
    return promise;
  }

 protected:
  void Fail(int error_number, const char* syscall) {
    error_number_ = error_number;
    syscall_ = syscall;
    SetError(syscall);
  }

  // Settle runs on the JavaScript thread before the promise settles, success or not.
  virtual void Settle() {}
  virtual Napi::Value Result() { return Env().Undefined(); }

  const std::string& path() const { return path_; }

 private:
  void OnOK() override {
    Settle();
    deferred_.Resolve(Result());
  }

  void OnError(const Napi::Error& /*error*/) override {
    Settle();
    deferred_.Reject(ErrnoError(Env(), error_number_, syscall_, path_).Value());
  }

  Napi::Promise::Deferred deferred_;
  std::string path_;
  int error_number_ = 0;
  std::string syscall_;
};

class FileHandle : public Napi::ObjectWrap<FileHandle> {
 public:
  static Napi::Function DefineClass(Napi::Env env) {
    return ObjectWrap<FileHandle>::DefineClass(
        env, "FileHandle",
        {InstanceAccessor<&FileHandle::GetDirect>("direct"), InstanceAccessor<&FileHandle::GetClosed>("closed"),
         InstanceAccessor<&FileHandle::GetInFlight>("inFlight"), InstanceMethod<&FileHandle::WriteAt>("writeAt"),
         InstanceMethod<&FileHandle::ReadAt>("readAt"), InstanceMethod<&FileHandle::Datasync>("datasync"),
         InstanceMethod<&FileHandle::Truncate>("truncate"), InstanceMethod<&FileHandle::Allocate>("allocate"),
         InstanceMethod<&FileHandle::Close>("close")});
  }

  explicit FileHandle(const Napi::CallbackInfo& info) : ObjectWrap<FileHandle>(info) {}

  ~FileHandle() override {
    // Dropped without close(): no operation can be running (each holds a reference to us).
    if (fd_ >= 0) close(fd_);
  }

  void Adopt(int fd, bool direct, std::string path) {
    fd_ = fd;
    direct_ = direct;
    path_ = std::move(path);
  }

  int fd() const { return fd_; }
  bool direct() const { return direct_; }
  const std::string& path() const { return path_; }
  void Begin() { in_flight_++; }
  void End() { in_flight_--; }

 private:
  Napi::Value GetDirect(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), direct_); }
  Napi::Value GetClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), fd_ < 0); }
  Napi::Value GetInFlight(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(in_flight_));
  }

  void CheckOpen(Napi::Env env) {
    if (fd_ < 0) ThrowCoded(env, kClosedCode, "file handle is closed: " + path_);
  }

  Napi::Value WriteAt(const Napi::CallbackInfo& info);
  Napi::Value ReadAt(const Napi::CallbackInfo& info);
  Napi::Value Datasync(const Napi::CallbackInfo& info);
  Napi::Value Truncate(const Napi::CallbackInfo& info);
  Napi::Value Allocate(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  int fd_ = -1;
  bool direct_ = false;
  std::string path_;
  size_t in_flight_ = 0;  // Invariant: fd_ stays open while in_flight_ > 0
};

// HandleWorker is an operation on an open handle: it keeps the handle (and so its
// descriptor) alive and counted as busy until it settles.
class HandleWorker : public PromiseWorker {
 public:
  HandleWorker(Napi::Env env, const char* name, FileHandle* handle)
      : PromiseWorker(env, name, handle->path()), handle_(handle), fd_(handle->fd()) {
    handle_reference_ = Napi::Persistent(handle->Value());
    handle_->Begin();
  }

 protected:
  void Settle() override { handle_->End(); }
  int fd() const { return fd_; }
  FileHandle* handle() const { return handle_; }

 private:
  FileHandle* handle_;
  Napi::ObjectReference handle_reference_;
  int fd_;
};

// BlockWorker moves bytes between a Uint8Array and the file at an offset.
class BlockWorker : public HandleWorker {
 public:
  BlockWorker(Napi::Env env, const char* name, FileHandle* handle, Napi::Value view, ByteView bytes, uint64_t offset)
      : HandleWorker(env, name, handle), bytes_(bytes), offset_(offset) {
    view_reference_ = Napi::Persistent(view.As<Napi::Object>());
    region_ = RegionPin(bytes.data, bytes.length);
  }

 protected:
  void Settle() override {
    if (region_ != nullptr) RegionUnpin(region_);
    HandleWorker::Settle();
  }
  Napi::Value Result() override { return Napi::Number::New(Env(), static_cast<double>(done_)); }

  // BounceBuffer gives O_DIRECT an aligned copy when the caller's memory is not aligned
  // (the copying fallback of aligned buffers can hand out such memory).
  uint8_t* BounceBuffer() {
    if (!handle()->direct() || reinterpret_cast<uintptr_t>(bytes_.data) % kDirectIoAlignment == 0) return nullptr;
    void* memory = nullptr;
    if (posix_memalign(&memory, kDirectIoAlignment, bytes_.length == 0 ? kDirectIoAlignment : bytes_.length) != 0) {
      return nullptr;
    }
    return static_cast<uint8_t*>(memory);
  }

  ByteView bytes_;
  uint64_t offset_;
  size_t done_ = 0;

 private:
  Napi::ObjectReference view_reference_;
  NativeRegion* region_ = nullptr;
};

class WriteWorker : public BlockWorker {
 public:
  using BlockWorker::BlockWorker;

 private:
  void Execute() override {
    uint8_t* bounce = BounceBuffer();
    const uint8_t* source = bytes_.data;
    if (bounce != nullptr) {
      std::memcpy(bounce, bytes_.data, bytes_.length);
      source = bounce;
    }
    while (done_ < bytes_.length) {
      ssize_t count = pwrite(fd(), source + done_, bytes_.length - done_, static_cast<off_t>(offset_ + done_));
      if (count < 0 && errno == EINTR) continue;
      if (count < 0) {
        Fail(errno, "pwrite");
        break;
      }
      if (count == 0) {
        Fail(EIO, "pwrite");  // no progress and no error: the device gave up
        break;
      }
      done_ += static_cast<size_t>(count);
    }
    std::free(bounce);
  }
};

class ReadWorker : public BlockWorker {
 public:
  using BlockWorker::BlockWorker;

 private:
  void Execute() override {
    uint8_t* bounce = BounceBuffer();
    uint8_t* target = bounce != nullptr ? bounce : bytes_.data;
    while (done_ < bytes_.length) {
      ssize_t count = pread(fd(), target + done_, bytes_.length - done_, static_cast<off_t>(offset_ + done_));
      if (count < 0 && errno == EINTR) continue;
      if (count < 0) {
        Fail(errno, "pread");
        break;
      }
      if (count == 0) break;  // end of file: the result says how much was read
      done_ += static_cast<size_t>(count);
    }
    if (bounce != nullptr) std::memcpy(bytes_.data, bounce, done_);
    std::free(bounce);
  }
};

class DatasyncWorker : public HandleWorker {
 public:
  using HandleWorker::HandleWorker;

 private:
  void Execute() override {
    while (fdatasync(fd()) != 0) {
      if (errno != EINTR) {
        Fail(errno, "fdatasync");
        return;
      }
    }
  }
};

class TruncateWorker : public HandleWorker {
 public:
  TruncateWorker(Napi::Env env, FileHandle* handle, uint64_t length)
      : HandleWorker(env, "stratakv.truncate", handle), length_(length) {}

 private:
  void Execute() override {
    while (ftruncate(fd(), static_cast<off_t>(length_)) != 0) {
      if (errno != EINTR) {
        Fail(errno, "ftruncate");
        return;
      }
    }
  }
  uint64_t length_;
};

class AllocateWorker : public HandleWorker {
 public:
  AllocateWorker(Napi::Env env, FileHandle* handle, uint64_t length)
      : HandleWorker(env, "stratakv.allocate", handle), length_(length) {}

 private:
  void Execute() override {
    // fallocate(2), not posix_fallocate: where the filesystem cannot preallocate, glibc's
    // emulation would write every block, so the call reports "not done" instead.
    while (fallocate(fd(), 0, 0, static_cast<off_t>(length_)) != 0) {
      if (errno == EOPNOTSUPP) return;
      if (errno != EINTR) {
        Fail(errno, "fallocate");
        return;
      }
    }
    allocated_ = true;
  }
  Napi::Value Result() override { return Napi::Boolean::New(Env(), allocated_); }
  uint64_t length_;
  bool allocated_ = false;
};

// CloseWorker closes a descriptor the handle already gave up, so no new operation can use it.
class CloseWorker : public PromiseWorker {
 public:
  CloseWorker(Napi::Env env, int fd, std::string path) : PromiseWorker(env, "stratakv.close", std::move(path)), fd_(fd) {}

 private:
  void Execute() override {
    // Linux releases the descriptor even when close reports an error, so it is never retried.
    if (close(fd_) != 0 && errno != EINTR) Fail(errno, "close");
  }
  int fd_;
};

// BlockArguments reads (view, offset) and applies the block rule O_DIRECT imposes.
ByteView BlockArguments(const Napi::CallbackInfo& info, bool direct, const char* what, uint64_t* offset) {
  Napi::Env env = info.Env();
  ByteView bytes = GetByteView(env, info[0], what);
  *offset = GetSafeInteger(env, info[1], "offset", kOffsetMax);
  if (bytes.length > kIoBytesMax) ThrowInvalidArgument(env, std::string(what) + " is larger than one call may move");
  if (direct && (*offset % kDirectIoAlignment != 0 || bytes.length % kDirectIoAlignment != 0)) {
    ThrowInvalidArgument(env, "O_DIRECT needs offset and length in whole 4096-byte blocks");
  }
  return bytes;
}

Napi::Value FileHandle::WriteAt(const Napi::CallbackInfo& info) {
  CheckOpen(info.Env());
  uint64_t offset;
  ByteView bytes = BlockArguments(info, direct_, "data", &offset);
  return (new WriteWorker(info.Env(), "stratakv.writeAt", this, info[0], bytes, offset))->Start();
}

Napi::Value FileHandle::ReadAt(const Napi::CallbackInfo& info) {
  CheckOpen(info.Env());
  uint64_t offset;
  ByteView bytes = BlockArguments(info, direct_, "target", &offset);
  return (new ReadWorker(info.Env(), "stratakv.readAt", this, info[0], bytes, offset))->Start();
}

Napi::Value FileHandle::Datasync(const Napi::CallbackInfo& info) {
  CheckOpen(info.Env());
  return (new DatasyncWorker(info.Env(), "stratakv.datasync", this))->Start();
}

Napi::Value FileHandle::Truncate(const Napi::CallbackInfo& info) {
  CheckOpen(info.Env());
  uint64_t length = GetSafeInteger(info.Env(), info[0], "length", kOffsetMax);
  return (new TruncateWorker(info.Env(), this, length))->Start();
}

Napi::Value FileHandle::Allocate(const Napi::CallbackInfo& info) {
  CheckOpen(info.Env());
  uint64_t length = GetSafeInteger(info.Env(), info[0], "length", kOffsetMax);
  return (new AllocateWorker(info.Env(), this, length))->Start();
}

Napi::Value FileHandle::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  if (in_flight_ != 0) ThrowCoded(env, kBusyCode, "file handle has operations running: " + path_);
  int fd = fd_;
  fd_ = -1;
  return (new CloseWorker(env, fd, path_))->Start();
}

struct OpenOptions {
  bool write = false;
  bool create = false;
  bool exclusive = false;
  bool truncate = false;
  bool direct = false;
};

class OpenWorker : public PromiseWorker {
 public:
  OpenWorker(Napi::Env env, std::string path, OpenOptions options)
      : PromiseWorker(env, "stratakv.openFile", std::move(path)), options_(options) {}

  ~OpenWorker() override {
    if (fd_ >= 0) close(fd_);  // opened, but the handle was never made: do not leak it
  }

 private:
  void Execute() override {
    int flags = O_CLOEXEC | (options_.write ? O_RDWR : O_RDONLY);
    if (options_.create) flags |= O_CREAT;
    if (options_.exclusive) flags |= O_EXCL;
    if (options_.truncate) flags |= O_TRUNC;
    do {
      fd_ = open(path().c_str(), flags, 0644);
    } while (fd_ < 0 && errno == EINTR);
    if (fd_ < 0) {
      Fail(errno, "open");
      return;
    }
    if (!options_.direct) return;
    // O_DIRECT through fcntl: a filesystem without it says EINVAL and the descriptor stays
    // buffered, without a second open that could race with O_CREAT | O_EXCL.
    int current = fcntl(fd_, F_GETFL);
    direct_ = current >= 0 && fcntl(fd_, F_SETFL, current | O_DIRECT) == 0;
  }

  Napi::Value Result() override {
    AddonData* data = Env().GetInstanceData<AddonData>();
    Napi::Object object = data->file_handle_constructor.New({});
    FileHandle::Unwrap(object)->Adopt(fd_, direct_, path());
    fd_ = -1;
    return object;
  }

  OpenOptions options_;
  int fd_ = -1;
  bool direct_ = false;
};

// SyncDirectory makes a directory's entries (a rename, a new file) durable.
int SyncDirectory(const std::string& directory, const char** syscall) {
  int fd;
  do {
    fd = open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    *syscall = "open";
    return errno;
  }
  int result = 0;
  while (fsync(fd) != 0) {
    if (errno != EINTR) {
      *syscall = "fsync";
      result = errno;
      break;
    }
  }
  close(fd);
  return result;
}

class DirectoryWorker : public PromiseWorker {
 public:
  DirectoryWorker(Napi::Env env, std::string rename_from, std::string rename_to, std::string directory)
      : PromiseWorker(env, "stratakv.directory", directory),
        rename_from_(std::move(rename_from)),
        rename_to_(std::move(rename_to)),
        directory_(std::move(directory)) {}

 private:
  void Execute() override {
    if (!rename_from_.empty() && rename(rename_from_.c_str(), rename_to_.c_str()) != 0) {
      Fail(errno, "rename");
      return;
    }
    const char* syscall = "";
    int error_number = SyncDirectory(directory_, &syscall);
    if (error_number != 0) Fail(error_number, syscall);
  }

  std::string rename_from_;
  std::string rename_to_;
  std::string directory_;
};

std::string GetPath(Napi::Env env, Napi::Value value, const char* what) {
  if (!value.IsString()) ThrowInvalidArgument(env, std::string(what) + " must be a string");
  std::string path = value.As<Napi::String>().Utf8Value();
  if (path.empty() || path.find('\0') != std::string::npos) ThrowInvalidArgument(env, std::string(what) + " is not a path");
  return path;
}

bool GetFlag(Napi::Object options, const char* name) {
  Napi::Value value = options.Get(name);
  return value.IsBoolean() && value.As<Napi::Boolean>().Value();
}

// openFile(path, { write, create, exclusive, truncate, direct }) -> Promise<FileHandle>
Napi::Value OpenFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = GetPath(env, info[0], "path");
  if (!info[1].IsObject()) ThrowInvalidArgument(env, "options must be an object");
  Napi::Object object = info[1].As<Napi::Object>();
  OpenOptions options;
  options.write = GetFlag(object, "write");
  options.create = GetFlag(object, "create");
  options.exclusive = GetFlag(object, "exclusive");
  options.truncate = GetFlag(object, "truncate");
  options.direct = GetFlag(object, "direct");
  return (new OpenWorker(env, path, options))->Start();
}

// syncDirectory(path) -> Promise<void>: fsync of the directory itself.
Napi::Value SyncDirectoryBinding(const Napi::CallbackInfo& info) {
  std::string directory = GetPath(info.Env(), info[0], "directory");
  return (new DirectoryWorker(info.Env(), "", "", directory))->Start();
}

// renameAndSyncDirectory(from, to, directory) -> Promise<void>: rename(2), then fsync of the
// directory holding `to`, so the new name survives a power cut.
Napi::Value RenameAndSyncDirectory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string from = GetPath(env, info[0], "from");
  std::string to = GetPath(env, info[1], "to");
  std::string directory = GetPath(env, info[2], "directory");
  return (new DirectoryWorker(env, from, to, directory))->Start();
}

}  // namespace

void InitAlignedFile(Napi::Env env, Napi::Object exports) {
  AddonData* data = env.GetInstanceData<AddonData>();
  Napi::Function constructor = FileHandle::DefineClass(env);
  data->file_handle_constructor = Napi::Persistent(constructor);
  exports.Set("FileHandle", constructor);
  exports.Set("openFile", Napi::Function::New(env, OpenFile, "openFile"));
  exports.Set("syncDirectory", Napi::Function::New(env, SyncDirectoryBinding, "syncDirectory"));
  exports.Set("renameAndSyncDirectory", Napi::Function::New(env, RenameAndSyncDirectory, "renameAndSyncDirectory"));
  exports.Set("directIoAlignment", Napi::Number::New(env, static_cast<double>(kDirectIoAlignment)));
  exports.Set("ioBytesMax", Napi::Number::New(env, static_cast<double>(kIoBytesMax)));
}

}  // namespace stratakv
