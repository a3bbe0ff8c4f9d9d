import EtcdAPI
import EtcdTestSupport
import Foundation
import Testing

/// KV requests that etcdctl cannot express, sent as raw gRPC to real etcd and swift-etcd and
/// compared response by response (headers' cluster, member and term normalized away).
@Suite("Raw gRPC KV compatibility with real etcd")
struct GRPCKVCompatibilityTests {
    /// Same layout as ``GetCompatibilityTests/seed(_:)``: revisions 2 to 9, each sort target
    /// giving its own order.
    static func seed(_ side: CompatibilitySession, _ etcd: EtcdGRPCClient) async {
        for (key, value) in [
            ("ab", "9"), ("b", "8"), ("c/x", "0"), ("a", "3"), ("b", "2"), ("abc", "4"), ("ab", "5"), ("ab", "1"),
        ] {
            await side.grpc("KV.Put", KVRequest.put(key, value)) { try await etcd.kv.put($0) }
        }
    }

    @Test("Range with min and max mod and create revision filters, alone, combined, with limit and history")
    func rangeRevisionFilters() async throws {
        try await expectCompatible("grpc range filters") { side in
            try await side.server.withGRPCClient { etcd in
                await Self.seed(side, etcd)
                let filters: [(inout Etcdserverpb_RangeRequest) -> Void] = [
                    { $0.minModRevision = 5 },
                    { $0.maxModRevision = 6 },
                    { $0.minCreateRevision = 3 },
                    { $0.maxCreateRevision = 4 },
                    { $0.minModRevision = 4; $0.maxModRevision = 7 },
                    { $0.minCreateRevision = 3; $0.maxModRevision = 8 },
                    { $0.minModRevision = 100 },
                    { $0.minModRevision = 5; $0.limit = 1 },
                    { $0.minModRevision = 5; $0.limit = 2; $0.countOnly = true },
                    { $0.maxCreateRevision = 4; $0.keysOnly = true },
                    { $0.minModRevision = 3; $0.revision = 6 },
                    { $0.maxModRevision = 5; $0.serializable = true },
                    { $0.minModRevision = 5; $0.sortTarget = .value; $0.sortOrder = .descend },
                ]
                // All keys: etcdctl's `get "" --prefix` sends key "\0" and range_end "\0".
                for filter in filters {
                    await side.grpc("KV.Range", KVRequest.range("\0", end: "\0", filter)) { try await etcd.kv.range($0) }
                }
                await side.grpc("KV.Range", KVRequest.range("a", end: "b") { $0.minModRevision = 6 }) {
                    try await etcd.kv.range($0)
                }
            }
        }
    }

    @Test("Range sorted by every target in every order, with limit, count_only and keys_only")
    func rangeSorting() async throws {
        try await expectCompatible("grpc range sorting") { side in
            try await side.server.withGRPCClient { etcd in
                await Self.seed(side, etcd)
                let targets: [Etcdserverpb_RangeRequest.SortTarget] = [.key, .version, .create, .mod, .value]
                let orders: [Etcdserverpb_RangeRequest.SortOrder] = [.none, .ascend, .descend]
                for target in targets {
                    for order in orders {
                        let request = KVRequest.range("\0", end: "\0") {
                            $0.sortTarget = target
                            $0.sortOrder = order
                            $0.keysOnly = true
                        }
                        await side.grpc("KV.Range", request) { try await etcd.kv.range($0) }
                    }
                    let limited = KVRequest.range("\0", end: "\0") {
                        $0.sortTarget = target
                        $0.sortOrder = .descend
                        $0.limit = 2
                    }
                    await side.grpc("KV.Range", limited) { try await etcd.kv.range($0) }
                }
                for configure: (inout Etcdserverpb_RangeRequest) -> Void in [
                    { $0.countOnly = true },
                    { $0.countOnly = true; $0.limit = 1 },
                    { $0.keysOnly = true; $0.limit = 3 },
                    { $0.limit = 3 },
                    { $0.limit = 100 },
                    { $0.revision = 4; $0.countOnly = true },
                ] {
                    await side.grpc("KV.Range", KVRequest.range("\0", end: "\0", configure)) { try await etcd.kv.range($0) }
                }
                await side.grpc("KV.Range", KVRequest.range("a", end: "\0") { $0.countOnly = true }) {
                    try await etcd.kv.range($0)
                }
                await side.grpc("KV.Range", KVRequest.range("zzz", end: "a")) { try await etcd.kv.range($0) }
                await side.grpc("KV.Range", KVRequest.range("", end: "")) { try await etcd.kv.range($0) }
            }
        }
    }

