// aligned-file.h — constants shared by the aligned file I/O and the aligned buffers.
#ifndef STRATAKV_NATIVE_ALIGNED_FILE_H_
#define STRATAKV_NATIVE_ALIGNED_FILE_H_

#include <cstddef>
#include <cstdint>

namespace stratakv {

// kDirectIoAlignment is the alignment of O_DIRECT offsets, lengths and buffers. 4096 covers
// every logical block size Linux filesystems use on current disks (512 or 4096).
inline constexpr size_t kDirectIoAlignment = 4096;

// kIoBytesMax bounds one read or write call (Linux itself moves at most 0x7ffff000 per call).
inline constexpr uint64_t kIoBytesMax = uint64_t{1} << 30;

}  // namespace stratakv

#endif  // STRATAKV_NATIVE_ALIGNED_FILE_H_
