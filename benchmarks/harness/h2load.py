"""The wire limit: h2load (Debian's ``nghttp2-client``) sending raw gRPC unary calls to etcd.

The request bodies are gRPC-framed protobuf messages built here by hand (a RangeRequest or
PutRequest with only ``key``/``value`` set: linearizable reads, plain overwrites). h2load cannot
read gRPC trailers, so the harness checks what it can: HTTP status and failures from h2load's
summary, and for puts that etcd's revision moved at least once per counted put (via ``etcdctl``).
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
from typing import Any

from harness.etcd import EtcdCpu
from harness.workers import WorkerError

__all__ = ["find_h2load", "grpc_body", "run_h2load"]

_PATHS = {"put": "/etcdserverpb.KV/Put", "get": "/etcdserverpb.KV/Range"}


def find_h2load() -> str | None:
    return shutil.which("h2load")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _bytes_field(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def grpc_body(op: str, key: bytes, value: bytes) -> bytes:
    """A gRPC message frame: 0 (not compressed), 4-byte big-endian length, protobuf bytes.

    ``PutRequest``: key = field 1, value = field 2. ``RangeRequest``: key = field 1 (serializable
    left at false: a linearizable read).
    """
    message = _bytes_field(1, key)
    if op == "put":
        message += _bytes_field(2, value)
    return b"\x00" + len(message).to_bytes(4, "big") + message


def _self_check(op: str, body: bytes, key: bytes, value: bytes) -> None:
    """Decode the hand-built body with txetcd's generated protobuf classes, where they import."""
    try:
        from txetcd._proto import rpc_pb2
    except ImportError:
        return
    cls = rpc_pb2.PutRequest if op == "put" else rpc_pb2.RangeRequest
    message = cls.FromString(body[5:])
    if message.key != key or (op == "put" and message.value != value):
        raise WorkerError(f"hand-built {cls.__name__} decodes wrongly: {message!r}")


def _revision(etcdctl: str | None, endpoint: str, key: bytes) -> int | None:
    if etcdctl is None:
        return None
    out = subprocess.run(
        [etcdctl, f"--endpoints={endpoint}", "get", key.decode(), "-w", "json"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    if out.returncode != 0:
        return None
    return int(json.loads(out.stdout)["header"]["revision"])


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    if match is None:
        raise WorkerError(f"h2load output has no {pattern!r}:\n{text[-1500:]}")
    return float(match.group(1))


_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def _elapsed(text: str) -> float:
    """Seconds from h2load's ``finished in 3.00s,`` (or ``500.96ms,``) line."""
    match = re.search(r"finished in ([\d.]+)(s|ms|us),", text)
    if match is None:
        raise WorkerError(f"h2load output has no 'finished in':\n{text[-1500:]}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_h2load(
    h2load: str,
    endpoint: str,
    op: str,
    concurrency: int,
    seconds: float,
    key: bytes,
    value: bytes,
    workdir: str,
    etcd_cpu: EtcdCpu,
    etcdctl: str | None,
) -> dict[str, Any]:
    """One h2load run on one connection (``-c1 -t1 -m<concurrency>``) for ``seconds``."""
    body = grpc_body(op, key, value)
    _self_check(op, body, key, value)
    body_path = os.path.join(workdir, f"h2load-{op}.bin")
    with open(body_path, "wb") as f:
        f.write(body)
    cmd = [
        h2load,
        "-c1",
        "-t1",
        f"-m{concurrency}",
        f"-D{max(1, int(seconds * 1000))}ms",
        "-d",
        body_path,
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        endpoint + _PATHS[op],
    ]
    rev0 = _revision(etcdctl, endpoint, key) if op == "put" else None
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    etcd0 = etcd_cpu()
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=seconds + 60)
    etcd1 = etcd_cpu()
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = out.stdout + out.stderr
    if out.returncode != 0:
        raise WorkerError(f"h2load exited {out.returncode}:\n{text[-1500:]}")
    elapsed = _elapsed(text)
    succeeded = int(_number(r"(\d+) succeeded", text))
    failed = int(_number(r"(\d+) failed", text)) + int(_number(r"(\d+) errored", text))
    ok_status = int(_number(r"status codes: (\d+) 2xx", text))
    if failed or ok_status < succeeded or succeeded == 0:
        raise WorkerError(f"h2load: {succeeded} succeeded, {failed} failed, {ok_status} 2xx")
    if rev0 is not None:
        rev1 = _revision(etcdctl, endpoint, key)
        if rev1 is not None and rev1 - rev0 < succeeded:
            raise WorkerError(
                f"h2load counted {succeeded} puts but the revision moved {rev1 - rev0}"
            )
    cpu = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
    return {
        "ok": True,
        "ops": succeeded,
        "warmup_ops": 0,
        "elapsed": elapsed,
        "cpu": cpu,
        "etcd_cpu": None if etcd0 is None or etcd1 is None else etcd1 - etcd0,
    }