    @Test("Txn compares over a key range and on leases")
    func rangeAndLeaseCompares() async throws {
        try await expectCompatible("grpc txn range and lease compares") { side in
            try await side.server.withGRPCClient { etcd in
                await Self.seed(side, etcd)
                let probe = Etcdserverpb_RequestOp.range(KVRequest.range("a", end: "b") { $0.keysOnly = true })
                let compares: [Etcdserverpb_Compare] = [
                    KVRequest.compare("a", end: "b", .greater, .modRevision(0)),
                    KVRequest.compare("a", end: "b", .greater, .modRevision(5)),
                    KVRequest.compare("a", end: "b", .less, .modRevision(100)),
                    KVRequest.compare("a", end: "b", .equal, .version(1)),
                    KVRequest.compare("a", end: "\0", .notEqual, .value("zzz")),
                    KVRequest.compare("a", end: "\0", .greater, .value("0")),
                    KVRequest.compare("a", end: "c", .less, .createRevision(8)),
                    KVRequest.compare("x", end: "z", .equal, .version(0)),
                    KVRequest.compare("x", end: "z", .equal, .createRevision(0)),
                    KVRequest.compare("\0", end: "\0", .greater, .version(0)),
                    // An empty key is rejected even with a range end.
                    KVRequest.compare("", end: "\0", .greater, .version(0)),
                    KVRequest.compare("a", .equal, .lease(0)),
                    KVRequest.compare("a", .notEqual, .lease(0)),
                    KVRequest.compare("a", .greater, .lease(-1)),
                    KVRequest.compare("missing", .equal, .lease(0)),
                    KVRequest.compare("a", end: "\0", .equal, .lease(0)),
                    KVRequest.compare("a", end: "\0", .less, .lease(1)),
                ]
                for compare in compares {
                    await side.grpc("KV.Txn", KVRequest.txn([compare], success: [probe])) { try await etcd.kv.txn($0) }
                }
            }
        }
    }

    @Test("nested Txn runs the inner branch chosen by its own compares and bumps the revision once")
    func nestedTxn() async throws {
        try await expectCompatible(
            "grpc nested txn",
            referenceMentions: ["duplicate key given in txn request"]
        ) { side in
            try await side.server.withGRPCClient { etcd in
                await Self.seed(side, etcd)
                let inner = KVRequest.txn(
                    [KVRequest.compare("b", .equal, .value("2"))],
                    success: [.put(KVRequest.put("inner-success", "1")), .range(KVRequest.range("b"))],
                    failure: [.put(KVRequest.put("inner-failure", "1"))]
                )
                let outer = KVRequest.txn(
                    [KVRequest.compare("a", .equal, .value("3"))],
                    success: [.put(KVRequest.put("outer", "1")), .txn(inner), .range(KVRequest.range("\0", end: "\0") { $0.countOnly = true })],
                    failure: [.txn(inner)]
                )
                await side.grpc("KV.Txn", outer) { try await etcd.kv.txn($0) }
                await side.grpc("KV.Range", KVRequest.range("\0", end: "\0")) { try await etcd.kv.range($0) }
                let failing = KVRequest.txn([KVRequest.compare("a", .equal, .value("no"))], failure: [.txn(inner)])
                await side.grpc("KV.Txn", failing) { try await etcd.kv.txn($0) }

                let deeper = KVRequest.txn(success: [.txn(KVRequest.txn(success: [.txn(inner)]))])
                await side.grpc("KV.Txn", deeper) { try await etcd.kv.txn($0) }

                // Duplicate writes across nesting levels are rejected; in the two branches of the
                // inner txn they are allowed.
                let clash = KVRequest.txn(success: [.put(KVRequest.put("inner-success", "x")), .txn(inner)])
                await side.grpc("KV.Txn", clash) { try await etcd.kv.txn($0) }
                let deleteClash = KVRequest.txn(
                    success: [.delete(KVRequest.delete("b", end: "c")), .txn(KVRequest.txn(success: [.put(KVRequest.put("b", "x"))]))]
                )
                await side.grpc("KV.Txn", deleteClash) { try await etcd.kv.txn($0) }
                let branches = KVRequest.txn(
                    success: [
                        .txn(
                            KVRequest.txn(
                                success: [.put(KVRequest.put("q", "1"))],
                                failure: [.put(KVRequest.put("q", "2"))]
                            )
                        )
                    ]
                )
                await side.grpc("KV.Txn", branches) { try await etcd.kv.txn($0) }
                let readsOnly = KVRequest.txn(success: [.txn(KVRequest.txn(success: [.range(KVRequest.range("q"))]))])
                await side.grpc("KV.Txn", readsOnly) { try await etcd.kv.txn($0) }
                await side.grpc("KV.Range", KVRequest.range("\0", end: "\0") { $0.countOnly = true }) {
                    try await etcd.kv.range($0)
                }
            }
        }
    }

