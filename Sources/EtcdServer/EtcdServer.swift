public import Logging
public import ServiceLifecycle
import EtcdAPI
import EtcdAuth
import EtcdBackend
import EtcdCommon
import EtcdLease
import EtcdMVCC
import EtcdPeer
import EtcdRaft
import EtcdReplica
import EtcdWAL
import Foundation
package import EtcdTransport
import GRPCCore
import GRPCNIOTransportHTTP2
import NIOCore
import NIOHTTP2
import NIOPosix
import Synchronization

/// One etcd member: the store, its Raft loop (WAL, snapshots, apply) and the client-facing gRPC
/// services.
///
/// Run it as a `Service` (the `etcd` executable puts it in a `ServiceGroup` that turns SIGINT and
/// SIGTERM into a graceful shutdown) or call ``run()`` in a task and cancel the task to stop it.
/// Shutdown stops accepting connections, ends watch and keepalive streams, lets in-flight requests
/// finish (their writes included) for up to `shutdownGracePeriod` and then closes the connections
/// left, drains the Raft loop, commits the backend durably and closes the WAL.
public final class EtcdServer: Service, Sendable {
    public let configuration: ServerConfiguration
    private let logger: Logger
    private let boundAddresses = Mutex<[SocketAddressDescription]?>(nil)
    private let boundLeanAddresses = Mutex<[SocketAddressDescription]>([])
    private let addressesReady = AsyncStream<Void>.makeStream()
    private let runningWatchHub = Mutex<WatchHub?>(nil)
    /// What the client connections' PING responders saw (connections, PINGs, GOAWAYs sent).
    package let connectionCounters = HTTP2ConnectionCounters()

