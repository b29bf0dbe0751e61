"""txetcd at scale: many watches and many kept-alive leases on one ``Client``, in one process.

1. Opens ``watches`` watches, one per key ``<prefix>k/00000`` ... (plus one on ``<prefix>ctl`` for
   the writer's end marker), each with a callback, and waits until etcd created them all.
2. Grants ``leases`` leases of ``ttl`` seconds, ``grant_concurrency`` grants in flight, and keeps
   each alive with ``client.keepalive(lease_id)`` (refreshed every ttl/3 s).
3. Prints ``{"ready": true, ...}``: the harness starts the writer, which touches the watched keys
   at a modest rate (``watch_writer.py``, ``mode=rate``).
4. Waits ``settle`` seconds, then measures a window of ``seconds``: CPU time / wall time of this
   process, and ``VmRSS`` every ``sample_interval`` s.
5. Waits for the writer's end marker, then checks: every put arrived exactly once, every watched
   key saw events, no lease was lost, every lease was refreshed during the window, and a sample
   of leases is alive on the server.

Result: ``rss_mb`` (``peak`` = ``VmHWM``, the most this process ever held, setup included;
``window_max``; ``end``), ``cpu_share`` (CPU s / wall s over the window: 0.5 = half a core),
the setup times, event and lease counts, and ``checks``. If this txetcd has no lease API yet
(``client.grant``/``client.keepalive``), only the watches run and ``lease_api`` is false.
"""

from __future__ import annotations

import random
import time
from collections.abc import Coroutine
from typing import Any

import _tx
from _watch import WatchSpec, data_key, emit_ready, proc_status_kb, run_main
from twisted.internet import defer

from txetcd import Client, WatchBatch


def _mb(kb: int | None) -> float | None:
    return None if kb is None else kb / 1024.0


def _gather(coros: list[Coroutine[Any, Any, None]]) -> defer.Deferred[Any]:
    return defer.gatherResults([defer.ensureDeferred(c) for c in coros], consumeErrors=True)


