// The public surface of src/diff: today the log-delta stream's parts that need no gRPC and no
// member: the chunk framing with its CRC32c, the adaptive chunk-size controller, the producer
// that serves one call from a LogDeltaSource, the consumer's cursor that verifies chunks and
// knows where to resume, and the protocol's shared shapes and bounds; and the Merkle diff:
// the descent over two digest trees (merkle-diff.ts), a tree over a pinned digest view
// (view-tree.ts), the pins a member offers (digest-pins.ts), the serving side of the wire
// (diff-server.ts) and the wire's shapes, checks and leaf-key encoding (diff-protocol.ts).
export {
  ChunkKind,
  chunkKindName,
  isChunkKind,
  chunkCrc,
  sealChunk,
  verifyChunk,
  chunkCorruption,
  encodeEntries,
  decodeEntries,
  entryEncodedBytes,
  encodeSnapshotMeta,
  decodeSnapshotMeta,
  CHUNK_HEADER_BYTES,
  ENTRY_HEADER_BYTES,
  ENTRY_DATA_BYTES_MAX,
  SHA256_BYTES,
  SNAPSHOT_ID_BYTES_MAX,
} from './log-delta-frame.ts';
export type { LogChunk, LogChunkFields, SnapshotMeta } from './log-delta-frame.ts';
export {
  ChunkSizeController,
  CHUNK_BYTES_INITIAL,
  CHUNK_BYTES_MAX,
  CHUNK_BYTES_MIN,
  FAST_SERVICE_RATIO_MAX,
  FULL_FRACTION_MIN,
  GROWTH_FACTOR,
  ROUND_TRIP_TARGET_MS,
  SAMPLES_MAX,
  SHRINK_FACTOR,
  SLOW_SERVICE_RATIO_MIN,
} from './chunk-size-controller.ts';
export type { ChunkAcknowledgement, ChunkVerdict } from './chunk-size-controller.ts';
export {
  ACK_STALL_MS_MAX,
  ADMIN_PROTO_FILE,
  ADMIN_PROTO_LOADER_OPTIONS,
  ADMIN_SERVICE_NAME,
  CODE_METADATA_KEY,
  FIELD_METADATA_KEY,
  HEARTBEAT_INTERVAL_MS,
  IDLE_TIMEOUT_MS_DEFAULT,
  LOG_STREAM_METHOD_PATH,
  WINDOW_BYTES_MAX,
  WINDOW_CHUNKS_MAX,
  checkStart,
  fromWireChunk,
  parseLogStreamRequest,
  toWireChunk,
  toWireStart,
} from './log-delta-protocol.ts';
export type { LogStreamAck, LogStreamStart, ParsedLogStreamRequest, WireLogChunk, WireLogStreamRequest, WireLogStreamStart } from './log-delta-protocol.ts';
export { LogDeltaProducer, ENTRIES_PER_CHUNK_MAX, SNAPSHOTS_PER_CALL_MAX, SNAPSHOT_PREFIX_READ_BYTES, fitEntries } from './log-delta-producer.ts';
export type { ChunkSink, LogDeltaProducerOptions, LogDeltaSnapshot, LogDeltaSource, LogDeltaSummary } from './log-delta-producer.ts';
export { LogDeltaCursor } from './log-delta-cursor.ts';
export type { LogDeltaCursorOptions, LogDeltaEvent } from './log-delta-cursor.ts';
export {
  merkleDiff,
  describeDifferences,
  compareBytes,
  sumOfHashes,
  DIFFERENCES_MAX,
  LEAVES_PER_REQUEST_MAX,
  PARENTS_PER_REQUEST_MAX,
  VALUE_BYTES_DEFAULT,
  VALUE_BYTES_MAX,
  VALUE_KEYS_PER_REQUEST_MAX,
} from './merkle-diff.ts';
export type { DescribedDifference, DiffProgress, DiffValue, DifferenceKind, DigestHash, DigestTreeSource, Inconsistency, KeyDifference, LeafKeyHash, MerkleDiffOptions, MerkleDiffResult, TreeRoot } from './merkle-diff.ts';
export { ViewTree, inKeyRange, leafKeysEncodedBytes, prefixRange, LEAF_KEYS_BYTES_MAX } from './view-tree.ts';
export type { KeyRange, ViewTreeOptions } from './view-tree.ts';
export { StateMachineDigestPins, pinNotFound, PIN_IDLE_MS_MAX, PIN_NOT_FOUND_CODE } from './digest-pins.ts';
export type { DigestPin, DigestPinSource, PinAt, PinCallOptions } from './digest-pins.ts';
export {
  DIFF_METHODS,
  DIFF_VALUES_LOADER_OPTIONS,
  DIFF_TIMEOUT_MS_DEFAULT,
  DIFF_TIMEOUT_MS_MAX,
  OPEN_PROGRESS_KEYS,
  PIN_ID_BYTES_MAX,
  RANGE_KEY_BYTES_MAX,
  WireDigestHash,
  WirePinAt,
  decodeLeafKeys,
  encodeLeafKeys,
  fromWireValue,
  parseLeafKeysRequest,
  parseNodesRequest,
  parsePinAt,
  parsePinId,
  parseTimeoutMs,
  parseTree,
  parseValuesRequest,
  toWireTree,
  toWireValue,
} from './diff-protocol.ts';
export type {
  DiffMethod,
  TreeName,
  WireHelloResponse,
  WireLeafKeysRequest,
  WireLeafKeysResponse,
  WireNodesRequest,
  WireNodesResponse,
  WireOpenProgress,
  WireOpenRequest,
  WirePinRequest,
  WirePinResponse,
  WireReleaseRequest,
  WireTree,
  WireValue,
  WireValuesRequest,
  WireValuesResponse,
} from './diff-protocol.ts';
export { DiffServer, RANGE_TREES_MAX } from './diff-server.ts';
export type { DiffCallOptions } from './diff-server.ts';
