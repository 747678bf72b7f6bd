"""A lean cycle that keeps every SPEC promise: the evidence behind the proposals in README.

Not healthfile's code: a sketch of what a cycle could cost. Per cycle it makes two hops to one
long-lived worker thread (started once, not per cycle): the first runs the SQLite probe
(read-only URI, schema read, connection always closed), the second the durable atomic
replacement through healthfile's own ``AtomicWriter.replace_sync`` (O_EXCL temp, write,
fchmod, fsync, rename, directory fsync). The report is a real ``HealthReport``, rendered on
the loop. ``fused=True`` does probe, render and write in a single hop, the floor of any
design that keeps the work off the loop.

What it leaves out (and a real version would need): the busy-retry slices, the timeout, and
``interrupt()`` on cancel; none of them costs anything on the happy path measured here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

from _common import PROBE_QUERY, readonly_uri

from healthfile._report import CheckResult, HealthReport, ceil_to_second
from healthfile._writer import AtomicWriter


def probe(uri: str) -> None:
    """Read-only URI, schema read, always closed (raises sqlite3.Error on failure)."""
    connection = sqlite3.connect(uri, uri=True, timeout=0.01, check_same_thread=False)
    try:
        connection.execute(PROBE_QUERY).fetchall()
    finally:
        connection.close()


class LeanCycle:
    """One database check and one health file, two hops (or one) per cycle."""

    def __init__(self, database: Path, health_file: Path, *, interval: float = 30.0) -> None:
        self._uri = readonly_uri(database)
        self._writer = AtomicWriter(health_file)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lean-cycle")
        self._interval = interval
        self._sequence = 0
        self._started_at = datetime.now(timezone.utc)

    def close(self) -> None:
        self._executor.shutdown()

    def _probe(self) -> CheckResult:
        try:
            probe(self._uri)
        except sqlite3.Error as exc:
            return CheckResult("fail", f"{type(exc).__name__}: {exc}")
        return CheckResult("pass")

    def _render(self, result: CheckResult, duration: float) -> bytes:
        self._sequence += 1
        now = datetime.now(timezone.utc)
        checked = dataclasses.replace(result, duration_ms=duration * 1000, last_success=now)
        report = HealthReport(
            status="online" if result.status == "pass" else "degraded",
            database="connected" if result.status == "pass" else "disconnected",
            timestamp=now,
            app_version="1.0.0",
            interval_seconds=self._interval,
            expires_at=ceil_to_second(now + timedelta(seconds=self._interval + 4)),
            sequence=self._sequence,
            started_at=self._started_at,
            pid=os.getpid(),
            checks={"database": checked},
        )
        return report.to_json().encode("utf-8")

    async def cycle(self, *, fused: bool = False) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        if fused:

            def work() -> None:
                result = self._probe()
                self._writer.replace_sync(self._render(result, time.perf_counter() - started))

            await loop.run_in_executor(self._executor, work)
            return
        result = await loop.run_in_executor(self._executor, self._probe)
        data = self._render(result, time.perf_counter() - started)
        await loop.run_in_executor(self._executor, self._writer.replace_sync, data)


class WorkerSQLiteCheck:
    """The database check as one hop to a long-lived worker thread, for the real service.

    A :class:`healthfile.Check` (``name`` and async ``run()``), so it plugs into today's
    ``AsyncHealthService`` through ``database=``: the rest of the cycle (tasks, timeouts,
    report, the writer's hop) is healthfile's own. Same probe as ``SQLiteCheck`` (read-only
    URI, schema read, always closed); the busy-retry slices and ``interrupt()`` on cancel
    are left out, as in ``LeanCycle``.
    """

    name = "database"
    timeout: float | None = None

    def __init__(self, database: Path) -> None:
        self._uri = readonly_uri(database)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lean-check")

    async def run(self) -> CheckResult:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, probe, self._uri)
        except sqlite3.Error as exc:
            return CheckResult("fail", f"{type(exc).__name__}: {exc}")
        return CheckResult("pass")

    def close(self) -> None:
        self._executor.shutdown()
