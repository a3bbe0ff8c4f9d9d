import Crypto
import CryptoExtras
public import Foundation

/// etcd's `--auth-token jwt,pub-key=<file>,priv-key=<file>,sign-method=<alg>,ttl=<duration>`:
/// which keys sign and verify tokens, with which algorithm, and how long a token lives.
public struct JWTOptions: Sendable, Equatable {
    public var signMethod: String
    public var publicKeyPath: String?
    public var privateKeyPath: String?
    public var ttl: Duration

    /// etcd's default lifetime of a JWT (`--auth-token-ttl` does not apply to them).
    public static let defaultTTL: Duration = .seconds(300)

    /// The options of an `--auth-token` value that starts with `jwt`; nil for `simple`. Parts
    /// are `key=value`; a part without `=`, a repeated key or a missing `sign-method` is
    /// refused as etcd refuses them; unknown keys are ignored.
    public static func parse(_ flag: String) throws(JWTError) -> JWTOptions? {
        let parts = flag.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard parts.first == "jwt" else { return nil }
        var values: [String: String] = [:]
        for part in parts.dropFirst() {
            let pair = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            guard pair.count == 2, values[pair[0]] == nil else { throw .invalidOptions }
            values[pair[0]] = pair[1]
        }
        guard let method = values["sign-method"], !method.isEmpty else { throw .invalidMethod }
        var options = JWTOptions(
            signMethod: method, publicKeyPath: values["pub-key"], privateKeyPath: values["priv-key"], ttl: defaultTTL)
        if let ttl = values["ttl"] {
            guard let seconds = Self.seconds(ofGoDuration: ttl) else { throw .invalidOptions }
            options.ttl = .milliseconds(Int64(seconds * 1000))
        }
        return options
    }

    /// The seconds of a Go duration made of whole or decimal numbers with h, m, s or ms units.
    static func seconds(ofGoDuration text: String) -> Double? {
        var total = 0.0
        var rest = Substring(text)
        let units: [(String, Double)] = [("ms", 0.001), ("h", 3600), ("m", 60), ("s", 1)]
        guard !rest.isEmpty else { return nil }
        while !rest.isEmpty {
            let number = rest.prefix { $0.isNumber || $0 == "." }
            guard let value = Double(number) else { return nil }
            rest = rest.dropFirst(number.count)
            guard let (unit, scale) = units.first(where: { rest.hasPrefix($0.0) }) else { return nil }
            rest = rest.dropFirst(unit.count)
            total += value * scale
        }
        return total
    }
}

/// Why JWT tokens cannot be made or used, in etcd's words.
public enum JWTError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidOptions
    case invalidMethod
    case missingKey
    case keyMismatch
    case unreadableKey(String)
    /// Authenticate on a member that holds only the public key.
    case verifyOnly

    public var description: String {
        switch self {
        case .invalidOptions: return "auth: invalid auth options"
        case .invalidMethod: return "auth: invalid auth signature method"
        case .missingKey: return "auth: missing key data"
        case .keyMismatch: return "auth: public and private keys don't match"
        case .unreadableKey(let reason): return "auth: cannot read the key: \(reason)"
        case .verifyOnly: return "auth: token signing attempted with verify-only key"
        }
    }
}

/// Signs and verifies etcd's JWTs: header `{"alg":...,"typ":"JWT"}`, claims `exp` (Unix seconds),
/// `revision` (the auth revision when signed) and `username`, as golang-jwt lays them out. HMAC
/// (HS256/384/512, the private key file is the secret), RSA (RS and PS, 256/384/512) and ECDSA
/// (ES256/384/512) keys in PEM files.
public struct JWTTokens: Sendable {
    private enum Keys: Sendable {
        case hmac(SymmetricKey)
        case rsa(private: _RSA.Signing.PrivateKey?, public: _RSA.Signing.PublicKey)
        case p256(private: P256.Signing.PrivateKey?, public: P256.Signing.PublicKey)
        case p384(private: P384.Signing.PrivateKey?, public: P384.Signing.PublicKey)
        case p521(private: P521.Signing.PrivateKey?, public: P521.Signing.PublicKey)
    }

    public let options: JWTOptions
    private let keys: Keys
    private let bits: Int
    private let pss: Bool

