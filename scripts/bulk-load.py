#!/usr/bin/env python3
"""Loads N distinct keys into any etcd-compatible endpoint quickly: Txn requests of up to 100
puts each, sent by a few threads over one gRPC channel. Keys are `key-%09d`, values are
--value-size bytes. Used by scripts/restart-time.sh; needs only grpcio (requests are encoded by
hand, so no generated code is involved).

    python3 scripts/bulk-load.py --endpoint 127.0.0.1:2379 --keys 1000000 --value-size 256
"""
import argparse
import threading
import time


def load_wire_helpers():
    """The hand encoders of scripts/kv-load.py (varint, length-delimited field), shared."""
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kv-load.py")
    spec = importlib.util.spec_from_file_location("kv_load", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.bytes_field


field = load_wire_helpers()


def txn_of_puts(first, count, value):
    # TxnRequest.success (2) holds RequestOps whose request_put (2) is a PutRequest(key 1, value 2).
    ops = b"".join(
        field(2, field(2, field(1, b"key-%09d" % index) + field(2, value)))
        for index in range(first, first + count)
    )
    return ops


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--value-size", type=int, default=256)
    parser.add_argument("--per-txn", type=int, default=100)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()

    import grpc

    channel = grpc.insecure_channel(args.endpoint, options=[("grpc.max_send_message_length", 16 << 20)])
    txn = channel.unary_unary("/etcdserverpb.KV/Txn")
    value = b"v" * args.value_size
    batches = list(range(0, args.keys, args.per_txn))
    lock = threading.Lock()
    failures = []

    def work():
        while True:
            with lock:
                if not batches or failures:
                    return
                first = batches.pop()
            count = min(args.per_txn, args.keys - first)
            for attempt in range(5):
                try:
                    txn(txn_of_puts(first, count, value), timeout=30)
                    break
                except grpc.RpcError as error:
                    if attempt == 4:
                        with lock:
                            failures.append(f"txn at key {first}: {error.code()} {error.details()}")
                    time.sleep(0.2)

    started = time.monotonic()
    threads = [threading.Thread(target=work) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"bulk load failed: {failures[0]}")
    elapsed = time.monotonic() - started
    print(f"loaded {args.keys} keys of {args.value_size} bytes in {elapsed:.1f} s ({args.keys / elapsed:.0f} keys/s)")


if __name__ == "__main__":
    main()
