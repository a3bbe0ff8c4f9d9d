import EtcdRaft
import NIOCore
import NIOPosix
import Synchronization

/// The bounds and timings of a ``PeerTransport``. The defaults follow etcd's rafthttp where it
/// has a figure: a 4,096-message buffer per peer (`streamBufSize`), a 1 s dial timeout and a 5 s
/// write timeout (`ConnWriteTimeout`).
struct PeerTransportConfiguration: Sendable {
    /// The cluster this member belongs to, sent in every handshake; a receiver refuses a
    /// connection from another cluster, as etcd refuses a mismatched `X-Etcd-Cluster-ID`. Zero
    /// until cluster IDs exist (issue 17), which every member then agrees on.
    var clusterID: UInt64 = 0
    /// Most messages waiting for one peer; past it new messages are dropped (Raft retransmits).
    var outboxMessageLimit = 4_096
    /// Most encoded bytes waiting for one peer, so that a few large appends cannot pile up
    /// either; a single message larger than this is always dropped.
    var outboxByteLimit = 64 << 20
    /// The first pause after a failed connection attempt; it doubles up to `maximumBackoff` and
    /// starts over once a connection succeeds.
    var initialBackoff: Duration = .milliseconds(50)
    var maximumBackoff: Duration = .seconds(5)
    /// How long a connection attempt may take.
    var connectTimeout: Duration = .seconds(1)
    /// How long one frame may take to reach the kernel; past it the connection is closed and
    /// made again (a peer that stops reading must not hold our writer forever).
    var writeTimeout: Duration = .seconds(5)
    /// How long an accepted connection may take to send its handshake before it is closed, so
    /// that a stray client cannot hold a connection open for free (etcd's `ConnReadTimeout`).
    var handshakeTimeout: Duration = .seconds(5)
    /// A peer that stays unreachable is reported at most this often: Raft only uses the report
    /// to move the peer's progress back to probing, once per heartbeat is plenty.
    var unreachableReportInterval: Duration = .milliseconds(100)
    /// Where received snapshot images are stored (`<term>-<index>.snap.db`, etcd's `member/snap`
    /// directory), or nil to refuse snapshots (the sender is told so).
    var snapshotDirectory: String? = nil
    /// The largest snapshot image sent or accepted; a larger one is refused before any of it is
    /// read. etcd has no separate bound (its backend quota, 2 GiB by default and 8 GiB at most
    /// suggested, bounds the image); 8 GiB here.
    var maxSnapshotBytes: UInt64 = 8 << 30
    /// The size of the chunks a snapshot image is sent in (at most `PeerSnapshotStream.maxChunkBytes`).
    var snapshotChunkBytes = 1 << 20
    /// How long the sender waits for the receiver's answer once the image is sent (the receiver
    /// syncs the file first); etcd's sender waits for the HTTP response the same way.
    var snapshotAckTimeout: Duration = .seconds(30)
    /// How long a snapshot connection may stay silent before the receiver gives it up and
    /// removes the partial file.
    var snapshotIdleTimeout: Duration = .seconds(30)
    /// Whether received images are synced before they are announced (false: `--unsafe-no-fsync`).
    var syncsSnapshots = true
    var eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    /// Peer TLS: accepted connections on `https://` listeners and connections to `https://` peers
    /// start with a TLS handshake (the dialer presenting the peer certificate as its client
    /// certificate); nil leaves every connection plaintext.
    var tls: TLSContexts? = nil

    init() {}

    /// Connects to a peer (within the connect timeout), with TLS in front when `secure`.
    func dial(host: String, port: Int, secure: Bool) async throws -> any Channel {
        let tls = self.tls
        if secure && tls == nil { throw PeerTLSMissing(host: host, port: port) }
        return try await ClientBootstrap(group: eventLoopGroup)
            .connectTimeout(TimeAmount(connectTimeout))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                guard secure, let tls else { return channel.eventLoop.makeSucceededVoidFuture() }
                return channel.eventLoop.makeCompletedFuture {
                    try tls.addClientHandler(to: channel.pipeline.syncOperations, host: host)
                }
            }
            .connect(host: host, port: port).get()
    }
}

/// A peer's URL is `https://` but this member has no peer TLS set up (no `https://` peer URL at
/// start and no `--peer-*` TLS flag).
struct PeerTLSMissing: Error, CustomStringConvertible {
    let host: String
    let port: Int
    var description: String { "https://\(host):\(port) needs peer TLS, which this member was started without" }
}

/// What a ``PeerTransport`` has done so far, for tests and metrics.
struct PeerTransportStatistics: Sendable, Hashable {
    /// Frames and messages written to peers (a frame carries one drain of an outbox).
    var sentFrames = 0
    var sentMessages = 0
    /// Messages refused by a full outbox.
    var droppedOutboxFull = 0
    /// Messages for a member that is not a peer (never added, or removed).
    var droppedUnknownPeer = 0
    /// Messages taken from an outbox but not written: the connection broke, or the message
    /// cannot be encoded within the codec's limits.
    var droppedUnsent = 0
    /// Received messages whose `from` is not the connection's member, or whose `to` is not us.
    var droppedMisaddressed = 0
    /// Frames and messages received and handed to `receive`.
    var receivedFrames = 0
    var receivedMessages = 0
    /// Inbound connections closed for a bad handshake, an oversized or malformed frame.
    var refusedConnections = 0
    /// Outbound connections established, and attempts made after a failure or a lost connection.
    var connections = 0
    var reconnects = 0
    /// Times `reportUnreachable` was called.
    var unreachableReports = 0
    /// Snapshots the receiver accepted, and sent ones it refused or that failed on the way.
    var sentSnapshots = 0
    var failedSnapshots = 0
    /// Snapshots received (stored and delivered), and refused (nothing kept).
    var receivedSnapshots = 0
    var refusedSnapshots = 0
    /// The most snapshot bytes ever held by a receiver between their arrival and their write.
    var snapshotPeakBufferedBytes = 0
    /// Message bytes written to and read from each peer (etcd's
    /// `etcd_network_peer_sent_bytes_total` and `..._received_bytes_total`); snapshots not included.
    var sentBytes: [NodeID: Int] = [:]
    var receivedBytes: [NodeID: Int] = [:]
}

/// The shared, lock-protected statistics.
final class PeerTransportCounters: Sendable {
    private let values = Mutex(PeerTransportStatistics())

    var snapshot: PeerTransportStatistics { values.withLock { $0 } }

    func add(_ field: WritableKeyPath<PeerTransportStatistics, Int>, _ amount: Int = 1) {
        guard amount != 0 else { return }
        values.withLock { $0[keyPath: field] += amount }
    }

    func addSentBytes(_ bytes: Int, to peer: NodeID) {
        values.withLock { $0.sentBytes[peer, default: 0] += bytes }
    }

    func addReceivedBytes(_ bytes: Int, from peer: NodeID) {
        values.withLock { $0.receivedBytes[peer, default: 0] += bytes }
    }

    /// Raises `field` to `value` if it is lower (a high-water mark).
    func raise(_ field: WritableKeyPath<PeerTransportStatistics, Int>, to value: Int) {
        values.withLock { $0[keyPath: field] = max($0[keyPath: field], value) }
    }
}
