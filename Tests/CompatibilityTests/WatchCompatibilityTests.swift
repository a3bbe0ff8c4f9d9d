import EtcdTestSupport
import Foundation
import Testing

/// `etcdctl watch`, compared with real etcd: the watcher runs in the background while etcdctl
/// writes, and what it printed is compared once it has printed the last expected event.
///
/// etcdctl prints nothing when its watch is created, so a watch started "now" could miss writes
/// made before the server registered it, and the two sides would differ by timing alone. Each
/// scenario therefore writes first and starts its watcher at a past revision (`--rev`): the
/// replayed history shows when the watch is in place, and the writes after that reach it live.
@Suite("etcdctl watch compatibility with real etcd")
struct WatchCompatibilityTests {
    @Test("watch one key: replayed history, then live puts and deletes of it, none of other keys")
    func singleKey() async throws {
        try await expectCompatible("watch one key") { side in
            try await side.etcdctl("put", "foo", "v1")
            try await side.etcdctl("put", "foobar", "other key")
            try await side.etcdctl("put", "foo", "v2")
            try await side.etcdctlInBackground(["watch", "foo", "--rev=2"]) { watcher in
                await watcher.waitForValue("v2")
                try await side.etcdctl("put", "foo", "v3")
                try await side.etcdctl("put", "fo", "other key")
                try await side.etcdctl("del", "foo")
                // Deleting a missing key changes nothing, so no event.
                try await side.etcdctl("del", "foo")
                try await side.etcdctl("put", "foo", "v4")
                await watcher.waitForValue("v4")
            }
        }
    }

    @Test("watch --prefix, including a range delete of several keys in one revision")
    func prefix() async throws {
        try await expectCompatible("watch --prefix") { side in
            try await side.etcdctl("put", "k/a", "a1")
            try await side.etcdctlInBackground(["watch", "k/", "--prefix", "--rev=2"]) { watcher in
                await watcher.waitForValue("a1")
                for (key, value) in [("k/b", "b1"), ("k", "not watched"), ("ka", "not watched"), ("k/", "slash1")] {
                    try await side.etcdctl("put", key, value)
                }
                try await side.etcdctl("put", "k/a", "a2")
                try await side.etcdctl("del", "k/", "--prefix")
                try await side.etcdctl("put", "k/c", "c1")
                await watcher.waitForValue("c1")
            }
        }
    }

    @Test("watch \"\" --prefix watches every key")
    func everyKey() async throws {
        try await expectCompatible("watch every key") { side in
            try await side.etcdctl("put", "m", "first")
            try await side.etcdctlInBackground(["watch", "", "--prefix", "--rev=2"]) { watcher in
                await watcher.waitForValue("first")
                for (key, value) in [("\u{1}", "lowest printable-less"), ("zzz", "high"), ("a/b/c", "deep")] {
                    try await side.etcdctl("put", key, value)
                }
                try await side.etcdctl("del", "", "--prefix")
                try await side.etcdctl("put", "m", "last")
                await watcher.waitForValue("last")
            }
        }
    }

    @Test("watch with an exec command: etcdctl runs it per event with the event in its environment")
    func execCommand() async throws {
        try await expectCompatible("watch -- command") { side in
            try await side.etcdctl("put", "e", "e1")
            let command = "echo \"exec: $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE $ETCD_WATCH_REVISION\""
            try await side.etcdctlInBackground(["watch", "e", "--rev=2", "--", "sh", "-c", command]) { watcher in
                await watcher.waitForOutput("the command's line for e1") {
                    $0.contains { $0.hasPrefix("exec:") && $0.contains("e1") }
                }
                try await side.etcdctl("del", "e")
                try await side.etcdctl("put", "e", "e2")
                await watcher.waitForOutput("the command's line for e2") {
                    $0.contains { $0.hasPrefix("exec:") && $0.contains("e2") }
                }
            }
        }
    }