async def _run(reactor: Any, spec: WatchSpec) -> dict[str, Any]:
    client = Client(endpoints=(spec.endpoint,), reactor=reactor)
    values: list[bytes] = []
    append = values.append

    def on_batch(batch: WatchBatch) -> None:
        for event in batch.events:
            append(event.kv.value)

    ended: defer.Deferred[None] = defer.Deferred()
    end_value: list[bytes] = []

    def on_control(batch: WatchBatch) -> None:
        for event in batch.events:
            if event.kv.value.startswith(b"end:") and not ended.called:
                end_value.append(event.kv.value)
                ended.callback(None)

    result: dict[str, Any] = {"ok": True, "rss_mb": {"start": _mb(proc_status_kb("VmRSS"))}}
    t0 = time.monotonic()
    watches = [
        client.watch(data_key(spec.prefix, i), callback=on_batch) for i in range(spec.watches)
    ]
    control = client.watch(spec.control_key, callback=on_control)
    await defer.gatherResults([w.created for w in [*watches, control]], consumeErrors=True)
    result["watch_setup_s"] = time.monotonic() - t0
    result["rss_mb"]["watches"] = _mb(proc_status_kb("VmRSS"))

    lease_api = callable(getattr(client, "grant", None)) and callable(
        getattr(client, "keepalive", None)
    )
    result["lease_api"] = lease_api
    handles: list[Any] = []
    lost: list[Any] = []
    if lease_api:
        t1 = time.monotonic()
        todo = iter(range(spec.leases))

        async def granter() -> None:
            for _ in todo:
                granted = await client.grant(spec.ttl)
                handle = client.keepalive(granted.id)
                handle.lost.addCallback(lost.append)
                handles.append(handle)

        await _gather([granter() for _ in range(spec.grant_concurrency)])
        result["lease_setup_s"] = time.monotonic() - t1
        result["rss_mb"]["leases"] = _mb(proc_status_kb("VmRSS"))
    result["setup_s"] = time.monotonic() - t0
    emit_ready(watches=len(watches), leases=len(handles))

    await _tx.sleep(reactor, spec.settle)
    events0 = len(values)
    window_start = reactor.seconds()
    wall0, cpu0 = time.monotonic(), time.process_time()
    samples: list[float] = []
    steps = max(1, round(spec.seconds / spec.sample_interval))
    for step in range(1, steps + 1):
        delay = wall0 + step * spec.seconds / steps - time.monotonic()
        if delay > 0:
            await _tx.sleep(reactor, delay)
        rss = _mb(proc_status_kb("VmRSS"))
        if rss is not None:
            samples.append(rss)
    wall = time.monotonic() - wall0
    cpu = time.process_time() - cpu0
    result["window_s"] = wall
    result["cpu_s"] = cpu
    result["cpu_share"] = cpu / wall
    result["window_events"] = len(values) - events0
    result["rss_mb"]["window_max"] = max(samples, default=None)
    result["rss_mb"]["end"] = _mb(proc_status_kb("VmRSS"))
    # VmHWM (the kernel's high-water mark) can lag a sample taken just before it.
    peaks = [p for p in (_mb(proc_status_kb("VmHWM")), *samples) if p is not None]
    result["rss_mb"]["peak"] = max(peaks, default=None)

    got_end = await _tx.wait_for(reactor, ended, spec.timeout)
    checks: list[str] = []
    errors: list[str] = []
    result["events"] = len(values)
    if not got_end:
        errors.append(f"no end marker within {spec.timeout:g} s ({len(values)} events)")
    else:
        count = int(end_value[0].split(b":")[1])
        seqs = [int(v.split(b":", 1)[0]) for v in values]
        unique = set(seqs)
        missing = count - len(unique & set(range(count)))
        duplicates = len(seqs) - len(unique)
        keys_hit = len({s % spec.watches for s in unique})
        result.update(count=count, missing=missing, duplicates=duplicates, keys_hit=keys_hit)
        if missing or duplicates or len(unique) != count:
            errors.append(f"{missing} events missing, {duplicates} repeated of {count} puts")
        else:
            checks.append(f"{count} events exactly once")
        if keys_hit < min(spec.watches, count):
            errors.append(f"only {keys_hit} of {spec.watches} watched keys saw events")
        else:
            checks.append(f"all {keys_hit} watched keys saw events")

    if lease_api:
        refreshed = sum(
            1 for h in handles if h.last_refresh is not None and h.last_refresh >= window_start
        )
        result.update(leases=len(handles), leases_lost=len(lost), refreshed_in_window=refreshed)
        if lost:
            errors.append(f"{len(lost)} leases lost, e.g. {lost[0]!r}")
        if wall < spec.ttl / 3.0 + 2.0:
            checks.append(f"no lease lost (window shorter than a refresh period of {spec.ttl}/3 s)")
        elif refreshed < len(handles):
            errors.append(f"only {refreshed} of {len(handles)} leases refreshed in the window")
        else:
            checks.append(f"all {len(handles)} leases kept alive and refreshed in the window")
        sample = random.sample(handles, min(50, len(handles)))
        alive = 0
        for h in sample:
            ttl = await client.time_to_live(h.lease_id)
            alive += ttl.ttl > 0
        if alive < len(sample):
            errors.append(f"only {alive} of {len(sample)} sampled leases alive on the server")
        else:
            checks.append(f"{alive} sampled leases alive on the server")
        for h in handles:
            h.stop()
    else:
        result.update(leases=0, leases_lost=0)
        checks.append("no lease API in this txetcd: watches only")

    for w in [*watches, control]:
        w.cancel()
    await client.close()
    result["checks"] = checks
    if errors:
        result["ok"] = False
        result["error"] = "; ".join(errors)
    return result


if __name__ == "__main__":
    run_main(lambda spec: _tx.react_run(lambda reactor: _run(reactor, spec)))
