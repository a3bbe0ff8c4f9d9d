#!/usr/bin/env bash
# Soak-tests the network-fault rounds (Tests/EtcdCrashTests/NetworkFaultTests.swift): many rounds
# of a partitioned leader and of slow-then-lossy links, each on a fresh network of namespaces
# and veth pairs and a fresh three-member cluster, stopping at the first broken promise.
# Needs root (network namespaces, token bucket filters) and iproute2.
#
# Usage: scripts/netfault-soak.sh [ROUNDS]             (default 20 rounds of each fault)
#        scripts/netfault-soak.sh --partition [ROUNDS]  only the partitioned leader
#        scripts/netfault-soak.sh --links [ROUNDS]      only the slow and lossy links
#   SEED=n                       replay a seed (it fixes the workload's choices and the networks'
#                                names, not the thread timing)
#   NETFAULT_SERVER=etcd         the same rounds against real etcd, to compare
#   SOAK_CONFIGURATION=release   build with -c release -Xswiftc -enable-testing (default debug)
#   SOAK_SCRATCH_PATH=.build-soak where to build (default .build-soak)
#
# A failure prints the broken promises, the members' log tails and the kept data directory,
# then the seed; the exit status is non-zero. Every network is removed after its round.
set -euo pipefail

filter='EtcdCrashTests\.NetworkFaultTests/'
case "${1:-}" in
    --partition) shift; filter='EtcdCrashTests\.NetworkFaultTests/partitionedLeader' ;;
    --links) shift; filter='EtcdCrashTests\.NetworkFaultTests/slowAndLossyLinks' ;;
esac
rounds="${1:-20}"
if [[ "$(id -u)" != 0 ]]; then
    echo "netfault-soak: needs root (network namespaces and tc)" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
# shellcheck source=lib/test-binary.sh
source scripts/lib/test-binary.sh
build_test_binary netfault-soak

seed="${SEED:-$(random_seed)}"
echo "netfault-soak: SEED=$seed NETFAULT_ROUNDS=$rounds filter $filter"
log="$(mktemp)"
set +e
env SEED="$seed" NETFAULT_ROUNDS="$rounds" \
    "$binary" --testing-library swift-testing --filter "$filter" 2>&1 \
    | grep --line-buffered -v ' started\.$' | tee "$log"
status="${PIPESTATUS[0]}"
set -e
# A round that could not run, or a skipped test (not root), must not pass for a clean soak.
passed="$(grep -c '^NetworkFaultTests: round .* took' "$log" || true)"
rm -f "$log"
if (( status != 0 )) || (( passed == 0 )); then
    echo "netfault-soak: FAILED with SEED=$seed NETFAULT_ROUNDS=$rounds (exit $status, $passed rounds finished)" >&2
    echo "netfault-soak: replay: SEED=$seed NETFAULT_ROUNDS=$rounds" \
        "$binary --testing-library swift-testing --filter '$filter'" >&2
    exit 1
fi
echo "netfault-soak: $passed rounds passed"
