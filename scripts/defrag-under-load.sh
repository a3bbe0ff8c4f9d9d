#!/usr/bin/env bash
# Write latency while the backend is defragmented, real etcd against swift-etcd on this machine.
#
#   scripts/defrag-under-load.sh            # about 3 minutes
#   DEFRAG_KEYS=50000 scripts/defrag-under-load.sh
#
# For each server: a fresh member, DEFRAG_KEYS (default 100,000) puts of 1 KiB over half as many
# keys, then compacted, so that half the backend file is free space (the overwritten versions)
# and half is live data (what etcd's defrag copies). With DEFRAG_DELETE_ALL=1 every key is
# deleted before the compaction, leaving almost nothing live. Then a steady
# write load (16 clients, 1,000 puts/s, 256-byte values) runs for 20 s twice: once undisturbed,
# once with `etcdctl defrag` started 5 s in. The table shows, per run, the slowest put and the
# 99th and 99.9th percentiles, how long the defrag call took, and the database size before and
# after it. etcd's defrag copies the whole database while holding every write; swift-etcd's hands
# free pages back a few at a time between applies.
set -euo pipefail
cd "$(dirname "$0")/.."

sides="etcd ours"
# shellcheck source=lib/bench-server.sh
source scripts/lib/bench-server.sh
keys=${DEFRAG_KEYS:-100000}
results="$work/results.txt"

ctl() { ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$port" --command-timeout=120s "$@"; }
db_size() { ctl endpoint status -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["dbSize"])'; }

# load OUTPUT: the steady write load, 20 s, as JSON.
load() {
    "$bin/etcd-benchmark" --endpoints "127.0.0.1:$port" --conns 4 --clients 16 --total 1000000 --duration 20 -w json \
        put --key-size 16 --val-size 256 --key-space-size 10000 --rate 1000 >"$1" 2>"$1.err"
}

summary() {
    python3 - "$1" <<'PY'
import json, sys
report = [json.loads(line) for line in open(sys.argv[1]) if line.strip().startswith("{")][-1]
latency = report["latency_ms"]
print(f'{report["successes"]} puts, {report["errors"]} errors | slowest {latency["slowest"]:.1f} ms | '
      f'p99 {latency["percentiles"]["p99"]:.2f} ms | p99.9 {latency["percentiles"]["p99.9"]:.2f} ms')
PY
}

for side in $sides; do
    dir="$work/$side"
    mkdir -p "$dir"
    start_server "$side" "$dir"
    "$bin/etcd-benchmark" --endpoints "127.0.0.1:$port" --conns 4 --clients 32 --total "$keys" -w json \
        put --key-size 16 --val-size 1024 --sequential-keys --key-space-size "$((keys / 2))" >/dev/null 2>&1
    if [[ "${DEFRAG_DELETE_ALL:-0}" == 1 ]]; then
        revision=$(ctl del "" --from-key -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
    else
        revision=$(ctl get probe -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
    fi
    ctl compact "$revision" --physical >/dev/null
    load "$dir/quiet.json"
    before=$(db_size)
    load "$dir/defrag.json" &
    load_pid=$!
    pids+=("$load_pid")
    sleep 5
    started=$(now_ms)
    ctl defrag >/dev/null
    took=$(($(now_ms) - started))
    after=$(db_size)
    wait "$load_pid"
    {
        echo "$side, no defrag:   $(summary "$dir/quiet.json")"
        echo "$side, defrag at 5 s: $(summary "$dir/defrag.json") | defrag took $took ms, dbSize $before -> $after bytes"
    } >>"$results"
    stop_server
done
echo "puts: $keys over $((keys / 2)) keys, then compacted$([[ "${DEFRAG_DELETE_ALL:-0}" == 1 ]] && echo ", every key deleted first")"
cat "$results"
