#!/usr/bin/env bash
# Runs the same etcd-benchmark matrix against real etcd and against swift-etcd on this machine,
# interleaved (etcd, ours, etcd, ours) so that drift hits both, and prints one table.
#
#   scripts/compare-with-etcd.sh                   # full matrix, under 10 minutes
#   scripts/compare-with-etcd.sh --quick           # smaller totals, under 2 minutes
#   scripts/compare-with-etcd.sh --cluster         # 3-member clusters: puts and ranges, about 4 minutes
#   scripts/compare-with-etcd.sh --cluster --quick # the same with smaller totals, about 1 minute
#   scripts/compare-with-etcd.sh --grpc-swift [...] # ours on its fallback gRPC server
#                                                  # (--experimental-grpc-server=grpc-swift)
#   BENCH_ONLY='range l, 1' scripts/compare-with-etcd.sh --cluster
#                                                  # only the rows whose name contains that text
#
# Both servers run on 127.0.0.1 with fresh data directories and fsync on; every process this
# script starts is stopped when it exits, however it exits. With BENCH_KEEP_LOGS=DIR set, the
# servers' logs and the raw results are copied to DIR first.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
cluster=0
server_flags=()
for argument in "$@"; do
    case $argument in
        --quick) quick=1 ;;
        --cluster) cluster=1 ;;
        --grpc-swift) server_flags=(--experimental-grpc-server=grpc-swift) ;;
        *) echo "usage: $0 [--cluster] [--grpc-swift] [--quick]" >&2; exit 2 ;;
    esac
done

