"""The watch suite's writer: txetcd, the same for every watcher (see ``_watch.py``).

``mode=rate``: one put at a time, issued on a fixed schedule of ``rate`` puts/s (a put that
takes longer than the interval delays the next one; the writer never bursts to catch up).
``mode=flood``: ``concurrency`` puts in flight, as fast as they complete. Either way for
``warmup`` + ``seconds``; then the end marker. Each value carries its sequence number and the
``time.time_ns()`` just before the put was issued.

Result: ``count`` (data puts), ``puts_per_s`` (over the timed part), ``put_ms`` (percentiles of
the writer's own put round trips: the part of the latency every watcher shares),
``first_revision``/``last_revision``/``end_revision`` (from the put responses); in ``rate`` mode
also ``rtt_us``, each put's round trip in microseconds indexed by sequence number.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import _tx
from _watch import WatchSpec, data_key, percentiles, run_main
from twisted.internet import defer

from txetcd import Client


async def _run(reactor: Any, spec: WatchSpec) -> dict[str, Any]:
    client = Client(endpoints=(spec.endpoint,), reactor=reactor)
    keys = [data_key(spec.prefix, i).encode() for i in range(spec.keys)]
    nkeys, size = len(keys), spec.value_size
    revisions: list[int] = []
    round_trips: dict[int, int] = {}
    timed = [0]
    begin = time.time_ns()
    measure_from = begin + int(spec.warmup * 1e9)
    end = time.monotonic() + spec.warmup + spec.seconds

    async def put(seq: int) -> None:
        stamp = time.time_ns()
        value = f"{seq}:{stamp}:".ljust(size, "x").encode()
        result = await client.put(keys[seq % nkeys], value)
        round_trips[seq] = time.time_ns() - stamp
        revisions.append(result.header.revision)
        if stamp >= measure_from:
            timed[0] += 1

    try:
        if spec.mode == "rate":
            interval = 1.0 / spec.rate
            start = time.monotonic()
            for seq in itertools.count():
                target = start + seq * interval
                if target >= end:
                    break
                delay = target - time.monotonic()
                if delay > 0:
                    await _tx.sleep(reactor, delay)
                await put(seq)
        elif spec.mode == "flood":
            counter = itertools.count()

            async def loop() -> None:
                while time.monotonic() < end:
                    await put(next(counter))

            await defer.gatherResults(
                [defer.ensureDeferred(loop()) for _ in range(spec.concurrency)],
                consumeErrors=True,
            )
        else:
            raise ValueError(f"unknown writer mode {spec.mode!r}")
        count = len(revisions)
        marker = await client.put(spec.control_key, f"end:{count}:{measure_from}")
    finally:
        await client.close()
    if len(set(revisions)) != count:
        raise RuntimeError("two puts answered with the same revision")
    result: dict[str, Any] = {
        "ok": True,
        "count": count,
        "timed": timed[0],
        "puts_per_s": timed[0] / spec.seconds if spec.seconds > 0 else None,
        "put_ms": percentiles([ns / 1e6 for ns in round_trips.values()]),
        "first_revision": min(revisions, default=None),
        "last_revision": max(revisions, default=None),
        "end_revision": marker.header.revision,
        "start_ns": begin,
    }
    if spec.mode == "rate":
        result["rtt_us"] = [round_trips[seq] // 1000 for seq in range(count)]
    return result


if __name__ == "__main__":
    run_main(lambda spec: _tx.react_run(lambda reactor: _run(reactor, spec)))
