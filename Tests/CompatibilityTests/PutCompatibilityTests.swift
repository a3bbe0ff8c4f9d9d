import EtcdTestSupport
import Testing

/// `etcdctl put` with each of its options, compared with real etcd.
@Suite("Put compatibility with real etcd")
struct PutCompatibilityTests {
    @Test("a plain put creates a key, a second put overwrites it, and both answer with the new revision")
    func plainPut() async throws {
        try await expectCompatible("plain put") { side in
            try await side.etcdctl("put", "k", "v1")
            try await side.etcdctl("put", "k", "v2", "-w", "json")
            try await side.etcdctl("put", "other", "value with spaces", "-w", "json")
            try await side.etcdctl("put", "unicode-ключ", "значение ✓", "-w", "json")
            try await side.etcdctl("get", "", "--prefix", "-w", "json")
            try await side.etcdctl("get", "k")
        }
    }

    @Test("put reads the value from standard input when only a key is given")
    func putFromStandardInput() async throws {
        try await expectCompatible("put from stdin") { side in
            try await side.etcdctl(["put", "k"], standardInput: "from stdin")
            try await side.etcdctl("get", "k", "-w", "json")
        }
    }

    @Test("values over the default request limit are rejected by etcd's check or by gRPC's message limit")
    func largeValues() async throws {
        try await expectCompatible(
            "put large values",
            referenceMentions: ["etcdserver: request is too large"]
        ) { side in
            // Arguments are limited to 128 KiB by the kernel, so big values go through stdin.
            try await side.etcdctl(["put", "ok"], standardInput: String(repeating: "o", count: 1_000_000))
            try await side.etcdctl("get", "ok", "--keys-only", "-w", "json")
            // Over --max-request-bytes (1.5 MiB by default) but under gRPC's receive limit (2 MiB).
            try await side.etcdctl(["put", "big"], standardInput: String(repeating: "b", count: 1_600_000))
            // Over gRPC's receive limit as well.
            try await side.etcdctl(["put", "huge"], standardInput: String(repeating: "h", count: 2_200_000))
            try await side.recordRevision()
        }
    }

    @Test("put --prev-kv returns nothing for a new key and the previous key-value for an existing one")
    func putPrevKV() async throws {
        try await expectCompatible("put --prev-kv") { side in
            try await side.etcdctl("put", "k", "v1", "--prev-kv")
            try await side.etcdctl("put", "k", "v2", "--prev-kv")
            try await side.etcdctl("put", "k", "v3", "--prev-kv", "-w", "json")
            try await side.etcdctl("put", "fresh", "v", "--prev-kv", "-w", "json")
        }
    }

    @Test("put --ignore-value keeps the value of an existing key and fails for a missing one")
    func putIgnoreValue() async throws {
        try await expectCompatible(
            "put --ignore-value",
            referenceMentions: ["etcdserver: key not found"]
        ) { side in
            try await side.etcdctl("put", "k", "original")
            try await side.etcdctl("put", "k", "--ignore-value", "-w", "json")
            try await side.etcdctl("put", "k", "--ignore-value", "--prev-kv", "-w", "json")
            try await side.etcdctl("get", "k", "-w", "json")
            try await side.etcdctl("put", "missing", "--ignore-value")
            try await side.recordRevision()
            // etcdctl rejects a value together with --ignore-value itself.
            try await side.etcdctl("put", "k", "v", "--ignore-value")
        }
    }

    @Test("put --ignore-lease keeps the key's lease and fails for a missing key")
    func putIgnoreLease() async throws {
        try await expectCompatible(
            "put --ignore-lease",
            referenceMentions: ["etcdserver: key not found"]
        ) { side in
            try await side.etcdctl("put", "k", "v1")
            try await side.etcdctl("put", "k", "v2", "--ignore-lease", "-w", "json")
            try await side.etcdctl("get", "k", "-w", "json")
            try await side.etcdctl("put", "missing", "v", "--ignore-lease")
            try await side.recordRevision()
        }
    }

    @Test("put --lease with a lease that does not exist fails with 'requested lease not found'")
    func putUnknownLease() async throws {
        try await expectCompatible(
            "put --lease unknown",
            referenceMentions: ["etcdserver: requested lease not found"]
        ) { side in
            try await side.etcdctl("put", "k", "v", "--lease=1234abcd")
            try await side.etcdctl("put", "k", "v", "--lease=694d77aa9e38260f", "-w", "json")
            try await side.recordRevision()
            try await side.etcdctl("get", "k", "-w", "json")
        }
    }

    @Test("put with an empty key is rejected with 'key is not provided'")
    func putEmptyKey() async throws {
        try await expectCompatible(
            "put empty key",
            referenceMentions: ["etcdserver: key is not provided"]
        ) { side in
            try await side.etcdctl("put", "", "v")
            try await side.etcdctl("put", "", "v", "-w", "json")
            try await side.recordRevision()
            // Argument errors that etcdctl reports itself, without a request.
            try await side.etcdctl("put")
            try await side.etcdctl("put", "a", "b", "c")
        }
    }
}
