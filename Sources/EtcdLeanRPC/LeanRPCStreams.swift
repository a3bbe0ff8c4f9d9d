public import NIOCore
import NIOHTTP2

/// The request messages of a streaming call, each as its bytes (without gRPC's prefix), in the
/// order the client sent them. Ends when the client half-closes; throws ``LeanRPCStreamClosed``
/// if the stream is reset or the connection goes away first.
///
/// Back-pressure reaches the client through HTTP/2 flow control: while the consumer is behind
/// (more than a few messages buffered) the stream's window is not given back, so a client that
/// sends faster than the call reads is held by its own window instead of filling memory.
public struct LeanRPCRequestStream: AsyncSequence, Sendable {
    public typealias Element = ByteBuffer
    public typealias Failure = any Error

    typealias Producer = NIOThrowingAsyncSequenceProducer<
        ByteBuffer, any Error, NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark, Demand
    >

    let producer: Producer

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: Producer.AsyncIterator

        public mutating func next() async throws -> ByteBuffer? {
            try await base.next()
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: producer.makeAsyncIterator())
    }

    /// Tells the connection's handler, on its loop, that the consumer wants more.
    struct Demand: NIOAsyncSequenceProducerDelegate {
        let loop: any EventLoop
        let handler: NIOLoopBound<LeanRPCServerHandler>
        let stream: HTTP2StreamID

        func produceMore() {
            let (handler, stream) = (self.handler, self.stream)
            loop.execute { handler.value.resumeReading(stream) }
        }

        func didTerminate() {}
    }

    /// A stream and its source. Up to `high` messages are buffered before the window is held;
    /// it is given back once the consumer is down to `low`.
    static func make(loop: any EventLoop, handler: LeanRPCServerHandler, stream: HTTP2StreamID)
        -> (source: Producer.Source, stream: LeanRPCRequestStream)
    {
        let made = Producer.makeSequence(
            backPressureStrategy: .init(lowWatermark: 2, highWatermark: 16),
            finishOnDeinit: false,
            delegate: Demand(loop: loop, handler: NIOLoopBound(handler, eventLoop: loop), stream: stream))
        return (made.source, LeanRPCRequestStream(producer: made.sequence))
    }
}

/// Sends the response messages of a streaming call.
public struct LeanRPCResponseStream: Sendable {
    let loop: any EventLoop
    let handler: NIOLoopBound<LeanRPCServerHandler>
    let stream: HTTP2StreamID

    /// Sends framed messages (see ``GRPCMessageWriter``), the response headers first if they have
    /// not gone yet. Returns once they are written to the connection: a client that does not
    /// read (its flow-control window is full) holds the writer here, which is the back-pressure
    /// a producer needs. Throws ``LeanRPCStreamClosed`` if the call has ended or the connection
    /// is gone.
    public func write(_ messages: [ByteBuffer]) async throws {
        let promise = loop.makePromise(of: Void.self)
        if loop.inEventLoop {
            handler.value.send(messages, on: stream, promise: promise)
        } else {
            let (handler, stream) = (self.handler, self.stream)
            loop.execute { handler.value.send(messages, on: stream, promise: promise) }
        }
        try await promise.futureResult.get()
    }
}

/// The call's stream ended before its messages were read or written: the client reset it, its
/// deadline passed or the connection closed.
public struct LeanRPCStreamClosed: Error, CustomStringConvertible {
    public init() {}
    public var description: String { "the call's stream is closed" }
}
