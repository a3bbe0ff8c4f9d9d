#!/usr/bin/env bash
# Restart time with a large keyspace, real etcd next to swift-etcd: loads N keys (default
# 1,000,000, 256-byte values) into each server, then restarts each one ROUNDS times (default 2)
# and reports the time from launch until a linearizable read succeeds, plus the data directory's
# size. Graceful stop (SIGTERM) and crash stop (SIGKILL) are both measured.
#
#   scripts/restart-time.sh              # 1,000,000 keys, about 10 minutes
#   scripts/restart-time.sh 100000       # quicker
#
# Both servers run on 127.0.0.1 with fresh data directories and fsync on; every process this
# script starts is stopped when it exits, however it exits.
set -euo pipefail
cd "$(dirname "$0")/.."

keys=${1:-1000000}
rounds=${ROUNDS:-2}

if ! command -v etcd >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client >/dev/null
fi
python3 -c 'import grpc' 2>/dev/null || pip install -q grpcio
swift build -c release --product etcd >/dev/null
bin=$(swift build -c release --show-bin-path)

work=$(mktemp -d)
pid=""
cleanup() {
    [[ -n "$pid" ]] && kill -9 "$pid" 2>/dev/null || true
    [[ -n "$pid" ]] && wait "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }

launch() { # side port peer; sets pid and launched (the wall-clock launch time)
    local side=$1 port=$2 peer=$3
    launched=$(now)
    if [[ $side == etcd ]]; then
        etcd --name default --data-dir "$work/etcd" \
            --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
            --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
            --initial-cluster "default=http://127.0.0.1:$peer" >>"$work/etcd.log" 2>&1 &
    else
        "$bin/etcd" --name default --data-dir "$work/ours" \
            --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
            >>"$work/ours.log" 2>&1 &
    fi
    pid=$!
}

# Seconds from the launch until a linearizable read answers, polled every 20 ms over gRPC (at most
# 10 minutes); a closed port fails fast instead of waiting out a client's dial timeout.
wait_ready() {
    python3 - "$1" "$launched" <<'PY'
import sys, time, grpc
started = float(sys.argv[2])
# Reconnect fast: gRPC's default backoff after a refused connection is a whole second.
channel = grpc.insecure_channel(f"127.0.0.1:{sys.argv[1]}", options=[
    ("grpc.initial_reconnect_backoff_ms", 10), ("grpc.min_reconnect_backoff_ms", 10),
    ("grpc.max_reconnect_backoff_ms", 20)])
range_call = channel.unary_unary("/etcdserverpb.KV/Range")
request = b"\x0a\x0chealth-probe"  # RangeRequest{key: "health-probe"}, linearizable
while time.time() - started < 600:
    try:
        range_call(request, timeout=0.5)
        print(f"{time.time() - started:.2f}")
        sys.exit(0)
    except grpc.RpcError:
        time.sleep(0.02)
sys.exit("server did not answer")
PY
}

stop() { # signal
    kill "-$1" "$pid"
    wait "$pid" 2>/dev/null || true
    pid=""
}

printf '%-10s %-10s %-8s %-12s %s\n' side stop round "restart s" "data dir"
for side in etcd ours; do
    port=$(free_port); peer=$(free_port)
    launch "$side" "$port" "$peer"
    wait_ready "$port" >/dev/null
    python3 scripts/bulk-load.py --endpoint "127.0.0.1:$port" --keys "$keys" --value-size 256 >&2
    ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$port" get key-000000000 --print-value-only | grep -q v
    for signal in TERM KILL; do
        for round in $(seq 1 "$rounds"); do
            stop "$signal"
            launch "$side" "$port" "$peer"
            seconds=$(wait_ready "$port")
            count=$(ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$port" get key- --prefix --keys-only --limit=1 -w json \
                | python3 -c 'import json,sys; print(json.load(sys.stdin).get("count", 0))')
            if [[ "$count" != "$keys" ]]; then
                echo "$side lost keys across the restart: $count of $keys" >&2
                exit 1
            fi
            printf '%-10s %-10s %-8s %-12.2f %s\n' "$side" "SIG$signal" "$round" "$seconds" "$(du -sh "$work/$side" | cut -f1)"
        done
    done
    stop TERM
done
