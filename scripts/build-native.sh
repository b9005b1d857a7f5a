#!/usr/bin/env bash
# build-native.sh — build the N-API addon in native/ (native/binding.gyp) with node-gyp.
#
# The project's own build step, run by the root package's `prepare` script during `npm ci`
# (no dependency compiles at install time; this is our own code), by the CLI on first use
# when the addon is missing, and by `npm test`. node-gyp gets Node's headers from --nodedir
# (scripts/node24.sh fetches Node 24 with its headers when the node on PATH is older, and
# sets npm_config_nodedir), so it never downloads anything itself.
# Output: native/build/Release/stratakv_native.node.
#
# Usage: scripts/build-native.sh [--if-missing]
#   --if-missing   do nothing when the addon exists and is newer than every source file
set -euo pipefail
cd "$(dirname "$0")/.."

ADDON=native/build/Release/stratakv_native.node

addon_is_current() {
  [ -f "$ADDON" ] && [ -z "$(find native/binding.gyp native/src -newer "$ADDON" -print -quit)" ]
}

if [ "${1:-}" = "--if-missing" ] && addon_is_current; then exit 0; fi

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
    echo "build-native: node_modules/$package is missing: run 'npm ci' in $(pwd) first" >&2
    exit 1
  fi
done

# One build at a time: three `stratakv serve` started together on a machine without the
# addon would otherwise run node-gyp in the same folder at once. The one that waited finds
# the addon built and stops there.
# (The lock lives beside build/, which node-gyp's rebuild deletes.)
exec 9>native/.build-lock
if command -v flock >/dev/null 2>&1; then flock 9; fi
if [ "${1:-}" = "--if-missing" ] && addon_is_current; then exit 0; fi

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