    public init(configuration: ServerConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// The addresses the client listeners bound (useful with port 0), once they are listening.
    public func clientAddresses() async -> [SocketAddressDescription] {
        for await _ in addressesReady.stream { break }
        return boundAddresses.withLock { $0 } ?? []
    }

    /// Where `--experimental-lean-grpc-listen-urls` are bound, once ``clientAddresses()`` has
    /// returned (they are bound first).
    public var leanGRPCAddresses: [SocketAddressDescription] { boundLeanAddresses.withLock { $0 } }

    /// Watchers and watch streams open right now (nil before the server runs).
    public var watchCounts: (watchers: Int, unsynced: Int, streams: Int)? {
        runningWatchHub.withLock { $0 }?.counts
    }

    public func run() async throws {
        // Whoever waits for the addresses is released even if the server never gets to listen.
        defer { addressesReady.continuation.finish() }
        try configuration.validate()
        // Certificates are loaded (and --auto-tls ones made) before anything listens or dials.
        let security = try ServerSecurity(configuration, logger: logger)
        var identity = try MemberIdentity.resolve(configuration)
        // A member without data joining an existing cluster learns the cluster's ID and its own
        // (given by `member add`) from a member of it, as etcd does.
        var joinedCluster: PeerClusterInfo?
        if configuration.initialClusterState == "existing" && !FileManager.default.fileExists(atPath: configuration.memberDirectory) {
            let cluster = try await MemberIdentity.fetchCluster(configuration, tls: security.peer)
            identity = try MemberIdentity.resolveJoining(configuration, cluster: cluster)
            joinedCluster = cluster
            logger.info("joining an existing cluster", metadata: [
                "cluster-id": "\(identity.cluster)", "local-member-id": "\(identity.member)",
            ])
        }
        let dataDirectory = configuration.effectiveDataDirectory
        logger.info(
            "opening backend",
            metadata: ["data_dir": "\(dataDirectory)", "name": "\(configuration.name)"]
        )
        let lock = try DataDirectoryLock(dataDirectory: dataDirectory)
        defer { withExtendedLifetime(lock) {} }
        // The member's view of auth for request handlers, and its simple tokens: kept across
        // backend swaps (snapshot installs).
        let authBoard = AuthBoard(tokens: SimpleTokenRegistry(ttl: .seconds(configuration.authTokenTTLSeconds)))
        let handle = ReplicaHandle(
            try Self.openReplica(dataDirectory: dataDirectory, leases: leaseConfiguration, authBoard: authBoard, logger: logger))
        let persisted = try handle.withReplica { replica in try replica.resolveIdentity(identity) }
        // This member as the membership records it: its ID and peer URLs (raft attributes),
        // then, published through Raft once it runs, its name and client URLs.
        let localMember = ClusterMember(
            id: persisted.member, name: configuration.name,
            peerURLs: configuration.initialAdvertisePeerURLs.map(\.description),
            clientURLs: configuration.advertiseClientURLs.map(\.description))
        let maxLearners = configuration.maxLearners
        try handle.withReplica { replica in
            replica.limitLearners(to: maxLearners)
            try replica.seedMembershipIfMissing(ClusterMember(id: localMember.id, peerURLs: localMember.peerURLs))
        }
        var options = raftOptions(memberID: persisted.member)
        // etcd's /metrics, fed from where things happen (WAL fsyncs, backend commits, calls).
        let metrics = ServerMetrics()
        options.log.walOptions.fsyncDurations = metrics.walFsyncDurations
        // A new log starts with the members of --initial-cluster as voters, each described in
        // its membership entry as etcd describes it (ID, name, peer URLs).
        let initialMembers = identity.initialMembers.isEmpty
            ? [ClusterMember(id: localMember.id, peerURLs: localMember.peerURLs)] : identity.initialMembers
        options.initialVoters = initialMembers.map { NodeID($0.id.rawValue) }
        options.joinsExistingCluster = joinedCluster != nil
        for initial in initialMembers {
            options.bootstrapContexts[NodeID(initial.id.rawValue)] = MembershipChangeContext(member: initial).encoded()
        }
        let member = try openRaftMember(options, metadata: Self.walMetadata(persisted), handle: handle)
        // Before peers can send snapshots: what crashed transfers and installed images left.
        SnapshotDirectorySweep.sweep(
            directory: options.log.snapshotDirectory, appliedIndex: handle.withReplica { $0.appliedIndex }, logger: logger)
        // Every revision applied from now on (the WAL's replay included) reaches the watchers.
        let startRevision = handle.withReplica { replica in
            replica.store.recordsChanges = true
            return replica.store.currentRevision
        }
        let watchHub = WatchHub(currentRevision: startRevision, replica: handle)
        runningWatchHub.withLock { $0 = watchHub }
        let mailbox = RaftMailbox()
        let pending = PendingRequests(capacity: configuration.maxPendingProposals)
        let shutdown = ShutdownSignal()
        let published = ShutdownSignal()
        let status = MemberStatusBoard()
        let transport = try await startPeerTransport(identity: persisted, mailbox: mailbox, tls: security.peer)
        transport.answerClusterQueries {
            guard let members = try? handle.read({ $0.membership.sortedMembers }), !members.isEmpty else { return nil }
            let removed = (try? handle.read { $0.membership.removed.map(\.rawValue).sorted() }) ?? []
            return PeerClusterInfo(clusterID: persisted.cluster.rawValue, members: members, removed: removed)
        }
        transport.answerHashKVQueries { revision in
            do {
                let result = try await handle.hashKV(revision: revision)
                var response = Etcdserverpb_HashKVResponse()
                response.hash = result.hash
                response.compactRevision = result.compactRevision
                response.hashRevision = result.hashRevision
                response.header.revision = result.revision
                response.header.clusterID = persisted.cluster.rawValue
                response.header.memberID = persisted.member.rawValue
                return PeerHashKVQuery.encodeAnswer(.success(response))
            } catch {
                return PeerHashKVQuery.encodeAnswer(.failure(error))
            }
        }
        if let joinedCluster {
            // Until the log arrives, this member knows its peers only from the cluster's answer.
            Self.followMembership(
                ClusterMembership(members: joinedCluster.members), local: persisted.member, transport: transport, logger: logger)
        }
        var loopSettings = loopConfiguration
        loopSettings.backendCommitDurations = metrics.backendCommitDurations
        loopSettings.localMember = localMember
        let databasePath = Backend.databasePath(dataDirectory: dataDirectory)
        let snapshotDirectory = options.log.snapshotDirectory
        loopSettings.sendToPeers = { messages in
            // A snapshot travels on a channel of its own with a consistent image of the backend
            // (etcd's snapshot sender); everything else goes in the peers' ordinary streams.
            guard messages.contains(where: { $0.type == .snapshot }) else {
                transport.send(messages)
                return
            }
            for message in messages where message.type == .snapshot {
                transport.sendSnapshot(message) { () throws -> PeerSnapshotImage in
                    let path = snapshotDirectory + "/outgoing-\(UInt64.random(in: 1 ... .max)).db"
                    // A temporary copy, deleted once sent: not worth an fsync.
                    _ = try BackendImage.write(databaseAt: databasePath, to: path, syncs: false)
                    // The message describes the image (etcd's merged snapshot message), which
                    // lists a member added since Raft's latest snapshot.
                    return PeerSnapshotImage(path: path, metadata: try SnapshotImageDescription.read(imagePath: path))
                }
            }
            transport.send(messages.filter { $0.type != .snapshot })
        }
        let syncs = !configuration.unsafeNoFsync
        loopSettings.installSnapshot = { imagePath, snapshotIndex, handle in
            let installed = try self.installSnapshot(imagePath: imagePath, snapshotIndex: snapshotIndex, into: handle)
            watchHub.restore(currentRevision: installed.revision)
            return installed.appliedIndex
        }
        loopSettings.reopenCheckpointer = { try BackendCheckpointer(path: databasePath, syncs: syncs) }
        let logger = self.logger
        loopSettings.membershipChanged = { membership in
            // A joining member's log starts empty; it keeps the peers it was told of meanwhile.
            guard !membership.members.isEmpty else { return }
            Self.followMembership(membership, local: persisted.member, transport: transport, logger: logger)
            if membership.removed.contains(persisted.member) {
                // etcd stops a member that was removed from its cluster.
                logger.warning("the member has been permanently removed from the cluster", metadata: [
                    "local-member-id": "\(persisted.member)"
                ])
                mailbox.close()
            }
        }
        loopSettings.published = { published.fire() }
        let loop = RaftLoop(
            member: member, replica: handle,
            // The Raft loop checkpoints the backend itself, outside the replica's lock (see
            // LoopCore); it alone holds this connection, which it closes to install a snapshot.
            checkpointer: try BackendCheckpointer(path: databasePath, syncs: syncs), mailbox: mailbox, pending: pending, status: status,
            configuration: loopSettings, logger: logger, publishChanges: { watchHub.publish($0) }
        )
        do {
            try await loop.start()
        } catch {
            await loop.abandon()
            await transport.shutdown()
            throw error
        }
        // etcd's phrases, which scripts and harnesses wait for: the member and cluster IDs, then
        // the member's attributes published.
        logger.info(
            "starting member \(persisted.member) in cluster \(persisted.cluster)",
            metadata: [
                "name": "\(configuration.name)", "local-member-id": "\(persisted.member)",
                "cluster-id": "\(persisted.cluster)", "etcd-version": "\(EtcdVersion.server)",
                "applied-index": "\(status.appliedIndex)", "term": "\(status.term)",
                "revision": "\(handle.withReplica { $0.store.currentRevision })",
            ]
        )
        let header = ResponseHeaderSource(clusterID: persisted.cluster, memberID: persisted.member, status: status)
        let proposer = RequestProposer(
            loop: loop,
            maxRequestBytes: configuration.maxRequestBytes,
            requestTimeout: configuration.requestTimeout,
            memberID: persisted.member
        )
        let forwarder = LeaderForwarder(
            localMember: persisted.member, status: status, replica: handle, requestTimeout: configuration.requestTimeout,
            logger: logger, security: security)
        defer { forwarder.close() }

        BackendQuota.logSetting(flag: configuration.quotaBackendBytes, logger: logger)
        let quota = BackendQuota(
            limitBytes: BackendQuota.limit(forFlag: configuration.quotaBackendBytes), status: status, proposer: proposer,
            memberID: persisted.member, replica: handle)
        var authenticator = Authenticator(
            board: authBoard, replica: handle, status: status, hasher: PasswordHasher(cost: configuration.bcryptCost),
            clientCertificateAuth: configuration.clientCertAuth, requestTimeout: configuration.requestTimeout)
        do {
            authenticator.jwt = try JWTOptions.parse(configuration.authToken).map { try JWTTokens($0) }
        } catch {
            // etcd does not start with a token provider it cannot build.
            throw ConfigurationError.invalid("failed to create auth token provider: \(error)")
        }
        let authService = AuthService(proposer: proposer, replica: handle, header: header, authenticator: authenticator)
        let kvService = KVService(
            writer: proposer, replica: handle, header: header, maxTxnOperations: configuration.maxTxnOperations, quota: quota,
            authenticator: authenticator)
        let maintenanceService = MaintenanceService(
            replica: handle, header: header, statusBoard: status, mailbox: mailbox,
            requestTimeout: configuration.requestTimeout, proposer: proposer,
            defragmentStep: { [applier = loop.applier] pages in try await applier.defragmentStep(pages: pages) },
            commitBackend: { [applier = loop.applier] in try await applier.commitNow() },
            snapshots: SnapshotStreamer(
                databasePath: databasePath, snapshotDirectory: snapshotDirectory),
            logger: logger, authenticator: authenticator)
        let clusterService = ClusterService(
            header: header, replica: handle, proposer: proposer, status: status,
            activeSince: { transport.activeSince(NodeID($0.rawValue)) }, forwarder: forwarder,
            strictReconfigCheck: configuration.strictReconfigCheck, authenticator: authenticator)
        let leaseService = LeaseService(
            writer: proposer, replica: handle, header: header, forwarder: forwarder,
            requestTimeout: configuration.requestTimeout,
            pollInterval: .milliseconds(configuration.heartbeatIntervalMilliseconds), shutdown: shutdown, quota: quota,
            authenticator: authenticator
        )
        let watchService = WatchService(
            hub: watchHub, header: header,
            fragmentLimit: configuration.maxMessageBytes,
            progressNotifyInterval: configuration.watchProgressNotifyInterval,
            authenticator: authenticator, replica: handle
        )
        let leanTable = LeanServiceTable(
            kv: kvService, lease: leaseService, maintenance: maintenanceService, cluster: clusterService,
            watch: watchService, auth: authService, status: status,
            leaderCheckInterval: .milliseconds(configuration.electionTimeoutMilliseconds), metrics: metrics)
        metrics.attach(
            MetricsSources(
                memberID: persisted.member.rawValue, status: status, pending: pending,
                quotaBackendBytes: BackendQuota.limit(forFlag: configuration.quotaBackendBytes) ?? configuration.quotaBackendBytes,
                storeFigures: { Self.storeFigures(handle) }, peerStatistics: { transport.statistics }))
        // HTTP/1.1 beside gRPC on the client port, and alone on --listen-metrics-urls.
        let health = HealthEndpoints(kv: kvService, replica: handle, status: status, metrics: metrics)
        let gateway = JSONGateway(
            kv: kvService, lease: leaseService, maintenance: maintenanceService, cluster: clusterService,
            watch: watchService, auth: authService, metrics: metrics.grpc)
        let httpEndpoints = HTTPEndpoints(
            health: health, metrics: metrics, gateway: configuration.enableGRPCGateway ? gateway : nil, isClientPort: true)
        let metricsEndpoints = HTTPEndpoints(health: health, metrics: metrics, gateway: nil, isClientPort: false)
        let services: [any RegistrableRPCService] = [
            kvService, maintenanceService, clusterService, leaseService, watchService, authService,
        ]
        // The client URLs are served by one of the two gRPC servers (--experimental-grpc-server).
        let grpcSwiftURLs = configuration.grpcServer == .grpcSwift ? configuration.listenClientURLs : []
        let leanClientURLs = configuration.grpcServer == .lean ? configuration.listenClientURLs : []
        let servers = try grpcSwiftURLs.map { url in
            GRPCServer(
                transport: try makeTransport(for: url, http: httpEndpoints), services: services,
                interceptors: [
                    GRPCMetricsInterceptor(metrics: metrics.grpc),
                    CredentialsInterceptor(),
                    RequireLeaderInterceptor(
                        status: status, checkInterval: .milliseconds(configuration.electionTimeoutMilliseconds))
                ])
        }

        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await loop.run() }
            group.addTask { await watchHub.runCatchUp() }
            group.addTask {
                // Expired simple tokens are refused anyway; forgetting them bounds their memory.
                while await shutdown.sleep(.seconds(1)) { authBoard.tokens.sweep() }
            }
            let removalWatch = RemovalWatch(
                localMember: persisted.member, cluster: persisted.cluster, status: status, replica: handle,
                interval: .milliseconds(configuration.electionTimeoutMilliseconds), tls: security.peer)
            group.addTask {
                guard await removalWatch.run(until: shutdown) else { return }
                logger.warning(
                    "the member has been permanently removed from the cluster (a peer says so)",
                    metadata: ["local-member-id": "\(persisted.member)"])
                mailbox.close()
            }
            let corruptionChecker = CorruptionChecker(
                replica: handle, status: status, proposer: proposer, localMember: persisted.member, logger: logger,
                cluster: persisted.cluster, security: security)
            if configuration.corruptCheckTime > .zero {
                let interval = configuration.corruptCheckTime
                group.addTask { await corruptionChecker.runPeriodically(every: interval, until: shutdown) }
            }
            if let mode = configuration.autoCompaction {
                let compactor = AutoCompactor(
                    mode: mode, status: status, replica: handle, proposer: proposer, localMember: persisted.member,
                    logger: logger)
                group.addTask { await compactor.run(until: shutdown) }
            }
            group.addTask {
                await loop.runTicker()
                // The ticker ends when the mailbox closes: at shutdown, or because the member's
                // WAL or backend failed, in which case it must stop serving too.
                watchHub.closeAllStreams()
                shutdown.fire()
                published.fire()
                for server in servers { server.beginGracefulShutdown() }
            }
            // However the listeners end (drained, cancelled or failed), nothing more will be
            // proposed; closing the mailbox lets the loop finish what is queued, commit the
            // backend and close the WAL, which the group waits for.
            defer { mailbox.close() }
            do {
                try await withTaskCancellationOrGracefulShutdownHandler {
                    // etcd serves --listen-metrics-urls from the start: a probe then finds a
                    // member without a leader unhealthy rather than unreachable.
                    let metricsListeners = try await MetricsListeners.bind(
                        configuration.listenMetricsURLs, responder: metricsEndpoints, tls: security.metrics, logger: logger)
                    // As etcd, clients are served once this member has published itself through
                    // Raft (which needs a leader, so a quorum of the cluster).
                    await published.wait()
                    guard !shutdown.isFired else {
                        await metricsListeners.close()
                        return
                    }
                    // etcd checks its data against its peers' before it serves any client.
                    if configuration.initialCorruptCheck {
                        do {
                            try await corruptionChecker.checkAtStart()
                        } catch {
                            await metricsListeners.close()
                            throw error
                        }
                    }
                    logPublished(persisted)
                    // One set of lean listeners: the client URLs (when the lean server serves
                    // them) first, then the extra ones of --experimental-lean-grpc-listen-urls.
                    let lean: LeanGRPCListeners
                    do {
                        lean = try await LeanGRPCListeners.bind(
                            leanClientURLs + configuration.leanGRPCListenURLs, table: leanTable,
                            configuration: configuration, counters: connectionCounters, http: httpEndpoints,
                            tls: security.client, logger: logger)
                    } catch {
                        await metricsListeners.close()
                        throw error
                    }
                    let leanAddresses = lean.addresses
                    boundLeanAddresses.withLock { $0 = Array(leanAddresses.dropFirst(leanClientURLs.count)) }
                    do {
                        if servers.isEmpty {
                            announce(Array(leanAddresses.prefix(leanClientURLs.count)), urls: leanClientURLs)
                            await shutdown.wait()
                        } else {
                            try await serve(servers, shutdown: shutdown)
                        }
                    } catch {
                        await metricsListeners.close()
                        _ = await lean.close(gracePeriod: .zero)
                        throw error
                    }
                    // Health stays reachable while the client connections drain.
                    let drained = await lean.close(gracePeriod: configuration.shutdownGracePeriod)
                    await metricsListeners.close()
                    if !drained { throw ShutdownGracePeriodExpired() }
                } onCancelOrGracefulShutdown: {
                    // Watch and keepalive streams never end by themselves; closing them lets the
                    // listeners drain.
                    watchHub.closeAllStreams()
                    shutdown.fire()
                    published.fire()
                    for server in servers { server.beginGracefulShutdown() }
                }
            } catch is ShutdownGracePeriodExpired {
                // etcd, too, stops its gRPC server hard once the grace period is over.
                logger.warning(
                    "in-flight requests outlived the shutdown grace period; closed their connections",
                    metadata: ["grace_period": "\(configuration.shutdownGracePeriod)"]
                )
            } catch where Task.isCancelled {
                // Cancelling the task is a documented way to stop: the transports report it as
                // an error, but it is the stop that was asked for.
                logger.debug("listeners cancelled", metadata: ["error": "\(error)"])
            }
            mailbox.close()
            watchHub.closeAllStreams()
            do {
                try await group.waitForAll()
            } catch {
                await transport.shutdown()
                throw error
            }
        }
        await transport.shutdown()
        logger.info("stopped serving client traffic", metadata: ["name": "\(configuration.name)"])
    }

    private func logPublished(_ identity: MemberIdentity.Resolved) {
        logger.info(
            "published local member to cluster through raft",
            metadata: [
                "local-member-id": "\(identity.member)", "cluster-id": "\(identity.cluster)",
                "local-member-attributes":
                    "{Name:\(configuration.name) ClientURLs:[\(configuration.advertiseClientURLs.map(\.description).joined(separator: " "))]}",
            ]
        )
    }

    /// Listens for peers on every `--listen-peer-urls` address; what peers send goes to the
    /// Raft loop's mailbox.
    private func startPeerTransport(
        identity: MemberIdentity.Resolved, mailbox: RaftMailbox, tls: TLSContexts?
    ) async throws -> PeerTransport {
        var settings = PeerTransportConfiguration()
        settings.tls = tls
        settings.clusterID = identity.cluster.rawValue
        settings.snapshotDirectory = configuration.memberDirectory + "/snap"
        settings.syncsSnapshots = !configuration.unsafeNoFsync
        let transport = PeerTransport(
            memberID: NodeID(identity.member.rawValue), codec: PeerMessageCodec(), configuration: settings, logger: logger,
            receive: { mailbox.deliverFromPeers(.messages($0)) },
            reportUnreachable: { mailbox.deliverFromPeers(.unreachable($0)) },
            receiveSnapshot: { message, imagePath in mailbox.deliverFromPeers(.snapshot(message, imagePath: imagePath)) },
            reportSnapshot: { peer, status in mailbox.deliverFromPeers(.snapshotStatus(peer, status)) }
        )
        var addresses: [PeerListenAddress] = []
        for url in configuration.listenPeerURLs {
            addresses.append(
                PeerListenAddress(host: url.host == "localhost" ? "127.0.0.1" : url.host, port: url.port, secure: url.scheme == "https"))
        }
        do {
            _ = try await transport.start(listeningOn: addresses)
        } catch {
            // etcd will not start without every peer listener ("creating peer listener failed").
            guard case .bindFailed(let host, let port, let reason) = error,
                let position = addresses.firstIndex(where: { $0.host == host && $0.port == port })
            else { throw error }
            let url = configuration.listenPeerURLs[position]
            logger.error("creating peer listener failed", metadata: ["url": "\(url)", "error": "\(reason)"])
            throw ConfigurationError.invalid("cannot listen for peers on \(url): \(reason)")
        }
        return transport
    }

    /// Opens the member's Raft log. If the member stopped after saving the leader's snapshot and
    /// before installing its backend image, the image is installed first (etcd's
    /// `recoverSnapshotBackend`).
    private func openRaftMember(_ options: RaftMember.Options, metadata: [UInt8], handle: ReplicaHandle) throws -> RaftMember {
        let appliedIndex = handle.withReplica { $0.appliedIndex }
        let behind: (index: UInt64, term: UInt64)
        do {
            return try RaftMember.open(options, metadata: metadata, appliedIndex: appliedIndex, logger: logger)
        } catch {
            guard case .backendBehindSnapshot(let index, let term, _) = error else { throw error }
            behind = (index, term)
        }
        let image = options.log.snapshotDirectory + "/" + PeerSnapshotStream.fileName(term: behind.term, index: behind.index)
        _ = try installSnapshot(imagePath: image, snapshotIndex: behind.index, into: handle)
        logger.info("installed the leader's snapshot saved before the last stop", metadata: ["index": "\(behind.index)"])
        return try RaftMember.open(
            options, metadata: metadata, appliedIndex: handle.withReplica { $0.appliedIndex }, logger: logger)
    }

    /// Installs a backend image received from the leader (see `SnapshotInstaller`) with this
    /// member's settings.
    private func installSnapshot(imagePath: String, snapshotIndex: UInt64, into handle: ReplicaHandle) throws -> InstalledSnapshot {
        let installed = try SnapshotInstaller.install(
            imagePath: imagePath, snapshotIndex: snapshotIndex, dataDirectory: configuration.effectiveDataDirectory,
            into: handle, leases: leaseConfiguration, logger: logger, syncs: !configuration.unsafeNoFsync)
        let maxLearners = configuration.maxLearners
        handle.withReplica { $0.limitLearners(to: maxLearners) }
        return installed
    }

    /// Points the transport at every other member's first peer URL, and away from members gone.
    private static func followMembership(
        _ membership: ClusterMembership, local: MemberID, transport: PeerTransport, logger: Logger
    ) {
        var current: Set<NodeID> = []
        for member in membership.sortedMembers where member.id != local {
            guard let first = member.peerURLs.first, let url = try? EndpointURL(parsing: first) else {
                logger.warning("member has no usable peer URL", metadata: ["member": "\(member.id)"])
                continue
            }
            let id = NodeID(member.id.rawValue)
            current.insert(id)
            transport.addPeer(id, host: url.host, port: url.port, secure: url.scheme == "https")
        }
        for peer in transport.peers where !current.contains(peer) {
            Task { await transport.removePeer(peer) }
        }
    }

    /// Serves the listeners until they drain; once a stop begins, for at most the grace period,
    /// after which they are cancelled, which closes every connection and ends every call.
    private func serve(_ servers: [GRPCServer<HTTP2ServerTransport.Posix>], shutdown: ShutdownSignal) async throws {
        let gracePeriod = configuration.shutdownGracePeriod
        try await withThrowingTaskGroup(of: Void.self) { race in
            race.addTask {
                try await withThrowingDiscardingTaskGroup { listeners in
                    // RPC handlers run on the event loops that carry their connections (child
                    // tasks inherit the preference): a request then needs no hop to the
                    // cooperative pool and back, which cost up to half the throughput.
                    let executor = EventLoopTaskExecutor(group: MultiThreadedEventLoopGroup.singleton)
                    for server in servers {
                        listeners.addTask {
                            try await withTaskExecutorPreference(executor) { try await server.serve() }
                        }
                    }
                    listeners.addTask { try await self.announce(servers) }
                }
            }
            race.addTask {
                await shutdown.wait()
                try await Task.sleep(for: gracePeriod)
                throw ShutdownGracePeriodExpired()
            }
            // Whichever ends first decides: the listeners drained (the timer is cancelled), or
            // the grace period is over (leaving the group cancels the listeners).
            try await race.next()
            race.cancelAll()
        }
    }

    private func raftOptions(memberID: MemberID) -> RaftMember.Options {
        var log = DurableRaftLog.Configuration(memberDirectory: configuration.memberDirectory)
        if let walDirectory = configuration.walDirectory { log.walDirectory = walDirectory }
        log.maxWALs = configuration.maxWALs
        log.maxSnapshots = configuration.maxSnapshots
        log.catchUpEntries = configuration.snapshotCatchUpEntries
        log.unsafeNoFsync = configuration.unsafeNoFsync
        var options = RaftMember.Options(id: NodeID(memberID.rawValue), log: log)
        options.heartbeatTicks = 1
        options.electionTicks = max(1, configuration.electionTimeoutMilliseconds / configuration.heartbeatIntervalMilliseconds)
        options.preVote = configuration.preVote
        options.snapshotCount = configuration.snapshotCount
        options.seed = UInt64.random(in: .min ... .max)
        return options
    }

    private var loopConfiguration: RaftLoopConfiguration {
        var loop = RaftLoopConfiguration()
        loop.tickInterval = .milliseconds(configuration.heartbeatIntervalMilliseconds)
        loop.backendBatchInterval = .milliseconds(configuration.backendBatchIntervalMilliseconds)
        loop.backendBatchLimit = configuration.backendBatchLimit
        loop.maxProposalsPerCycle = configuration.maxProposalsPerCycle
        loop.unsafeNoFsync = configuration.unsafeNoFsync
        loop.electionTimeout = .milliseconds(configuration.electionTimeoutMilliseconds)
        // etcd treats a zero batch limit as its default.
        loop.compactionBatchLimit = configuration.compactionBatchLimit > 0 ? configuration.compactionBatchLimit : 1_000
        loop.compactionSleepInterval = max(.zero, configuration.compactionSleepInterval)
        loop.leaseRevocationsPerTick = max(
            1, configuration.leaseRevocationsPerSecond * configuration.heartbeatIntervalMilliseconds / 1_000)
        return loop
    }

    /// The WAL records whose member it is (etcd writes member and cluster ID into its WAL
    /// metadata): 16 bytes, member ID then cluster ID, little-endian.
    static func walMetadata(_ identity: MemberIdentity.Resolved) -> [UInt8] {
        let words = [identity.member.rawValue, identity.cluster.rawValue]
        return words.flatMap { word in (0..<8).map { UInt8(truncatingIfNeeded: word >> (8 * $0)) } }
    }

    /// The store's figures `/metrics` shows, read once per scrape.
    private static func storeFigures(_ handle: ReplicaHandle) -> MetricsSources.StoreFigures? {
        var everything = Etcdserverpb_RangeRequest()
        everything.key = Data([0])
        everything.rangeEnd = Data([0])
        everything.countOnly = true
        return try? handle.read { (replica) throws(ReplicaError) in
            let sizeInUse: Int64
            do throws(BackendError) {
                sizeInUse = try replica.store.backend.sizeInUseBytes
            } catch {
                throw ReplicaError(.backend(error))
            }
            return MetricsSources.StoreFigures(
                sizeInUseBytes: sizeInUse, keys: Int(try replica.range(everything).count),
                currentRevision: replica.store.currentRevision, compactRevision: replica.store.compactedRevision)
        }
    }

    private static func openReplica(
        dataDirectory: String, leases: Lessor.Configuration, authBoard: AuthBoard, logger: Logger
    ) throws -> Replica {
        let backend = try Backend(dataDirectory: dataDirectory, automaticCheckpoints: false)
        let store = try MVCCStore(backend: backend)
        return try Replica(store: store, logger: logger, leases: leases, authBoard: authBoard)
    }

    /// etcd's lessor settings: the minimum TTL from the election timeout, checkpoints (on and
    /// persisted by default here), and the retry interval of an expired lease's revocation.
    private var leaseConfiguration: Lessor.Configuration {
        Lessor.Configuration(
            minTTLSeconds: Lessor.Configuration.minTTLSeconds(
                electionTimeout: .milliseconds(configuration.electionTimeoutMilliseconds)),
            checkpointInterval: configuration.leaseCheckpointInterval,
            expiredRetryInterval: configuration.requestTimeout
        )
    }

    private func announce(_ servers: [GRPCServer<HTTP2ServerTransport.Posix>]) async throws {
        var addresses: [SocketAddressDescription] = []
        for server in servers {
            addresses.append(SocketAddressDescription(try await server.transport.listeningAddress))
        }
        announce(addresses, urls: configuration.listenClientURLs)
    }

    /// Logs where clients are served (`urls[i]` bound at `addresses[i]`) and releases whoever
    /// waits for the addresses.
    private func announce(_ addresses: [SocketAddressDescription], urls: [EndpointURL]) {
        for (address, url) in zip(addresses, urls) {
            if url.scheme == "https" {
                logger.info("serving client traffic securely", metadata: ["address": "\(address)"])
            } else {
                // etcd 3.4's wording, which tools grep for; the address as host:port.
                logger.warning(
                    "serving insecure client requests on \(address), this is strongly discouraged!",
                    metadata: ["address": "\(address)"]
                )
            }
        }
        boundAddresses.withLock { $0 = addresses }
        addressesReady.continuation.yield()
        addressesReady.continuation.finish()
        logger.info("ready to serve client requests")
    }

    private func makeTransport(for url: EndpointURL, http: HTTPEndpoints) throws(ConfigurationError) -> HTTP2ServerTransport.Posix {
        guard url.scheme == "http" else {
            throw .unsupported("listening on \(url) needs TLS or unix sockets, which are not supported yet")
        }
        let address: GRPCNIOTransportCore.SocketAddress
        if url.host == "localhost" {
            address = .ipv4(host: "127.0.0.1", port: url.port)
        } else if url.host.contains(":") {
            address = .ipv6(host: url.host, port: url.port)
        } else if url.host.split(separator: ".").count == 4 && url.host.allSatisfy({ $0.isNumber || $0 == "." }) {
            address = .ipv4(host: url.host, port: url.port)
        } else {
            // etcd binds only to IP addresses (and localhost).
            throw .invalidURL(url.description, "expected IP in URL for binding")
        }
        let config = HTTP2ServerTransport.Posix.Config.defaults { config in
            // Room for a request up to --max-request-bytes plus gRPC's margin, as etcd allows.
            config.rpc.maxRequestPayloadSize = configuration.maxMessageBytes
            // etcd lets clients ping every --grpc-keepalive-min-time (5 s) even with no call open.
            config.connection.keepalive.clientBehavior = .init(
                minPingIntervalWithoutCalls: configuration.grpcKeepaliveMinTime,
                allowWithoutCalls: true
            )
            // etcd's server keepalive: ping an idle client every --grpc-keepalive-interval (2 h;
            // 0 disables), give up after --grpc-keepalive-timeout (20 s).
            if configuration.grpcKeepaliveInterval > .zero {
                config.connection.keepalive.time = configuration.grpcKeepaliveInterval
                config.connection.keepalive.timeout = max(configuration.grpcKeepaliveTimeout, .milliseconds(1))
            } else {
                // The transport always pings; a century between pings is never.
                config.connection.keepalive.time = .seconds(100 * 365 * 24 * 3_600)
            }
            // etcd's --max-concurrent-streams (default: no limit beyond HTTP/2's own).
            if configuration.maxConcurrentStreams < UInt32.max {
                config.http2.maxConcurrentStreams = Int(configuration.maxConcurrentStreams)
            }
            config.connection.maxIdleTime = nil
            config.http2.targetWindowSize = 1 << 20
            // PINGs never reach grpc-swift's keepalive enforcement (the responder answers them
            // first), so --grpc-keepalive-min-time is the responder's strike interval.
            var pingPolicy = HTTP2PingPolicy()
            pingPolicy.minimumInterval = .nanoseconds(max(0, configuration.grpcKeepaliveMinTime.nanosecondsClamped))
            let maxBodyBytes = configuration.maxMessageBytes
            config.channelDebuggingCallbacks.onAcceptTCPConnection = { [pingPolicy] channel in
                channel.eventLoop.makeCompletedFuture {
                    let http2 = try channel.pipeline.syncOperations.handler(type: NIOHTTP2Handler.self)
                    try channel.pipeline.syncOperations.addHandler(
                        HTTP2PingResponder(role: .server, counters: self.connectionCounters, policy: pingPolicy),
                        position: .before(http2)
                    )
                    // In front of everything: HTTP/1.1 requests (health, metrics, the JSON
                    // gateway) are told apart from gRPC's HTTP/2 before grpc-swift sees them.
                    try channel.pipeline.syncOperations.addHandler(
                        HTTPPipeline.sniffer(responder: http, maxBodyBytes: maxBodyBytes), position: .first)
                }
            }
        }
        return HTTP2ServerTransport.Posix(address: address, transportSecurity: .plaintext, config: config)
    }
}

/// The listeners were still draining when the shutdown grace period ended.
private struct ShutdownGracePeriodExpired: Error {}

/// Where a listener ended up, for logs and tests.
public struct SocketAddressDescription: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    init(_ address: GRPCNIOTransportCore.SocketAddress) {
        if let ipv4 = address.ipv4 {
            host = ipv4.host
            port = ipv4.port
        } else if let ipv6 = address.ipv6 {
            host = ipv6.host
            port = ipv6.port
        } else {
            host = "\(address)"
            port = 0
        }
    }

    public var description: String { "\(host):\(port)" }
}

extension Duration {
    /// Whole nanoseconds, saturating at `Int64`'s bounds (NIO's `TimeAmount` counts in them).
    var nanosecondsClamped: Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        let (sum, carry) = scaled.addingReportingOverflow(attoseconds / 1_000_000_000)
        return carry ? (seconds < 0 ? .min : .max) : sum
    }
}
