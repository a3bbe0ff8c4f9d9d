import Foundation

/// Reads etcd's flags as etcd does: the command line with Go's `flag` rules, then `ETCD_*`
/// variables for flags the command line left out; or, when `--config-file` (or
/// `ETCD_CONFIG_FILE`) names a file, that file alone.
public enum FlagParser {
    public static func parse(arguments: [String], environment: [String: String]) throws(FlagError) -> FlagValues {
        try parse(arguments: arguments, environment: environment) { try String(contentsOfFile: $0, encoding: .utf8) }
    }

    static func parse(
        arguments: [String], environment: [String: String], readFile: (String) throws -> String
    ) throws(FlagError) -> FlagValues {
        var values = FlagValues()
        try parseCommandLine(arguments, into: &values)
        if values.helpRequested || values.isSet("version") { return values }
        let configFile = values.isSet("config-file") ? values["config-file"] : environment["ETCD_CONFIG_FILE"] ?? ""
        guard configFile.isEmpty else {
            // As etcd: a config file replaces every other flag and variable.
            let text: String
            do {
                text = try readFile(configFile)
            } catch {
                throw .configFile(path: configFile, reason: "\(error.localizedDescription)")
            }
            var fromFile = FlagValues()
            fromFile.configFile = configFile
            try ConfigFile.apply(yaml: text, path: configFile, to: &fromFile)
            fromFile.warnings.append(
                "loaded server configuration from \(configFile); other configuration command line flags and "
                    + "environment variables will be ignored if provided")
            return fromFile
        }
        try applyEnvironment(environment, to: &values)
        return values
    }

    /// Go's `flag.Parse`: `-flag`, `--flag`, `-flag=value`, `-flag value` (not for booleans, which
    /// stand alone or take `=value`); `--` or the first argument that is no flag ends the flags,
    /// and etcd refuses any argument left over.
    static func parseCommandLine(_ arguments: [String], into values: inout FlagValues) throws(FlagError) {
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            guard argument.count > 1, argument.hasPrefix("-") else { throw .notAFlag(argument) }
            if argument == "--" {
                if index < arguments.count { throw .notAFlag(arguments[index]) }
                return
            }
            let body = argument.hasPrefix("--") ? argument.dropFirst(2) : argument.dropFirst()
            guard let first = body.first, first != "-", first != "=" else { throw .notDefined(String(body)) }
            let parts = body.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(parts[0])
            if name == "h" || name == "help" {
                values.helpRequested = true
                continue
            }
            guard let spec = FlagTable.byName[name] else { throw .notDefined(name) }
            if parts.count == 2 {
                try values.set(name, String(parts[1]))
            } else if spec.kind == .bool {
                try values.set(name, "true")
            } else {
                guard index < arguments.count else { throw .missingArgument(name) }
                try values.set(name, arguments[index])
                index += 1
            }
        }
    }

    /// etcd's `SetFlagsFromEnv`: `ETCD_<FLAG>` for each flag not given on the command line; a
    /// variable shadowed by a flag, or naming no flag, is worth a warning.
    static func applyEnvironment(_ environment: [String: String], to values: inout FlagValues) throws(FlagError) {
        for spec in FlagTable.all where spec.name != "config-file" {
            let variable = EnvironmentFlags.environmentName(of: spec.name)
            guard let value = environment[variable] else { continue }
            if values.isSet(spec.name) {
                values.warnings.append(
                    "recognized environment variable \(variable), but unused: shadowed by corresponding flag")
                continue
            }
            if spec.name == "version" {
                // etcd will not take this one from the environment.
                values.warnings.append("cannot set special environment variable ETCD_VERSION=\(value)")
                continue
            }
            do {
                try values.set(spec.name, value)
            } catch {
                throw .invalidEnvironment(variable: variable, value: value, reason: error.reasonText)
            }
        }
        let known = Set(FlagTable.all.map { EnvironmentFlags.environmentName(of: $0.name) })
        for variable in environment.keys.sorted() where variable.hasPrefix("ETCD_") && !known.contains(variable) {
            // etcdctl's variables share the prefix in some setups; etcd does not mean them.
            if variable.hasPrefix("ETCDCTL_") { continue }
            values.warnings.append("unrecognized environment variable \(variable)")
        }
    }
}

extension FlagError {
    /// The part after the flag name, for messages that name the variable instead.
    var reasonText: String {
        switch self {
        case .invalidBoolean: return "parse error"
        case .invalidValue(_, _, let reason): return reason
        default: return description
        }
    }
}