    @Test("watch a key range [a, c) given as key and range end")
    func keyRange() async throws {
        try await expectCompatible("watch a range") { side in
            try await side.etcdctl("put", "a", "first")
            try await side.etcdctlInBackground(["watch", "a", "c", "--rev=2"]) { watcher in
                await watcher.waitForValue("first")
                for (key, value) in [
                    ("0", "below"), ("a1", "in1"), ("b", "in2"), ("bzz", "in3"), ("c", "end is open"), ("c1", "above"),
                ] {
                    try await side.etcdctl("put", key, value)
                }
                try await side.etcdctl("del", "a", "c")
                try await side.etcdctl("put", "b", "last")
                await watcher.waitForValue("last")
            }
        }
    }

    @Test("watch --rev from the past replays history in order, then follows live writes")
    func historyReplay() async throws {
        try await expectCompatible("watch --rev history") { side in
            for index in 1...4 {
                try await side.etcdctl("put", "h/\(index % 2)", "old\(index)")
            }
            try await side.etcdctl("del", "h/0")
            try await side.etcdctl("put", "h/0", "old6")
            // Revision 4 is the third put (h/1 = old3): the replay starts in the middle of the history.
            try await side.etcdctlInBackground(["watch", "h/", "--prefix", "--rev=4"]) { watcher in
                await watcher.waitForValue("old6")
                try await side.etcdctl("put", "h/1", "new")
                await watcher.waitForValue("new")
            }
            try await side.etcdctlInBackground(["watch", "h/1", "--rev=1", "--prev-kv"]) { watcher in
                await watcher.waitForValue("new")
            }
        }
    }

    @Test("watch --prev-kv prints each event's previous key-value, none for a creation")
    func previousKeyValue() async throws {
        try await expectCompatible("watch --prev-kv") { side in
            try await side.etcdctl("put", "p", "p1")
            try await side.etcdctlInBackground(["watch", "p", "--prev-kv", "--rev=2"]) { watcher in
                await watcher.waitForValue("p1")
                try await side.etcdctl("put", "p", "p2")
                try await side.etcdctl("put", "p", "p3")
                try await side.etcdctl("del", "p")
                try await side.etcdctl("put", "p", "p4")
                await watcher.waitForValue("p4")
            }
        }
    }

    @Test("watch -w json: a replayed history, then a txn's puts and delete delivered together in one response")
    func txnEventsJSON() async throws {
        try await expectCompatible("watch txn events -w json") { side in
            try await side.etcdctl("put", "t/c", "c0")
            try await side.etcdctl("put", "t/a", "a0")
            try await side.etcdctlInBackground(["watch", "t/", "--prefix", "--prev-kv", "--rev=2", "-w", "json"]) {
                watcher in
                await watcher.waitForJSONEvents(2)
                // No compares; the success branch puts two keys and deletes a third.
                try await side.etcdctl("txn", standardInput: "\nput t/a a1\nput t/b b1\ndel t/c\n\n\n")
                await watcher.waitForValue("b1")
                // A failing compare runs the failure branch.
                try await side.etcdctl(
                    "txn",
                    standardInput: "value(\"t/a\") = \"nope\"\n\nput t/x no\n\nput t/d d1\ndel t/a\n\n"
                )
                await watcher.waitForValue("d1")
                // A txn that writes nothing watched makes no event.
                try await side.etcdctl("txn", standardInput: "\nput u/1 x\n\n\n")
                try await side.etcdctl("put", "t/e", "e1")
                await watcher.waitForValue("e1")
            }
        }
    }

    @Test("watch -w json prints one response per line with headers, events and flags")
    func jsonOutput() async throws {
        try await expectCompatible("watch -w json") { side in
            try await side.etcdctl("put", "j/1", "a")
            try await side.etcdctl("put", "j/2", "b")
            try await side.etcdctl("del", "j/1")
            // The history comes as one catch-up (etcd groups it), the later writes one response each.
            try await side.etcdctlInBackground(["watch", "j/", "--prefix", "--rev=1", "-w", "json"]) { watcher in
                await watcher.waitForJSONEvents(3)
                try await side.etcdctl("put", "j/3", "c")
                await watcher.waitForValue("c")
                try await side.etcdctl("del", "j/", "--prefix")
                try await side.etcdctl("put", "j/4", "d")
                await watcher.waitForValue("d")
            }
        }
    }

