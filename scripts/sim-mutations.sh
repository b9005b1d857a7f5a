#!/usr/bin/env bash
# sim-mutations.sh — shows that the Raft simulator catches real bugs (issue 2): each
# mutation below is applied to a scratch clone of HEAD, the simulator runs a bounded seed
# range with --keep-going, and the failures are tallied by invariant. The work tree is
# never touched.
#   (a) commit an earlier-term entry by counting replicas (Figure 8, §5.4.2)
#   (b) grant a vote without the up-to-date-log check (§5.4.1)
#   (c) answer a vote before the vote is persisted
# Usage: scripts/sim-mutations.sh [SEEDS]   (default 4000; each run is bounded by 20 min)
set -uo pipefail
seeds="${1:-4000}"
root="$(cd "$(dirname "$0")/.." && pwd)"
scratch="$(mktemp -d /tmp/stratakv-mutations.XXXXXX)"
trap 'rm -rf "$scratch"' EXIT
git -C "$root" clone -q "$root" "$scratch/repo"
ln -s "$root/node_modules" "$scratch/repo/node_modules"
[ -d "$root/native/build" ] && ln -s "$root/native/build" "$scratch/repo/native/build"
cd "$scratch/repo"

mutate() {
  local name="$1" file="$2" old="$3" new="$4"
  cp "$file" "$file.orig"
  OLD="$old" NEW="$new" python3 - "$file" <<'PY'
import os, sys
path = sys.argv[1]
text = open(path).read()
if os.environ['OLD'] not in text:
    sys.exit(f'mutation does not apply to {path}: the code changed; update scripts/sim-mutations.sh')
open(path, 'w').write(text.replace(os.environ['OLD'], os.environ['NEW']))
PY
  echo "== mutation ($name), seeds 1..$seeds"
  timeout 1200 bash scripts/node24.sh node test/raft/sim-cli.ts --seeds "$seeds" --from 1 --keep-going 2>&1 \
    | grep -v '^\s*\[' | grep -E '^seeds|failed'
  mv "$file.orig" "$file"
}

mutate a src/raft/log.ts \
  "    if (index > this.committed && this.term(index) === term) {" \
  "    if (index > this.committed && this.term(index) !== undefined) {"
mutate b src/raft/raft.ts \
  "    if (canVote && this.raftLog.isUpToDate(message.index, message.logTerm)) {" \
  "    if (canVote) {"
mutate c src/raft/raft.ts \
  "    case 'voteResponse':
    case 'preVoteResponse':
    case 'heartbeatResponse':
      return true;" \
  "    case 'preVoteResponse':
    case 'heartbeatResponse':
      return true;
    case 'voteResponse':
      return false;"
