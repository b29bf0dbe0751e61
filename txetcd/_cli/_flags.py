"""etcdctl's global connection flags, in one table shared by the CLI and the twistd plugin.

Each flag is spelled as etcdctl spells it and is also read from its ``ETCDCTL_*`` environment
variable. As in etcdctl 3.5, a flag given both on the command line and in the environment is an
error (the environment would silently lose otherwise)."""

from __future__ import annotations

import getpass
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from twisted.internet.defer import Deferred, succeed

from txetcd._client import Client


class FlagError(Exception):
    """A flag or environment variable with a bad value: the message is one line for stderr."""


@dataclass(frozen=True)
class Flag:
    """One global flag: its etcdctl name, default (as etcdctl prints it) and help."""

    name: str
    default: str
    help: str
    #: a flag that takes no value on the command line (``--hex``, ``--hex=false`` also work)
    boolean: bool = False
    short: Optional[str] = None

    @property
    def env(self) -> str:
        """The environment variable etcdctl reads this flag from."""
        return "ETCDCTL_" + self.name.upper().replace("-", "_")

    @property
    def dest(self) -> str:
        """The flag's name as a Python identifier."""
        return self.name.replace("-", "_")


CONNECTION_FLAGS: Tuple[Flag, ...] = (
    Flag("endpoints", "127.0.0.1:2379", "gRPC endpoints, comma separated"),
    Flag("dial-timeout", "2s", "dial timeout for client connections"),
    Flag("command-timeout", "5s", "timeout for short running command (excluding dial timeout)"),
    Flag("cacert", "", "verify certificates of TLS-enabled secure servers using this CA bundle"),
    Flag("cert", "", "identify secure client using this TLS certificate file"),
    Flag("key", "", "identify secure client using this TLS key file"),
    Flag(
        "insecure-skip-tls-verify",
        "false",
        "skip server certificate verification (CAUTION: for testing only)",
        boolean=True,
    ),
    Flag(
        "insecure-transport",
        "true",
        "disable transport security for endpoints given without a scheme",
        boolean=True,
    ),
    Flag("user", "", "username[:password] for authentication (prompt if password is not supplied)"),
    Flag("password", "", "password for authentication (then --user must not include one)"),
    Flag(
        "discovery-srv",
        "",
        "domain name to query for SRV records describing cluster endpoints",
        short="d",
    ),
    Flag("discovery-srv-name", "", "service name to query when using DNS discovery"),
    Flag(
        "insecure-discovery",
        "true",
        "accept insecure SRV records describing cluster endpoints",
        boolean=True,
    ),
    Flag("keepalive-time", "2s", "keepalive time for client connections (at least 10s is used)"),
    Flag("keepalive-timeout", "6s", "keepalive timeout for client connections"),
)

#: what grpc-go (and so etcdctl) uses at least as keepalive time, whatever the flag says
MIN_KEEPALIVE_TIME = 10.0

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str, name: str = "duration") -> float:
    """Seconds in a Go duration (``5s``, ``1m30s``, ``500ms``, ``0``); FlagError otherwise."""
    value = text.strip()
    if value in ("0", "+0", "-0"):
        return 0.0
    position, total = 0, 0.0
    while position < len(value):
        match = _DURATION.match(value, position)
        if match is None:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if not value or position != len(value):
        raise FlagError(f'invalid argument "{text}" for "--{name}" flag: invalid duration')
    return total


def parse_bool(text: str, name: str) -> bool:
    """Go's strconv.ParseBool, as pflag reads boolean flags."""
    lowered = text.strip()
    if lowered in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if lowered in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise FlagError(f'invalid argument "{text}" for "--{name}" flag: invalid syntax')


def resolve(
    given: Mapping[str, Optional[str]],
    environ: Mapping[str, str],
    flags: Sequence[Flag] = CONNECTION_FLAGS,
) -> Dict[str, str]:
    """Each flag's text: from the command line (``given``, keyed by :attr:`Flag.dest`, None
    when absent), else its environment variable, else its default. Both given: FlagError."""
    values: Dict[str, str] = {}
    for flag in flags:
        on_line = given.get(flag.dest)
        in_env = environ.get(flag.env)
        if on_line is not None and in_env is not None:
            raise FlagError(
                f"conflicting environment variable {flag.env} is shadowed by the command-line"
                f" flag --{flag.name} (unset the variable or drop the flag)"
            )
        if on_line is not None:
            values[flag.dest] = on_line
        elif in_env is not None:
            values[flag.dest] = in_env
        else:
            values[flag.dest] = flag.default
    return values


@dataclass(frozen=True)
class ConnectionSettings:
    """The global flags, checked and typed. The password never appears in the repr."""

    endpoints: Tuple[str, ...]
    dial_timeout: float
    command_timeout: float
    cacert: Optional[str] = None
    cert: Optional[str] = None
    key: Optional[str] = None
    insecure_skip_tls_verify: bool = False
    insecure_transport: bool = True
    user: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)
    discovery_srv: Optional[str] = None
    discovery_srv_name: Optional[str] = None
    insecure_discovery: bool = True
    keepalive_time: float = MIN_KEEPALIVE_TIME
    keepalive_timeout: float = 6.0

    @property
    def secure(self) -> bool:
        """Whether endpoints given without a scheme are reached over TLS (as clientv3 does
        when etcdctl has any TLS setting)."""
        return bool(
            self.cacert
            or self.cert
            or self.key
            or self.insecure_skip_tls_verify
            or not self.insecure_transport
        )

    def urls(self) -> Tuple[str, ...]:
        """The endpoints as URLs: ``host:port`` gets ``https://`` when :attr:`secure`, else
        ``http://``."""
        scheme = "https://" if self.secure else "http://"
        return tuple(e if "://" in e else scheme + e for e in self.endpoints)

    def client_options(self) -> Dict[str, Any]:
        """:class:`txetcd.Client` keyword arguments for these settings (endpoints aside)."""
        options: Dict[str, Any] = {
            "timeout": self.command_timeout or None,
            "connect_timeout": self.dial_timeout or 2.0,
            "keepalive_interval": max(self.keepalive_time, MIN_KEEPALIVE_TIME),
            "keepalive_timeout": self.keepalive_timeout or 6.0,
        }
        if self.cacert:
            options["ca_cert"] = self.cacert
        if self.cert:
            options["cert"] = self.cert
        if self.key:
            options["key"] = self.key
        if self.insecure_skip_tls_verify:
            options["insecure_skip_verify"] = True
        if self.user:
            options["user"] = self.user
            options["password"] = self.password or ""
            # etcdctl sends credentials over plain connections when told to; so do we
            options["allow_insecure_credentials"] = True
        return options


