#!/usr/bin/env bash
# Issue 7's lease benchmark, against real etcd and against swift-etcd, interleaved (etcd, ours,
# etcd, ours, ...) so that drift hits both. Two workloads, each on a fresh server:
#
#  - once: etcd's own `benchmark lease-keepalive`: 100 clients over 10 connections, each with one
#    lease, renewing it on a fresh LeaseKeepAlive stream per request (clientv3's KeepAliveOnce).
#  - live: 100,000 leases (TTL 60 s, clientv3's session default; TTL=30 for another), granted 100
#    at a time, then kept alive for 60 s over 100 streams on 10 connections, each lease renewed
#    every TTL/3 (as clientv3), so about 5,000 keepalives/s at TTL 60.
#
#   scripts/lease-benchmark.sh            # 2 rounds, about 12 minutes after the build
#   scripts/lease-benchmark.sh --quick    # 1 round, 20,000 live leases held 20 s, about 2 minutes
#   SIDES=ours ROUNDS=3 scripts/lease-benchmark.sh   # one server only, or another number of rounds
#   KEEP_RESULTS=/tmp/lease.jsonl scripts/lease-benchmark.sh   # also keep every run's raw figures
#
# For the live workload it reports the server's RSS before any lease exists, once the leases are
# granted and idle, and at the end of the hold, the difference per lease, the peak RSS, and the
# CPU seconds of the server, of the benchmark and of everything else on the machine during the
# grants and during the hold; for the once workload, the server's CPU per 1,000 keepalives. Every
# process this script starts is stopped when it exits, however it exits.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[[ "${1:-}" == "--quick" ]] && quick=1
sides=${SIDES:-"etcd ours"}
if ((quick)); then
    rounds=${ROUNDS:-1}; live_leases=20000; hold_seconds=20; once_total=10000
else
    rounds=${ROUNDS:-2}; live_leases=100000; hold_seconds=60; once_total=50000
fi
# clientv3's session default; keepalives every TTL/3. With 100,000 leases granted at about 4,000/s
# the first ones must outlive the grants and the idle pause (a TTL of 30 does not, on ours).
ttl=${TTL:-60}
idle_seconds=5
# The server's idle RSS is read this long after the last grant (within the idle pause).
rss_settle_seconds=3
once_args=(--conns 10 --clients 100 --total "$once_total" lease-keepalive)
live_args=(--conns 10 --clients 100 lease-keepalive --live-leases "$live_leases" --streams 100 --ttl "$ttl"
    --hold-seconds "$hold_seconds" --idle-seconds "$idle_seconds")

# shellcheck source=lib/bench-server.sh
source scripts/lib/bench-server.sh

results="$work/results.jsonl"
# record WORKLOAD SIDE ROUND STATUS JSON-FIELDS...: appends one run's figures to the results.
record() {
    python3 - "$@" >>"$results" <<'PY'
import json, sys
workload, side, round_, status, path = sys.argv[1:6]
try:
    report = json.load(open(path))
except (OSError, ValueError):
    report = {}
row = {"workload": workload, "side": side, "round": int(round_), "status": status, "report": report}
for pair in sys.argv[6:]:
    key, value = pair.split("=", 1)
    row[key] = float(value)
print(json.dumps(row))
PY
}

# phase_fields NAME START END: the server's and the machine's CPU seconds and the wall seconds
# between two samples, as NAME_server_cpu_s=... fields for record. The benchmark's own CPU comes
# from its report: it may have exited by the time a phase's end is sampled.
phase_fields() {
    local -n from=$2 to=$3
    echo "$1_server_cpu_s=$(((to[0] - from[0]) * 1000 / clock_ticks))e-3" \
        "$1_machine_cpu_s=$(((to[2] - from[2]) * 1000 / clock_ticks))e-3" \
        "$1_span_s=$((to[3] - from[3]))e-3"
}

