// parts.h — each part of the addon adds its functions to the exports object.
#ifndef STRATAKV_NATIVE_PARTS_H_
#define STRATAKV_NATIVE_PARTS_H_

#include <napi.h>

namespace stratakv {

// InitCrc32c adds crc32c, crc32cWith, crc32cImplementations and crc32cBest.
void InitCrc32c(Napi::Env env, Napi::Object exports);
// InitAlignedBuffer adds allocateAligned, alignmentOffset, pageBytes, regionStats and
// setExternalBuffersAllowed.
void InitAlignedBuffer(Napi::Env env, Napi::Object exports);
// InitFileMapping adds mapFile and the FileMapping class.
void InitFileMapping(Napi::Env env, Napi::Object exports);
// InitAlignedFile adds openFile, syncDirectory, renameAndSyncDirectory and the FileHandle class.
void InitAlignedFile(Napi::Env env, Napi::Object exports);

// InitStateDigest adds stateKeyHashes (the state digest's per-key hashes).
void InitStateDigest(Napi::Env env, Napi::Object exports);

// AddonData holds per-environment constructors (workers and threads each get their own).
struct AddonData {
  Napi::FunctionReference file_mapping_constructor;
  Napi::FunctionReference file_handle_constructor;
};

}  // namespace stratakv

#endif  // STRATAKV_NATIVE_PARTS_H_
