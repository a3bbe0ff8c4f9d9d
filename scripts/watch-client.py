#!/usr/bin/env python3
"""Drives python-etcd3's watch APIs against one server and prints what the client sees.

Usage: watch-client.py HOST:PORT

The compatibility tests (Tests/CompatibilityTests/WatchPythonClientTests.swift) run it against a
fresh real etcd and a fresh swift-etcd and compare the output, so every line printed must depend
only on the server's answers: no cluster or member IDs, no times. Every wait has a timeout, after
which the script says what it missed and goes on, so that a server that stays silent shows up as a
difference instead of a hang.

Needs python-etcd3 0.12 (`pip install etcd3`). That release's generated code predates protobuf 4,
so the pure-Python protobuf implementation is selected before it is imported.
"""

import os
import queue
import sys
import threading

os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")

import etcd3  # noqa: E402  (must follow the environment setting above)
import etcd3.exceptions  # noqa: E402

WAIT_SECONDS = 10


def show(*parts):
    print(*parts, flush=True)


def describe_event(event, with_previous=False):
    kv = event._event.kv
    text = "%s key=%r value=%r create=%d mod=%d version=%d lease=%d" % (
        type(event).__name__, kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)
    if with_previous:
        if event._event.HasField("prev_kv"):
            prev = event._event.prev_kv
            text += " prev=(value=%r mod=%d version=%d)" % (prev.value, prev.mod_revision, prev.version)
        else:
            text += " prev=none"
    return text


def describe(item, with_previous=False):
    """One line per watch response (or error) a callback received."""
    if isinstance(item, etcd3.exceptions.RevisionCompactedError):
        return "error RevisionCompactedError, compacted revision %d" % item.compacted_revision
    if isinstance(item, Exception):
        return "error %s: %s" % (type(item).__name__, item)
    events = "; ".join(describe_event(e, with_previous) for e in item.events) or "no events"
    return "response revision=%d: %s" % (item.header.revision, events)


def drain_until(responses, done, what, with_previous=False):
    """Prints the responses a callback queued until `done(response)` holds for one of them."""
    while True:
        try:
            item = responses.get(timeout=WAIT_SECONDS)
        except queue.Empty:
            show("  timed out after %ds waiting for %s" % (WAIT_SECONDS, what))
            return
        show("  " + describe(item, with_previous))
        if isinstance(item, Exception) or done(item):
            return


def has_value(value):
    return lambda response: any(e.value == value for e in response.events)


def put(client, key, value):
    response = client.put(key, value)
    show("put %s=%s -> revision %d" % (key, value, response.header.revision))


def callbacks(client):
    show("== add_watch_callback on one key, then on a range, then cancel_watch")
    responses = queue.Queue()
    watch_id = client.add_watch_callback("cb/key", responses.put)
    show("watch id", watch_id)
    put(client, "cb/key", "one")
    put(client, "cb/other", "not watched")
    client.delete("cb/key")
    show("delete cb/key")
    put(client, "cb/key", "two")
    drain_until(responses, has_value(b"two"), "the put of two")

    ranged = queue.Queue()
    range_id = client.add_watch_callback("cb/a", ranged.put, range_end="cb/l", prev_kv=True)
    show("watch id", range_id)
    put(client, "cb/b", "in range")
    put(client, "cb/key", "three")
    put(client, "cb/z", "out of range")
    put(client, "cb/c", "last")
    drain_until(ranged, has_value(b"last"), "the put of last", with_previous=True)
    drain_until(responses, has_value(b"three"), "the put of three")

    client.cancel_watch(watch_id)
    client.cancel_watch(range_id)
    show("cancelled", watch_id, range_id)
    # A new watch after the cancels gets the next ID and only its own events.
    fresh = queue.Queue()
    fresh_id = client.add_watch_callback("cb/key", fresh.put)
    show("watch id", fresh_id)
    put(client, "cb/key", "four")
    drain_until(fresh, has_value(b"four"), "the put of four")
    client.cancel_watch(fresh_id)


def iterate_until(events, cancel, last_key, prefix="", with_previous=False):
    """Prints the events of an etcd3 iterator up to the one for `last_key`. The iterator itself
    never times out, so a timer cancels it (which ends it) if that event does not come."""
    timer = threading.Timer(WAIT_SECONDS, cancel)
    timer.start()
    seen_last = False
    for event in events:
        show("  " + prefix + describe_event(event, with_previous))
        if event.key == last_key:
            seen_last = True
            break
    timer.cancel()
    cancel()
    if not seen_last:
        show("  timed out after %ds waiting for %r" % (WAIT_SECONDS, last_key))


def iterators(client):
    # (python-etcd3 0.12 cannot send filters: it assigns the repeated field, which protobuf refuses.)
    show("== watch_prefix iterators, one with prev_kv")
    events, cancel = client.watch_prefix("it/", prev_kv=True)
    plain, cancel_plain = client.watch_prefix("it/")
    put(client, "it/a", "1")
    put(client, "it/b", "2")
    put(client, "it/a", "3")
    deleted = client.delete_prefix("it/")
    show("delete_prefix it/ -> revision %d, %d deleted" % (deleted.header.revision, deleted.deleted))
    put(client, "it/end", "end")
    iterate_until(events, cancel, b"it/end", with_previous=True)
    iterate_until(plain, cancel_plain, b"it/end", prefix="without prev_kv: ")


def history(client):
    show("== watch from a start_revision in the past, then compaction")
    responses = queue.Queue()
    watch_id = client.add_watch_callback("cb/key", responses.put, start_revision=2, prev_kv=True)
    show("watch id", watch_id)
    drain_until(responses, has_value(b"four"), "the replay up to four", with_previous=True)
    client.cancel_watch(watch_id)

    revision = client.put("hist/k", "x").header.revision
    client.compact(revision)
    show("compacted at the revision of the last put")
    compacted = queue.Queue()
    try:
        compacted_id = client.add_watch_callback("cb/key", compacted.put, start_revision=2)
        show("watch id", compacted_id)
        drain_until(compacted, lambda _: False, "the compaction error")
    except etcd3.exceptions.RevisionCompactedError as error:
        show("add_watch_callback raised RevisionCompactedError, compacted revision", error.compacted_revision)

    show("== watch_once from the compaction revision, which is still available")
    try:
        event = client.watch_once("hist/k", timeout=WAIT_SECONDS, start_revision=revision)
        show("  " + describe_event(event))
    except etcd3.exceptions.WatchTimedOut:
        show("  watch_once timed out after %ds" % WAIT_SECONDS)


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    client = etcd3.client(host=host, port=int(port), timeout=WAIT_SECONDS)
    try:
        callbacks(client)
        iterators(client)
        history(client)
    finally:
        # Closing the channel ends etcd3's watch thread with an error that it does not catch;
        # that says nothing about the server, so it is not printed.
        default_hook = threading.excepthook
        threading.excepthook = lambda args: (
            None if args.thread is not None and args.thread.name.startswith("etcd3_watch_") else default_hook(args))
        client.close()
    show("done")


if __name__ == "__main__":
    main()