for round in $(seq 1 "$rounds"); do
    for side in $sides; do
        # once: the server's CPU from the benchmark's start to its end.
        dir="$work/once-$side-$round"; mkdir -p "$dir"
        start_server "$side" "$dir"
        sleep 1
        "$bin/etcd-benchmark" --endpoints "127.0.0.1:$port" -w json "${once_args[@]}" >"$dir/bench.json" \
            2>"$dir/bench.err" &
        bench_pid=$!
        pids+=("$bench_pid")
        start=(0 0 0 0); sample start
        status=ok
        wait "$bench_pid" || status="failed: $(tail -1 "$dir/bench.err")"
        end=(0 0 0 0); sample end
        peak=$(peak_rss_kb "$server_pid")
        stop_server
        # shellcheck disable=SC2046
        record once "$side" "$round" "$status" "$dir/bench.json" "peak_rss_kb=$peak" $(phase_fields run start end)
        echo "round $round, once, $side: $status" >&2

        # live: memory before, after the grants and at the end of the hold; CPU per phase.
        dir="$work/live-$side-$round"; mkdir -p "$dir"
        start_server "$side" "$dir"
        sleep 1
        rss_before=$(rss_kb "$server_pid")
        "$bin/etcd-benchmark" --endpoints "127.0.0.1:$port" -w json "${live_args[@]}" >"$dir/bench.json" \
            2>"$dir/bench.err" &
        bench_pid=$!
        pids+=("$bench_pid")
        grant_start=(0 0 0 0); sample grant_start
        grant_end=(0 0 0 0); hold_start=(0 0 0 0); hold_end=(0 0 0 0); rss_idle=0; rss_hold=0; status=ok
        if wait_mark "$dir/bench.err" leases-granted "$bench_pid" 600; then
            sample grant_end
            sleep "$rss_settle_seconds"
            rss_idle=$(rss_kb "$server_pid")
            if wait_mark "$dir/bench.err" keepalives-start "$bench_pid" 30; then
                sample hold_start
                # The RSS at the end of the hold, read just before it ends.
                sleep "$((hold_seconds - 1))"
                rss_hold=$(rss_kb "$server_pid")
                wait_mark "$dir/bench.err" keepalives-end "$bench_pid" 60 && sample hold_end
            fi
        fi
        wait "$bench_pid" || status="failed: $(grep -v '^MARK\|^lease-keepalive:' "$dir/bench.err" | tail -1)"
        peak=$(peak_rss_kb "$server_pid")
        stop_server
        fields=("rss_before_kb=$rss_before" "rss_idle_kb=$rss_idle" "rss_hold_kb=$rss_hold" "peak_rss_kb=$peak")
        # shellcheck disable=SC2207
        fields+=($(phase_fields grant grant_start grant_end) $(phase_fields hold hold_start hold_end))
        record live "$side" "$round" "$status" "$dir/bench.json" "${fields[@]}"
        echo "round $round, live, $side: $status" >&2
    done
done

python3 - "$results" <<'PY'
import json, statistics, sys
sys.path.insert(0, "scripts/lib")
from bench_report import by_operation, print_table
rows = [json.loads(line) for line in open(sys.argv[1])]

pct = lambda r, p: r["latency_ms"]["percentiles"][p]

def once_figures(row):
    report = by_operation(row["report"], "lease-keepalive")
    if row["status"] != "ok" or not report:
        return None
    span = max(row["run_span_s"], 1e-9)
    return {
        "keepalives/s": report["requests_per_second"], "p50": pct(report, "p50"), "p99": pct(report, "p99"),
        "errors": report["errors"],
        "server cores": row["run_server_cpu_s"] / span,
        "server µs/keepalive": row["run_server_cpu_s"] * 1e6 / max(report["successes"], 1),
        "bench µs/keepalive": report["client_cpu_seconds"] * 1e6 / max(report["successes"], 1),
        "peak RSS MB": row["peak_rss_kb"] / 1024,
    }

