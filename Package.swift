// swift-tools-version:6.1
import PackageDescription

/// One settings list for every target, as grpc-swift-2 does: Swift 6 mode and the upcoming
/// features that keep imports and existentials explicit.
let strictSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let grpcCore = Target.Dependency.product(name: "GRPCCore", package: "grpc-swift-2")
let grpcProtobuf = Target.Dependency.product(name: "GRPCProtobuf", package: "grpc-swift-protobuf")
let grpcHTTP2 = Target.Dependency.product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport")
let swiftProtobuf = Target.Dependency.product(name: "SwiftProtobuf", package: "swift-protobuf")
let logging = Target.Dependency.product(name: "Logging", package: "swift-log")
let nioCore = Target.Dependency.product(name: "NIOCore", package: "swift-nio")
let nioPosix = Target.Dependency.product(name: "NIOPosix", package: "swift-nio")
let nioConcurrencyHelpers = Target.Dependency.product(name: "NIOConcurrencyHelpers", package: "swift-nio")
let argumentParser = Target.Dependency.product(name: "ArgumentParser", package: "swift-argument-parser")
let nioHTTP2 = Target.Dependency.product(name: "NIOHTTP2", package: "swift-nio-http2")
let crypto = Target.Dependency.product(name: "Crypto", package: "swift-crypto")
let dequeModule = Target.Dependency.product(name: "DequeModule", package: "swift-collections")
let serviceLifecycle = Target.Dependency.product(name: "ServiceLifecycle", package: "swift-service-lifecycle")
let nioHTTP1 = Target.Dependency.product(name: "NIOHTTP1", package: "swift-nio")
let coreMetrics = Target.Dependency.product(name: "CoreMetrics", package: "swift-metrics")
let prometheus = Target.Dependency.product(name: "Prometheus", package: "swift-prometheus")
let nioSSL = Target.Dependency.product(name: "NIOSSL", package: "swift-nio-ssl")
let x509 = Target.Dependency.product(name: "X509", package: "swift-certificates")
let asn1 = Target.Dependency.product(name: "SwiftASN1", package: "swift-asn1")