    @Test("DeleteRange and Put with prev_kv, and Put's ignore flags, over gRPC")
    func prevKVAndIgnoreFlags() async throws {
        try await expectCompatible(
            "grpc prev_kv and ignore flags",
            referenceMentions: ["etcdserver: value is provided", "etcdserver: lease is provided"]
        ) { side in
            try await side.server.withGRPCClient { etcd in
                await Self.seed(side, etcd)
                await side.grpc("KV.Put", KVRequest.put("a", "4") { $0.prevKv = true }) { try await etcd.kv.put($0) }
                await side.grpc("KV.Put", KVRequest.put("new", "1") { $0.prevKv = true }) { try await etcd.kv.put($0) }
                await side.grpc("KV.Put", KVRequest.put("a", "") { $0.ignoreValue = true; $0.prevKv = true }) {
                    try await etcd.kv.put($0)
                }
                await side.grpc("KV.Put", KVRequest.put("a", "x") { $0.ignoreValue = true }) { try await etcd.kv.put($0) }
                await side.grpc("KV.Put", KVRequest.put("a", "x") { $0.ignoreLease = true; $0.lease = 5 }) {
                    try await etcd.kv.put($0)
                }
                await side.grpc("KV.Put", KVRequest.put("missing", "") { $0.ignoreValue = true }) {
                    try await etcd.kv.put($0)
                }
                await side.grpc("KV.Put", KVRequest.put("missing", "x") { $0.ignoreLease = true }) {
                    try await etcd.kv.put($0)
                }
                await side.grpc("KV.Put", KVRequest.put("a", "x") { $0.lease = 12345 }) { try await etcd.kv.put($0) }
                await side.grpc("KV.DeleteRange", KVRequest.delete("a") { $0.prevKv = true }) {
                    try await etcd.kv.deleteRange($0)
                }
                await side.grpc("KV.DeleteRange", KVRequest.delete("a") { $0.prevKv = true }) {
                    try await etcd.kv.deleteRange($0)
                }
                await side.grpc("KV.DeleteRange", KVRequest.delete("ab", end: "b") { $0.prevKv = true }) {
                    try await etcd.kv.deleteRange($0)
                }
                await side.grpc("KV.DeleteRange", KVRequest.delete("b", end: "\0") { $0.prevKv = true }) {
                    try await etcd.kv.deleteRange($0)
                }
                await side.grpc("KV.Range", KVRequest.range("\0", end: "\0")) { try await etcd.kv.range($0) }
            }
        }
    }

