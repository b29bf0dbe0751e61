"""HTTP/1.1 for the JSON gateway and the v2 API: the interface and its rules
(:mod:`.interface`), the lean keep-alive pool (:mod:`.pool`, :mod:`.connection`) and the treq
adapter (:mod:`.treq`)."""
