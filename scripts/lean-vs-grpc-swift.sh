#!/usr/bin/env bash
# One release server with both gRPC servers: grpc-swift on --listen-client-urls
# (--experimental-grpc-server=grpc-swift) and the lean one beside it
# (--experimental-lean-grpc-listen-urls). Runs the same etcd-benchmark loads
# against each, interleaved, ROUNDS times (default 3), and prints requests per second, p99 and
# the server's CPU milliseconds per 1,000 requests (from /proc), then the averages.
#
#   scripts/lean-vs-grpc-swift.sh [ROUNDS]
#
# Everything runs on 127.0.0.1 with a fresh data directory and fsync on; the server is stopped
# and its directory removed when the script exits, however it exits.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}

swift build -c release --product etcd >/dev/null
swift build -c release --product etcd-benchmark >/dev/null
bin=.build/release
work=$(mktemp -d)
server_pid=""
cleanup() {
    [[ -n $server_pid ]] && { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; }
    rm -rf "$work"
}
trap cleanup EXIT

read -r port peer lean <<<"$(python3 -c '
import socket
sockets = [socket.socket() for _ in range(3)]
for s in sockets: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in sockets))')"
"$bin/etcd" --data-dir "$work/data" \
    --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "default=http://127.0.0.1:$peer" \
    --experimental-grpc-server=grpc-swift --experimental-lean-grpc-listen-urls "http://127.0.0.1:$lean" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
    ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$port" --command-timeout=1s endpoint health >/dev/null 2>&1 && break
    sleep 0.1
done
ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$port" put bench-range-key value >/dev/null

cpu_ticks() { awk '{print $14 + $15}' "/proc/$server_pid/stat"; }
ticks_per_second=$(getconf CLK_TCK)
results="$work/results"
run() {
    local listener=$1 target=$2 name=$3
    shift 3
    local before after
    before=$(cpu_ticks)
    output=$("$bin/etcd-benchmark" --endpoints "127.0.0.1:$target" -w json "$@" 2>/dev/null)
    after=$(cpu_ticks)
    python3 -c '
import json, sys
report = json.loads(sys.argv[1])
listener, name, ticks, hz = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
ok = report["successes"]
cpu = ticks * 1000.0 / hz * 1000.0 / max(ok, 1)
print("%s\t%s\t%d\t%.1f\t%.0f\t%d" % (listener, name, round(report["requests_per_second"]),
      report["latency_ms"]["percentiles"]["p99"], cpu, report["errors"]))' \
        "$output" "$listener" "$name" "$((after - before))" "$ticks_per_second" | tee -a "$results"
}
echo -e "listener\tworkload\treq/s\tp99 ms\tCPU ms/1k\terrors"
for _ in $(seq 1 "$rounds"); do
    for side in "grpc-swift $port" "lean $lean"; do
        read -r listener target <<<"$side"
        run "$listener" "$target" "put, 1 client" --conns 1 --clients 1 --total 3000 put --key-size 8 --val-size 256
        run "$listener" "$target" "put, 16 clients" --conns 4 --clients 16 --total 20000 put --key-size 8 --val-size 256 --key-space-size 100000
        run "$listener" "$target" "put, 256 clients" --conns 16 --clients 256 --total 40000 put --key-size 8 --val-size 256 --key-space-size 100000
        run "$listener" "$target" "range s, 1 client" --conns 1 --clients 1 --total 5000 range bench-range-key --consistency s
        run "$listener" "$target" "range s, 256 clients" --conns 16 --clients 256 --total 40000 range bench-range-key --consistency s
        run "$listener" "$target" "range l, 256 clients" --conns 16 --clients 256 --total 40000 range bench-range-key --consistency l
        run "$listener" "$target" "lease-keepalive, 16 clients" --conns 4 --clients 16 --total 20000 lease-keepalive
        run "$listener" "$target" "watch-latency, 100 watchers" --conns 4 --clients 100 --total 1000 watch-latency --put-rate 100
    done
done
echo "averages over $rounds rounds:"
python3 -c '
import collections, sys
rows = collections.OrderedDict()
for line in open(sys.argv[1]):
    listener, name, rps, p99, cpu, errors = line.rstrip("\n").split("\t")
    rows.setdefault(name, {}).setdefault(listener, []).append((float(rps), float(cpu), int(errors)))
print("| workload | grpc-swift req/s | lean req/s | grpc-swift CPU ms/1k | lean CPU ms/1k | errors |")
print("|---|---|---|---|---|---|")
for name, sides in rows.items():
    g, l = sides.get("grpc-swift", []), sides.get("lean", [])
    avg = lambda xs, i: sum(x[i] for x in xs) / max(len(xs), 1)
    print("| %s | %.0f | %.0f | %.0f | %.0f | %d |" % (name, avg(g, 0), avg(l, 0), avg(g, 1), avg(l, 1),
          sum(x[2] for x in g + l)))' "$results"