    @Test("empty keys, compacted and future revisions, and Compact over gRPC")
    func errorsAndCompaction() async throws {
        try await expectCompatible(
            "grpc errors and compaction",
            referenceMentions: [
                "etcdserver: key is not provided",
                "etcdserver: mvcc: required revision has been compacted",
                "etcdserver: mvcc: required revision is a future revision",
            ]
        ) { side in
            try await side.server.withGRPCClient { etcd in
                await Self.seed(side, etcd)
                await side.grpc("KV.Range", KVRequest.range("")) { try await etcd.kv.range($0) }
                // The empty key is not "everything" on the wire: etcdctl sends "\0" for that.
                await side.grpc("KV.Range", KVRequest.range("", end: "\0")) { try await etcd.kv.range($0) }
                await side.grpc("KV.Put", KVRequest.put("", "v")) { try await etcd.kv.put($0) }
                await side.grpc("KV.DeleteRange", KVRequest.delete("")) { try await etcd.kv.deleteRange($0) }
                await side.grpc("KV.Txn", KVRequest.txn([KVRequest.compare("", .equal, .version(0))])) {
                    try await etcd.kv.txn($0)
                }
                await side.grpc("KV.Txn", KVRequest.txn(success: [.range(KVRequest.range("a") { $0.revision = 100 })])) {
                    try await etcd.kv.txn($0)
                }
                await side.grpc("KV.Compact", KVRequest.compact(5)) { try await etcd.kv.compact($0) }
                await side.grpc("KV.Compact", KVRequest.compact(5)) { try await etcd.kv.compact($0) }
                await side.grpc("KV.Compact", KVRequest.compact(50)) { try await etcd.kv.compact($0) }
                await side.grpc("KV.Compact", KVRequest.compact(7, physical: true)) { try await etcd.kv.compact($0) }
                await side.grpc("KV.Range", KVRequest.range("\0", end: "\0") { $0.revision = 6 }) {
                    try await etcd.kv.range($0)
                }
                await side.grpc("KV.Range", KVRequest.range("\0", end: "\0") { $0.revision = 7 }) {
                    try await etcd.kv.range($0)
                }
                await side.grpc("KV.Range", KVRequest.range("\0", end: "\0") { $0.revision = 10 }) {
                    try await etcd.kv.range($0)
                }
                await side.grpc("KV.Txn", KVRequest.txn(success: [.range(KVRequest.range("a") { $0.revision = 3 })])) {
                    try await etcd.kv.txn($0)
                }
                await side.grpc("KV.Range", KVRequest.range("\0", end: "\0") { $0.revision = -1 }) {
                    try await etcd.kv.range($0)
                }
                await side.grpc("KV.Range", KVRequest.range("a") { $0.limit = -5 }) { try await etcd.kv.range($0) }
            }
        }
    }
}

/// Keys that are not valid UTF-8 or contain bytes above 0x7f sort as unsigned bytes in etcd.
@Suite("Raw gRPC binary keys compatibility with real etcd")
struct GRPCBinaryKeyCompatibilityTests {
    @Test("binary keys sort bytewise, and prefix ranges ending in 0xff work")
    func binaryKeys() async throws {
        try await expectCompatible("grpc binary keys") { side in
            try await side.server.withGRPCClient { etcd in
                let keys: [[UInt8]] = [[0x61], [0x61, 0xff], [0x61, 0xff, 0x00], [0x62], [0x7f], [0x80], [0xff], [0xff, 0xff], [0x00, 0x01]]
                for key in keys {
                    await side.grpc("KV.Put", KVRequest.put("", "v") { $0.key = Data(key) }) { try await etcd.kv.put($0) }
                }
                let ranges: [([UInt8], [UInt8])] = [
                    ([0x00], [0x00]),
                    ([0x61, 0xff], [0x62]),
                    ([0x7f], [0x81]),
                    ([0xff], [0x00]),
                    ([0xff, 0xff], [0x00]),
                    ([0x80], [0xff]),
                ]
                for (key, end) in ranges {
                    let request = KVRequest.range("") {
                        $0.key = Data(key)
                        $0.rangeEnd = Data(end)
                        $0.keysOnly = true
                    }
                    await side.grpc("KV.Range", request) { try await etcd.kv.range($0) }
                }
                let descending = KVRequest.range("\0", end: "\0") {
                    $0.sortTarget = .key
                    $0.sortOrder = .descend
                    $0.keysOnly = true
                }
                await side.grpc("KV.Range", descending) { try await etcd.kv.range($0) }
                let delete = KVRequest.delete("") {
                    $0.key = Data([0xff])
                    $0.rangeEnd = Data([0x00])
                    $0.prevKv = true
                }
                await side.grpc("KV.DeleteRange", delete) { try await etcd.kv.deleteRange($0) }
                await side.grpc("KV.Range", KVRequest.range("\0", end: "\0") { $0.countOnly = true }) {
                    try await etcd.kv.range($0)
                }
            }
        }
    }
}
