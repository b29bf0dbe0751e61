"""The same calls over etcd's JSON gateway: the channel and its unary calls (:mod:`.channel`),
streams (:mod:`.streams`), the wire format and errors (:mod:`.wire`), protobuf <-> JSON
(:mod:`.pbjson`) and KV answers straight from JSON (:mod:`.kvjson`)."""
