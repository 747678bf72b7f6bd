"""Figure 4: how long ``stop()`` takes, idle and in the middle of a check on a locked database.

Idle: ``start()``, 10 ms of idling, ``stop()``, many pairs; the median and p99 of
``stop()``. ``stop()`` writes the final ``stopped`` report, a durable replacement, so its
floor is one inline durable file replacement (the baseline column).

Mid-check: the database is locked by another connection (``BEGIN EXCLUSIVE``, rollback
journal), so the SQLite check is retrying in 10 ms busy slices; ``check_now()`` runs in a
task and ``stop()`` is timed 30 ms into it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from _common import (
    Context,
    FigureResult,
    Row,
    floor_write,
    fmt_time,
    make_database,
    median,
    percentile,
    timed,
    work_dir,
)

import healthfile

TARGET_IDLE = 0.005
TARGET_LOCKED = 0.050


@contextlib.contextmanager
def locked(database: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``database`` from another connection."""
    connection = sqlite3.connect(database, isolation_level=None)
    try:
        connection.execute("BEGIN EXCLUSIVE")
        yield
        connection.execute("ROLLBACK")
    finally:
        connection.close()


def _service(database: Path, health_file: Path) -> healthfile.AsyncHealthService:
    return healthfile.AsyncHealthService(
        database, health_file=health_file, interval=3600.0, pyproject=None, app_version="1.0.0"
    )


async def stop_idle(
    database: Path, health_file: Path, pairs: int
) -> tuple[list[float], list[float]]:
    """Time ``stop()`` of an idle service over many start/stop pairs (a few warm-ups first).

    Returns the ``stop()`` times and, for each, the time of its final durable write (timed
    by wrapping the service's writer object).
    """
    service = _service(database, health_file)
    writer = service._publisher.writer
    replace = writer.replace
    writes: list[float] = []

    async def timed_replace(data: bytes) -> None:
        start = time.perf_counter()
        try:
            await replace(data)
        finally:
            writes.append(time.perf_counter() - start)

    writer.replace = timed_replace  # type: ignore[method-assign]
    stops, finals = [], []
    for i in range(pairs + 10):
        await service.start()
        await asyncio.sleep(0.01)  # idle: the loop task waits for its next due time
        start = time.perf_counter()
        await service.stop()
        if i >= 10:
            stops.append(time.perf_counter() - start)
            finals.append(writes[-1])
    return stops, finals


async def stop_locked(database: Path, health_file: Path, repeats: int) -> list[float]:
    """Time ``stop()`` 30 ms into a check of a database another connection holds locked."""
    samples = []
    for _ in range(repeats):
        service = _service(database, health_file)
        await service.start()
        with locked(database):
            cycle = asyncio.ensure_future(service.check_now())
            await asyncio.sleep(0.03)
            assert not cycle.done(), "the check should still be waiting for the lock"
            start = time.perf_counter()
            await service.stop()
            samples.append(time.perf_counter() - start)
            with contextlib.suppress(RuntimeError):  # "stopped during check_now()"
                await cycle
    return samples


async def run(ctx: Context) -> FigureResult:
    result = FigureResult("4. Stop latency")
    with work_dir(ctx.root) as directory:
        database = make_database(directory / "app.db")
        health_file = directory / "health.json"
        data = b"x" * 600
        idle: list[float] = []
        finals: list[float] = []
        write: list[float] = []
        # Interleaved blocks: the disk's fsync time drifts with whatever else the machine
        # does, and the baseline must see the same disk as the stops.
        for _ in range(5):
            stops, final = await stop_idle(database, health_file, ctx.n(40, 10))
            idle += stops
            finals += final
            write += timed(lambda: floor_write(directory, "floor.json", data), ctx.n(40, 10))
        mid = await stop_locked(database, health_file, ctx.n(30, 8))
    idle_med, mid_med, write_med = median(idle), median(mid), median(write)
    result.rows += [
        Row(
            "4. stop latency, idle (median; baseline: one inline durable write)",
            fmt_time(idle_med),
            fmt_time(write_med),
            idle_med / write_med,
            "< 5 ms",
            idle_med < TARGET_IDLE,
            key="stop_idle",
        ),
        Row(
            "4. stop latency, mid-check on a locked database (median)",
            fmt_time(mid_med),
            fmt_time(write_med),
            mid_med / write_med,
            "< 50 ms",
            mid_med < TARGET_LOCKED,
            key="stop_locked",
        ),
    ]
    result.facts = {
        "final_write": median(finals),
        "inline_write": write_med,
        "stop_idle": idle_med,
    }
    result.notes = [
        f"Idle: {len(idle)} start/stop pairs, `stop()` median {fmt_time(idle_med)}, p99 "
        f"{fmt_time(percentile(idle, 99))}, max {fmt_time(max(idle))}. It cancels the "
        "sleeping loop task and writes the final `stopped` report: that write, timed inside "
        f"`stop()`, takes {fmt_time(median(finals))} (median; one executor hop plus the "
        f"durable replacement, which alone costs {fmt_time(write_med)} inline).",
        "",
        f"Mid-check on a database held with `BEGIN EXCLUSIVE` by another connection: "
        f"{len(mid)} runs, `stop()` median {fmt_time(mid_med)}, p99 "
        f"{fmt_time(percentile(mid, 99))}, max {fmt_time(max(mid))}. The probe retries in "
        "10 ms busy slices, so cancelling it waits at most for the slice in flight, then the "
        "connection's close hops, then the final write.",
    ]
    return result
