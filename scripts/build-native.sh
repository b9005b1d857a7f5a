#!/usr/bin/env bash
# build-native.sh — build the N-API addon in native/ (native/binding.gyp) with node-gyp.
#
# The project's own build step: npm is never trusted to run install scripts. node-gyp gets
# Node's headers from --nodedir (scripts/node24.sh sets npm_config_nodedir), so it never
# downloads anything. Output: native/build/Release/stratakv_native.node.
#
# Usage: scripts/build-native.sh [--if-missing]
#   --if-missing   do nothing when the addon exists and is newer than every source file
set -euo pipefail
cd "$(dirname "$0")/.."

ADDON=native/build/Release/stratakv_native.node

if [ "${1:-}" = "--if-missing" ] && [ -f "$ADDON" ]; then
  newer="$(find native/binding.gyp native/src -newer "$ADDON" -print -quit)"
  if [ -z "$newer" ]; then exit 0; fi
fi

# Say plainly what is missing instead of letting node-gyp fail three screens later.
missing=()
command -v python3 >/dev/null 2>&1 || missing+=("python3 (node-gyp runs gyp with it)")
command -v make >/dev/null 2>&1 || missing+=("make")
cxx="${CXX:-}"
if [ -z "$cxx" ]; then
  for candidate in g++ c++ clang++; do
    if command -v "$candidate" >/dev/null 2>&1; then cxx="$candidate"; break; fi
  done
fi
if [ -z "$cxx" ] || ! command -v "$cxx" >/dev/null 2>&1; then missing+=("a C++ compiler (g++ or clang++)"); fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "build-native: cannot build the native addon; missing:" >&2
  for item in "${missing[@]}"; do echo "  - $item" >&2; done
  echo "build-native: on Debian/Ubuntu: apt-get install python3 make g++" >&2
  exit 1
fi
for package in node-gyp node-addon-api; do
  if [ ! -f "node_modules/$package/package.json" ]; then
    echo "build-native: node_modules/$package is missing: run 'npm ci' first" >&2
    exit 1
  fi
done

# node24.sh puts Node >= 22.22 first on PATH and exports npm_config_nodedir (its headers).
bash scripts/node24.sh bash -c '
  set -euo pipefail
  if [ -z "${npm_config_nodedir:-}" ] || [ ! -f "$npm_config_nodedir/include/node/node_api.h" ]; then
    echo "build-native: no Node headers (npm_config_nodedir unset or without include/node/node_api.h)" >&2
    exit 1
  fi
  echo "build-native: building native/ with $(node --version) headers from $npm_config_nodedir" >&2
  node node_modules/node-gyp/bin/node-gyp.js rebuild --directory native --nodedir "$npm_config_nodedir" --jobs 2 --silent
'
if [ ! -f "$ADDON" ]; then
  echo "build-native: node-gyp finished but $ADDON is missing" >&2
  exit 1
fi
echo "build-native: built $ADDON" >&2
