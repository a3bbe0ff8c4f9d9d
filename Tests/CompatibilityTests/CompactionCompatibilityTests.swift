import EtcdTestSupport
import Testing

/// `etcdctl compact`, compared with real etcd.
@Suite("Compaction compatibility with real etcd")
struct CompactionCompatibilityTests {
    @Test("compact, compact --physical, compacting again, compacting the future, and reads around the compaction")
    func compaction() async throws {
        try await expectCompatible(
            "compact",
            referenceMentions: [
                "compacted revision 4",
                "etcdserver: mvcc: required revision has been compacted",
                "etcdserver: mvcc: required revision is a future revision",
            ]
        ) { side in
            for index in 1...6 {
                try await side.etcdctl("put", "k", "v\(index)")
            }
            try await side.etcdctl("put", "gone", "x")
            try await side.etcdctl("del", "gone")
            try await side.etcdctl("compact", "4")
            try await side.recordRevision()
            try await side.etcdctl("get", "k", "--rev=3")
            try await side.etcdctl("get", "k", "--rev=4", "-w", "json")
            try await side.etcdctl("get", "k", "--rev=5", "-w", "json")
            try await side.etcdctl("compact", "4")
            try await side.etcdctl("compact", "3")
            try await side.etcdctl("compact", "100")
            try await side.etcdctl("compact", "9")
            try await side.etcdctl("compact", "10")
            try await side.etcdctl("compact", "7", "--physical")
            try await side.etcdctl("get", "k", "--rev=6")
            try await side.etcdctl("get", "k", "--rev=7", "-w", "json")
            try await side.etcdctl("get", "gone", "--rev=8", "-w", "json")
            try await side.etcdctl("compact", "8", "--physical")
            try await side.etcdctl("compact", "8")
            // The latest revision can be compacted; history before it is gone, the key stays.
            try await side.etcdctl("compact", "9", "--physical")
            try await side.etcdctl("get", "", "--prefix", "-w", "json")
            try await side.etcdctl("get", "gone", "--rev=9", "-w", "json")
            try await side.etcdctl("put", "k", "after")
            try await side.etcdctl("get", "k", "-w", "json")
            try await side.etcdctl("get", "k", "--rev=9", "-w", "json")
            try await side.recordRevision()
        }
    }

    @Test("compact 0 on a fresh server, and revisions etcdctl refuses to parse")
    func edgeRevisions() async throws {
        try await expectCompatible("compact edge revisions") { side in
            try await side.etcdctl("compact", "0")
            try await side.etcdctl("compact", "1")
            try await side.etcdctl("put", "k", "v")
            try await side.etcdctl("compact", "1")
            try await side.etcdctl("compact", "2")
            try await side.etcdctl("compact", "0")
            try await side.etcdctl("compact", "-1")
            try await side.etcdctl("compact", "abc")
            try await side.etcdctl("compact")
            try await side.etcdctl("get", "k", "-w", "json")
        }
    }
}

extension CompactionCompatibilityTests {
    @Test("--auto-compaction-mode=periodic with a 1 s retention compacts history older than about a second, as etcd")
    func periodicAutoCompaction() async throws {
        let options = EtcdOptions(extraArguments: ["--auto-compaction-mode=periodic", "--auto-compaction-retention=1s"])
        try await expectCompatible(
            "auto compaction", options: options, referenceMentions: ["required revision has been compacted"]
        ) { side in
            for index in 1...5 { try await side.etcdctl(["put", "k", "v\(index)"], record: false) }
            // The first compaction (after 1 s) keeps the start's revision; the next (after 2 s)
            // goes to the revision sampled a second before, past these puts.
            let compacted = try await poll(timeout: .seconds(8), interval: .milliseconds(200)) {
                try await side.etcdctl(["get", "k", "--rev=5"], record: false).standardError.contains("compacted")
            }
            side.record("revision 5 compacted within 8 s", .text("\(compacted)"))
            try await side.etcdctl("get", "k", "--rev=2")
            try await side.etcdctl("get", "k", "--print-value-only")
            try await side.etcdctl("put", "k", "after")
        }
    }
}
