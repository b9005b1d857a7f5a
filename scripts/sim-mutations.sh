#!/usr/bin/env bash
# sim-mutations.sh — shows that the Raft simulator catches real bugs (issues 2, 11 and 12): each
# mutation below is applied to a scratch copy of the repository, the simulator runs a
# bounded seed range with --keep-going, and the failures are tallied by invariant, with the
# first seed that catches the mutation and how many seeds do. The work tree is never touched.
#   (a) commit an earlier-term entry by counting replicas (Figure 8, §5.4.2)
#   (b) grant a vote without the up-to-date-log check (§5.4.1)
#   (c) answer a vote before the vote is persisted
#   (d) a follower commits up to the leader's commit index past the last entry the append
#       verified (§5.3: commitIndex = min(leaderCommit, index of last new entry))
#   (e) a candidate counts vote responses from an earlier term (§5.1: a stale term is ignored)
# and four bugs of the driver (src/node), run under the simulation of real RaftNodes
# (test/node/sim-cli.ts, npm run sim:cluster):
#   (f) acknowledge a write whose entry was never committed: its outcome matched by index
#       alone, so an entry of another term at that index answers it
#   (g) serve a linearizable read as soon as its read index is known, before the applied
#       index reaches it
#   (h) drop the held proposals on a leader change instead of routing them
#   (i) forget a voter that a joint change removes as soon as the joint configuration is
#       entered, though its vote still counts in the outgoing half until it is left
# and two of snapshots (issue 12):
#   (j) install a snapshot from the leader but keep the old member table
#   (k) on restart, hand out again the entries at or below the log's snapshot (a catch-up
#       tail keeps them): the snapshot's configuration gets their conf changes once more
# Usage: scripts/sim-mutations.sh [--work-tree] [SEEDS] [MUTATION...]
#   SEEDS defaults to 4000; each run is bounded by 20 min. MUTATION letters pick some of
#   a..k (default: all). The scratch copy is a clone of HEAD; with --work-tree it is a copy
#   of the files in this tree instead (uncommitted changes included, node_modules and
#   build output linked), so a change to the simulator can be measured before its commit.
set -uo pipefail
source_kind=head
if [ "${1:-}" = "--work-tree" ]; then
  source_kind=work-tree
  shift
fi
seeds="${1:-4000}"
[ "$#" -gt 0 ] && shift
selected="${*:-a b c d e f g h i j k}"
root="$(cd "$(dirname "$0")/.." && pwd)"
scratch="$(mktemp -d /tmp/stratakv-mutations.XXXXXX)"
trap 'rm -rf "$scratch"' EXIT
if [ "$source_kind" = head ]; then
  git -C "$root" clone -q "$root" "$scratch/repo"
else
  mkdir "$scratch/repo"
  tar -C "$root" --exclude=./.git --exclude=./node_modules --exclude=./native/build -cf - . | tar -C "$scratch/repo" -xf -
fi
ln -s "$root/node_modules" "$scratch/repo/node_modules"
[ -d "$root/native/build" ] && ln -s "$root/native/build" "$scratch/repo/native/build"
cd "$scratch/repo"
echo "sim-mutations: a scratch copy of $source_kind ($root), seeds 1..$seeds, mutations: $selected"

mutate() {
  local name="$1" file="$2" old="$3" new="$4" simulator="${5:-core}"
  case " $selected " in *" $name "*) ;; *) return 0 ;; esac
  cp "$file" "$file.orig"
  OLD="$old" NEW="$new" python3 - "$file" <<'PY'
import os, sys
path = sys.argv[1]
text = open(path).read()
if os.environ['OLD'] not in text:
    sys.exit(f'mutation does not apply to {path}: the code changed; update scripts/sim-mutations.sh')
open(path, 'w').write(text.replace(os.environ['OLD'], os.environ['NEW']))
PY
  if [ "$simulator" = core ]; then
    echo "== mutation ($name), core simulator, seeds 1..$seeds"
    timeout 1200 bash scripts/node24.sh node test/raft/sim-cli.ts --seeds "$seeds" --from 1 --keep-going 2>&1 \
      | grep -v '^\s*\[' | grep -E '^seeds|failed' \
      | awk -v seeds="$seeds" '
          { print }
          /^seeds .*FAILED at seed/ { first = $NF }
          /^  failed / { sub(/^.*: /, ""); caught += $1 }
          END {
            if (first == "") print "  caught by 0 of " seeds " seeds: NOT CAUGHT"
            else print "  caught by " caught " of " seeds " seeds, first at seed " first
          }'
  else
    # The cluster simulation prints each failing seed and, on the next line, the check that
    # caught it; tally the checks by their first words, without the call or member a check
    # names first ("n3 put b=1.2: not a StrataError: ..." counts as "not a StrataError").
    echo "== mutation ($name), simulation of real RaftNodes, seeds 1..$seeds"
    timeout 2400 bash scripts/node24.sh node test/node/sim-cli.ts --seeds "$seeds" --from 1 --keep-going 2>/dev/null \
      | awk -v seeds="$seeds" '
          /^SIMULATION FAILED at seed/ {
            if (first == "") first = $NF; caught += 1; getline check
            if (check ~ /^n[0-9]+[: ]/) sub(/^[^:]*: /, "", check)
            sub(/:.*/, "", check); checks[check] += 1
          }
          /^seeds / { print }
          END {
            for (check in checks) print "  failed " check ": " checks[check]
            if (first == "") print "  caught by 0 of " seeds " seeds: NOT CAUGHT"
            else print "  caught by " caught " of " seeds " seeds, first at seed " first
          }'
  fi
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
mutate d src/raft/log.ts \
  "    this.commitTo(Math.min(leaderCommit, lastNewIndex));" \
  "    this.commitTo(Math.min(leaderCommit, this.lastIndex()));"
mutate e src/raft/raft.ts \
  "    } else if (message.term < this.term) {
      this.handleStaleTerm(message);" \
  "    } else if (message.term < this.term && message.type !== 'voteResponse') {
      this.handleStaleTerm(message);"
mutate f src/node/proposal-tracker.ts \
  "    if (waiting.term === term) {" \
  "    if (waiting.term === term || waiting.term !== term) {" \
  cluster
mutate g src/node/read-index.ts \
  "        if (state.index <= this.appliedIndex) {" \
  "        if (state.index <= this.appliedIndex || state.index > this.appliedIndex) {" \
  cluster
mutate h src/node/proposal-router.ts \
  "    for (const proposal of this.context.tracker.takeHeld()) this.route(proposal);" \
  "    this.context.tracker.takeHeld();" \
  cluster
mutate i src/node/membership.ts \
  "[...confState.voters, ...confState.votersOutgoing, ...confState.learners, ...confState.learnersNext]" \
  "[...confState.voters, ...confState.learners, ...confState.learnersNext]" \
  cluster
mutate j src/node/raft-node.ts \
  "    this.membership.restoreState(prepared.descriptor.membership);" \
  "" \
  cluster
mutate k src/raft/raft.ts \
  "    const appliedAtStart = Math.max(config.applied ?? 0, config.storage.snapshot().metadata.index);" \
  "    const appliedAtStart = config.applied ?? 0;" \
  cluster
