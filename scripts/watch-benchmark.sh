#!/usr/bin/env bash
# Issue 6's watch benchmark: `etcd-benchmark watch-mixed` (10,000 watchers on distinct keys over
# 100 streams, plus 100 watchers on one hot prefix, while 1,000 puts/s are written) against real
# etcd and against swift-etcd, interleaved (etcd, ours, etcd, ours, ...) so that drift hits both.
#
#   scripts/watch-benchmark.sh            # 3 rounds of 10,000 puts, 2.5-5 minutes after the build
#   scripts/watch-benchmark.sh --quick    # 1 round of 5,000 puts, about 1 minute
#   SIDES=etcd ROUNDS=2 scripts/watch-benchmark.sh   # one server only, or another number of rounds
#   KEEP_RESULTS=/tmp/watch.jsonl scripts/watch-benchmark.sh   # also keep every run's raw figures
#
# Every run gets a fresh server (fresh data directory, 127.0.0.1, free ports, fsync on), so that
# memory figures start from the same place. For each run it reports the server's RSS before any
# watcher exists, its RSS once all watchers are created and idle (sampled during the benchmark's
# --idle-seconds pause), the difference per watcher, the peak RSS, the CPU seconds of the server,
# of the benchmark and of everything else on the machine from the first put until the events
# drained, and the benchmark's own figures; then the median of each server's runs. At 50,000
# events/s the benchmark client needs about a core of its own, so on a small or shared machine
# "other CPU" tells whether a run was starved. Every process this script starts is stopped when it
# exits, however it exits.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[[ "${1:-}" == "--quick" ]] && quick=1
sides=${SIDES:-"etcd ours"}
if ((quick)); then rounds=${ROUNDS:-1}; put_total=5000; else rounds=${ROUNDS:-3}; put_total=10000; fi
idle_seconds=5
# The server's idle RSS is read this long after the last watcher was created (within the idle pause).
rss_settle_seconds=3
# Puts go out on a connection of their own, paced at 1,000/s with up to --clients in flight: with
# 100, puts may take up to 100 ms each before the rate drops, so the load stays what the issue asks
# for while the machine is busy (with 32, ~30 ms puts under 50,000 events/s already held it near
# 900/s). The watch streams share --conns connections (10 streams on each). The
# put phase stops after --duration seconds even if the machine cannot keep the rate, which bounds
# the run; the expected events count only the puts that were made.
bench_args=(--conns 10 --clients 100 --duration 20 watch-mixed --distinct-watchers 10000 --streams 100
    --hot-watchers 100 --put-total "$put_total" --put-rate 1000 --idle-seconds "$idle_seconds" --drain-timeout 15)

if ! command -v etcd >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
fi
[[ " $sides " == *" ours "* ]] && swift build -c release --product etcd >/dev/null
swift build -c release --product etcd-benchmark >/dev/null
bin=$(swift build -c release --show-bin-path)

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
clock_ticks=$(getconf CLK_TCK)
# These read 0 once the process is gone, so that a crashed server shows up in the table, not as an abort.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
peak_rss_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# Ticks the whole machine spent busy (every state but idle and iowait), over all cores.
machine_busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
now_ms() { date +%s%3N; }

# start_server SIDE DIR: starts a fresh server, sets server_pid and port.
start_server() {
    local side=$1 dir=$2 peer
    port=$(free_port); peer=$(free_port)
    local binary=etcd
    [[ $side == ours ]] && binary="$bin/etcd"
    "$binary" --name default --data-dir "$dir/data" \
        --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
        --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "default=http://127.0.0.1:$peer" >"$dir/server.log" 2>&1 &
    server_pid=$!
    pids+=("$server_pid")
    for _ in $(seq 1 100); do
        ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$port" --command-timeout=1s endpoint health >/dev/null 2>&1 \
            && return 0
        sleep 0.1
    done
    echo "$side server on port $port did not become healthy; its log:" >&2
    tail -20 "$dir/server.log" >&2
    return 1
}

stop_server() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
}

# wait_mark FILE MARK PID SECONDS: waits for "MARK <mark>" in FILE while PID lives.
wait_mark() {
    local deadline=$((SECONDS + $4))
    until grep -q "^MARK $2\$" "$1" 2>/dev/null; do
        kill -0 "$3" 2>/dev/null || return 1
        ((SECONDS < deadline)) || return 1
        sleep 0.05
    done
}

# sample NAME: records CPU ticks of the server, the benchmark and the machine, and the time.
sample() {
    local -n into=$1
    into=("$(cpu_ticks "$server_pid")" "$(cpu_ticks "$bench_pid")" "$(machine_busy_ticks)" "$(now_ms)")
}

results="$work/results.jsonl"
for round in $(seq 1 "$rounds"); do
    for side in $sides; do
        dir="$work/$side-$round"; mkdir -p "$dir"
        start_server "$side" "$dir"
        sleep 1
        rss_before=$(rss_kb "$server_pid")
        load=$(cut -d' ' -f1 /proc/loadavg)
        "$bin/etcd-benchmark" --endpoints "127.0.0.1:$port" -w json "${bench_args[@]}" >"$dir/bench.json" \
            2>"$dir/bench.err" &
        bench_pid=$!
        pids+=("$bench_pid")
        rss_idle=0; start=(0 0 0 0); end=(0 0 0 0); status=ok
        if wait_mark "$dir/bench.err" watchers-created "$bench_pid" 150; then
            sleep "$rss_settle_seconds"
            rss_idle=$(rss_kb "$server_pid")
            wait_mark "$dir/bench.err" puts-start "$bench_pid" 30 && sample start
            wait_mark "$dir/bench.err" events-drained "$bench_pid" 60 && sample end
        fi
        if ! wait "$bench_pid"; then
            status="failed: $(grep -v '^MARK\|^watch-mixed:' "$dir/bench.err" | tail -1)"
        fi
        peak=$(peak_rss_kb "$server_pid")
        stop_server
        python3 - "$side" "$round" "$rss_before" "$rss_idle" "$peak" "$load" "$clock_ticks" "$status" \
            "$dir/bench.json" "${start[@]}" "${end[@]}" >>"$results" <<'PY'