def settings(
    values: Mapping[str, str],
    *,
    prompt: Optional[Callable[[str], str]] = None,
) -> ConnectionSettings:
    """Check :func:`resolve`'s texts; ``prompt`` asks for a password missing from ``--user``
    (``getpass.getpass`` by default)."""

    def text(dest: str) -> Optional[str]:
        return values.get(dest) or None

    endpoints = tuple(e.strip() for e in values.get("endpoints", "").split(",") if e.strip())
    discovery = text("discovery_srv")
    if not endpoints and not discovery:
        raise FlagError("no endpoints given (--endpoints or --discovery-srv)")
    user, password = text("user"), text("password")
    if user is not None:
        if ":" in user:
            if password is not None:
                raise FlagError("--user must not include a password when --password is given")
            user, password = user.split(":", 1)
        elif password is None:
            password = (prompt or getpass.getpass)("Password: ")
        if not user:
            raise FlagError("--user needs a user name")
    elif password is not None:
        raise FlagError("--password needs --user")
    return ConnectionSettings(
        endpoints=endpoints,
        dial_timeout=parse_duration(values.get("dial_timeout", "2s"), "dial-timeout"),
        command_timeout=parse_duration(values.get("command_timeout", "5s"), "command-timeout"),
        cacert=text("cacert"),
        cert=text("cert"),
        key=text("key"),
        insecure_skip_tls_verify=parse_bool(
            values.get("insecure_skip_tls_verify", "false"), "insecure-skip-tls-verify"
        ),
        insecure_transport=parse_bool(
            values.get("insecure_transport", "true"), "insecure-transport"
        ),
        user=user,
        password=password,
        discovery_srv=discovery,
        discovery_srv_name=text("discovery_srv_name"),
        insecure_discovery=parse_bool(
            values.get("insecure_discovery", "true"), "insecure-discovery"
        ),
        keepalive_time=parse_duration(values.get("keepalive_time", "2s"), "keepalive-time"),
        keepalive_timeout=parse_duration(
            values.get("keepalive_timeout", "6s"), "keepalive-timeout"
        ),
    )


def connect(connection: ConnectionSettings, reactor: Any, **extra: Any) -> "Deferred[Client]":
    """A :class:`txetcd.Client` for ``connection``: by DNS SRV discovery when
    ``--discovery-srv`` is given, else on the endpoints. ``extra`` adds Client options."""
    options = connection.client_options()
    options.update(extra)
    if connection.discovery_srv:
        return Client.from_srv(
            connection.discovery_srv,
            connection.discovery_srv_name,
            insecure_discovery=connection.insecure_discovery,
            reactor=reactor,
            **options,
        )
    return succeed(Client(list(connection.urls()), reactor=reactor, **options))


def usage_parameters(
    flags: Sequence[Flag] = CONNECTION_FLAGS,
) -> "list[list[Any]]":
    """``optParameters`` for a ``twisted.python.usage.Options`` (the twistd plugin): every
    flag takes a value there (``--insecure-skip-tls-verify=true``); None means "not given", so
    :func:`resolve` can tell a flag from its environment variable."""
    return [
        [flag.name, flag.short, None, f"{flag.help} [{flag.default or 'none'}]"] for flag in flags
    ]


def add_argparse_flags(parser: Any, flags: Sequence[Flag] = CONNECTION_FLAGS) -> None:
    """Add ``flags`` to an ``argparse`` parser (or argument group) with etcdctl's spelling;
    None means "not given". Boolean flags are given bare (``--hex``); their ``--hex=false``
    form is taken apart first by :func:`take_boolean_values`, as argparse cannot read both."""
    for flag in flags:
        names = [f"--{flag.name}"] + ([f"-{flag.short}"] if flag.short else [])
        if flag.boolean:
            parser.add_argument(
                *names,
                dest=flag.dest,
                action="store_const",
                const="true",
                default=None,
                help=flag.help,
            )
        else:
            parser.add_argument(*names, dest=flag.dest, default=None, help=flag.help)


def take_boolean_values(
    argv: Sequence[str], booleans: Sequence[str]
) -> Tuple[list[str], Dict[str, str]]:
    """pflag's boolean flags: ``--name`` alone means true and never takes the next word as its
    value; ``--name=VALUE`` sets it. Returns ``argv`` without the ``--name=VALUE`` words (up to
    a ``--``), and those values by dest (``name`` with ``_`` for ``-``)."""
    names = set(booleans)
    rest: list[str] = []
    values: Dict[str, str] = {}
    for index, word in enumerate(argv):
        if word == "--":
            rest.extend(argv[index:])
            break
        name, equals, value = word.partition("=")
        if equals and name.startswith("--") and name[2:] in names:
            values[name[2:].replace("-", "_")] = value
        else:
            rest.append(word)
    return rest, values
