import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// A certificate chain and key read from PEM files, read again at a handshake when either file
/// has changed since: etcd reads its certificate files at every handshake, so that rotated
/// certificates take effect without a restart. Here a handshake costs two `stat`s, and the files
/// are parsed only when they changed. A pair that no longer loads (caught halfway through being
/// replaced, say) leaves the last good one in use, with a warning.
final class CertificateFiles: Sendable {
    let certPath: String
    let keyPath: String
    private let logger: Logger

    private struct Loaded {
        var stamps: [Date?]
        /// nil while the files are the ones the context was made with.
        var replacement: NIOSSLContextConfigurationOverride?
    }

    private let loaded: Mutex<Loaded>
    /// The chain and key as first read, for the context.
    let chain: [NIOSSLCertificateSource]
    let key: NIOSSLPrivateKeySource

    init(certPath: String, keyPath: String, logger: Logger) throws {
        self.certPath = certPath
        self.keyPath = keyPath
        self.logger = logger
        let stamps = Self.stamps(certPath, keyPath)
        (chain, key) = try Self.read(certPath: certPath, keyPath: keyPath)
        loaded = Mutex(Loaded(stamps: stamps, replacement: nil))
    }

    /// For `TLSConfiguration.sslContextCallback`: completes `promise` with the current pair when
    /// it is not the first. Files that changed are read on the thread pool: BoringSSL leaves the
    /// errors of a failed read in its thread's error queue, where a later handshake on an event
    /// loop's thread would find them and fail.
    func complete(_ promise: EventLoopPromise<NIOSSLContextConfigurationOverride>) {
        let stamps = Self.stamps(certPath, keyPath)
        let known = loaded.withLock { $0 }
        guard stamps != known.stamps else {
            promise.succeed(known.replacement ?? .noChanges)
            return
        }
        NIOThreadPool.singleton.runIfActive(eventLoop: promise.futureResult.eventLoop) {
            self.reload(stamps: stamps, known: known)
        }.cascade(to: promise)
    }

    private func reload(stamps: [Date?], known: Loaded) -> NIOSSLContextConfigurationOverride {
        do {
            let (chain, key) = try Self.read(certPath: certPath, keyPath: keyPath)
            var replacement = NIOSSLContextConfigurationOverride()
            replacement.certificateChain = chain
            replacement.privateKey = key
            loaded.withLock { $0 = Loaded(stamps: stamps, replacement: replacement) }
            logger.info("reloaded the TLS certificate", metadata: ["cert-file": "\(certPath)", "key-file": "\(keyPath)"])
            return replacement
        } catch {
            // Warned once per change of the files, not at every handshake.
            loaded.withLock { $0.stamps = stamps }
            logger.warning(
                "failed to reload the TLS certificate; the previous one stays in use",
                metadata: ["cert-file": "\(certPath)", "key-file": "\(keyPath)", "error": "\(error)"])
            return known.replacement ?? .noChanges
        }
    }

    private static func read(certPath: String, keyPath: String) throws -> ([NIOSSLCertificateSource], NIOSSLPrivateKeySource) {
        let chain = try NIOSSLCertificate.fromPEMFile(certPath).map { NIOSSLCertificateSource.certificate($0) }
        return (chain, .privateKey(try NIOSSLPrivateKey(file: keyPath, format: .pem)))
    }

    private static func stamps(_ paths: String...) -> [Date?] {
        paths.map { (try? FileManager.default.attributesOfItem(atPath: $0))?[.modificationDate] as? Date }
    }
}
