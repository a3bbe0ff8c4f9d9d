#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Synchronization

/// Free TCP ports on 127.0.0.1 for servers under test.
///
/// Ports come from below the kernel's ephemeral range (`ip_local_port_range`), never from it:
/// a port in that range can become the local end of any outgoing connection (a client polling a
/// server that has not bound yet can even connect to itself on it), and the server would then
/// fail to bind, or a client would talk to the wrong peer. Within one test process a port is
/// handed out once. A candidate is bound once to check it is free, then closed, so another
/// process may still take it; ``EtcdProcess`` retries with fresh ports on "address already in use".
public enum LoopbackPort {
    private static let handedOut = Mutex<Set<Int>>([])

    /// Returns a TCP port on 127.0.0.1 that was free a moment ago and was not returned before.
    public static func allocate() throws(LoopbackPortError) -> Int {
        let range = candidateRange()
        for _ in 0..<1_000 {
            let port = Int.random(in: range)
            let fresh = handedOut.withLock { $0.insert(port).inserted }
            guard fresh else { continue }
            if try canBind(port: port) { return port }
        }
        throw LoopbackPortError(operation: "finding a free port in \(range)", errno: EADDRINUSE)
    }

    /// The ports below the ephemeral range, down to 10000.
    static func candidateRange() -> ClosedRange<Int> {
        let text = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? ""
        let firstEphemeral = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" })
            .first.flatMap { Int($0) } ?? 32_768
        return 10_000...max(10_001, min(firstEphemeral, 65_536) - 1)
    }

    private static func canBind(port: Int) throws(LoopbackPortError) -> Bool {
        #if canImport(Darwin)
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #else
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #endif
        guard fd >= 0 else { throw LoopbackPortError(operation: "socket", errno: errno) }
        defer { close(fd) }
        var address = loopbackAddress(port: port)
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        return bound == 0
    }

    /// Whether something accepts TCP connections on 127.0.0.1 at `port` right now.
    public static func isAccepting(port: Int) -> Bool {
        #if canImport(Darwin)
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #else
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #endif
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = loopbackAddress(port: port)
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        return connected == 0
    }

    private static func loopbackAddress(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return address
    }
}

/// A socket call failed while looking for a free port.
public struct LoopbackPortError: Error, CustomStringConvertible {
    /// The system call that failed.
    public var operation: String
    /// The `errno` it left.
    public var errno: Int32

    public var description: String { "\(operation) failed on 127.0.0.1 with errno \(errno)" }
}
