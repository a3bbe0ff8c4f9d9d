#!/usr/bin/env bash
# Soak-tests durability: runs the crash test (Tests/EtcdCrashTests) against the real `etcd`
# binary with many SIGKILL cycles on one data directory, stopping at the first failure.
#
# Usage: scripts/crash-soak.sh [CYCLES]          (default 500 kill cycles)
#        scripts/crash-soak.sh --cluster [CYCLES] the three-member cluster crash test instead
#                                                 (ClusterCrashTests; default 100 kill cycles of
#                                                 the leader, a follower or two members at once)
#   SEED=n scripts/crash-soak.sh 200              replay a seed (default: a fresh random seed)
#   SOAK_RUNS=10                                  repeat with fresh seeds and data dirs (default 1)
#   CRASH_WRITERS=16 CRASH_CONNECTIONS=4          more concurrent writers (default 8 over 3)
#   CRASH_MIN_ACKS=0 CRASH_MAX_ACKS=500           acknowledged writes before each kill (default 5..120)
#   CRASH_HISTORY_READS=64                        acknowledged changes read back at their revision
#                                                 per cycle (default 16; with --cluster, through
#                                                 every member)
#   CLUSTER_CRASH_MIN_OUTAGE_ACKS=0               with --cluster: writes the two survivors must
#   CLUSTER_CRASH_MAX_OUTAGE_ACKS=200             acknowledge while one member is down (default 0..60)
#   SOAK_CONFIGURATION=release                    build with -c release -Xswiftc -enable-testing
#                                                 (server and test; default debug)
#   SOAK_SCRATCH_PATH=.build-soak                 where to build (default .build-soak, so the
#                                                 usual .build is left alone)
#
# Builds the test binary and the server once (the test finds `etcd` next to the test bundle), then
# runs the crash test. A failure prints the broken promises (which acknowledged writes are missing
# or stale, or where members disagree), the server's (every member's) log tail and the kept data
# directory, then the seed; the exit status is non-zero. The seed fixes each writer's operations
# and the kill moments (with --cluster, also the kind of kill; which member leads is the cluster's
# doing), not the thread timing, so a replay re-runs the same workload rather than the exact
# interleaving.
set -euo pipefail

# The single-server test, or (--cluster) the cluster one: its filter, cycle variable and the line
# it prints when every cycle passed.
filter='EtcdCrashTests\.CrashTests/'
cycles_variable=CRASH_CYCLES
passed_marker=' kill cycles passed'
default_cycles=500
if [[ "${1:-}" == "--cluster" ]]; then
    shift
    filter='EtcdCrashTests\.ClusterCrashTests/'
    cycles_variable=CLUSTER_CRASH_CYCLES
    passed_marker=' cluster kill cycles passed'
    default_cycles=100
fi
cycles="${1:-$default_cycles}"
runs="${SOAK_RUNS:-1}"
cd "$(dirname "$0")/.."
# shellcheck source=lib/test-binary.sh
source scripts/lib/test-binary.sh
build_test_binary crash-soak

for (( run = 1; run <= runs; run++ )); do
    # SEED replays the first run; later runs draw fresh seeds.
    if (( run == 1 )) && [[ -n "${SEED:-}" ]]; then seed="$SEED"; else seed="$(random_seed)"; fi
    echo "crash-soak: run $run of $runs: SEED=$seed $cycles_variable=$cycles"
    log="$(mktemp)"
    set +e
    env SEED="$seed" "$cycles_variable=$cycles" \
        "$binary" --testing-library swift-testing --filter "$filter" 2>&1 \
        | grep --line-buffered -v ' started\.$' | tee "$log"
    # The test's own status, not the filter's.
    status="${PIPESTATUS[0]}"
    set -e
    if (( status != 0 )) || ! grep -q "$passed_marker" "$log"; then
        rm -f "$log"
        echo "crash-soak: FAILED with SEED=$seed $cycles_variable=$cycles (exit $status)" >&2
        echo "crash-soak: replay: SEED=$seed $cycles_variable=$cycles" \
            "$binary --testing-library swift-testing --filter '$filter'" >&2
        exit 1
    fi
    rm -f "$log"
done
echo "crash-soak: $runs run(s) of $cycles kill cycles passed"
