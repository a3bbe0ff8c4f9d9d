import Yams

/// etcd's YAML configuration file (`--config-file`, as in etcd's `etcd.conf.yml.sample`): its keys
/// are the flag names, lists may be YAML sequences or comma strings, and TLS settings sit in the
/// nested `client-transport-security` and `peer-transport-security` blocks.
enum ConfigFile {
    static func apply(yaml: String, path: String, to values: inout FlagValues) throws(FlagError) {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            throw .configFile(path: path, reason: "\(error)")
        }
        guard let root else { return }
        guard let mapping = root.mapping else { throw .configFile(path: path, reason: "expected a mapping of flag names to values") }
        for (keyNode, valueNode) in mapping {
            guard let key = keyNode.scalar?.string else { continue }
            if let block = securityBlocks[key] {
                try applySecurity(valueNode, block: block, path: path, to: &values)
                continue
            }
            // The file names itself in the flag that led here; etcd ignores it inside the file.
            if key == "config-file" { continue }
            guard FlagTable.byName[key] != nil else {
                values.warnings.append("config file \(path): unknown key \"\(key)\" ignored")
                continue
            }
            try setValue(valueNode, flag: key, path: path, to: &values)
        }
    }

    /// The keys of etcd's `securityConfig`, and the flag each one stands for.
    private static let securityBlocks: [String: [String: String]] = [
        "client-transport-security": [
            "cert-file": "cert-file", "key-file": "key-file", "client-cert-file": "client-cert-file",
            "client-key-file": "client-key-file", "client-cert-auth": "client-cert-auth",
            "trusted-ca-file": "trusted-ca-file", "auto-tls": "auto-tls", "crl-file": "client-crl-file",
            "allowed-hostname": "client-cert-allowed-hostname",
        ],
        "peer-transport-security": [
            "cert-file": "peer-cert-file", "key-file": "peer-key-file", "client-cert-file": "peer-client-cert-file",
            "client-key-file": "peer-client-key-file", "client-cert-auth": "peer-client-cert-auth",
            "trusted-ca-file": "peer-trusted-ca-file", "auto-tls": "peer-auto-tls", "crl-file": "peer-crl-file",
            "allowed-cn": "peer-cert-allowed-cn", "allowed-hostname": "peer-cert-allowed-hostname",
            "skip-client-san-verification": "experimental-peer-skip-client-san-verification",
        ],
    ]

    private static func applySecurity(
        _ node: Node, block: [String: String], path: String, to values: inout FlagValues
    ) throws(FlagError) {
        guard let mapping = node.mapping else { return }
        for (keyNode, valueNode) in mapping {
            guard let key = keyNode.scalar?.string else { continue }
            guard let flag = block[key] else {
                values.warnings.append("config file \(path): unknown transport security key \"\(key)\" ignored")
                continue
            }
            try setValue(valueNode, flag: flag, path: path, to: &values)
        }
    }

    private static func setValue(_ node: Node, flag: String, path: String, to values: inout FlagValues) throws(FlagError) {
        guard let spec = FlagTable.byName[flag] else { return }
        let text: String
        if let sequence = node.sequence {
            text = sequence.compactMap { $0.scalar?.string }.joined(separator: ",")
        } else if let scalar = node.scalar {
            // An empty value or `null` leaves the default, as Go's YAML decoding does.
            if scalar.string.isEmpty || scalar.string == "null" || scalar.string == "~" { return }
            text = scalar.string
        } else {
            throw .configFile(path: path, reason: "\(flag): expected a value or a list")
        }
        try values.set(flag, fileValue(text, kind: spec.kind))
    }

    /// etcd decodes its file into Go types: a duration written as a plain number counts
    /// nanoseconds, and YAML's `yes`/`no`/`on`/`off` are booleans.
    private static func fileValue(_ text: String, kind: FlagKind) -> String {
        switch kind {
        case .duration where !text.isEmpty && text.allSatisfy(\.isNumber):
            return text == "0" ? "0" : "\(text)ns"
        case .bool:
            switch text.lowercased() {
            case "yes", "on", "y": return "true"
            case "no", "off", "n": return "false"
            default: return text
            }
        default:
            return text
        }
    }
}