    @Test("watch -w fields prints each response's header and events field by field")
    func fieldsOutput() async throws {
        try await expectCompatible("watch -w fields") { side in
            try await side.etcdctl("put", "f/1", "a")
            try await side.etcdctl("put", "f/1", "b")
            try await side.etcdctlInBackground(["watch", "f/", "--prefix", "--rev=2", "--prev-kv", "-w", "fields"]) {
                watcher in
                await watcher.waitForOutput("the value \"b\"") { $0.contains("\"Value\" : \"b\"") }
                try await side.etcdctl("del", "f/1")
                try await side.etcdctl("put", "f/2", "c")
                await watcher.waitForOutput("the value \"c\"") { $0.contains("\"Value\" : \"c\"") }
            }
        }
    }

    @Test("watch from a compacted revision is canceled by the server; from the compaction revision it replays")
    func compactedRevision() async throws {
        try await expectCompatible(
            "watch compacted revision",
            referenceMentions: ["etcdserver: mvcc: required revision has been compacted"]
        ) { side in
            for index in 1...5 {
                try await side.etcdctl("put", "k", "v\(index)")
            }
            try await side.etcdctl("compact", "4")
            // etcdctl exits by itself when the server cancels its only watch.
            try await side.etcdctlInBackground(["watch", "k", "--rev=1"]) { watcher in
                await watcher.waitForExit()
            }
            try await side.etcdctlInBackground(["watch", "k", "--rev=3", "-w", "json"]) { watcher in
                await watcher.waitForExit()
            }
            try await side.etcdctlInBackground(["watch", "k", "--rev=4"]) { watcher in
                await watcher.waitForValue("v5")
                try await side.etcdctl("compact", "6")
                try await side.etcdctl("put", "k", "after compaction")
                await watcher.waitForValue("after compaction")
            }
        }
    }

    @Test("watch -i: watches added on standard input, a progress request, invalid commands")
    func interactive() async throws {
        try await expectCompatible("watch -i", referenceMentions: ["progress notify: 5"]) { side in
            try await side.etcdctl("put", "k1", "a1")
            try await side.etcdctl("put", "k2", "b1")
            try await side.etcdctlInBackground(["watch", "-i"], interactive: true) { watcher in
                try watcher.send("watch k1 --rev=2")
                await watcher.waitForValue("a1")
                try watcher.send("watch k2 --prev-kv --rev=3")
                await watcher.waitForValue("b1")
                try await side.etcdctl("put", "k1", "a2")
                await watcher.waitForValue("a2")
                try await side.etcdctl("put", "k2", "b2")
                await watcher.waitForValue("b2")
                // Both watches share one stream; etcd answers the stream's progress request once,
                // and etcdctl prints it for each watch.
                try watcher.send("progress")
                await watcher.waitForOutput("two progress notifications") { lines in
                    lines.filter { $0.hasPrefix("progress notify:") }.count >= 2
                }
                // etcdctl 3.4's interactive mode knows only `watch` and `progress`.
                try watcher.send("cancel 0")
                await watcher.waitForErrorOutput("the complaint about cancel") { $0.contains("cancel 0") }
                try watcher.send("watch")
                await watcher.waitForErrorOutput("the complaint about watch without key") {
                    $0.contains("Invalid command watch")
                }
                try await side.etcdctl("put", "k1", "a3")
                await watcher.waitForValue("a3")
            }
        }
    }
}

extension BackgroundEtcdctl {
    /// Waits until an event with value `value` is printed: as a line of its own in the simple
    /// format, or base64 inside a line of `-w json`.
    @discardableResult
    func waitForValue(_ value: String) async -> Bool {
        let encoded = "\"value\":\"\(Data(value.utf8).base64EncodedString())\""
        return await waitForOutput("the value \(value.debugDescription)") { lines in
            lines.contains { $0 == value || $0.contains(encoded) }
        }
    }

    /// Waits until the `-w json` lines printed so far hold `count` events in all.
    @discardableResult
    func waitForJSONEvents(_ count: Int) async -> Bool {
        await waitForOutput("\(count) events") { lines in
            let printed = lines.compactMap { try? JSONValue(parsing: $0) }.map { response -> Int in
                guard case .array(let events)? = response["Events"] else { return 0 }
                return events.count
            }
            return printed.reduce(0, +) >= count
        }
    }
}
