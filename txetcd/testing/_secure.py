"""TLS certificates and auth set-up for :class:`~txetcd.testing.EtcdServer`.

:class:`TestCertificates` makes a throwaway CA with ``trustme``, a server certificate for
``127.0.0.1`` and ``localhost``, and a client certificate whose common name is ``root`` (etcd
takes a client certificate's common name as the user, over gRPC, once auth is on), and writes
them as PEM files. :func:`enable_auth` and :func:`enable_auth_async` add the ``root`` user and
role and switch auth on: with blocking HTTP calls to the JSON gateway, or with a
:class:`txetcd.Client` on a running reactor. The password never appears in an error.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
from typing import TYPE_CHECKING, Any, Dict, List, NamedTuple, Optional, Tuple

from txetcd.testing._process import EtcdStartError

if TYPE_CHECKING:
    from txetcd.testing._server import EtcdServer

__all__ = [
    "TLSFiles",
    "TestCertificates",
    "check_security",
    "client_options",
    "enable_auth",
    "enable_auth_async",
    "etcd_security_args",
]

#: the common name of the client certificate (etcd's user for it once auth is on)
CLIENT_COMMON_NAME = "root"


class TLSFiles(NamedTuple):
    """Where the PEM files of a TLS test server are."""

    ca_cert: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


class TestCertificates:
    """A throwaway CA with one server and one client certificate (made in memory at once;
    :meth:`write` puts them in files). Needs ``trustme``."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        try:
            import trustme
        except ImportError:  # pragma: no cover - trustme comes with the test extra
            raise RuntimeError(
                "EtcdServer(tls=True) makes its certificates with trustme: pip install trustme"
            ) from None
        self._ca = trustme.CA()
        self._server = self._ca.issue_cert("127.0.0.1", "localhost")
        self._client = self._ca.issue_cert("client.txetcd.test", common_name=CLIENT_COMMON_NAME)

    def write(self, directory: str) -> TLSFiles:
        """Write the PEM files into ``directory`` (made if needed); their paths."""
        os.makedirs(directory, exist_ok=True)
        files = TLSFiles(
            *(
                os.path.join(directory, name)
                for name in (
                    "ca.pem",
                    "server.pem",
                    "server-key.pem",
                    "client.pem",
                    "client-key.pem",
                )
            )
        )
        self._ca.cert_pem.write_to_path(files.ca_cert)
        with open(files.server_cert, "wb") as f:
            for blob in self._server.cert_chain_pems:
                f.write(blob.bytes())
        self._server.private_key_pem.write_to_path(files.server_key)
        with open(files.client_cert, "wb") as f:
            for blob in self._client.cert_chain_pems:
                f.write(blob.bytes())
        self._client.private_key_pem.write_to_path(files.client_key)
        return files


