import NIOCore
import NIOHTTP1

/// Tells HTTP/2 (gRPC) connections from HTTP/1.1 ones on a port that serves both, as etcd's
/// client port does (gRPC, and /health, /metrics, /version and the JSON gateway over HTTP/1.1).
///
/// It sits first in an accepted connection's pipeline, in front of the HTTP/2 handlers, and
/// looks at the first bytes the client sends. Until it has decided, it holds back what the
/// handlers behind it write (the server's HTTP/2 SETTINGS), so an HTTP/1.1 client never sees
/// HTTP/2 bytes.
///
/// - The client preface of HTTP/2 (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`): the held writes go out,
///   the bytes read so far are passed on, and the sniffer leaves the pipeline.
/// - Anything else: the HTTP/1.1 handlers are put in front of it and get the bytes read so far;
///   the sniffer stays behind them as the end of the line, dropping whatever the HTTP/2
///   handlers behind it write (they see no data, only the connection's life cycle).
///
/// A preface split across reads is waited for: the decision needs only as many bytes as it
/// takes to rule the preface in or out.
final class HTTPProtocolSniffer: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    /// What the connection turned out to speak.
    enum Decision: Equatable {
        case http2
        case http1
    }

    private enum State {
        case sniffing
        case http2
        /// The HTTP/1.1 handlers in front serve the connection; writes from behind are dropped.
        case http1
    }

    static let http2Preface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    private var state = State.sniffing
    private var received: ByteBuffer?
    private var heldWrites: [(data: NIOAny, promise: EventLoopPromise<Void>?)] = []
    private var flushHeld = false
    /// Adds the HTTP/1.1 handlers in front of the sniffer (on the channel's loop).
    private let configureHTTP1: (ChannelPipeline.SynchronousOperations, HTTPProtocolSniffer) throws -> Void

    init(configureHTTP1: @escaping (ChannelPipeline.SynchronousOperations, HTTPProtocolSniffer) throws -> Void) {
        self.configureHTTP1 = configureHTTP1
    }

    /// The decision `bytes` allow, or nil while they are a strict prefix of the HTTP/2 preface.
    static func decide(_ bytes: ByteBufferView) -> Decision? {
        let compared = min(bytes.count, http2Preface.count)
        guard bytes.prefix(compared).elementsEqual(http2Preface.prefix(compared)) else { return .http1 }
        return compared == http2Preface.count ? .http2 : nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .sniffing = state else {
            // After HTTP/1.1 was chosen, reads start at the handlers in front; nothing gets here.
            if case .http2 = state { context.fireChannelRead(data) }
            return
        }
        var bytes = unwrapInboundIn(data)
        if var earlier = received {
            earlier.writeBuffer(&bytes)
            received = earlier
        } else {
            received = bytes
        }
        guard let received, let decision = Self.decide(received.readableBytesView) else { return }
        self.received = nil
        switch decision {
        case .http2: switchToHTTP2(context: context, received: received)
        case .http1: switchToHTTP1(context: context, received: received)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if case .http2 = state { context.fireChannelReadComplete() }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch state {
        case .sniffing: heldWrites.append((data, promise))
        case .http2: context.write(data, promise: promise)
        // The HTTP/2 handlers' bytes have nowhere to go on an HTTP/1.1 connection; to them the
        // write succeeded, as one into a connection the peer never reads.
        case .http1: promise?.succeed()
        }
    }

    func flush(context: ChannelHandlerContext) {
        switch state {
        case .sniffing: flushHeld = true
        case .http2: context.flush()
        case .http1: break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Writes held for a connection that ended undecided fail, as they would have.
        let held = heldWrites
        heldWrites = []
        for write in held { write.promise?.fail(ChannelError.ioOnClosedChannel) }
        context.fireChannelInactive()
    }

    private func switchToHTTP2(context: ChannelHandlerContext, received: ByteBuffer) {
        state = .http2
        let held = heldWrites
        heldWrites = []
        for write in held { context.write(write.data, promise: write.promise) }
        if flushHeld { context.flush() }
        context.fireChannelRead(wrapInboundOut(received))
        context.fireChannelReadComplete()
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    private func switchToHTTP1(context: ChannelHandlerContext, received: ByteBuffer) {
        state = .http1
        let held = heldWrites
        heldWrites = []
        for write in held { write.promise?.succeed() }
        // The bytes read so far go to the first HTTP/1.1 handler, which follows a pass-through
        // put in front of them: not from the pipeline's head, where a TLS handler in front would
        // take them for ciphertext.
        let entry = HTTPEntryPoint()
        let entryContext: ChannelHandlerContext
        do {
            try context.pipeline.syncOperations.addHandler(entry, position: .before(self))
            try configureHTTP1(context.pipeline.syncOperations, self)
            entryContext = try context.pipeline.syncOperations.context(handler: entry)
        } catch {
            context.close(promise: nil)
            return
        }
        entryContext.fireChannelRead(NIOAny(received))
        entryContext.fireChannelReadComplete()
        context.pipeline.syncOperations.removeHandler(entry, promise: nil)
    }
}

/// Where the sniffer hands the HTTP/1.1 handlers the bytes it read (see ``HTTPProtocolSniffer``).
private final class HTTPEntryPoint: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
}
