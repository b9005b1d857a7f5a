// native-region.h — memory the addon lends to JavaScript (page-aligned buffers and file
// mappings) and the rule that frees it.
//
// A region is released twice over: once JavaScript can no longer reach it (the ArrayBuffer's
// finalizer ran, or close() detached it) and once no native I/O is using it (pins == 0).
// The memory is freed only when both hold, so neither a garbage collection nor an explicit
// close can pull memory from under a write running on a worker thread.
// Every function here runs on the JavaScript thread, so no locking is needed.
#ifndef STRATAKV_NATIVE_NATIVE_REGION_H_
#define STRATAKV_NATIVE_NATIVE_REGION_H_

#include <napi.h>

#include <cstddef>
#include <cstdint>

namespace stratakv {

// RegionKind says how a region's memory is returned.
enum class RegionKind { kAligned, kMapping };

// NativeRegion is one block of memory lent to JavaScript as an external ArrayBuffer.
struct NativeRegion {
  RegionKind kind;
  uint8_t* base;
  size_t length;  // bytes visible to JavaScript
  size_t pins;    // native operations using the memory right now
  size_t holders;  // native objects (a mapping handle) that keep a pointer to this struct
  bool reachable_from_javascript;
  bool finalized;  // the ArrayBuffer finalizer ran: no more callbacks will name this region
  bool memory_returned;
};

// RegionTrack registers memory and returns the region (owned by the registry).
NativeRegion* RegionTrack(RegionKind kind, uint8_t* base, size_t length);

// RegionToArrayBuffer hands the region to JavaScript as an external ArrayBuffer with a
// finalizer and external-memory accounting. Returns false when the runtime refuses external
// buffers (V8 sandbox) — the caller then frees the region with RegionDiscard and copies.
// On any other failure it discards the region itself and throws.
bool RegionToArrayBuffer(Napi::Env env, NativeRegion* region, napi_value* result);

// RegionDiscard returns the memory of a region JavaScript never saw and forgets it.
void RegionDiscard(NativeRegion* region);

// RegionDetached records that close() detached the region's ArrayBuffer.
void RegionDetached(napi_env env, NativeRegion* region);

// RegionHold and RegionLetGo bracket a native object's pointer to the region, so the struct
// outlives a finalizer that runs inside close()'s detach.
void RegionHold(NativeRegion* region);
void RegionLetGo(NativeRegion* region);

// RegionPin finds the region holding [data, data + length) and pins it, or returns nullptr
// (plain JavaScript memory, kept alive by the caller's reference instead).
NativeRegion* RegionPin(const uint8_t* data, size_t length);

// RegionUnpin ends a pin; the memory goes back now if JavaScript let go meanwhile.
void RegionUnpin(NativeRegion* region);

// RegionStats counts the regions whose memory is still held.
struct RegionStats {
  size_t regions;
  size_t bytes;
  size_t pinned;
};
RegionStats GetRegionStats();

// ExternalBuffersAllowed tells whether to lend memory (true) or copy (false). Tests turn it
// off to run the V8-sandbox fallback on a Node that has no sandbox.
bool ExternalBuffersAllowed();
void SetExternalBuffersAllowed(bool allowed);

}  // namespace stratakv

#endif  // STRATAKV_NATIVE_NATIVE_REGION_H_