sides="etcd ours"
# shellcheck source=lib/bench-server.sh
source scripts/lib/bench-server.sh
keep_logs() {
    [[ -n "${BENCH_KEEP_LOGS:-}" ]] || return 0
    mkdir -p "$BENCH_KEEP_LOGS"
    cp "$work"/*.log "$work"/*.jsonl "$work"/*.err "$BENCH_KEEP_LOGS"/ 2>/dev/null || true
}
trap 'keep_logs; cleanup' EXIT

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
    "lease-keepalive, 16 clients|--conns 4 --clients 16 --total $((4000 * scale)) lease-keepalive"
)
results="$work/results.jsonl"

# record NAME SIDE ROUND CPU_TICKS RSS_KB STATUS OUTPUT [EXTRA_JSON]: appends the run's rows (one
# per phase of the report) to the results, with the fields of EXTRA_JSON added to each.
record() {
    python3 - "$@" >>"$results" <<'PY'
import json, sys
name, side, round_, ticks, rss, status, output = sys.argv[1:8]
extra = json.loads(sys.argv[8]) if len(sys.argv) > 8 else {}
report = json.loads(output or "{}")
# txn-mixed reports its reads and writes apart: one row each, sharing the server's CPU by count.
parts = report.get("reports") or [report]
total = sum(part.get("total_requests", 0) for part in parts) or 1
for part in parts:
    label = name + (" (" + part["operation"].rsplit("-", 1)[-1] + ")" if len(parts) > 1 else "")
    share = part.get("total_requests", 0) / total
    print(json.dumps({"name": label, "side": side, "round": int(round_), "server_cpu_s": int(ticks) / 100 * share,
                      "peak_rss_mb": int(rss) / 1024, "status": status, "report": part, **extra}))
PY
}

# summarize: prints the table of the results, one row per workload, etcd beside ours; in cluster
# mode the RSS columns hold the sum and the largest of the three members' peaks, and the CPU is
# the three members' together.
summarize() {
    python3 - "$results" "$cluster" <<'PY'
import json, sys
sys.path.insert(0, "scripts/lib")
from bench_report import print_table
rows = [json.loads(line) for line in open(sys.argv[1])]
cluster = sys.argv[2] == "1"
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
        "rss_max": max(r.get("peak_rss_max_mb", 0) for r in good),
        "cpu_per_k": sum(r["server_cpu_s"] for r in good) / requests * 1000,
        # Connection trouble the benchmark saw: reconnects plus GOAWAYs received (should be 0).
        "drops": sum(r["report"].get("reconnects", 0) + r["report"].get("goaways_received", 0) for r in good),
        "errors": sum(r["report"].get("errors", 0) for r in good),
    }, "ok"

if cluster:
    header = ("workload", "etcd req/s", "ours req/s", "ratio", "etcd p50/p99 ms", "ours p50/p99 ms",
              "etcd RSS sum/max MB", "ours RSS sum/max MB", "etcd CPU s/1k", "ours CPU s/1k",
              "errors etcd/ours", "drops etcd/ours")
else:
    header = ("workload", "etcd req/s", "ours req/s", "ratio", "etcd p50/p99 ms", "ours p50/p99 ms",
              "etcd RSS MB", "ours RSS MB", "etcd CPU s/1k", "ours CPU s/1k", "drops etcd/ours")
table = []
for name in names:
    etcd, etcd_status = summary(name, "etcd")
    ours, ours_status = summary(name, "ours")
    cell = lambda s, key, fmt: (fmt % s[key]) if s else "-"
    rss = (lambda s: "%.0f/%.0f" % (s["rss"], s["rss_max"]) if s else "-") if cluster else (lambda s: cell(s, "rss", "%.0f"))
    ratio = "%.2f" % (ours["rps"] / etcd["rps"]) if etcd and ours and etcd["rps"] else "-"
    row = [name, cell(etcd, "rps", "%.0f") if etcd or not cluster else etcd_status[:40], cell(ours, "rps", "%.0f") if ours else ours_status[:40], ratio,
           "%.1f/%.1f" % (etcd["p50"], etcd["p99"]) if etcd else "-",
           "%.1f/%.1f" % (ours["p50"], ours["p99"]) if ours else "-",
           rss(etcd), rss(ours),
           cell(etcd, "cpu_per_k", "%.3f"), cell(ours, "cpu_per_k", "%.3f")]
    if cluster:
        row.append("%s/%s" % (etcd["errors"] if etcd else "-", ours["errors"] if ours else "-"))
    row.append("%s/%s" % (etcd["drops"] if etcd else "-", ours["drops"] if ours else "-"))
    table.append(tuple(row))
print_table(list(header), table)
if cluster:
    # Which member led each cluster, as the benchmark found it after each run: a change of term
    # means an election happened under load.
    for side in ("etcd", "ours"):
        seen = list(dict.fromkeys("%s (term %s)" % (r.get("leader"), r.get("term")) for r in rows if r["side"] == side))
        print("%s leader after each run: %s" % (side, ", ".join(seen)))
PY
}

if ((cluster)); then
    # Two 3-member clusters laid out as etcd's Procfile lays out infra1..infra3 (here on free
    # ports), fresh data directories, one token each.
    declare -A member_pids member_ports leader
    # Each member needs two ports; taken together so that none repeats.
    read -r -a ports <<<"$(python3 -c '
import socket
sockets = [socket.socket() for _ in range(15)]
for s in sockets: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in sockets))')"
    for side in etcd ours; do
        binary=etcd
        [[ $side == ours ]] && binary="$bin/etcd"
        offset=0; [[ $side == ours ]] && offset=6
        initial=""
        for i in 1 2 3; do
            initial+="${initial:+,}infra$i=http://127.0.0.1:${ports[offset + 2 * i - 1]}"
        done
        for i in 1 2 3; do
            client=${ports[offset + 2 * i - 2]}; peer=${ports[offset + 2 * i - 1]}
            member_flags=()
            [[ $side == ours ]] && member_flags=("${server_flags[@]}")
            "$binary" --name "infra$i" --data-dir "$work/$side-infra$i" \
                --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
                --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
                --initial-cluster-token "$side-cluster-1" --initial-cluster "$initial" \
                --initial-cluster-state new "${member_flags[@]}" >"$work/$side-infra$i.log" 2>&1 &
            pids+=($!)
            member_pids[$side]+="${member_pids[$side]:+ }$!"
            member_ports[$side]+="${member_ports[$side]:+ }$client"
        done
    done

    # Every member must answer `endpoint health` (a linearizable read: a leader exists and the
    # member has caught up with it).
    for side in etcd ours; do
        for port in ${member_ports[$side]}; do
            for attempt in $(seq 1 300); do
                ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$port" --command-timeout=1s endpoint health >/dev/null 2>&1 && break
                if ((attempt == 300)); then
                    echo "$side member on port $port did not become healthy; the logs:" >&2
                    tail -n 5 "$work/$side"-infra*.log >&2
                    exit 1
                fi
                sleep 0.1
            done
        done
        ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:${member_ports[$side]%% *}" put bench-range-key value >/dev/null
        echo "$side cluster healthy ${SECONDS}s after the script started" >&2
    done

    # leader_of SIDE: prints "NAME TERM ENDPOINT" of the side's leader, by asking every member.
    leader_of() {
        local endpoints
        endpoints=$(sed 's/\([0-9]*\)/127.0.0.1:\1/g; s/ /,/g' <<<"${member_ports[$1]}")
        ETCDCTL_API=3 etcdctl --endpoints "$endpoints" --command-timeout=5s endpoint status -w json 2>/dev/null \
            | python3 -c '
import json, sys
statuses = json.load(sys.stdin)
by_id = {s["Status"]["header"]["member_id"]: s for s in statuses}
leader = by_id.get(statuses[0]["Status"]["leader"]) if statuses else None
ports = sys.argv[1].split()
if leader:
    port = leader["Endpoint"].rsplit(":", 1)[1]
    print("infra%d" % (ports.index(port) + 1), leader["Status"]["raftTerm"], leader["Endpoint"])
else:
    print("none ? -")' "${member_ports[$1]}" || echo "none ? -"
    }
    # The benchmark deals its connections round-robin over --endpoints, as etcd's does; listing
    # the two followers first (then the leader) puts a 1-connection run on a follower on both
    # sides, and 4 or 16 connections at 2/1/1 or 6/5/5.
    declare -A endpoints_of
    for side in etcd ours; do
        read -r leader_name _ leader_endpoint <<<"$(leader_of "$side")"
        leader[$side]=$leader_name
        list=""
        for port in ${member_ports[$side]}; do
            [[ "127.0.0.1:$port" == "$leader_endpoint" ]] || list+="${list:+,}127.0.0.1:$port"
        done
        endpoints_of[$side]="$list,$leader_endpoint"
        echo "$side cluster: leader $leader_name; --endpoints ${endpoints_of[$side]}" >&2
    done

    # Puts and ranges: txn-mixed and watch-latency stay single-member comparisons.
    for entry in "${matrix[@]:0:7}"; do
        name=${entry%%|*}; args=${entry#*|}
        [[ $name == *"${BENCH_ONLY:-}"* ]] || continue
        for round in $(seq 1 "$rounds"); do
            for side in etcd ours; do
                before=0
                for pid in ${member_pids[$side]}; do before=$((before + $(cpu_ticks "$pid"))); done
                # shellcheck disable=SC2086
                if output=$("$bin/etcd-benchmark" --endpoints "${endpoints_of[$side]}" -w json --duration 60 $args 2>"$work/bench.err"); then
                    status=ok
                else
                    status="failed: $(tail -1 "$work/bench.err")"
                    output='{}'
                fi
                after=0; rss_sum=0; rss_max=0; index=0
                for pid in ${member_pids[$side]}; do
                    index=$((index + 1))
                    after=$((after + $(cpu_ticks "$pid")))
                    rss=$(peak_rss_kb "$pid")
                    rss_sum=$((rss_sum + rss)); ((rss > rss_max)) && rss_max=$rss
                    if ! kill -0 "$pid" 2>/dev/null && [[ $status == ok ]]; then status="failed: infra$index exited"; fi
                done
                read -r leader_name term _ <<<"$(leader_of "$side")"
                # Errors the benchmark counted, with their messages, for the record.
                python3 -c '
import json, sys
report = json.loads(sys.argv[2])
if report.get("errors"):
    print(sys.argv[1], report["errors"], "errors:", report.get("error_distribution"), file=sys.stderr)' \
                    "$side, $name, round $round:" "$output"
                record "$name" "$side" "$round" "$((after - before))" "$rss_sum" "$status" "$output" \
                    "{\"peak_rss_max_mb\": $((rss_max / 1024)), \"leader\": \"$leader_name\", \"term\": \"$term\"}"
            done
        done
    done
    summarize
    exit 0
fi

etcd_port=$(free_port); etcd_peer=$(free_port); ours_port=$(free_port)
etcd --name default --data-dir "$work/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "default=http://127.0.0.1:$etcd_peer" >"$work/etcd.log" 2>&1 &
pids+=($!); etcd_pid=$!
"$bin/etcd" --name default --data-dir "$work/ours" \
    --listen-client-urls "http://127.0.0.1:$ours_port" --advertise-client-urls "http://127.0.0.1:$ours_port" \
    "${server_flags[@]}" >"$work/ours.log" 2>&1 &
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

for entry in "${matrix[@]}"; do
    name=${entry%%|*}; args=${entry#*|}
    [[ $name == *"${BENCH_ONLY:-}"* ]] || continue
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
            record "$name" "$side" "$round" "$((after - before))" "$(peak_rss_kb "$pid")" "$status" "$output"
        done
    done
done

summarize
