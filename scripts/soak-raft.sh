#!/usr/bin/env bash
# Soak-tests EtcdRaft in the deterministic cluster simulator (Tests/EtcdSimulationTests) with
# FRESH RANDOM seeds, stopping at the first failure.
#
# Usage: scripts/soak-raft.sh [SEEDS]          (default 10000 seeds)
#   SIM_STEPS=5000 scripts/soak-raft.sh 2000    more steps per seed (default 2000)
#   SOAK_CHUNK=1000                             seeds per test-binary run (default 1000)
#   SOAK_CONFIGURATION=release                  build with -c release -Xswiftc -enable-testing
#                                               (slower build, much faster runs; default debug)
#   SOAK_SCRATCH_PATH=.build-soak               where to build (default .build-soak, so the
#                                               usual .build is left alone)
#
# Builds the test binary once, then runs it in chunks of consecutive seeds starting from a
# random first seed. On failure it prints the seed, the failing check and the recent trace, and
# exits non-zero; replay with `SEED=<n> swift test --filter EtcdSimulationTests` (full trace).
# A crash (trap) prints "SIMULATION CRASHED while running SEED=..." with the seeds in flight.
set -euo pipefail

seeds_total="${1:-10000}"
chunk="${SOAK_CHUNK:-1000}"
steps="${SIM_STEPS:-2000}"
cd "$(dirname "$0")/.."
# shellcheck source=lib/test-binary.sh
source scripts/lib/test-binary.sh
build_test_binary soak-raft

done_count=0
while (( done_count < seeds_total )); do
    count=$(( seeds_total - done_count < chunk ? seeds_total - done_count : chunk ))
    first="$(random_seed)"
    echo "soak-raft: seeds $first .. +$count ($done_count of $seeds_total done), $steps steps each"
    log="$(mktemp)"
    status=0
    SIM_FIRST_SEED="$first" SIM_SEEDS="$count" SIM_STEPS="$steps" \
        "$binary" --testing-library swift-testing --filter ClusterSimulationTests >"$log" 2>&1 || status=$?
    if (( status != 0 )); then
        # The report of the first failing seed, or the crash line, then the replay hint.
        if grep -q "SIMULATION FAILURE" "$log"; then
            sed -n '/SIMULATION FAILURE/,/^replay: /p' "$log" | head -n 260
            failed_seed="$(grep -m1 -o 'SIMULATION FAILURE: seed [0-9]*' "$log" | grep -o '[0-9]*$')"
        else
            tail -n 60 "$log"
            failed_seed="$(grep -m1 -o 'SIMULATION CRASHED while running SEED=[0-9]*' "$log" | grep -o '[0-9]*$' || true)"
        fi
        rm -f "$log"
        echo "soak-raft: FAILED at seed ${failed_seed:-unknown} (exit $status); replay with SEED=${failed_seed:-<seed>}" >&2
        exit 1
    fi
    rm -f "$log"
    done_count=$(( done_count + count ))
done
echo "soak-raft: $seeds_total random seeds passed"
