#!/usr/bin/env python3
"""Interim load generator for the KV API (until etcd-benchmark exists): many concurrent unary
Put or Range calls over gRPC against any etcd-compatible endpoint, real etcd or ours.

It needs only `pip install grpcio`: requests are encoded by hand (PutRequest and RangeRequest
are a few bytes fields), so no generated Python code is involved. Each worker process opens its
own connection and runs `--clients` calls in flight with threads; latencies are merged at the end.

    python3 scripts/kv-load.py --endpoint 127.0.0.1:2379 --op put --procs 2 --clients 16 --total 20000
"""
import argparse
import multiprocessing
import os
import threading
import time


def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def bytes_field(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def bool_field(number):
    return varint(number << 3) + b"\x01"


def worker(args, count, results):
    import grpc

    channel = grpc.insecure_channel(args.endpoint)
    method = "/etcdserverpb.KV/Put" if args.op == "put" else "/etcdserverpb.KV/Range"
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    value = os.urandom(args.val_size)
    latencies = []
    lock = threading.Lock()
    remaining = [count]

    def run():
        local = []
        while True:
            with lock:
                if remaining[0] == 0:
                    break
                remaining[0] -= 1
                index = remaining[0]
            key = b"bench/%08d" % (index % args.key_space)
            if args.op == "put":
                request = bytes_field(1, key) + bytes_field(2, value)
            else:
                request = bytes_field(1, args.range_key.encode())
                if args.consistency == "s":
                    request += bool_field(7)
            started = time.perf_counter()
            call(request, timeout=30)
            local.append(time.perf_counter() - started)
        with lock:
            latencies.extend(local)

    threads = [threading.Thread(target=run) for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(latencies)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="127.0.0.1:2379")
    parser.add_argument("--op", choices=["put", "get"], default="put")
    parser.add_argument("--procs", type=int, default=2, help="client processes, one connection each")
    parser.add_argument("--clients", type=int, default=16, help="calls in flight per process")
    parser.add_argument("--total", type=int, default=20000)
    parser.add_argument("--val-size", type=int, default=256)
    parser.add_argument("--key-space", type=int, default=100000)
    parser.add_argument("--range-key", default="bench/00000001")
    parser.add_argument("--consistency", choices=["l", "s"], default="l")
    args = parser.parse_args()

    results = multiprocessing.Queue()
    share = [args.total // args.procs + (1 if i < args.total % args.procs else 0) for i in range(args.procs)]
    procs = [multiprocessing.Process(target=worker, args=(args, n, results)) for n in share]
    started = time.perf_counter()
    for proc in procs:
        proc.start()
    latencies = []
    for _ in procs:
        latencies.extend(results.get())
    elapsed = time.perf_counter() - started
    for proc in procs:
        proc.join()
    latencies.sort()

    def pct(p):
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000

    print(
        f"{args.op} {args.endpoint}: {len(latencies)} requests, {args.procs}x{args.clients} in flight, "
        f"{len(latencies) / elapsed:.0f} req/s, p50 {pct(0.50):.2f} ms, p99 {pct(0.99):.2f} ms"
    )


if __name__ == "__main__":
    main()
