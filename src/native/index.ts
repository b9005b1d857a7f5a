// The public surface of src/native: the only way other code reaches the N-API addon in
// native/ (page-aligned buffers, read-only file mappings, aligned file I/O off the main
// thread, hardware CRC32c). Importing it never fails; the first call that needs the addon
// throws NATIVE_UNAVAILABLE when it is not built (`npm run build:native`).
export { NATIVE_ADDON_PATH } from './addon.ts';
export { crc32c, crc32cImplementation, crc32cImplementations, crc32cWith, maskCrc32c, unmaskCrc32c } from './crc32c.ts';
export type { Crc32cImplementation } from './crc32c.ts';
export { stateKeyHashes } from './state-digest.ts';
export {
  ALIGNED_BUFFER_BYTES_MAX,
  DIRECT_IO_ALIGNMENT_BYTES,
  alignmentOffset,
  allocateAligned,
  nativeMemoryStats,
  pageBytes,
} from './aligned-buffer.ts';
export type { AlignedBuffer, NativeMemoryStats } from './aligned-buffer.ts';
export { FileMapping, mapFile } from './file-mapping.ts';
export { AlignedFile, IN_FLIGHT_OPERATIONS_MAX, IO_BYTES_MAX, renameAndSyncDirectory, syncDirectory } from './aligned-file.ts';
export type { IoMode, OpenAlignedFileOptions } from './aligned-file.ts';
export { AtomicFileWriter, isAtomicWriterTemporary } from './atomic-file-writer.ts';
export type { AtomicFileWriterOptions } from './atomic-file-writer.ts';
