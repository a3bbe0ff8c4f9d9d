import EtcdCommon
import EtcdReplica
import Testing

@testable import EtcdServer

@Suite("Configuration")
struct ConfigurationTests {
    @Test("Go durations parse as etcd's duration flags read them; anything else is refused")
    func goDurations() {
        #expect(GoDuration.parse("10m0s") == .seconds(600))
        #expect(GoDuration.parse("100ms") == .milliseconds(100))
        #expect(GoDuration.parse("1h2m3.5s") == .seconds(3_723) + .milliseconds(500))
        #expect(GoDuration.parse("1.5us") == .nanoseconds(1_500))
        #expect(GoDuration.parse("-2s") == .seconds(-2))
        #expect(GoDuration.parse("0") == .zero)
        for bad in ["", "10", "s", "1x", "1s2", ".s", "ten seconds", "1 s", "+"] {
            #expect(GoDuration.parse(bad) == nil, "\(bad.debugDescription) was accepted")
        }
    }

    @Test("a member on etcd's defaults gets etcd's default member and cluster IDs")
    func defaultIdentity() throws {
        let identity = try MemberIdentity.resolve(ServerConfiguration())
        #expect(identity.member.description == "8e9e05c52164694d")
        #expect(identity.cluster.description == "cdf818194e3a8c32")
    }

    @Test("the member ID depends on peer URLs and token, not on the name")
    func identityInputs() throws {
        var configuration = ServerConfiguration()
        configuration.name = "other"
        #expect(try MemberIdentity.resolve(configuration).member.description == "8e9e05c52164694d")
        configuration.initialClusterToken = "another-token"
        #expect(try MemberIdentity.resolve(configuration).member.description != "8e9e05c52164694d")
    }

    @Test("an initial cluster of several members gives each its ID and the cluster one over all")
    func multiMember() throws {
        var configuration = ServerConfiguration()
        configuration.initialCluster = "default=http://localhost:2380,b=http://localhost:2381"
        let identity = try MemberIdentity.resolve(configuration)
        #expect(identity.member.description == "8e9e05c52164694d")
        #expect(identity.initialMembers.map(\.name) == ["default", "b"])
        #expect(identity.cluster == MemberIdentity.clusterID(members: identity.initialMembers.map(\.id)))
        #expect(identity.cluster.description != "cdf818194e3a8c32")
        // The advertised peer URLs must be the ones the cluster lists for this member.
        configuration.initialAdvertisePeerURLs = [EndpointURL(scheme: "http", host: "localhost", port: 2381)]
        #expect(throws: ConfigurationError.self) { try MemberIdentity.resolve(configuration) }
        configuration.initialCluster = "default=http://localhost:2381,b=http://localhost:2381"
        #expect(throws: ConfigurationError.self) { try MemberIdentity.resolve(configuration) }
    }

    @Test("an initial cluster without this member's name is refused")
    func missingLocalName() {
        var configuration = ServerConfiguration()
        configuration.initialCluster = "someone=http://localhost:2380"
        #expect(throws: ConfigurationError.self) { try MemberIdentity.resolve(configuration) }
    }

    @Test("URL lists parse as etcd's flags take them")
    func urls() throws {
        let urls = try EndpointURL.parseList("http://127.0.0.1:2379,http://[::1]:2479")
        #expect(urls == [
            EndpointURL(scheme: "http", host: "127.0.0.1", port: 2379),
            EndpointURL(scheme: "http", host: "::1", port: 2479),
        ])
        #expect(urls[1].description == "http://[::1]:2479")
        #expect(throws: ConfigurationError.self) { try EndpointURL(parsing: "127.0.0.1:2379") }
        #expect(throws: ConfigurationError.self) { try EndpointURL(parsing: "ftp://127.0.0.1:2379") }
        #expect(throws: ConfigurationError.self) { try EndpointURL(parsing: "http://127.0.0.1") }
        #expect(throws: ConfigurationError.self) { try EndpointURL(parsing: "http://127.0.0.1:99999") }
    }

    @Test("the default data directory is named after the member")
    func dataDirectory() {
        var configuration = ServerConfiguration()
        #expect(configuration.effectiveDataDirectory == "default.etcd")
        configuration.name = "infra1"
        #expect(configuration.effectiveDataDirectory == "infra1.etcd")
        #expect(configuration.effectiveInitialCluster == "infra1=http://localhost:2380")
    }

    @Test("Raft timing flags are checked as etcd checks them")
    func raftTimingValidation() throws {
        var configuration = ServerConfiguration()
        try configuration.validate()
        #expect(configuration.requestTimeout == .seconds(7), "etcd's 5 s plus two election timeouts")
        configuration.electionTimeoutMilliseconds = 400
        let tooShort = try #require(throws: ConfigurationError.self) { try configuration.validate() }
        #expect(tooShort.description.contains("should be at least as 5 times as --heartbeat-interval[100ms]"))
        configuration.electionTimeoutMilliseconds = 60_000
        #expect(throws: ConfigurationError.self) { try configuration.validate() }
        configuration.electionTimeoutMilliseconds = 1_000
        configuration.snapshotCount = 0
        #expect(throws: ConfigurationError.self) { try configuration.validate() }
    }

    @Test("the WAL and snapshots live under <data-dir>/member")
    func memberDirectory() {
        var configuration = ServerConfiguration()
        configuration.dataDirectory = "/var/lib/etcd/"
        #expect(configuration.memberDirectory == "/var/lib/etcd/member")
    }

    @Test("extreme flag values are refused or saturate, never overflow")
    func extremeValues() {
        var configuration = ServerConfiguration()
        configuration.heartbeatIntervalMilliseconds = .max
        #expect(throws: ConfigurationError.self) { try configuration.validate() }
        configuration = ServerConfiguration()
        configuration.maxRequestBytes = .max
        #expect(configuration.maxMessageBytes == .max)
        configuration.maxRequestBytes = 1_572_864
        #expect(configuration.maxMessageBytes == 1_572_864 + 512 * 1024)
    }
}
