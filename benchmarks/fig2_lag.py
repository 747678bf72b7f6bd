"""Figure 2: the event-loop lag a running service adds to its host loop.

A watchdog thread posts a callback to the loop every 1 ms (``call_soon_threadsafe``) and
records how late each one runs (``perf_counter``; the probe is the tests' own LagProbe,
tests/helpers.py). Three conditions, each cycling at 100 Hz where it cycles, measured in
interleaved rounds so that drift of the machine hits them alike:

- idle: the loop does nothing else;
- healthfile: ``AsyncHealthService(interval=0.01)``, the real SQLite check and health file;
- healthfile with a fresh connection per cycle: the same, the database read as the check's
  fallback reads it (a new aiosqlite thread per cycle: the design before);
- naive: the same I/O inline in a coroutine (sqlite3, write, fsync, rename, dir fsync).

The designs once measured alongside (the original thread design, a lean worker-thread prototype) are
in docs/design/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from _common import (
    TIMES,
    Context,
    FigureResult,
    LoopBusyMeter,
    Row,
    floor_cycle,
    fmt_time,
    fresh_connection_per_cycle,
    make_database,
    markdown_table,
    median,
    percentile,
    readonly_uri,
    work_dir,
)

import healthfile

# The lag probe is the one the tests use (benchmarks run as scripts from the repository).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import LagProbe

PERIOD = 0.001  # a callback posted every 1 ms

TARGET = 1.2
INTERVAL = 0.01  # 100 Hz


async def _every(interval: float, body: Callable[[], object]) -> None:
    """Call ``body`` (awaiting it if it returns an awaitable) on a fixed grid, forever."""
    loop = asyncio.get_running_loop()
    origin = loop.time()
    while True:
        now = loop.time()
        due = origin + (math.floor((now - origin) / interval) + 1) * interval
        await asyncio.sleep(due - now)
        outcome = body()
        if asyncio.iscoroutine(outcome):
            await outcome


@contextlib.asynccontextmanager
async def _background(coro: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    task = asyncio.ensure_future(coro)
    try:
        yield
    finally:
        task.cancel()
        await asyncio.wait({task})


def _conditions(
    directory: Path, database: Path
) -> dict[str, Callable[[], AbstractAsyncContextManager[None]]]:
    uri = readonly_uri(database)

    @contextlib.asynccontextmanager
    async def idle() -> AsyncIterator[None]:
        yield

    def service(fresh: bool) -> Callable[[], AbstractAsyncContextManager[None]]:
        @contextlib.asynccontextmanager
        async def running() -> AsyncIterator[None]:
            service = healthfile.AsyncHealthService(
                database,
                health_file=directory / "health.json",
                interval=INTERVAL,
                pyproject=None,
                app_version="1.0.0",
            )
            if fresh:
                fresh_connection_per_cycle(service)
            async with service:
                yield

        return running

    @contextlib.asynccontextmanager
    async def naive() -> AsyncIterator[None]:
        sequence = 0

        def cycle() -> None:
            nonlocal sequence
            sequence += 1
            status = {
                "status": "online",
                "database": "connected",
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "app_version": "1.0.0",
                "api_version": "v1",
                "sequence": sequence,
            }
            data = (json.dumps(status, indent=2) + "\n").encode()
            floor_cycle(uri, directory, "naive.json", data)  # blocking, on the loop

        async with _background(_every(INTERVAL, cycle)):
            yield

    return {
        "idle": idle,
        "healthfile": service(fresh=False),
        "healthfile, fresh connection per cycle": service(fresh=True),
        "naive inline": naive,
    }


async def run(ctx: Context) -> FigureResult:
    result = FigureResult("2. Event-loop lag added by a service cycling at 100 Hz")
    loop = asyncio.get_running_loop()
    rounds, window = ctx.n(5, 2), ctx.n(1.0, 0.5)
    with work_dir(ctx.root) as directory:
        database = make_database(directory / "app.db")
        conditions = _conditions(directory, database)
        lateness: dict[str, list[float]] = {name: [] for name in conditions}
        busy: dict[str, float] = dict.fromkeys(conditions, 0.0)
        for _ in range(rounds):
            for name, condition in conditions.items():
                async with condition():
                    await asyncio.sleep(0.1)  # past start-up
                    probe = LagProbe(loop, PERIOD)
                    with LoopBusyMeter(loop) as meter:
                        probe.start()
                        await asyncio.sleep(window)
                        lateness[name] += await probe.stop()
                    busy[name] += meter.busy / meter.elapsed / rounds

    def stats(name: str) -> tuple[float, float, float]:
        values = lateness[name]
        return median(values), percentile(values, 99), max(values)

    idle = stats("idle")
    service = stats("healthfile")
    fresh = stats("healthfile, fresh connection per cycle")
    naive = stats("naive inline")
    result.rows += [
        Row(
            "2. loop lag p99, healthfile at 100 Hz vs idle loop",
            fmt_time(service[1]),
            fmt_time(idle[1]),
            service[1] / idle[1],
            f"≤ {TARGET}{TIMES}",
            service[1] / idle[1] <= TARGET,
            key="lag_p99",
        ),
        Row(
            "2. loop lag p99, a fresh connection per cycle (the design before) vs idle loop",
            fmt_time(fresh[1]),
            fmt_time(idle[1]),
            fresh[1] / idle[1],
            f"≤ {TARGET}{TIMES}",
            fresh[1] / idle[1] <= TARGET,
            key="lag_p99_fresh",
        ),
        Row(
            "2. loop lag p50, healthfile vs idle",
            fmt_time(service[0]),
            fmt_time(idle[0]),
            service[0] / idle[0],
            key="lag_p50",
        ),
        Row(
            "2. loop lag max, healthfile vs idle",
            fmt_time(service[2]),
            fmt_time(idle[2]),
            service[2] / idle[2],
            key="lag_max",
        ),
        Row(
            "2. loop lag p99, healthfile vs naive inline I/O",
            fmt_time(service[1]),
            fmt_time(naive[1]),
            service[1] / naive[1],
            key="lag_p99_naive",
        ),
    ]
    result.facts = {
        "idle_p99": idle[1],
        "service_p99": service[1],
        "naive_p99": naive[1],
        "fresh_p99": fresh[1],
        "busy_share": busy["healthfile"],
        "busy_share_fresh": busy["healthfile, fresh connection per cycle"],
        "busy_share_idle": busy["idle"],
    }
    rows = []
    for name in conditions:
        p50, p99, worst = stats(name)
        rows.append(
            [
                name,
                str(len(lateness[name])),
                fmt_time(p50),
                fmt_time(p99),
                fmt_time(worst),
                f"{p99 / idle[1]:.2f}{TIMES}",
                f"{busy[name]:.1%}" if busy[name] else "—",
            ]
        )
    result.notes = [
        f"{rounds} interleaved rounds of {window:g} s per condition; a callback posted every "
        "1 ms by a watchdog thread; lateness = when it ran minus when it was posted.",
        "",
        markdown_table(
            ["condition", "samples", "p50", "p99", "max", "p99 / idle p99", "loop busy"],
            rows,
        ),
        "",
        "*loop busy*: share of wall time the loop spent outside `select()` (running "
        "callbacks, or waiting for the GIL), over the measuring windows.",
    ]
    return result