import json, sys
side, round_, before, idle, peak, load, hz, status, path = sys.argv[1:10]
start, end = [int(v) for v in sys.argv[10:14]], [int(v) for v in sys.argv[14:18]]
hz = int(hz)
try:
    report = json.load(open(path))
except (OSError, ValueError):
    report = {}
server, bench, machine = ((end[i] - start[i]) / hz for i in range(3))
print(json.dumps({"side": side, "round": int(round_), "rss_before_kb": int(before), "rss_idle_kb": int(idle),
                  "peak_rss_kb": int(peak), "load_before": float(load), "server_cpu_s": server, "bench_cpu_s": bench,
                  # Everything else the machine ran meanwhile (other sessions, builds, the kernel's own work).
                  "other_cpu_s": max(machine - server - bench, 0), "span_s": (end[3] - start[3]) / 1000,
                  "status": status, "report": report}))
PY
        echo "round $round, $side: $status" >&2
    done
done

python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]

def by_operation(report, name):
    return next((r for r in report.get("reports", []) if r["operation"] == name), None)

def figures(row):
    report = row["report"]
    if row["status"] != "ok" or not report:
        return None
    events, distinct, hot, put = (by_operation(report, name) for name in
                                  ("watch-event", "watch-event-distinct", "watch-event-hot", "watch-mixed-put"))
    pct = lambda r, p: r["latency_ms"]["percentiles"][p]
    received = max(report["events_received"], 1)
    span = max(row["span_s"], 1e-9)
    return {
        "puts/s": put["requests_per_second"],
        "events received": report["events_received"], "events expected": report["events_expected"],
        "events/s": report["events_per_second"],
        "p50": pct(events, "p50"), "p90": pct(events, "p90"), "p99": pct(events, "p99"),
        "max": events["latency_ms"]["slowest"],
        "distinct p50": pct(distinct, "p50"), "distinct p99": pct(distinct, "p99"),
        "hot p50": pct(hot, "p50"), "hot p99": pct(hot, "p99"),
        "put p50": pct(put, "p50"), "put p99": pct(put, "p99"),
        "create s": report["creation_seconds"],
        "RSS before MB": row["rss_before_kb"] / 1024, "RSS idle MB": row["rss_idle_kb"] / 1024,
        "B/idle watcher": (row["rss_idle_kb"] - row["rss_before_kb"]) * 1024
                          / (report["watchers_distinct"] + report["watchers_hot"]),
        "peak RSS MB": row["peak_rss_kb"] / 1024,
        "server cores": row["server_cpu_s"] / span, "server µs/event": row["server_cpu_s"] * 1e6 / received,
        "bench cores": row["bench_cpu_s"] / span, "bench µs/event": row["bench_cpu_s"] * 1e6 / received,
        "other cores": row["other_cpu_s"] / span, "load before": row["load_before"],
    }

columns = [("puts/s", "%.0f"), ("events/s", "%.0f"), ("p50", "%.1f"), ("p90", "%.1f"), ("p99", "%.1f"),
           ("max", "%.0f"), ("distinct p50", "%.1f"), ("distinct p99", "%.1f"), ("hot p50", "%.1f"),
           ("hot p99", "%.1f"), ("put p50", "%.1f"), ("put p99", "%.1f"), ("create s", "%.2f"),
           ("RSS before MB", "%.0f"), ("RSS idle MB", "%.0f"), ("B/idle watcher", "%.0f"), ("peak RSS MB", "%.0f"),
           ("server cores", "%.2f"), ("server µs/event", "%.1f"), ("bench cores", "%.2f"), ("bench µs/event", "%.1f"),
           ("other cores", "%.2f"), ("load before", "%.1f")]

def print_table(header, table):
    widths = [max(len(str(r[i])) for r in [header] + table) for i in range(len(header))]
    for index, r in enumerate([header] + table):
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")
        if index == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")

print("Latencies in ms, from each put's start to each watcher receiving its event; cores = CPU seconds / seconds")
print("from the first put until the events drained.\n")
header = ["server", "round", "events recv/exp"] + [name for name, _ in columns]
table = []
for row in rows:
    f = figures(row)
    if f is None:
        table.append([row["side"], row["round"], row["status"][:70]] + ["-"] * len(columns))
    else:
        table.append([row["side"], row["round"], "%d/%d" % (f["events received"], f["events expected"])]
                     + [fmt % f[name] for name, fmt in columns])
print_table(header, table)

print("\nMedian over each server's successful runs:\n")
header = ["server", "runs"] + [name for name, _ in columns]
table = []
for side in dict.fromkeys(r["side"] for r in rows):
    runs = [f for f in (figures(r) for r in rows if r["side"] == side) if f]
    if runs:
        table.append([side, len(runs)] + [fmt % statistics.median(f[name] for f in runs) for name, fmt in columns])
print_table(header, table)
PY
if [[ -n "${KEEP_RESULTS:-}" ]]; then cp "$results" "$KEEP_RESULTS"; fi
