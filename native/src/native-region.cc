// native-region.cc — the registry of memory lent to JavaScript; see native-region.h.
#include "native-region.h"

#include <sys/mman.h>

#include <cstdlib>
#include <map>

namespace stratakv {
namespace {

// Keyed by base address so RegionPin finds the region holding a pointer in O(log n).
std::map<uintptr_t, NativeRegion*>& HeldRegions() {
  static std::map<uintptr_t, NativeRegion*> regions;
  return regions;
}

bool external_buffers_allowed = true;

void ReturnMemoryIfFree(NativeRegion* region) {
  if (region->memory_returned || region->reachable_from_javascript || region->pins != 0) return;
  HeldRegions().erase(reinterpret_cast<uintptr_t>(region->base));
  if (region->kind == RegionKind::kMapping) {
    if (region->length != 0) munmap(region->base, region->length);
  } else {
    std::free(region->base);
  }
  region->memory_returned = true;
}

void DeleteIfDone(NativeRegion* region) {
  if (region->finalized && region->memory_returned && region->holders == 0) delete region;
}

void Unreachable(napi_env env, NativeRegion* region) {
  if (!region->reachable_from_javascript) return;
  region->reachable_from_javascript = false;
  int64_t unused;
  napi_adjust_external_memory(env, -static_cast<int64_t>(region->length), &unused);
}

void FinalizeRegion(napi_env env, void* /*data*/, void* hint) {
  NativeRegion* region = static_cast<NativeRegion*>(hint);
  Unreachable(env, region);
  region->finalized = true;
  ReturnMemoryIfFree(region);
  DeleteIfDone(region);
}

}  // namespace

NativeRegion* RegionTrack(RegionKind kind, uint8_t* base, size_t length) {
  NativeRegion* region = new NativeRegion{kind, base, length, 0, 0, false, false, false};
  HeldRegions()[reinterpret_cast<uintptr_t>(base)] = region;
  return region;
}

bool RegionToArrayBuffer(Napi::Env env, NativeRegion* region, napi_value* result) {
  if (!external_buffers_allowed) return false;
  napi_status status =
      napi_create_external_arraybuffer(env, region->base, region->length, FinalizeRegion, region, result);
  if (status == napi_no_external_buffers_allowed) return false;
  if (status != napi_ok) {
    RegionDiscard(region);  // JavaScript never saw it; the caller must not touch it again
    NAPI_THROW_IF_FAILED(env, status, false);
  }
  region->reachable_from_javascript = true;
  int64_t unused;
  napi_adjust_external_memory(env, static_cast<int64_t>(region->length), &unused);
  return true;
}

void RegionDiscard(NativeRegion* region) {
  region->finalized = true;
  ReturnMemoryIfFree(region);
  DeleteIfDone(region);
}

void RegionDetached(napi_env env, NativeRegion* region) {
  // A detached buffer's finalizer may still run later, or already ran inside the detach.
  Unreachable(env, region);
  ReturnMemoryIfFree(region);
}

void RegionHold(NativeRegion* region) { region->holders++; }

void RegionLetGo(NativeRegion* region) {
  region->holders--;
  DeleteIfDone(region);
}

NativeRegion* RegionPin(const uint8_t* data, size_t length) {
  std::map<uintptr_t, NativeRegion*>& regions = HeldRegions();
  auto next = regions.upper_bound(reinterpret_cast<uintptr_t>(data));
  if (next == regions.begin()) return nullptr;
  NativeRegion* region = std::prev(next)->second;
  uintptr_t begin = reinterpret_cast<uintptr_t>(region->base);
  uintptr_t address = reinterpret_cast<uintptr_t>(data);
  if (address - begin > region->length || length > region->length - (address - begin)) return nullptr;
  region->pins++;
  return region;
}

void RegionUnpin(NativeRegion* region) {
  region->pins--;
  ReturnMemoryIfFree(region);
  DeleteIfDone(region);
}

RegionStats GetRegionStats() {
  RegionStats stats{0, 0, 0};
  for (const auto& entry : HeldRegions()) {
    stats.regions++;
    stats.bytes += entry.second->length;
    if (entry.second->pins != 0) stats.pinned++;
  }
  return stats;
}

bool ExternalBuffersAllowed() { return external_buffers_allowed; }
void SetExternalBuffersAllowed(bool allowed) { external_buffers_allowed = allowed; }

}  // namespace stratakv
