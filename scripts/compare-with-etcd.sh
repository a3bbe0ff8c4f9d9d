#!/usr/bin/env bash
# Runs the same etcd-benchmark matrix against real etcd and against swift-etcd on this machine,
# interleaved (etcd, ours, etcd, ours) so that drift hits both, and prints one table.
#
#   scripts/compare-with-etcd.sh           # full matrix, under 10 minutes
#   scripts/compare-with-etcd.sh --quick   # smaller totals, under 2 minutes
#
# Both servers run on 127.0.0.1 with fresh data directories and fsync on; every process this
# script starts is stopped when it exits, however it exits.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[[ "${1:-}" == "--quick" ]] && quick=1

sides="etcd ours"
# shellcheck source=lib/bench-server.sh
source scripts/lib/bench-server.sh

etcd_port=$(free_port); etcd_peer=$(free_port); ours_port=$(free_port)
etcd --name default --data-dir "$work/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "default=http://127.0.0.1:$etcd_peer" >"$work/etcd.log" 2>&1 &
pids+=($!); etcd_pid=$!
"$bin/etcd" --name default --data-dir "$work/ours" \
    --listen-client-urls "http://127.0.0.1:$ours_port" --advertise-client-urls "http://127.0.0.1:$ours_port" \
    >"$work/ours.log" 2>&1 &
pids+=($!); ours_pid=$!

wait_healthy() {
    for _ in $(seq 1 100); do
        ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$1" --command-timeout=1s endpoint health >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "server on port $1 did not become healthy" >&2
    return 1
}
wait_healthy "$etcd_port"; wait_healthy "$ours_port"
for port in "$etcd_port" "$ours_port"; do
    ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$port" put bench-range-key value >/dev/null
done

if ((quick)); then scale=1; rounds=1; else scale=5; rounds=2; fi
# name | benchmark arguments (the total is scaled)
matrix=(
    "put, 1 client|--conns 1 --clients 1 --total $((1000 * scale)) put --key-size 8 --val-size 256"
    "put, 16 clients|--conns 4 --clients 16 --total $((4000 * scale)) put --key-size 8 --val-size 256 --key-space-size 100000"
    "put, 256 clients|--conns 16 --clients 256 --total $((8000 * scale)) put --key-size 8 --val-size 256 --key-space-size 100000"
    "range l, 1 client|--conns 1 --clients 1 --total $((1000 * scale)) range bench-range-key --consistency l"
    "range l, 256 clients|--conns 16 --clients 256 --total $((8000 * scale)) range bench-range-key --consistency l"
    "range s, 1 client|--conns 1 --clients 1 --total $((1000 * scale)) range bench-range-key --consistency s"
    "range s, 256 clients|--conns 16 --clients 256 --total $((8000 * scale)) range bench-range-key --consistency s"
    "txn-mixed, 16 clients|--conns 4 --clients 16 --total $((4000 * scale)) txn-mixed --rw-ratio 4 --key-space-size 10000 --limit 10"
    "watch-latency, 100 watchers|--conns 4 --clients 100 --total $((200 * scale)) watch-latency --put-rate 100"
)

results="$work/results.jsonl"
for entry in "${matrix[@]}"; do
    name=${entry%%|*}; args=${entry#*|}
    for round in $(seq 1 "$rounds"); do
        for side in etcd ours; do
            if [[ $side == etcd ]]; then port=$etcd_port; pid=$etcd_pid; else port=$ours_port; pid=$ours_pid; fi
            before=$(cpu_ticks "$pid")
            # shellcheck disable=SC2086
            if output=$("$bin/etcd-benchmark" --endpoints "127.0.0.1:$port" -w json --duration 60 $args 2>"$work/bench.err"); then
                status=ok
            else
                status="failed: $(tail -1 "$work/bench.err")"
                output='{}'
            fi
            after=$(cpu_ticks "$pid")
            python3 - "$name" "$side" "$round" "$((after - before))" "$(peak_rss_kb "$pid")" "$status" "$output" >>"$results" <<'PY'
import json, sys
name, side, round_, ticks, rss, status, output = sys.argv[1:8]
report = json.loads(output or "{}")
# txn-mixed reports its reads and writes apart: one row each, sharing the server's CPU by count.
parts = report.get("reports") or [report]
total = sum(part.get("total_requests", 0) for part in parts) or 1
for part in parts:
    label = name + (" (" + part["operation"].rsplit("-", 1)[-1] + ")" if len(parts) > 1 else "")
    share = part.get("total_requests", 0) / total
    print(json.dumps({"name": label, "side": side, "round": int(round_), "server_cpu_s": int(ticks) / 100 * share,
                      "peak_rss_mb": int(rss) / 1024, "status": status, "report": part}))
PY
        done
    done
done

python3 - "$results" <<'PY'
import json, sys
sys.path.insert(0, "scripts/lib")
from bench_report import print_table
rows = [json.loads(line) for line in open(sys.argv[1])]
names = list(dict.fromkeys(r["name"] for r in rows))

def summary(name, side):
    runs = [r for r in rows if r["name"] == name and r["side"] == side]
    good = [r for r in runs if r["status"] == "ok" and r["report"].get("successes", 0) > 0]
    if not good:
        return None, (runs[0]["status"] if runs else "no run")
    mean = lambda values: sum(values) / len(values)
    requests = sum(r["report"]["total_requests"] for r in good)
    return {
        "rps": mean([r["report"]["requests_per_second"] for r in good]),
        "p50": mean([r["report"]["latency_ms"]["percentiles"]["p50"] for r in good]),
        "p99": mean([r["report"]["latency_ms"]["percentiles"]["p99"] for r in good]),
        "rss": max(r["peak_rss_mb"] for r in good),
        "cpu_per_k": sum(r["server_cpu_s"] for r in good) / requests * 1000,
        # Connection trouble the benchmark saw: reconnects plus GOAWAYs received (should be 0).
        "drops": sum(r["report"].get("reconnects", 0) + r["report"].get("goaways_received", 0) for r in good),
    }, "ok"

header = ("workload", "etcd req/s", "ours req/s", "ratio", "etcd p50/p99 ms", "ours p50/p99 ms",
          "etcd RSS MB", "ours RSS MB", "etcd CPU s/1k", "ours CPU s/1k", "drops etcd/ours")
table = []
for name in names:
    etcd, etcd_status = summary(name, "etcd")
    ours, ours_status = summary(name, "ours")
    cell = lambda s, key, fmt: (fmt % s[key]) if s else "-"
    ratio = "%.2f" % (ours["rps"] / etcd["rps"]) if etcd and ours and etcd["rps"] else "-"
    table.append((name, cell(etcd, "rps", "%.0f"), cell(ours, "rps", "%.0f") if ours else ours_status[:40], ratio,
                  "%.1f/%.1f" % (etcd["p50"], etcd["p99"]) if etcd else "-",
                  "%.1f/%.1f" % (ours["p50"], ours["p99"]) if ours else "-",
                  cell(etcd, "rss", "%.0f"), cell(ours, "rss", "%.0f"),
                  cell(etcd, "cpu_per_k", "%.3f"), cell(ours, "cpu_per_k", "%.3f"),
                  "%s/%s" % (etcd["drops"] if etcd else "-", ours["drops"] if ours else "-")))
print_table(list(header), table)
PY