let package = Package(
    name: "swift-etcd",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "etcd", targets: ["EtcdMain"]),
        .library(name: "EtcdServer", targets: ["EtcdServer"]),
        .executable(name: "etcd-benchmark", targets: ["EtcdBenchmark"]),
        .executable(name: "etcdutl", targets: ["EtcdUtility"]),
    ],
    dependencies: [
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "5.0.1"),
        // etcd's /metrics: instruments through swift-metrics' API, exported by swift-prometheus.
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        // bcrypt for auth passwords (only its HummingbirdBcrypt library is built).
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth.git", from: "2.5.0"),
        // TLS for clients and peers (BoringSSL through swift-nio-ssl), self-signed certificates
        // for --auto-tls, and the DER of certificate revocation lists.
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
    ],
    targets: [
        // Identifiers and etcd's error catalog, shared by every layer above.
        .target(name: "EtcdCommon", dependencies: [grpcCore], swiftSettings: strictSettings),
        // Generated from Protos/ by scripts/generate-protos.sh; committed, never generated in CI.
        .target(
            name: "EtcdAPI",
            dependencies: [grpcCore, grpcProtobuf, swiftProtobuf],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // HTTP/2 connection helpers shared by the server and our clients (NIO only).
        .target(name: "EtcdTransport", dependencies: [nioCore], swiftSettings: strictSettings),
        // A gRPC server for unary calls straight on swift-nio-http2, without grpc-swift's
        // per-call channel and task bridge (issue 18; behind --experimental-lean-grpc).
        .target(
            name: "EtcdLeanRPC",
            dependencies: [nioCore, nioHTTP2, .product(name: "NIOHPACK", package: "swift-nio-http2")],
            swiftSettings: strictSettings
        ),
        // Pure Raft consensus: no I/O, no clock, no threads (see Sources/EtcdRaft/RaftNode.swift).
        .target(name: "EtcdRaft", dependencies: [dequeModule, logging], swiftSettings: strictSettings),
        // Durable storage for Raft: the write-ahead log and snapshot files, file I/O behind a protocol.
        .target(name: "EtcdWAL", dependencies: ["EtcdRaft", logging, coreMetrics], swiftSettings: strictSettings),
        // What members say to each other: the wire form of Raft messages (the peer transport's
        // codec; pure, every peer byte treated as hostile).
        .target(name: "EtcdPeer", dependencies: ["EtcdRaft"], swiftSettings: strictSettings),
        // The system SQLite (libsqlite3-dev).
        .systemLibrary(name: "CSQLite", providers: [.apt(["libsqlite3-dev"])]),
        .target(name: "EtcdBackend", dependencies: ["CSQLite"], swiftSettings: strictSettings),
        .target(
            name: "EtcdMVCC",
            dependencies: ["EtcdBackend", .product(name: "Collections", package: "swift-collections")],
            swiftSettings: strictSettings
        ),
        // The lessor: leases, their keys and (on the leader) their expiry; no I/O, time is passed in.
        .target(
            name: "EtcdLease",
            dependencies: ["EtcdBackend", .product(name: "HeapModule", package: "swift-collections")],
            swiftSettings: strictSettings
        ),
        // Users, roles, key permissions and tokens (etcd's auth store); persisted in the backend.
        .target(
            name: "EtcdAuth",
            dependencies: [
                "EtcdCommon", "EtcdAPI", "EtcdBackend", swiftProtobuf, crypto,
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "EtcdReplica",
            dependencies: [
                "EtcdCommon", "EtcdAPI", "EtcdMVCC", "EtcdLease", "EtcdBackend", "EtcdRaft", "EtcdWAL", "EtcdAuth", logging,
                swiftProtobuf,
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "EtcdServer",
            dependencies: [
                "EtcdCommon", "EtcdAPI", "EtcdReplica", "EtcdMVCC", "EtcdLease", "EtcdBackend", "EtcdRaft", "EtcdTransport", "EtcdAuth",
                "EtcdLeanRPC", .product(name: "NIOHPACK", package: "swift-nio-http2"),
                "EtcdPeer", grpcCore, grpcHTTP2, grpcProtobuf, swiftProtobuf, logging, nioCore, nioPosix, nioHTTP2, crypto,
                dequeModule, serviceLifecycle, nioConcurrencyHelpers, nioHTTP1, coreMetrics, prometheus,
                nioSSL, x509, asn1, .product(name: "NIOTLS", package: "swift-nio"),
                // etcd's YAML `--config-file`.
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "EtcdMain",
            dependencies: [
                "EtcdServer", logging, serviceLifecycle,
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        // etcdutl's offline commands for swift-etcd's files (snapshot status and restore).
        .executableTarget(
            name: "EtcdUtility",
            dependencies: ["EtcdServer", argumentParser, logging],
            swiftSettings: strictSettings
        ),
        // Load generator modelled on etcd's tools/benchmark; talks to the generated clients directly.
        .executableTarget(
            name: "EtcdBenchmark",
            dependencies: [
                "EtcdAPI", "EtcdTransport", "EtcdRaft", grpcCore, grpcHTTP2, nioCore, nioPosix, nioHTTP2, swiftProtobuf,
                argumentParser,
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "EtcdTestSupport",
            dependencies: ["EtcdAPI", grpcCore, grpcHTTP2, swiftProtobuf],
            path: "Tests/EtcdTestSupport",
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "EtcdRaftTests",
            dependencies: ["EtcdRaft"],
            // Scenario scripts with golden output, read from the source tree by InteractionTests.
            exclude: ["Testdata"],
            swiftSettings: strictSettings
        ),
        // The seeded cluster simulator (issue 4); `scripts/soak-raft.sh` runs it over many seeds.
        .testTarget(name: "EtcdSimulationTests", dependencies: ["EtcdRaft"], swiftSettings: strictSettings),
        .testTarget(name: "EtcdPeerTests", dependencies: ["EtcdPeer", "EtcdRaft"], swiftSettings: strictSettings),
        .testTarget(
            name: "EtcdLeanRPCTests",
            dependencies: [
                "EtcdLeanRPC", nioCore, nioHTTP2, .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(name: "EtcdWALTests", dependencies: ["EtcdWAL", "EtcdRaft"], swiftSettings: strictSettings),
        .testTarget(name: "EtcdBackendTests", dependencies: ["EtcdBackend"], swiftSettings: strictSettings),
        .testTarget(
            name: "EtcdAuthTests", dependencies: ["EtcdAuth", "EtcdAPI", "EtcdBackend", "EtcdCommon"], swiftSettings: strictSettings),
        .testTarget(name: "EtcdLeaseTests", dependencies: ["EtcdLease", "EtcdBackend"], swiftSettings: strictSettings),
        .testTarget(name: "EtcdMVCCTests", dependencies: ["EtcdMVCC", "EtcdBackend"], swiftSettings: strictSettings),
        .testTarget(
            name: "EtcdReplicaTests",
            dependencies: [
                "EtcdReplica", "EtcdAPI", "EtcdCommon", "EtcdMVCC", "EtcdLease", "EtcdBackend", "EtcdRaft", "EtcdWAL", logging,
                swiftProtobuf,
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "EtcdServerTests",
            dependencies: [
                "EtcdServer", "EtcdAPI", "EtcdCommon", "EtcdMVCC", "EtcdBackend", "EtcdReplica", "EtcdLease", "EtcdRaft",
                "EtcdPeer", "EtcdTestSupport", "EtcdAuth", "EtcdTransport", grpcCore, grpcHTTP2, swiftProtobuf,
                nioCore, nioPosix, nioHTTP1, .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "NIOEmbedded", package: "swift-nio"), logging, "EtcdLeanRPC", nioSSL, nioConcurrencyHelpers,
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "EtcdBenchmarkTests",
            dependencies: [
                "EtcdBenchmark", "EtcdTransport", .product(name: "Histogram", package: "hdrhistogram-swift"), nioCore,
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "CompatibilityTests",
            dependencies: ["EtcdTestSupport", "EtcdAPI", grpcCore, swiftProtobuf, crypto],
            swiftSettings: strictSettings
        ),
        // The test support's own pure parts, such as the linearizability checker (issue 17).
        .testTarget(name: "EtcdTestSupportTests", dependencies: ["EtcdTestSupport"], swiftSettings: strictSettings),
        // SIGKILL with writes in flight, against the real binary (issue 5); `scripts/crash-soak.sh` runs more cycles.
        .testTarget(
            name: "EtcdCrashTests",
            dependencies: ["EtcdTestSupport", "EtcdAPI", "EtcdRaft", grpcCore],
            swiftSettings: strictSettings
        ),
    ]
)
