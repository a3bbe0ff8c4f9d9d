import EtcdLeanRPC
import Logging
import NIOCore
import NIOSSL
import NIOTLS
import Synchronization

/// Sits right behind the TLS handler of an accepted connection and lets nothing through until
/// the handshake is done and the other side's certificate passed ``CertificateAdmission``: what
/// arrives meanwhile is held, and a connection that fails is closed before any of its bytes reach
/// the handlers behind. It also bounds the handshake's time, and logs failed handshakes (etcd's
/// "rejected connection"), at most once a second at warning level.
///
/// Once admitted, the certificate's CommonName (when ``CertificateAdmission/reportsCommonName``)
/// goes down the pipeline as ``LeanRPCServerHandler/ClientCertificate`` and stays readable here
/// as ``verifiedCommonName`` for handlers added later (the HTTP/1.1 ones).
final class TLSConnectionGuard: ChannelInboundHandler {
    typealias InboundIn = NIOAny
    typealias InboundOut = NIOAny

    private enum State {
        case handshaking
        /// Waiting for a DNS lookup; reads are held.
        case checking
        case open
        case refused
    }

    private let admission: CertificateAdmission
    private let failures: TLSFailureLog
    private let handshakeTimeout: TimeAmount
    private var state = State.handshaking
    private var held: [NIOAny] = []
    private var heldReadComplete = false
    private var timer: Scheduled<Void>?
    /// The admitted certificate's CommonName, if it is the caller's identity.
    private(set) var verifiedCommonName: String?

    init(admission: CertificateAdmission, failures: TLSFailureLog, handshakeTimeout: TimeAmount = .seconds(10)) {
        self.admission = admission
        self.failures = failures
        self.handshakeTimeout = handshakeTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: handshakeTimeout) {
            let (guardHandler, context) = bound.value
            guard case .handshaking = guardHandler.state else { return }
            guardHandler.refuse(context: context, reason: "TLS handshake did not complete within \(guardHandler.handshakeTimeout)")
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch state {
        case .open: context.fireChannelRead(data)
        case .handshaking, .checking:
            // Bounded: a client may not pile up data while its certificate's names are looked up.
            guard held.count < Self.maxHeldReads else {
                refuse(context: context, reason: "sent more than \(Self.maxHeldReads) reads before it was admitted")
                return
            }
            held.append(data)
        case .refused: break
        }
    }

    /// The most reads held before admission (each at most two TLS records' worth).
    static let maxHeldReads = 256

    func channelReadComplete(context: ChannelHandlerContext) {
        switch state {
        case .open: context.fireChannelReadComplete()
        case .handshaking, .checking: heldReadComplete = true
        case .refused: break
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case .handshaking = state, let tls = event as? TLSUserEvent, case .handshakeCompleted = tls else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        timer?.cancel()
        let leaf = try? context.pipeline.syncOperations.handler(type: NIOSSLHandler.self).peerCertificate
        switch admission.admit(leaf, remoteAddress: context.channel.remoteAddress) {
        case .admitted(let commonName):
            open(context: context, commonName: commonName, event: tls)
        case .refused(let reason):
            refuse(context: context, reason: reason)
        case .lookUp(let names, let remoteIP, let commonName):
            state = .checking
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            CertificateAdmission.resolve(names, to: remoteIP, on: context.eventLoop).whenComplete { result in
                let (guardHandler, context) = bound.value
                guard case .checking = guardHandler.state else { return }
                if case .success(true) = result {
                    guardHandler.open(context: context, commonName: commonName, event: tls)
                } else {
                    guardHandler.refuse(
                        context: context, reason: "tls: \"\(remoteIP)\" does not match any of DNSNames \(names)")
                }
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard case .handshaking = state else {
            context.fireErrorCaught(error)
            return
        }
        // The TLS handler closes the connection itself after a failed handshake.
        state = .refused
        timer?.cancel()
        held = []
        failures.record(remote: context.channel.remoteAddress, reason: "\(error)")
    }

    private func open(context: ChannelHandlerContext, commonName: String?, event: TLSUserEvent) {
        state = .open
        verifiedCommonName = commonName
        context.fireUserInboundEventTriggered(event)
        if commonName != nil {
            context.fireUserInboundEventTriggered(LeanRPCServerHandler.ClientCertificate(commonName: commonName))
        }
        let reads = held
        held = []
        for read in reads { context.fireChannelRead(read) }
        if heldReadComplete || !reads.isEmpty { context.fireChannelReadComplete() }
        heldReadComplete = false
    }

    private func refuse(context: ChannelHandlerContext, reason: String) {
        state = .refused
        held = []
        failures.record(remote: context.channel.remoteAddress, reason: reason)
        context.close(promise: nil)
    }
}

/// Logs refused TLS connections: each at debug level, and at warning level at most once a
/// second (with how many were not logged since), so that a scanner or a misconfigured client
/// cannot flood the log.
final class TLSFailureLog: Sendable {
    private let logger: Logger
    private let listener: String
    private let interval: Duration
    private let state = Mutex<(lastWarning: ContinuousClock.Instant?, suppressed: Int)>((nil, 0))

    init(logger: Logger, listener: String, interval: Duration = .seconds(1)) {
        self.logger = logger
        self.listener = listener
        self.interval = interval
    }

    func record(remote: SocketAddress?, reason: String) {
        let address = remote.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "unknown"
        logger.debug("rejected connection", metadata: ["remote-addr": "\(address)", "listener": "\(listener)", "error": "\(reason)"])
        let now = ContinuousClock.now
        let suppressed = state.withLock { state -> Int? in
            if let last = state.lastWarning, last.duration(to: now) < interval {
                state.suppressed += 1
                return nil
            }
            defer { state = (now, 0) }
            return state.suppressed
        }
        guard let suppressed else { return }
        var metadata: Logger.Metadata = ["remote-addr": "\(address)", "listener": "\(listener)", "error": "\(reason)"]
        if suppressed > 0 { metadata["not-logged-since"] = "\(suppressed)" }
        logger.warning("rejected connection", metadata: metadata)
    }
}
