"""Soak: thousands of cycles and hundreds of start/stop pairs leave fds, threads, memory flat."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from healthfile import (
    CheckResult,
    DiskSpaceCheck,
    HealthCheckService,
    LoopLagCheck,
    check,
)
from helpers import ServiceFactory, open_fds, poll, poll_async, read_status, stray_threads

pytestmark = pytest.mark.reliability


CYCLES = 2000
WARM_UP = 200
START_STOP_PAIRS = 300
FACADE_PAIRS = 60
# Growth bounds, with wide margins: a leak of even one small object per cycle would pass
# 2000 * ~128 bytes; the bound is what thousands of cycles may not exceed.
MAX_TRACED_GROWTH = 256 * 1024
MAX_RSS_GROWTH = 16 * 1024 * 1024


def new_fds(before: dict[int, str], after: dict[int, str]) -> list[str]:
    """Descriptors open in ``after`` that were not in ``before``, with their targets."""
    return sorted(f"{fd} -> {target}" for fd, target in after.items() if before.get(fd) != target)


def rss_bytes() -> int:
    """Resident set size of this process, from /proc/self/status."""
    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs /proc/self/status to read the resident set size (Linux)")
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def settled(*, running: bool = False) -> None:
    """Let threads that are returning return, then collect garbage.

    Unless the service is ``running``, its worker thread too: stop() returns before the worker
    has released the lock file (the release is queued, not awaited), and the worker ends
    right after it.
    """
    await poll_async(lambda: not stray_threads(worker=running), timeout=5.0, every=0.01)
    gc.collect()


@pytest.fixture
def traced() -> Iterator[None]:
    """Trace Python allocations for the test."""
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def every_kind_of_check() -> list[object]:
    """A sync check (a thread per run), an async one, disk space and loop lag."""

    async def async_pass() -> CheckResult:
        return CheckResult("pass", "fine")

    return [
        check("sync", lambda: True),
        check("async", async_pass),
        DiskSpaceCheck("/", min_free_bytes=0),
        LoopLagCheck(warn_after=5.0, fail_after=10.0),
    ]


def coverage_is_measuring() -> bool:
    """Tell whether a coverage run is tracing this process."""
    coverage = sys.modules.get("coverage")
    return coverage is not None and coverage.Coverage.current() is not None


class Usage:
    """fds, threads, traced memory and RSS at one moment."""

    def __init__(self) -> None:
        self.fds = open_fds(required=True)
        self.threads = stray_threads(worker=True)
        self.traced = tracemalloc.get_traced_memory()[0]
        self.rss = rss_bytes()

    def growth_to(self, later: Usage) -> str:
        return (
            f"new fds {new_fds(self.fds, later.fds)}, threads {self.threads} -> {later.threads}, "
            f"traced {self.traced} -> {later.traced}, rss {self.rss} -> {later.rss}"
        )


def assert_flat(before: Usage, after: Usage) -> None:
    """fds and threads exactly as before; memory within the generous bounds."""
    growth = before.growth_to(after)
    assert new_fds(before.fds, after.fds) == [], growth
    assert after.threads == before.threads == set(), growth
    if not coverage_is_measuring():  # its tracer's own data is traced memory that grows
        assert after.traced - before.traced < MAX_TRACED_GROWTH, growth
    assert after.rss - before.rss < MAX_RSS_GROWTH, growth


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_thousands_of_cycles_leave_fds_threads_and_memory_flat(
    fast_dir: Path, make_service: ServiceFactory, traced: None
) -> None:
    """2000 back-to-back cycles with every kind of check: no fd, thread or memory growth."""
    service = make_service(
        interval=0.001, health_file=fast_dir / "health.json", checks=every_kind_of_check()
    )
    await service.start()

    async def reach(sequence: int) -> None:
        while (report := service.last_report) is None or report.sequence < sequence:
            await asyncio.sleep(0.02)

    await reach(WARM_UP)
    await settled(running=True)
    before = Usage()
    await reach(WARM_UP + CYCLES)
    assert service.running
    assert service.last_report is not None
    assert service.last_report.status == "online"
    # Measured once stopped: a write or probe in flight holds a descriptor for a moment.
    await service.stop()
    await settled()
    after = Usage()

    assert_flat(before, after)


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_hundreds_of_start_stop_pairs_leave_fds_threads_and_memory_flat(
    fast_dir: Path, make_service: ServiceFactory, traced: None
) -> None:
    """300 start/stop pairs of one service: no fd, thread or memory growth, no temp file."""
    health_file = fast_dir / "health.json"
    service = make_service(health_file=health_file, checks=every_kind_of_check())
    for _ in range(30):
        await service.start()
        await service.stop()
    await settled()
    before = Usage()
    for _ in range(START_STOP_PAIRS):
        await service.start()
        await service.stop()
    await settled()
    after = Usage()

    assert service.last_report is not None
    assert service.last_report.status == "stopped"
    assert os.listdir(health_file.parent) == ["health.json"]
    assert_flat(before, after)


def test_start_stop_pairs_of_the_thread_facade_leave_nothing_behind(
    database: Path,
    health_file: Path,
    tmp_path: Path,
    healthfile_logs: pytest.LogCaptureFixture,
) -> None:
    """60 start/stop pairs of HealthCheckService: each ends stopped, its thread gone, fds flat."""
    facade = HealthCheckService(
        0.01, database=database, health_file=health_file, pyproject=tmp_path / "none.toml"
    )
    facade.start()
    facade.stop(timeout=30)
    gc.collect()
    fds = open_fds(required=True)
    rss = rss_bytes()
    sequence = read_sequence(health_file)
    for _ in range(FACADE_PAIRS):
        facade.start()
        facade.stop(timeout=30)
        assert not facade.is_running
        # Every stop() wrote a new final report.
        assert read_status(health_file) == "stopped"
        assert read_sequence(health_file) > sequence
        sequence = read_sequence(health_file)
    # The worker too: it releases the lock file after stop() has returned.
    poll(lambda: not stray_threads(), timeout=5.0, every=0.01)
    gc.collect()

    assert stray_threads() == set()
    assert new_fds(fds, open_fds(required=True)) == []
    assert rss_bytes() - rss < MAX_RSS_GROWTH
    assert os.listdir(health_file.parent) == ["health.json"]
    assert [r.getMessage() for r in healthfile_logs.records if r.levelno >= logging.ERROR] == []


def read_sequence(path: Path) -> int:
    sequence = json.loads(path.read_bytes())["sequence"]
    assert isinstance(sequence, int)
    return sequence
