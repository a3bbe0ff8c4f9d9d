import EtcdTestSupport
import Testing

/// `etcdctl del` with each of its options, compared with real etcd.
@Suite("Delete compatibility with real etcd")
struct DeleteCompatibilityTests {
    static func seed(_ side: CompatibilitySession) async throws {
        for (key, value) in [("a", "1"), ("ab", "2"), ("abc", "3"), ("b", "4"), ("c", "5"), ("d", "6")] {
            try await side.etcdctl("put", key, value)
        }
    }

    @Test("del of one key, then of the same key again, leaves the revision unchanged the second time")
    func single() async throws {
        try await expectCompatible("del single") { side in
            try await Self.seed(side)
            try await side.etcdctl("del", "b", "-w", "json")
            try await side.recordRevision()
            try await side.etcdctl("del", "b", "-w", "json")
            try await side.recordRevision()
            try await side.etcdctl("del", "never-existed")
            try await side.recordRevision()
            try await side.etcdctl("get", "", "--prefix", "-w", "json")
            // A deleted key can be created again, with a fresh create revision and version 1.
            try await side.etcdctl("put", "b", "again")
            try await side.etcdctl("get", "b", "-w", "json")
        }
    }

    @Test("del --prefix, --from-key and key with range end delete exactly the range")
    func ranges() async throws {
        try await expectCompatible("del ranges") { side in
            try await Self.seed(side)
            try await side.etcdctl("del", "a", "--prefix", "-w", "json")
            try await side.etcdctl("get", "", "--prefix", "--keys-only")
            try await side.etcdctl("del", "b", "d", "-w", "json")
            try await side.etcdctl("get", "", "--prefix", "--keys-only")
            try await side.etcdctl("del", "zz", "--from-key")
            try await side.recordRevision()
            try await side.etcdctl("del", "d", "--from-key", "-w", "json")
            try await side.etcdctl("get", "", "--prefix", "-w", "json")
            try await Self.seed(side)
            try await side.etcdctl("del", "", "--prefix")
            try await side.etcdctl("get", "", "--prefix", "-w", "json")
            try await side.etcdctl("del", "nothing", "--prefix", "-w", "json")
            try await side.etcdctl("del", "d", "b", "-w", "json")
            try await side.etcdctl("del", "a", "--prefix", "--from-key")
            try await side.etcdctl("del", "")
        }
    }

    @Test("del --prev-kv returns the deleted key-values")
    func prevKV() async throws {
        try await expectCompatible("del --prev-kv") { side in
            try await Self.seed(side)
            try await side.etcdctl("put", "a", "1-again")
            try await side.etcdctl("del", "a", "--prev-kv")
            try await side.etcdctl("del", "ab", "--prev-kv", "-w", "json")
            try await side.etcdctl("del", "b", "--prefix", "--prev-kv", "-w", "json")
            try await side.etcdctl("del", "c", "--from-key", "--prev-kv")
            try await side.etcdctl("del", "missing", "--prev-kv", "-w", "json")
            try await side.etcdctl("get", "", "--prefix", "-w", "json")
        }
    }
}
