"""``demo``, ``mirror`` and ``version``: the verbs that are not etcd calls of their own."""

from __future__ import annotations

from txetcd._cli._command import EXIT_ERROR, CommandError, Context, Str, register


async def _demo(ctx: Context) -> None:
    from txetcd._demo import _main

    ctx.out.flush()
    await _main(ctx.reactor, ctx.options.endpoint or None)


async def _version(ctx: Context) -> None:
    from txetcd._version import __version__

    # as etcdctl's (which prints these two lines whatever -w says)
    ctx.out.line(f"txetcd version: {__version__}")
    ctx.out.line("API version: 3.5")


async def _mirror(ctx: Context) -> int:
    try:
        from txetcd._cli._tap import run_foreground
    except ImportError:
        raise CommandError(
            EXIT_ERROR, "mirror is not available in this version of txetcd"
        ) from None
    code: int = await run_foreground(ctx.reactor, list(ctx.args))
    return code


register(
    "demo",
    _demo,
    summary="A short tour against a throwaway local etcd it starts itself",
    client=False,
    flags=[
        Str(
            "endpoint",
            "use this running etcd (http://host:port) instead of starting one; careful: the"
            " demo writes and deletes keys under demo/ and compacts that etcd's history",
        )
    ],
)
register(
    "mirror",
    _mirror,
    summary="Keeps a directory in step with a prefix, in the foreground (as twistd etcd-mirror)",
    usage="[mirror options] (see txetcd mirror --help)",
    client=False,
    raw=True,
)
register(
    "version",
    _version,
    summary="Prints the version of txetcd",
    client=False,
)
