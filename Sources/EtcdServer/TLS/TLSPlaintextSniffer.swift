import NIOCore

/// For a port listed both as `http://` and `https://` (etcd 3.5 serves both on one port): the
/// first byte a client sends tells a TLS handshake (a handshake record, 0x16) from plaintext.
///
/// It sits first in an accepted connection's pipeline. On TLS it puts the TLS handlers
/// (`configureTLS`) right behind itself; either way it then passes on what it read and leaves.
/// Until it has decided it holds back what the handlers behind it write (an HTTP/2 server's
/// SETTINGS): on plaintext those go out as they are, on TLS they are written again into the TLS
/// handler, so that no plaintext byte reaches a TLS client.
final class TLSPlaintextSniffer: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    /// The first byte of every TLS connection: a handshake record's content type.
    static let handshakeRecord: UInt8 = 0x16

    /// Adds the TLS handlers behind the sniffer and returns the handler after which held writes
    /// re-enter the pipeline (the one right behind the TLS handler).
    private let configureTLS: (ChannelPipeline.SynchronousOperations, TLSPlaintextSniffer) throws -> any ChannelHandler
    private var decided = false
    private var heldWrites: [(data: NIOAny, promise: EventLoopPromise<Void>?)] = []
    private var flushHeld = false

    init(configureTLS: @escaping (ChannelPipeline.SynchronousOperations, TLSPlaintextSniffer) throws -> any ChannelHandler) {
        self.configureTLS = configureTLS
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !decided else {
            context.fireChannelRead(data)
            return
        }
        let bytes = unwrapInboundIn(data)
        guard let first = bytes.readableBytesView.first else { return }
        decided = true
        let held = heldWrites
        heldWrites = []
        if first == Self.handshakeRecord {
            let writer: ChannelHandlerContext
            do {
                let behindTLS = try configureTLS(context.pipeline.syncOperations, self)
                writer = try context.pipeline.syncOperations.context(handler: behindTLS)
            } catch {
                for write in held { write.promise?.fail(error) }
                context.close(promise: nil)
                return
            }
            for write in held { writer.write(write.data, promise: write.promise) }
            if flushHeld { writer.flush() }
        } else {
            for write in held { context.write(write.data, promise: write.promise) }
            if flushHeld { context.flush() }
        }
        context.fireChannelRead(data)
        context.fireChannelReadComplete()
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard decided else {
            heldWrites.append((data, promise))
            return
        }
        context.write(data, promise: promise)
    }

    func flush(context: ChannelHandlerContext) {
        guard decided else {
            flushHeld = true
            return
        }
        context.flush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        let held = heldWrites
        heldWrites = []
        for write in held { write.promise?.fail(ChannelError.ioOnClosedChannel) }
        context.fireChannelInactive()
    }
}
