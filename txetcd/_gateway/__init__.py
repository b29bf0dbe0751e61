"""The same calls over etcd's JSON gateway: the channel and its streams (:mod:`.channel`),
protobuf <-> JSON (:mod:`.pbjson`) and KV answers straight from JSON (:mod:`.kvjson`)."""