def check_security(
    tls: object,
    client_cert_auth: object,
    auth: object,
    root_password: object,
    auth_token_ttl: object,
) -> None:
    """Clear errors for the security options of :class:`EtcdServer` and :class:`EtcdCluster`."""
    for name, value in (("tls", tls), ("client_cert_auth", client_cert_auth), ("auth", auth)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be a bool, not {type(value).__name__}")
    if client_cert_auth and not tls:
        raise ValueError("client_cert_auth=True needs tls=True")
    if root_password is not None:
        if not isinstance(root_password, str):
            raise TypeError(f"root_password must be a str, not {type(root_password).__name__}")
        if not auth:
            raise ValueError("root_password is for auth=True")
        if not root_password:
            raise ValueError("root_password must not be empty")
    if auth_token_ttl is not None:
        if isinstance(auth_token_ttl, bool) or not isinstance(auth_token_ttl, int):
            raise TypeError(f"auth_token_ttl must be an int, not {type(auth_token_ttl).__name__}")
        if auth_token_ttl < 1:
            raise ValueError(f"auth_token_ttl must be >= 1 second, not {auth_token_ttl}")


def etcd_security_args(server: "EtcdServer") -> List[str]:
    """etcd's flags for a server's ``tls``, ``client_cert_auth`` and ``auth_token_ttl``."""
    args: List[str] = []
    files = server._tls_files
    if files is not None:
        args += ["--cert-file", files.server_cert, "--key-file", files.server_key]
        args += ["--listen-metrics-urls", f"http://127.0.0.1:{server.metrics_port}"]
        if server.client_cert_auth:
            args += ["--client-cert-auth", "--trusted-ca-file", files.ca_cert]
    if server.auth_token_ttl is not None:
        args += ["--auth-token-ttl", str(server.auth_token_ttl)]
    return args


def client_options(server: "EtcdServer") -> Dict[str, Any]:
    """See :meth:`EtcdServer.client_options`."""
    options: Dict[str, Any] = {}
    if server.tls:
        options["ca_cert"] = server.ca_cert
        if server.client_cert_auth:
            options.update(cert=server.client_cert, key=server.client_key)
    if server.auth:
        options.update(user="root", password=server.root_password)
        if not server.tls:
            options["allow_insecure_credentials"] = True
    return options


# -- switching auth on -------------------------------------------------------------------------

#: the gateway calls that switch auth on, in order (the password goes into the first)
_STEPS: Tuple[Tuple[str, Dict[str, str]], ...] = (
    ("/v3/auth/user/add", {"name": "root"}),
    ("/v3/auth/role/add", {"name": "root"}),
    ("/v3/auth/user/grant", {"user": "root", "role": "root"}),
    ("/v3/auth/enable", {}),
)


def _ssl_context(server: "EtcdServer") -> Optional[ssl.SSLContext]:
    if not server.tls:
        return None
    context = ssl.create_default_context(cafile=server.ca_cert)
    if server.client_cert_auth:
        assert server.client_cert is not None and server.client_key is not None
        context.load_cert_chain(server.client_cert, server.client_key)
    return context


def enable_auth(server: "EtcdServer", password: str, timeout: float = 10.0) -> None:
    """Add the ``root`` user (with ``password``) and role and switch auth on, with blocking
    calls to the server's JSON gateway; :class:`EtcdStartError` (etcd's message, never the
    password) if etcd refuses."""
    context = _ssl_context(server)
    for path, fields in _STEPS:
        body = dict(fields, password=password) if path == "/v3/auth/user/add" else fields
        conn: http.client.HTTPConnection
        if context is None:
            conn = http.client.HTTPConnection("127.0.0.1", server.gateway_port, timeout=timeout)
        else:
            conn = http.client.HTTPSConnection(
                "127.0.0.1", server.gateway_port, timeout=timeout, context=context
            )
        try:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            response = conn.getresponse()
            answer = response.read()
        except (OSError, http.client.HTTPException) as e:
            raise EtcdStartError(
                f"could not switch auth on ({path}): {type(e).__name__}: {e}", server.output()
            ) from None
        finally:
            conn.close()
        if response.status != 200:
            raise EtcdStartError(
                f"could not switch auth on ({path}): {_message(answer)}", server.output()
            )


def _message(answer: bytes) -> str:
    try:
        message = json.loads(answer).get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message) if message else answer[:200].decode("utf-8", "replace")


async def enable_auth_async(
    server: "EtcdServer", password: str, reactor: Any, timeout: float = 10.0
) -> None:
    """:func:`enable_auth` on a running reactor, with a :class:`txetcd.Client` (gRPC)."""
    from txetcd._client import Client
    from txetcd._errors import EtcdError

    client = Client(
        server.endpoint,
        reactor=reactor,
        timeout=timeout,
        ca_cert=server.ca_cert,
        cert=server.client_cert if server.client_cert_auth else None,
        key=server.client_key if server.client_cert_auth else None,
    )
    try:
        await client.user_add("root", password)
        await client.role_add("root")
        await client.user_grant_role("root", "root")
        await client.auth_enable()
    except EtcdError as e:
        raise EtcdStartError(f"could not switch auth on: {e}", server.output()) from None
    finally:
        await client.close()