def live_figures(row):
    report = row["report"]
    grants, keepalives = by_operation(report, "lease-grant"), by_operation(report, "lease-keepalive")
    if row["status"] != "ok" or not grants or not keepalives:
        return None
    hold = max(row["hold_span_s"], 1e-9)
    answered = max(report["keepalives_answered"], 1)
    return {
        "leases": report["leases_granted"], "grants/s": grants["requests_per_second"],
        "grant server µs": row["grant_server_cpu_s"] * 1e6 / max(grants["successes"], 1),
        "RSS before MB": row["rss_before_kb"] / 1024, "RSS idle MB": row["rss_idle_kb"] / 1024,
        "B/idle lease": (row["rss_idle_kb"] - row["rss_before_kb"]) * 1024 / max(report["leases_granted"], 1),
        "RSS hold MB": row["rss_hold_kb"] / 1024, "peak RSS MB": row["peak_rss_kb"] / 1024,
        "keepalives/s": report["keepalives_per_second"],
        "p50": pct(keepalives, "p50"), "p99": pct(keepalives, "p99"), "max": keepalives["latency_ms"]["slowest"],
        "lost": report["leases_lost"],
        "server cores": row["hold_server_cpu_s"] / hold,
        "server µs/keepalive": row["hold_server_cpu_s"] * 1e6 / answered,
        "bench cores": keepalives["client_cpu_seconds"] / hold,
        "other cores": max(row["hold_machine_cpu_s"] - row["hold_server_cpu_s"] - keepalives["client_cpu_seconds"], 0)
                       / hold,
    }

def section(title, workload, figures, columns):
    print(title + "\n")
    header = ["server", "round"] + [name for name, _ in columns]
    table = []
    for row in (r for r in rows if r["workload"] == workload):
        f = figures(row)
        if f is None:
            table.append([row["side"], row["round"], row["status"][:70]] + ["-"] * (len(columns) - 1))
        else:
            table.append([row["side"], row["round"]] + [fmt % f[name] for name, fmt in columns])
    print_table(header, table)
    print("\nMedian over each server's successful runs:\n")
    header = ["server", "runs"] + [name for name, _ in columns]
    table = []
    for side in dict.fromkeys(r["side"] for r in rows):
        runs = [f for f in (figures(r) for r in rows if r["workload"] == workload and r["side"] == side) if f]
        if runs:
            table.append([side, len(runs)] + [fmt % statistics.median(f[name] for f in runs) for name, fmt in columns])
    print_table(header, table)
    print()

section("once: one keepalive per fresh stream, 100 clients (latencies in ms; cores = CPU s / wall s)", "once",
        once_figures, [("keepalives/s", "%.0f"), ("p50", "%.2f"), ("p99", "%.2f"), ("errors", "%d"),
                       ("server cores", "%.2f"), ("server µs/keepalive", "%.1f"), ("bench µs/keepalive", "%.1f"),
                       ("peak RSS MB", "%.0f")])
section("live: leases granted, then held under keepalives (RSS in MB; latencies in ms; cores over the hold)", "live",
        live_figures, [("leases", "%d"), ("grants/s", "%.0f"), ("grant server µs", "%.0f"), ("RSS before MB", "%.0f"),
                       ("RSS idle MB", "%.0f"), ("B/idle lease", "%.0f"), ("RSS hold MB", "%.0f"),
                       ("peak RSS MB", "%.0f"), ("keepalives/s", "%.0f"), ("p50", "%.2f"), ("p99", "%.2f"),
                       ("max", "%.0f"), ("lost", "%d"), ("server cores", "%.2f"), ("server µs/keepalive", "%.1f"),
                       ("bench cores", "%.2f"), ("other cores", "%.2f")])
PY
if [[ -n "${KEEP_RESULTS:-}" ]]; then cp "$results" "$KEEP_RESULTS"; fi
