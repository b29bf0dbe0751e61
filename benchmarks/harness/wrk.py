"""The HTTP/1.1 wire limit: wrk (Debian's ``wrk``) against the v2 keys API or the JSON gateway.

A generated Lua script holds one prebuilt request per key of the key set (the same keys and values
the workers use) and hands them out in turn; ``-c1`` is one request at a time, ``-cN`` is N
keep-alive connections with one request each in flight (HTTP/1.1 has no multiplexing), all on one
wrk thread. wrk reads no bodies for us, so the harness checks what it can: no socket errors, no
non-2xx answer, at least one request, and for puts that the store's index (v2: ``X-Etcd-Index``)
or revision (gateway: the range header) moved at least once per counted put.
"""

from __future__ import annotations

import base64
import json
import os
import re
import resource
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

from harness.etcd import EtcdCpu
from harness.workers import WorkerError

__all__ = ["APIS", "WRK", "find_wrk", "lua_script", "requests_for", "run_wrk"]

WRK = "wrk"

APIS = ("v2", "gateway")
"""What wrk can speak here: etcd's v2 keys API, or the v3 JSON gateway."""

Request = tuple[str, str, dict[str, str], str]
"""method, path, headers, body."""


def find_wrk() -> str | None:
    return shutil.which("wrk")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def requests_for(api: str, op: str, pairs: Sequence[tuple[str, str]]) -> list[Request]:
    """One request per (key, value): a v2 PUT/GET, or a gateway put/range POST."""
    out: list[Request] = []
    for key, value in pairs:
        if api == "v2":
            path = "/v2/keys/" + urllib.parse.quote(key.lstrip("/"))
            if op == "put":
                form = urllib.parse.urlencode({"value": value})
                ctype = {"Content-Type": "application/x-www-form-urlencoded"}
                out.append(("PUT", path, ctype, form))
            else:
                out.append(("GET", path, {}, ""))
        elif api == "gateway":
            body = {"key": _b64(key)}
            if op == "put":
                body["value"] = _b64(value)
            path = "/v3/kv/put" if op == "put" else "/v3/kv/range"
            ctype = {"Content-Type": "application/json"}
            out.append(("POST", path, ctype, json.dumps(body, separators=(",", ":"))))
        else:
            raise ValueError(f"api must be one of {APIS}, not {api!r}")
    return out


def _lua_string(text: str) -> str:
    """A Lua long-bracket literal (no escapes needed; the level is chosen not to clash)."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, '
    .. '"write": %d, "status": %d, "timeout": %d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def lua_script(requests: Sequence[Request]) -> str:
    """The wrk script: the prebuilt requests in turn, and a JSON summary line at the end."""
    lines = ["local specs = {"]
    for method, path, headers, body in requests:
        heads = ", ".join(f"[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in headers.items())
        body_lua = _lua_string(body) if body else "nil"
        lines.append(f"  {{{_lua_string(method)}, {_lua_string(path)}, {{{heads}}}, {body_lua}}},")
    lines.append("}")
    lines.append(
        """local built = {}
local n = 0
local i = 0
init = function(args)
  for _, s in ipairs(specs) do
    n = n + 1
    built[n] = wrk.format(s[1], s[2], s[3], s[4])
  end
end
request = function()
  i = i % n + 1
  return built[i]
end"""
    )
    lines.append(_DONE)
    return "\n".join(lines)


def _index(api: str, endpoint: str, key: str) -> int | None:
    """The store's index (v2 ``X-Etcd-Index``) or revision (gateway range header) now."""
    try:
        if api == "v2":
            url = endpoint + "/v2/keys/" + urllib.parse.quote(key.lstrip("/"))
            with urllib.request.urlopen(url, timeout=10) as response:
                return int(response.headers["X-Etcd-Index"])
        data = json.dumps({"key": _b64(key)}).encode()
        with urllib.request.urlopen(endpoint + "/v3/kv/range", data=data, timeout=10) as response:
            return int(json.load(response)["header"]["revision"])
    except (OSError, KeyError, TypeError, ValueError):
        return None


def run_wrk(
    wrk: str,
    api: str,
    endpoint: str,
    op: str,
    concurrency: int,
    seconds: float,
    pairs: Sequence[tuple[str, str]],
    workdir: str,
    etcd_cpu: EtcdCpu,
) -> dict[str, Any]:
    """One wrk run (``-t1 -c<concurrency>``) for ``seconds`` (whole seconds: wrk's unit)."""
    script = os.path.join(workdir, f"wrk-{api}-{op}.lua")
    with open(script, "w") as f:
        f.write(lua_script(requests_for(api, op, pairs)))
    cmd = [
        wrk,
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        script,
        endpoint,
    ]
    index0 = _index(api, endpoint, pairs[0][0]) if op == "put" else None
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    etcd0 = etcd_cpu()
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=seconds + 60)
    etcd1 = etcd_cpu()
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = out.stdout + out.stderr
    match = re.search(r"^WRKJSON (\{.*\})$", out.stdout, re.MULTILINE)
    if out.returncode != 0 or match is None:
        raise WorkerError(f"wrk exited {out.returncode} without its summary:\n{text[-1500:]}")
    summary = json.loads(match.group(1))
    count = int(summary["requests"])
    kinds = ("connect", "read", "write", "status", "timeout")
    errors = {k: summary[k] for k in kinds if summary[k]}
    if errors or count == 0:
        raise WorkerError(f"wrk: {count} requests, errors {errors} (status = non-2xx/3xx)")
    if index0 is not None:
        index1 = _index(api, endpoint, pairs[0][0])
        if index1 is not None and index1 - index0 < count:
            raise WorkerError(f"wrk counted {count} puts but the index moved {index1 - index0}")
    cpu = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
    return {
        "ok": True,
        "ops": count,
        "warmup_ops": 0,
        "elapsed": summary["duration_us"] / 1e6,
        "cpu": cpu,
        "etcd_cpu": None if etcd0 is None or etcd1 is None else etcd1 - etcd0,
    }
