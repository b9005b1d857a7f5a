#!/usr/bin/env bash
# run.sh — the native addon's memcheck run (CI runs it from .ci/run): test/native/valgrind/
# workload.ts under valgrind, failing on any invalid access, use of uninitialised memory or
# definite leak outside Node itself (node.supp). Bounded: one small workload, 600 s at most.
#
# Valgrind models a CPU without AVX-512, so the avx512-vpclmulqdq kernel is not run here;
# the other kernels are, and the test suite checks all of them against a reference.
set -euo pipefail
cd "$(dirname "$0")/../../.."

if ! command -v valgrind >/dev/null 2>&1; then
  echo "valgrind-run: valgrind is missing (apt-get install valgrind)" >&2
  exit 1
fi
bash scripts/build-native.sh --if-missing

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
timeout 600 bash scripts/node24.sh valgrind --error-exitcode=97 --leak-check=full --show-leak-kinds=definite \
  --errors-for-leak-kinds=definite --suppressions=test/native/valgrind/node.supp --num-callers=40 \
  node --expose-gc test/native/valgrind/workload.ts >"$log" 2>&1 || status=$?
grep -E 'valgrind workload|ERROR SUMMARY|definitely lost' "$log" || true
if [ "$status" -ne 0 ] || ! grep -q 'valgrind workload: ok' "$log"; then
  cat "$log" >&2
  echo "valgrind-run: failed (exit $status)" >&2
  exit 1
fi
echo "valgrind-run: no invalid access, no uninitialised use, no leak in the addon"
