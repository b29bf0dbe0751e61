"""The documentation stays true: its examples run, its error tree matches the code, it builds.

- every ``docs/examples/*.py`` runs against the session's real etcd and prints what it should;
- the example pytest project in ``docs/examples/pytest/`` passes;
- the hierarchy drawn in ``docs/errors.rst`` is exactly the one in ``txetcd/_errors.py``;
- ``python -m sphinx -W`` builds the docs with no warning (skipped without sphinx).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import txetcd
from txetcd.testing import EtcdServer

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
TESTING = EXAMPLES / "testing"

#: what both tutorial programs (async def and inlineCallbacks) print, in this order
_TUTORIAL = [
    "colour is b'blue', version 1\n"
    "a missing key: value=None, found=False\n"
    "blue -> green: succeeded=True\n"
    "stale swap: succeeded=False, colour is b'green'\n"
    "watch: PUT jobs/1 b'queued'\n"
    "watch: PUT jobs/1 b'running'\n"
    "watch: DELETE jobs/1 b''\n"
    "tmp after the revoke: None\n"
    "revoking it again: LeaseNotFound\n"
    "while the session lives: b'alive'\n"
    "once it is closed: None\n"
    "done\n"
]

#: what each example must print (each string somewhere in its output)
EXPECTED: dict[str, list[str]] = {
    "kv_basics.py": [
        "put colour=green, previous value b'blue'",
        "get a missing key -> kvs=(), value=None, count=0",
        "first page: ['examples/kv/colour', 'examples/kv/shape'], more=True, count=4",
        "count only: 4 keys, kvs=()",
        "delete_prefix -> 3 keys deleted",
        "done",
    ],
    "txn_compare_and_swap.py": [
        "create counter=0: True",
        "create counter=0 again: False",
        "ten concurrent increments returned [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]",
        "counter is 10",
        "done",
    ],
    "inline_callbacks.py": [
        "get mode -> b'blue'",
        "txn blue -> green: succeeded=True",
        "same txn again: succeeded=False, mode is b'green'",
        "done",
    ],
    "handling_outcome_unknown.py": [
        "value is b'hello'",
        "our value is in place: True",
        "the key was written 1 more time(s) after version 1",
        "another writer changed the key first",
        "our value is in place: False",
        "done",
    ],
    "concurrency_lock_election.py": [
        "b waits while a holds: True",
        "a's fenced write: True",
        "b holds it now, with a higher fencing token: True",
        "a's late fenced write: False",
        "leader: a",
        "leader says: a, version 2",
        "after a resigns, leader: b",
        "accounts after the transfer: x=70 y=30",
        "instances: ['node-a', 'node-b']",
        "after b's session ends: ['node-a']",
        "done",
    ],
    "memory_etcd.py": [
        "mode is b'blue'",
        "events: [('PUT', 'config/leader'), ('DELETE', 'config/leader')]",
        "leader key left: 0",
        "timers left: []",
        "done",
    ],
    "v2_basics.py": [
        "set colour=blue: Created, new_key=True",
        "set colour=green: Set, previous value 'blue'",
        "read a missing key -> EtcdKeyNotFound, errorCode 100",
        "test_and_set green -> red: ComparedThenSwapped",
        "test_and_set green -> blue: EtcdCompareFailed [green != red]",
        "colour is 'black'",
        "queue: ['first', 'second', 'third']",
        "watch: set /examples/v2/colour 'white'",
        "watch: delete /examples/v2/queue None",
        "done",
    ],
    "quickstart.py": [
        "colour: b'blue'",
        "it was blue, now it is green: True",
        "watch: PUT b'quickstart/size' b'XL'",
        "watch: DELETE b'quickstart/colour' b''",
        "done",
    ],
    "tutorial_async.py": _TUTORIAL,
    "tutorial_inline_callbacks.py": _TUTORIAL,
    "tutorial_locks.py": [
        "b's try_acquire while a holds it: False",
        "a records: True",
        "b records: True",
        "report: ['a was here', 'b was here']",
        "a writes with its token: True",
        "b's token is higher: True",
        "a's lock.lost fired: LockLost | a's lock.locked: False",
        "b records: True",
        "b writes with its token: True",
        "a's unfenced write clobbered b's report: True",
        "a's fenced write: False",
        "storage takes a's old token: False",
        "storage holds: b's data",
        "a's release: LockLost",
        "b still holds the lock: True",
        "done",
    ],
    "tutorial_election.py": [
        "a leads: True | b and c wait: True",
        "leader(): a",
        "observed: a\na publishes: True\nobserved: a, config v2\n",
        "b leads: True\nobserved: b\n",
        "a is told: LockLost | a leads: False",
        "a's late publish: False",
        "b publishes: True",
        "active config: config from b",
        "observed: c\ndone",
    ],
    "migrating_v2_to_v3.py": [
        f"{api}: {line}"
        for api in ("v2", "v3")
        for line in (
            "owner taken",
            "mode was not blue any more",
            "config {'mode': 'green', 'size': 'L'}",
        )
    ]
    + ["v2: change set size = XL", "v3: change PUT size = XL", "done"],
}

#: examples of the v2 API: run against an etcd with ``--enable-v2=true`` (3.5, and 3.4 if found)
V2_EXAMPLES = {"v2_basics.py", "migrating_v2_to_v3.py"}


def _env() -> dict[str, str]:
    """The environment for a subprocess that must import txetcd from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def test_every_example_has_expectations() -> None:
    found = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert found == sorted(EXPECTED), "add the new example's expected output to EXPECTED"


