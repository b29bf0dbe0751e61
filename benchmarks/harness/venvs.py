"""One venv per peer under ``benchmarks/.venvs/<name>/``, made on first use with ``pip``.

Each peer gets its own venv because their pins clash (grpcio, protobuf). A venv is reused while its
marker file lists the same requirements; otherwise it is rebuilt.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence

__all__ = ["SetupError", "ensure_venv", "venv_python"]

_MARKER = ".bench-requirements"


class SetupError(RuntimeError):
    """A venv could not be made or its requirements could not be installed."""


def venv_python(root: str, name: str) -> str:
    """The interpreter of venv ``name`` under ``root``."""
    return os.path.join(root, name, "bin", "python")


def ensure_venv(
    root: str,
    name: str,
    requirements: Sequence[str],
    *,
    create: bool = True,
    say: Callable[[str], None] = print,
) -> str:
    """Return the Python of venv ``name``, making it and installing ``requirements`` if needed.

    With ``create=False`` (``--skip-setup``) an existing venv is used as it is, and a missing one
    raises :class:`SetupError`.
    """
    path = os.path.join(root, name)
    python = venv_python(root, name)
    marker = os.path.join(path, _MARKER)
    wanted = "\n".join(requirements) + "\n"
    if not create:
        if not os.access(python, os.X_OK):
            raise SetupError(f"no venv at {path} (run without --skip-setup to make it)")
        return python
    if os.access(python, os.X_OK) and _read(marker) == wanted:
        return python
    say(f"setup: making venv {path} with {' '.join(requirements)} ...")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(root, exist_ok=True)
    log = os.path.join(root, f"{name}.log")
    with open(log, "w") as out:
        for cmd in (
            [sys.executable, "-m", "venv", path],
            [
                python,
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                *requirements,
            ],
        ):
            out.write("$ " + " ".join(cmd) + "\n")
            out.flush()
            rc = subprocess.call(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
            if rc != 0:
                raise SetupError(
                    f"`{' '.join(cmd[:4])} ...` failed (exit {rc}); see {log}:\n{_tail(log)}"
                )
    with open(marker, "w") as f:
        f.write(wanted)
    return python


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _tail(path: str, lines: int = 8) -> str:
    return "".join(_read(path).splitlines(keepends=True)[-lines:])
