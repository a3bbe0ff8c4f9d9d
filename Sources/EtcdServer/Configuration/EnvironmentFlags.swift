import Foundation

/// etcd's `ETCD_*` environment variables: each flag `--some-flag` may also come from
/// `ETCD_SOME_FLAG`; the command line wins, and variables that name no flag are reported.
public enum EnvironmentFlags {
    /// The merged command line, and what deserves a warning in the log once logging is set up.
    public struct Merged: Sendable, Equatable {
        public var arguments: [String]
        public var warnings: [String]
    }

    public static func environmentName(of flag: String) -> String {
        "ETCD_" + flag.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    public static func merge(arguments: [String], environment: [String: String], knownFlags: [String]) -> Merged {
        var merged = arguments
        var warnings: [String] = []
        let given = Set(arguments.compactMap(flagName(of:)))
        for flag in knownFlags {
            let variable = environmentName(of: flag)
            guard let value = environment[variable] else { continue }
            if given.contains(flag) {
                warnings.append("flag --\(flag) is set on the command line; ignoring environment variable \(variable)")
                continue
            }
            if flag == "version" {
                if value == "true" || value == "1" { merged.append("--version") }
            } else {
                merged.append("--\(flag)=\(value)")
            }
        }
        let known = Set(knownFlags.map(environmentName(of:)))
        for variable in environment.keys.sorted() where variable.hasPrefix("ETCD_") && !known.contains(variable) {
            // etcdctl's variables share the prefix in some setups; etcd warns about them too.
            if variable.hasPrefix("ETCDCTL_") { continue }
            warnings.append("unrecognized environment variable \(variable)")
        }
        return Merged(arguments: merged, warnings: warnings)
    }

    /// Go's flag package lets a boolean flag stand alone (`--pre-vote`) or take `=value`, never a
    /// separate value; the argument parser wants a value, so a bare boolean becomes `=true`.
    public static func expandBareBooleans(_ arguments: [String], flags: [String]) -> [String] {
        arguments.map { argument in
            guard argument.hasPrefix("-"), !argument.contains("=") else { return argument }
            let name = String(argument.drop(while: { $0 == "-" }))
            return flags.contains(name) ? "--\(name)=true" : argument
        }
    }

    /// `--name=x`, `--name`, `-name=x` and `-name` all name the flag `name`.
    private static func flagName(of argument: String) -> String? {
        guard argument.hasPrefix("-") else { return nil }
        let trimmed = argument.drop(while: { $0 == "-" })
        return String(trimmed.split(separator: "=", maxSplits: 1).first ?? "")
    }
}
