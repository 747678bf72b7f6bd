"""Cancellation at randomised moments: nothing left behind, and the canceller always told."""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import healthfile._writer
from healthfile import AsyncHealthService, HealthReport
from helpers import ServiceFactory, is_lock_file, open_fds, poll_async, stray_threads

pytestmark = pytest.mark.reliability


writer_os: ModuleType = vars(healthfile._writer)["os"]
real_fsync = os.fsync

ROUNDS = 300
SEED = 20240505
# How long the fault-free things a round waits for (threads returning, fds closing) may take.
SETTLE = 5.0


class SlowFsync:
    """os.fsync that takes a little longer, so that cancellations land mid-write sometimes."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.in_flight = 0
        self._lock = threading.Lock()

    def __call__(self, fd: int) -> None:
        with self._lock:
            self.in_flight += 1
        try:
            time.sleep(self.delay)
            real_fsync(fd)
        finally:
            with self._lock:
                self.in_flight -= 1


@pytest.fixture
def slow_fsync(monkeypatch: pytest.MonkeyPatch) -> SlowFsync:
    """Slow the writer's fsync calls (it is the only caller of os.fsync here) by 2 ms."""
    slow = SlowFsync(0.002)
    monkeypatch.setattr(writer_os, "fsync", slow)
    return slow


def leaked(before: dict[int, str]) -> list[str]:
    """What is open now that was not open before (by fd and target)."""
    return sorted(f"{fd} -> {target}" for fd, target in open_fds().items() if fd not in before)


class Leaks:
    """Threads and descriptors left over by a round, each recorded once, for one final verdict.

    A leak is noted and the rounds go on (the next round compares with what is open now), so
    that one leak does not hide what the remaining rounds would show.
    """

    def __init__(self) -> None:
        self.threads = stray_threads(worker=True)
        self.fds = open_fds()
        self.found: list[str] = []

    async def check(self, round_: object) -> None:
        if not await poll_async(
            lambda: stray_threads(worker=True) <= self.threads, timeout=SETTLE, every=0.002
        ):
            new = stray_threads(worker=True) - self.threads
            self.found.append(f"{round_}: threads {sorted(t.name for t in new)}")
            self.threads |= new
        # Threads have returned by now: a descriptor still open a moment later stays open.
        if not await poll_async(lambda: leaked(self.fds) == [], timeout=0.5, every=0.002):
            self.found.append(f"{round_}: descriptors {leaked(self.fds)}")
            self.fds = open_fds()


class Round:
    """What one randomised round did, for the messages of failed assertions."""

    def __init__(self, number: int, kind: str, delay: float) -> None:
        self.number = number
        self.kind = kind
        self.delay = delay

    def __repr__(self) -> str:
        return f"<round {self.number}: {self.kind} after {self.delay * 1000:.2f} ms>"


async def assert_left_clean(
    round_: Round, directory: Path, leaks: Leaks, service: AsyncHealthService
) -> None:
    """No temporary file, no extra fd, no extra thread, and the service usable again."""
    names = sorted(name for name in os.listdir(directory) if not is_lock_file(name))
    assert names == ["health.json"], round_
    await leaks.check(round_)
    if not service.running:
        await service.start()
    report = await service.check_now()
    assert report.status == "online", (round_, report)


async def cancel_check_now(service: AsyncHealthService, delay: float, slow: SlowFsync) -> bool:
    """Cancel a check_now() caller after ``delay``; return whether it was cancelled mid-write."""
    task = asyncio.ensure_future(service.check_now())
    await asyncio.sleep(delay)
    mid_write = slow.in_flight > 0
    accepted = task.cancel()
    await asyncio.wait({task})
    if accepted:
        # CancelledError reached the canceller: the task ends cancelled, never with a result.
        assert task.cancelled()
    else:
        assert isinstance(task.result(), HealthReport)
    return mid_write and accepted


async def stop_mid_cycle(service: AsyncHealthService, delay: float, slow: SlowFsync) -> bool:
    """Call stop() while a check_now() caller waits; return whether a write was in flight."""
    task = asyncio.ensure_future(service.check_now())
    await asyncio.sleep(delay)
    mid_write = slow.in_flight > 0
    await service.stop()
    await asyncio.wait({task})
    # stop() cancels the cycle, not the caller: it gets its report or a RuntimeError.
    assert not task.cancelled()
    if task.exception() is not None:
        assert isinstance(task.exception(), RuntimeError), task.exception()
    assert not service.running
    return mid_write


async def cancel_start(service: AsyncHealthService, delay: float, slow: SlowFsync) -> bool:
    """Cancel the task awaiting start() after ``delay``; return whether it was mid-write."""
    if service.running:
        await service.stop()
    task = asyncio.ensure_future(service.start())
    await asyncio.sleep(delay)
    mid_write = slow.in_flight > 0
    accepted = task.cancel()
    await asyncio.wait({task})
    if accepted:
        assert task.cancelled()
        assert not service.running
    else:
        assert task.result() is None
        assert service.running
    return mid_write and accepted


