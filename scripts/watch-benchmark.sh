#!/usr/bin/env bash
# Issue 6's watch benchmark: `etcd-benchmark watch-mixed` (10,000 watchers on distinct keys over
# 100 streams, plus 100 watchers on one hot prefix, while 1,000 puts/s are written) against real
# etcd and against swift-etcd, interleaved (etcd, ours, etcd, ours) so that drift hits both.
#
#   scripts/watch-benchmark.sh            # 2 rounds of 20,000 puts each, about 3 minutes after the build
#   scripts/watch-benchmark.sh --quick    # 1 round of 5,000 puts, about 1 minute
#   SIDES="etcd" scripts/watch-benchmark.sh   # one server only (ROUNDS=n sets the rounds)
#   KEEP_RESULTS=/tmp/watch.jsonl scripts/...  # also keep every run's raw figures
#
# Every run gets a fresh server (fresh data directory, 127.0.0.1, free ports, fsync on), so that
# memory figures start from the same place. For each run it reports the server's RSS before any
# watcher exists, its RSS once all watchers are created and idle (sampled during the benchmark's
# --idle-seconds pause), the difference per watcher, the peak RSS, the server's CPU seconds from the
# first put until the last event drained, and the benchmark's own figures. Every process this script
# starts is stopped when it exits, however it exits.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[[ "${1:-}" == "--quick" ]] && quick=1
sides=${SIDES:-"etcd ours"}
if ((quick)); then rounds=${ROUNDS:-1}; put_total=5000; else rounds=${ROUNDS:-2}; put_total=20000; fi
idle_seconds=6
# The server's idle RSS is read this long after the last watcher was created (within the idle pause).
rss_settle_seconds=4
# Puts go out on a connection of their own, --clients in flight, so that a slow put does not hold
# the rate below 1,000/s; the watch streams share --conns connections (10 streams on each).
bench_args=(--conns 10 --clients 32 --duration 120 watch-mixed --distinct-watchers 10000 --streams 100
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
        ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$port" --command-timeout=1s endpoint health >/dev/null 2>&1 && return 0
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

results="$work/results.jsonl"
for round in $(seq 1 "$rounds"); do
    for side in $sides; do
        dir="$work/$side-$round"; mkdir -p "$dir"
        start_server "$side" "$dir"
        sleep 1
        rss_before=$(rss_kb "$server_pid")
        "$bin/etcd-benchmark" --endpoints "127.0.0.1:$port" -w json "${bench_args[@]}" >"$dir/bench.json" 2>"$dir/bench.err" &
        bench_pid=$!
        pids+=("$bench_pid")
        rss_idle=0; cpu_start=0; cpu_end=0; status=ok
        if wait_mark "$dir/bench.err" watchers-created "$bench_pid" 150; then
            sleep "$rss_settle_seconds"
            rss_idle=$(rss_kb "$server_pid")
            wait_mark "$dir/bench.err" puts-start "$bench_pid" 30 && cpu_start=$(cpu_ticks "$server_pid")
            wait_mark "$dir/bench.err" events-drained "$bench_pid" 150 && cpu_end=$(cpu_ticks "$server_pid")
        fi
        if ! wait "$bench_pid"; then
            status="failed: $(grep -v '^MARK\|^watch-mixed:' "$dir/bench.err" | tail -1)"
        fi
        peak=$(peak_rss_kb "$server_pid")
        stop_server
        python3 - "$side" "$round" "$rss_before" "$rss_idle" "$peak" "$((cpu_end - cpu_start))" "$clock_ticks" \
            "$status" "$dir/bench.json" >>"$results" <<'PY'
import json, sys
side, round_, before, idle, peak, ticks, hz, status, path = sys.argv[1:10]
try:
    report = json.load(open(path))
except (OSError, ValueError):
    report = {}
print(json.dumps({"side": side, "round": int(round_), "rss_before_kb": int(before), "rss_idle_kb": int(idle),
                  "peak_rss_kb": int(peak), "server_cpu_s": int(ticks) / int(hz), "status": status, "report": report}))
PY
        echo "round $round, $side: $status" >&2
    done
done

python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]

def by_operation(report, name):
    return next((r for r in report.get("reports", []) if r["operation"] == name), None)

header = ("server", "round", "puts/s", "events recv/exp", "events/s", "all p50/p90/p99/max ms", "distinct p50/p99 ms",
          "hot p50/p99 ms", "put p50/p99 ms", "create s", "RSS before MB", "RSS idle MB", "B/idle watcher",
          "peak RSS MB", "server CPU s", "bench CPU s")
table = [header]
for row in rows:
    report = row["report"]
    if row["status"] != "ok" or not report:
        table.append((row["side"], row["round"], row["status"][:60]) + ("-",) * (len(header) - 3))
        continue
    watchers = report["watchers_distinct"] + report["watchers_hot"]
    events, distinct, hot, put = (by_operation(report, name) for name in
                                  ("watch-event", "watch-event-distinct", "watch-event-hot", "watch-mixed-put"))
    pct = lambda r, p: r["latency_ms"]["percentiles"][p]
    table.append((
        row["side"], row["round"],
        "%.0f" % put["requests_per_second"],
        "%d/%d" % (report["events_received"], report["events_expected"]),
        "%.0f" % report["events_per_second"],
        "%.1f/%.1f/%.1f/%.1f" % (pct(events, "p50"), pct(events, "p90"), pct(events, "p99"), events["latency_ms"]["slowest"]),
        "%.1f/%.1f" % (pct(distinct, "p50"), pct(distinct, "p99")),
        "%.1f/%.1f" % (pct(hot, "p50"), pct(hot, "p99")),
        "%.1f/%.1f" % (pct(put, "p50"), pct(put, "p99")),
        "%.2f" % report["creation_seconds"],
        "%.0f" % (row["rss_before_kb"] / 1024), "%.0f" % (row["rss_idle_kb"] / 1024),
        "%.0f" % ((row["rss_idle_kb"] - row["rss_before_kb"]) * 1024 / watchers),
        "%.0f" % (row["peak_rss_kb"] / 1024),
        "%.1f" % row["server_cpu_s"],
        "%.1f" % report["events_client_cpu_seconds"],
    ))
widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
for index, r in enumerate(table):
    print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")
    if index == 0:
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
print()
print("Server CPU s: from the first put until the benchmark stopped waiting for events. Bench CPU s: the")
print("benchmark process over the same span (it decodes every event; compare with the elapsed seconds).")
for row in rows:
    if row["report"]:
        print("%s round %d: events elapsed %.1f s, puts ok %d, watchers canceled %d, stream errors %d" % (
            row["side"], row["round"], row["report"]["events_elapsed_seconds"],
            row["report"]["puts_ok_distinct"] + row["report"]["puts_ok_hot"], row["report"]["watchers_canceled"],
            (by_operation(row["report"], "watch-event") or {}).get("errors", 0)))
PY
if [[ -n "${KEEP_RESULTS:-}" ]]; then cp "$results" "$KEEP_RESULTS"; fi
