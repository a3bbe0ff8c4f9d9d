#!/usr/bin/env bash
# Soak-tests durability: runs the crash test (Tests/EtcdCrashTests) against the real `etcd`
# binary with many SIGKILL cycles on one data directory, stopping at the first failure.
#
# Usage: scripts/crash-soak.sh [CYCLES]          (default 500 kill cycles)
#   SEED=n scripts/crash-soak.sh 200              replay a seed (default: a fresh random seed)
#   SOAK_RUNS=10                                  repeat with fresh seeds and data dirs (default 1)
#   CRASH_WRITERS=16 CRASH_CONNECTIONS=4          more concurrent writers (default 8 over 3)
#   CRASH_MIN_ACKS=0 CRASH_MAX_ACKS=500           acknowledged writes before each kill (default 5..120)
#   CRASH_HISTORY_READS=64                        acknowledged changes read back at their revision
#                                                 per cycle (default 16)
#   SOAK_CONFIGURATION=release                    build with -c release -Xswiftc -enable-testing
#                                                 (server and test; default debug)
#   SOAK_SCRATCH_PATH=.build-soak                 where to build (default .build-soak, so the
#                                                 usual .build is left alone)
#
# Builds the test binary and the server once (the test finds `etcd` next to the test bundle), then
# runs the crash test. A failure prints the broken promises (which acknowledged writes are missing
# or stale), the server's log tail and the kept data directory, then the seed; the exit status is
# non-zero. The seed fixes each writer's operations and the kill moments, not the thread timing,
# so a replay re-runs the same workload rather than the exact interleaving.
set -euo pipefail

cycles="${1:-500}"
runs="${SOAK_RUNS:-1}"
cd "$(dirname "$0")/.."
# shellcheck source=lib/test-binary.sh
source scripts/lib/test-binary.sh
build_test_binary crash-soak

for (( run = 1; run <= runs; run++ )); do
    # SEED replays the first run; later runs draw fresh seeds.
    if (( run == 1 )) && [[ -n "${SEED:-}" ]]; then seed="$SEED"; else seed="$(random_seed)"; fi
    echo "crash-soak: run $run of $runs: SEED=$seed CRASH_CYCLES=$cycles"
    log="$(mktemp)"
    set +e
    SEED="$seed" CRASH_CYCLES="$cycles" \
        "$binary" --testing-library swift-testing --filter EtcdCrashTests 2>&1 \
        | grep --line-buffered -v ' started\.$' | tee "$log"
    # The test's own status, not the filter's.
    status="${PIPESTATUS[0]}"
    set -e
    if (( status != 0 )) || ! grep -q "kill cycles passed" "$log"; then
        rm -f "$log"
        echo "crash-soak: FAILED with SEED=$seed CRASH_CYCLES=$cycles (exit $status)" >&2
        echo "crash-soak: replay: SEED=$seed CRASH_CYCLES=$cycles $binary --testing-library swift-testing --filter EtcdCrashTests" >&2
        exit 1
    fi
    rm -f "$log"
done
echo "crash-soak: $runs run(s) of $cycles kill cycles passed"
