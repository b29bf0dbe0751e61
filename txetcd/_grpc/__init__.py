"""gRPC on our HTTP/2 layer: calls (:mod:`.calls`: unary and streaming) and the channel
(:mod:`.channel`: endpoints, connections, dispatch), the gRPC implementation of the transport
seam (:mod:`txetcd._transport`)."""
