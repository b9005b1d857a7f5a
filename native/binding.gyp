# binding.gyp — the stratakv native addon (see native/README.md and ARCHITECTURE.md).
# Built only by scripts/build-native.sh (node-gyp with --nodedir, never downloading headers).
# Node-API only (NAPI_VERSION 8), so one build runs on every Node >= 22.22 of the same
# platform. C++ exceptions are on: node-addon-api turns failed Node-API calls into them.
{
  "targets": [
    {
      "target_name": "stratakv_native",
      "sources": [
        "src/addon.cc",
        "src/crc32c.cc",
        "src/crc32c-binding.cc",
        "src/napi-util.cc",
        "src/crc32c-x86.cc",
        "src/crc32c-arm.cc",
        "src/native-region.cc",
        "src/aligned-buffer.cc",
        "src/file-mapping.cc",
        "src/aligned-file.cc",
        "src/state-digest-binding.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      # -g keeps symbols for valgrind reports; -O3 for the CRC loops. No -march: the SIMD
      # paths use function-level target attributes and are picked at run time by cpuid.
      "cflags_cc": ["-std=c++17", "-O3", "-g", "-fexceptions", "-Wall", "-Wextra"],
      "cflags": ["-O3", "-g"]
    }
  ]
}
