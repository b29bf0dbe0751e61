"""HTTP/2, ours: the frame codec and HPACK literals (:mod:`.frames`) and the client
connection with its streams, flow-control windows, GOAWAY and keepalive (:mod:`.connection`)."""
