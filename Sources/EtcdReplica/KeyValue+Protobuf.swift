package import EtcdAPI
package import EtcdMVCC
package import Foundation

extension Mvccpb_KeyValue {
    /// The wire form of a stored key-value pair; `keysOnly` drops the value as etcd's Range does.
    package init(_ kv: KeyValue, keysOnly: Bool = false) {
        self.init()
        key = Data(kv.key)
        createRevision = kv.createRevision
        modRevision = kv.modRevision
        version = kv.version
        if !keysOnly { value = Data(kv.value) }
        lease = kv.lease
    }
}

extension KeyRange {
    /// etcd's reading of a request's key and range_end: empty end is one key, "\0" is every key from
    /// `key` on, anything else is the half-open interval.
    package init(key: Data, rangeEnd: Data) {
        self.init(key: [UInt8](key), rangeEnd: [UInt8](rangeEnd))
    }
}
