# Shared by the server benchmark scripts (compare-with-etcd.sh, watch-benchmark.sh,
# lease-benchmark.sh): installs real etcd if it is missing, builds our release binaries, and
# starts, samples and stops one fresh server at a time, on 127.0.0.1 and free ports. Source it after `cd` to the repository root, with
# `sides` set ("etcd ours", or one of them). Sets `bin` (our release binaries) and `work` (a
# scratch directory), and stops every process added to `pids` when the script exits, however it
# exits.

if ! command -v etcd >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
fi
if ! command -v etcdctl >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-client >/dev/null
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

# start_server SIDE DIR [FLAG...]: starts a fresh server (extra flags go to it), sets server_pid
# and port.
start_server() {
    local side=$1 dir=$2 peer
    shift 2
    port=$(free_port); peer=$(free_port)
    local binary=etcd
    [[ $side == ours ]] && binary="$bin/etcd"
    "$binary" --name default --data-dir "$dir/data" \
        --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
        --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "default=http://127.0.0.1:$peer" "$@" >"$dir/server.log" 2>&1 &
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