    public init(_ options: JWTOptions) throws(JWTError) {
        self.options = options
        let method = options.signMethod
        guard method.count == 5, let bits = Int(method.suffix(3)), [256, 384, 512].contains(bits) else { throw .invalidMethod }
        self.bits = bits
        pss = method.hasPrefix("PS")
        let privateText = try Self.read(options.privateKeyPath)
        let publicText = try Self.read(options.publicKeyPath)
        guard privateText != nil || publicText != nil else { throw .missingKey }
        do {
            switch method.prefix(2) {
            case "HS":
                guard let secret = privateText else { throw JWTError.missingKey }
                keys = .hmac(SymmetricKey(data: Data(secret.utf8)))
            case "RS", "PS":
                let (privateKey, publicKey) = try Self.pair(
                    privateText, publicText, { try _RSA.Signing.PrivateKey(pemRepresentation: $0) },
                    { try _RSA.Signing.PublicKey(pemRepresentation: $0) }, publicOf: \.publicKey, bytes: \.derRepresentation)
                keys = .rsa(private: privateKey, public: publicKey)
            case "ES":
                switch bits {
                case 256:
                    let (privateKey, publicKey) = try Self.pair(
                        privateText, publicText, { try P256.Signing.PrivateKey(pemRepresentation: $0) },
                        { try P256.Signing.PublicKey(pemRepresentation: $0) }, publicOf: \.publicKey, bytes: \.rawRepresentation)
                    keys = .p256(private: privateKey, public: publicKey)
                case 384:
                    let (privateKey, publicKey) = try Self.pair(
                        privateText, publicText, { try P384.Signing.PrivateKey(pemRepresentation: $0) },
                        { try P384.Signing.PublicKey(pemRepresentation: $0) }, publicOf: \.publicKey, bytes: \.rawRepresentation)
                    keys = .p384(private: privateKey, public: publicKey)
                default:
                    let (privateKey, publicKey) = try Self.pair(
                        privateText, publicText, { try P521.Signing.PrivateKey(pemRepresentation: $0) },
                        { try P521.Signing.PublicKey(pemRepresentation: $0) }, publicOf: \.publicKey, bytes: \.rawRepresentation)
                    keys = .p521(private: privateKey, public: publicKey)
                }
            default:
                throw JWTError.invalidMethod
            }
        } catch let error as JWTError {
            throw error
        } catch {
            throw .unreadableKey("\(error)")
        }
    }

    /// A key pair from the PEM texts given: the private key if there is one, and the public key
    /// from its own file or else from the private key. A public key file that does not hold the
    /// private key's public key is refused, as etcd refuses it.
    private static func pair<Private, Public>(
        _ privateText: String?, _ publicText: String?, _ parsePrivate: (String) throws -> Private,
        _ parsePublic: (String) throws -> Public, publicOf: (Private) -> Public, bytes: (Public) -> Data
    ) throws -> (Private?, Public) {
        let privateKey = try privateText.map(parsePrivate)
        let derived = privateKey.map(publicOf)
        guard let publicKey = try publicText.map(parsePublic) ?? derived else { throw JWTError.missingKey }
        if let derived, bytes(derived) != bytes(publicKey) { throw JWTError.keyMismatch }
        return (privateKey, publicKey)
    }

    private static func read(_ path: String?) throws(JWTError) -> String? {
        guard let path, !path.isEmpty else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else { throw .unreadableKey("cannot read \(path)") }
        return String(decoding: data, as: UTF8.self)
    }

    /// A token for `username` at auth revision `revision`, valid `ttl` from `now`.
    public func sign(username: String, revision: UInt64, now: Date = Date()) throws(JWTError) -> String {
        let expiry = Int64(now.timeIntervalSince1970) + Int64(options.ttl.components.seconds)
        let header = #"{"alg":"\#(options.signMethod)","typ":"JWT"}"#
        let claims = #"{"exp":\#(expiry),"revision":\#(revision),"username":\#(Self.jsonString(username))}"#
        let signingInput = Self.base64URL(Data(header.utf8)) + "." + Self.base64URL(Data(claims.utf8))
        let signature: Data
        do {
            signature = try sign(Data(signingInput.utf8))
        } catch let error as JWTError {
            throw error
        } catch {
            throw .unreadableKey("\(error)")
        }
        return signingInput + "." + Self.base64URL(signature)
    }