SCENARIOS: dict[str, Callable[[AsyncHealthService, float, SlowFsync], Any]] = {
    "cancel check_now": cancel_check_now,
    "stop mid-cycle": stop_mid_cycle,
    "cancel start": cancel_start,
}


@pytest.mark.asyncio
@pytest.mark.timeout(300)
async def test_random_cancellations_leave_nothing_behind_and_always_reach_the_canceller(
    make_service: ServiceFactory, health_file: Path, slow_fsync: SlowFsync
) -> None:
    """Hundreds of randomised cancels and stops: no temp file, fd or thread left; still usable."""
    rng = random.Random(SEED)
    earlier = set(threading.enumerate())  # other tests' daemon threads in this process
    service = make_service(check_timeout=5.0)
    await service.start()
    await service.check_now()
    assert await poll_async(
        lambda: stray_threads(earlier, worker=True) == set(), timeout=SETTLE, every=0.002
    ), stray_threads(earlier, worker=True)
    leaks = Leaks()
    mid_write: dict[str, int] = dict.fromkeys(SCENARIOS, 0)

    for number in range(ROUNDS):
        kind = rng.choice(sorted(SCENARIOS))
        delay = rng.uniform(0, 0.005)
        round_ = Round(number, kind, delay)
        mid_write[kind] += bool(await SCENARIOS[kind](service, delay, slow_fsync))
        await assert_left_clean(round_, health_file.parent, leaks, service)

    assert not leaks.found, "\n".join(leaks.found)
    # The slowed fsync made some cancellations land while a write was in flight.
    assert sum(mid_write.values()) > 0, mid_write


@pytest.mark.asyncio
@pytest.mark.timeout(300)
async def test_cancelling_some_of_many_concurrent_callers_spares_the_others(
    make_service: ServiceFactory, health_file: Path, slow_fsync: SlowFsync
) -> None:
    """Of five queued check_now() callers, the cancelled end cancelled, the others get reports."""
    rng = random.Random(SEED + 1)
    earlier = set(threading.enumerate())  # other tests' daemon threads in this process
    service = make_service(check_timeout=5.0)
    await service.start()
    await service.check_now()
    assert await poll_async(
        lambda: stray_threads(earlier, worker=True) == set(), timeout=SETTLE, every=0.002
    ), stray_threads(earlier, worker=True)
    leaks = Leaks()

    for number in range(60):
        callers = [asyncio.ensure_future(service.check_now()) for _ in range(5)]
        await asyncio.sleep(rng.uniform(0, 0.01))
        doomed = set(rng.sample(range(5), rng.randint(1, 4)))
        accepted = {index for index in doomed if callers[index].cancel()}
        await asyncio.wait(callers)
        for index, caller in enumerate(callers):
            if index in accepted:
                assert caller.cancelled(), (number, index)
            else:
                assert isinstance(caller.result(), HealthReport), (number, index)
        sequences = [c.result().sequence for c in callers if not c.cancelled()]
        assert len(set(sequences)) == len(sequences), "two callers got the same cycle"
        round_ = Round(number, "five callers", 0.0)
        await assert_left_clean(round_, health_file.parent, leaks, service)
    assert not leaks.found, "\n".join(leaks.found)


def file_sequence(path: Path) -> int:
    """The sequence of the report in the health file (0 while there is none)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    sequence = json.loads(data)["sequence"]
    assert isinstance(sequence, int)
    return sequence


@pytest.mark.asyncio
@pytest.mark.timeout(300)
async def test_stop_at_random_moments_during_start_always_writes_the_stopped_report(
    make_service: ServiceFactory,
    health_file: Path,
    healthfile_logs: pytest.LogCaptureFixture,
    slow_fsync: SlowFsync,
) -> None:
    """stop() racing start() at random moments: each time a new stopped report, no write error."""
    rng = random.Random(SEED + 2)
    service = make_service(check_timeout=5.0)
    lost: list[str] = []
    sequence = 0
    for number in range(ROUNDS):
        # Mostly within the first millisecond, while start() removes stale temporary files.
        delay = rng.choice([0.0, rng.uniform(0, 0.001), rng.uniform(0, 0.005)])
        starting = asyncio.ensure_future(service.start())
        await asyncio.sleep(delay)
        await service.stop()
        await starting
        if file_sequence(health_file) <= sequence:
            lost.append(f"{Round(number, 'stop during start', delay)}: no new stopped report")
        sequence = file_sequence(health_file)
        names = sorted(name for name in os.listdir(health_file.parent) if not is_lock_file(name))
        assert names == ["health.json"]

    errors = [r.getMessage() for r in healthfile_logs.records if "cannot write" in r.getMessage()]
    assert not lost + errors, "\n".join(lost + errors)