@pytest.mark.parametrize("name", sorted(set(EXPECTED) - V2_EXAMPLES))
def test_example_runs(name: str, etcd_server: EtcdServer) -> None:
    _run_example(name, etcd_server)


@pytest.mark.parametrize("name", sorted(V2_EXAMPLES))
def test_v2_example_runs(name: str, etcd_v2_server: EtcdServer) -> None:
    _run_example(name, etcd_v2_server)


def _run_example(name: str, server: EtcdServer) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), server.endpoint],
        cwd=str(ROOT),
        env=_env(),
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    for expected in EXPECTED[name]:
        assert expected in proc.stdout, f"{expected!r} not in the output of {name}:\n{output}"


def test_example_pytest_project_passes() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLES / "pytest")],
        cwd=str(ROOT),
        env=_env(),
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 passed" in proc.stdout, proc.stdout


def test_testing_tutorial_project_passes() -> None:
    """docs/examples/testing (tutorial-testing.rst) under pytest: MemoryEtcd, a Clock."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TESTING)],
        cwd=str(ROOT),
        env=_env(),
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "5 passed" in proc.stdout, proc.stdout


def test_testing_tutorial_trial_tests_pass(tmp_path: Path) -> None:
    """docs/examples/testing's trial module under trial: in memory, and against a real etcd."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "twisted.trial",
            f"--temp-directory={tmp_path / '_trial_temp'}",
            "test_announce_trial",
        ],
        cwd=str(TESTING),
        env=_env(),
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "PASSED (successes=4)" in output, output


# -- the error tree in docs/errors.rst ---------------------------------------------------------

_CODE = re.compile(r"\b([A-Z_]+) \((\d+)\)\s*$")


def _error_tree() -> list[tuple[int, str, list[str], tuple[str, int] | None]]:
    """(depth, name, extra bases, (code name, code)) for each line of the tree in errors.rst."""
    text = (DOCS / "errors.rst").read_text(encoding="utf-8")
    start = text.index(".. code-block:: text\n\n    EtcdError")
    block = text[start:].split("\n\n", 2)[1]
    rows = []
    for line in block.splitlines():
        body = line[4:]  # the code block's indent
        depth = (len(body) - len(body.lstrip(" "))) // 4
        code = _CODE.search(body)
        rows.append(
            (
                depth,
                body.split()[0],
                re.findall(r"\+ (\w+)", body),
                (code.group(1), int(code.group(2))) if code else None,
            )
        )
    return rows


def test_error_tree_matches_the_code() -> None:
    import builtins

    from txetcd._errors import GRPC_CODE_NAMES

    rows = _error_tree()
    assert len(rows) > 30
    parents: list[str] = []
    documented = set()
    for depth, name, extras, code in rows:
        cls = getattr(txetcd, name)
        del parents[depth:]
        if depth == 0:
            assert cls.__bases__ == (Exception,)
        else:
            expected = [parents[-1], *extras]
            bases = [b.__name__ for b in cls.__bases__]
            assert bases == expected, f"{name}: the code says {bases}, the docs {expected}"
            for base, extra in zip(cls.__bases__[1:], extras, strict=False):
                owner = txetcd if hasattr(txetcd, extra) else builtins
                assert base is getattr(owner, extra), name
        own_code = cls.__dict__.get("code")
        assert (code[1] if code else None) == own_code, f"{name}: its code is {own_code}"
        if code is not None:
            assert GRPC_CODE_NAMES[code[1]] == code[0], f"{name}: {code}"
        parents.append(name)
        documented.add(name)
    public_errors = {
        n
        for n in txetcd.__all__
        if isinstance(getattr(txetcd, n), type) and issubclass(getattr(txetcd, n), BaseException)
    }
    assert documented == public_errors, (public_errors - documented, documented - public_errors)


# -- the Sphinx build ----------------------------------------------------------------------------


def test_docs_build_without_warnings(tmp_path: Path) -> None:
    pytest.importorskip("sphinx")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "-q",
            "-b",
            "html",
            str(DOCS),
            str(tmp_path / "html"),
        ],
        cwd=str(ROOT),
        env=_env(),
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "html" / "index.html").exists()
