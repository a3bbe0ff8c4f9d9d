public import EtcdCommon
package import EtcdLease
package import EtcdMVCC

/// Why the replica could not serve a request.
///
/// `request` errors are the client's to see, already in etcd's catalog. `storage` errors mean the
/// backend failed; the request had no effect (the batch was rolled back) and the server reports it
/// as an internal error rather than pretending to know what etcd would say.
public enum ReplicaError: Error, Hashable, Sendable {
    case request(EtcdError)
    case storage(String)

    /// The one mapping from the MVCC layer's errors to what a client sees.
    package init(_ error: MVCCError) {
        switch error {
        case .compacted: self = .request(.compacted)
        case .futureRevision: self = .request(.futureRevision)
        case .backend(let backendError): self = .storage("\(backendError)")
        }
    }

    /// The lessor's refusals, as etcd reports them.
    package init(_ error: LeaseError) {
        switch error {
        case .notFound: self = .request(.leaseNotFound)
        case .exists: self = .request(.leaseExists)
        case .ttlTooLarge: self = .request(.leaseTTLTooLarge)
        }
    }
}
