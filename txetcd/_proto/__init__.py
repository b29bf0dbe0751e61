"""Generated protobuf messages for etcd's v3 API (do not edit *_pb2.py by hand).

The ``.proto`` sources next to this file are txetcd's own transcription of
etcd 3.5's wire API (same packages, message names, field names and numbers).
Regenerate the ``*_pb2.py`` / ``*_pb2.pyi`` modules with ``tools/regen-protos``.
"""
