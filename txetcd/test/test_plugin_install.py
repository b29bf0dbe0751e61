"""twistd finds the etcd-mirror plugin after a plain ``pip install`` of the distribution.

The editable install this checkout is tested from does not expose ``twisted/plugins`` (its
finder maps the ``txetcd`` package only), so this builds and installs the distribution, with
its dependencies, into a fresh virtualenv without the system's site-packages, and runs that
virtualenv's own ``twistd``. It takes 10-20 s (a build, then the dependencies from the
package index pip is configured with).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest
import pytest_twisted

from txetcd.test.helpers import client_of, until
from txetcd.testing import EtcdServer

ROOT = Path(__file__).resolve().parents[2]
#: what the distribution is built from (copied, so the build leaves nothing in the checkout)
SOURCES = ["setup.py", "pyproject.toml", "README.rst", "LICENSE", "txetcd"]

pytestmark = pytest.mark.slow


def clean_env() -> Dict[str, str]:
    """The environment without anything that would put this checkout on sys.path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.pop("VIRTUAL_ENV", None)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the distribution installed by pip (not editable)."""
    base = tmp_path_factory.mktemp("plugin-install")
    source = base / "src"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            shutil.copy(path, source / name)
    (source / "twisted" / "plugins").mkdir(parents=True)
    shutil.copy(ROOT / "twisted" / "plugins" / "txetcd_plugin.py", source / "twisted" / "plugins")
    venv = base / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, env=clean_env()
    )
    python = venv / "bin" / "python"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", str(source)],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    return venv


def test_installed_where_twisted_looks(installed: Path) -> None:
    python = installed / "bin" / "python"
    where = subprocess.run(
        [str(python), "-c", "import txetcd, twisted.plugins.txetcd_plugin as p; print(p.__file__)"],
        cwd=str(installed.parent),
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(installed)), where
    (record,) = installed.glob("lib/python*/site-packages/txetcd_client-*.dist-info/RECORD")
    ours = [line.split(",")[0] for line in record.read_text().splitlines()]
    assert "twisted/plugins/txetcd_plugin.py" in ours
    assert "twisted/plugins/__init__.py" not in ours  # Twisted's own stays Twisted's
    assert not [p for p in ours if p.startswith("twisted/") and "plugins/" not in p]
    usage = subprocess.run(
        [str(installed / "bin" / "twistd"), "--help"],
        cwd=str(installed.parent),
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "etcd-mirror" in usage


@pytest_twisted.ensureDeferred
async def test_installed_twistd_runs_etcd_mirror(
    installed: Path, etcd_server: EtcdServer, etcd_prefix: bytes, tmp_path: Path
) -> None:
    directory, log = tmp_path / "config", tmp_path / "twistd.log"
    async with client_of(etcd_server.endpoint) as client:
        await client.put(etcd_prefix + b"app.conf", b"colour = blue\n")
        process = subprocess.Popen(
            [
                str(installed / "bin" / "twistd"),
                "-n",
                "--pidfile=",
                f"--logfile={log}",
                "etcd-mirror",
                f"--prefix={etcd_prefix.decode()}",
                f"--directory={directory}",
            ],
            cwd=str(tmp_path),
            env=dict(clean_env(), ETCDCTL_ENDPOINTS=etcd_server.endpoint),
        )
        try:
            conf = directory / "app.conf"
            await until(lambda: conf.exists(), 60, what="the first sync")
            await client.put(etcd_prefix + b"app.conf", b"colour = green\n")
            await until(lambda: conf.read_bytes() == b"colour = green\n", what="the change")
        finally:
            process.send_signal(signal.SIGTERM)
            await until(lambda: process.poll() is not None, 30, what="twistd to exit")
    text = log.read_text()
    assert str(installed) in text  # twistd's "starting up" line names its interpreter
    assert "etcd-mirror stopped:" in text and "Server Shut Down." in text, text
