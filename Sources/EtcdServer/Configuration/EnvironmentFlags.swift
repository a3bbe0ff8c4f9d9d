import Foundation

/// etcd's `ETCD_*` environment variables: each flag `--some-flag` may also come from
/// `ETCD_SOME_FLAG`; the command line wins (see ``FlagParser``).
public enum EnvironmentFlags {
    public static func environmentName(of flag: String) -> String {
        "ETCD_" + flag.uppercased().replacingOccurrences(of: "-", with: "_")
    }
}