    private func sign(_ input: Data) throws -> Data {
        switch keys {
        case .hmac(let key):
            switch bits {
            case 256: return Data(HMAC<SHA256>.authenticationCode(for: input, using: key))
            case 384: return Data(HMAC<SHA384>.authenticationCode(for: input, using: key))
            default: return Data(HMAC<SHA512>.authenticationCode(for: input, using: key))
            }
        case .rsa(let privateKey, _):
            guard let privateKey else { throw JWTError.verifyOnly }
            let padding: _RSA.Signing.Padding = pss ? .PSS : .insecurePKCS1v1_5
            switch bits {
            case 256: return try privateKey.signature(for: SHA256.hash(data: input), padding: padding).rawRepresentation
            case 384: return try privateKey.signature(for: SHA384.hash(data: input), padding: padding).rawRepresentation
            default: return try privateKey.signature(for: SHA512.hash(data: input), padding: padding).rawRepresentation
            }
        case .p256(let privateKey, _):
            guard let privateKey else { throw JWTError.verifyOnly }
            return try privateKey.signature(for: input).rawRepresentation
        case .p384(let privateKey, _):
            guard let privateKey else { throw JWTError.verifyOnly }
            return try privateKey.signature(for: input).rawRepresentation
        case .p521(let privateKey, _):
            guard let privateKey else { throw JWTError.verifyOnly }
            return try privateKey.signature(for: input).rawRepresentation
        }
    }

    /// The user and auth revision a token carries, if it is one of ours (signed with this key and
    /// algorithm), unexpired at `now`, and has both claims; nil otherwise.
    public func verify(_ token: String, now: Date = Date()) -> (username: String, revision: UInt64)? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let headerData = Self.data(base64URL: parts[0]), let claimsData = Self.data(base64URL: parts[1]),
            let signature = Self.data(base64URL: parts[2]),
            let header = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any],
            header["alg"] as? String == options.signMethod,
            isValid(signature, for: Data((parts[0] + "." + parts[1]).utf8)),
            let claims = try? JSONSerialization.jsonObject(with: claimsData) as? [String: Any],
            let username = claims["username"] as? String, let revision = (claims["revision"] as? NSNumber)?.uint64Value,
            let expiry = (claims["exp"] as? NSNumber)?.doubleValue, expiry > now.timeIntervalSince1970
        else { return nil }
        return (username, revision)
    }

    private func isValid(_ signature: Data, for input: Data) -> Bool {
        switch keys {
        case .hmac(let key):
            switch bits {
            case 256: return HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: input, using: key)
            case 384: return HMAC<SHA384>.isValidAuthenticationCode(signature, authenticating: input, using: key)
            default: return HMAC<SHA512>.isValidAuthenticationCode(signature, authenticating: input, using: key)
            }
        case .rsa(_, let publicKey):
            let padding: _RSA.Signing.Padding = pss ? .PSS : .insecurePKCS1v1_5
            let rsaSignature = _RSA.Signing.RSASignature(rawRepresentation: signature)
            switch bits {
            case 256: return publicKey.isValidSignature(rsaSignature, for: SHA256.hash(data: input), padding: padding)
            case 384: return publicKey.isValidSignature(rsaSignature, for: SHA384.hash(data: input), padding: padding)
            default: return publicKey.isValidSignature(rsaSignature, for: SHA512.hash(data: input), padding: padding)
            }
        case .p256(_, let publicKey):
            guard let parsed = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return publicKey.isValidSignature(parsed, for: input)
        case .p384(_, let publicKey):
            guard let parsed = try? P384.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return publicKey.isValidSignature(parsed, for: input)
        case .p521(_, let publicKey):
            guard let parsed = try? P521.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return publicKey.isValidSignature(parsed, for: input)
        }
    }

    static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func data(base64URL text: Substring) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64)
    }

    static func jsonString(_ text: String) -> String {
        let encoded = (try? JSONSerialization.data(withJSONObject: [text], options: [.withoutEscapingSlashes])) ?? Data("[\"\"]".utf8)
        return String(String(decoding: encoded, as: UTF8.self).dropFirst().dropLast())
    }
}
