"""AsyncHealthService: construction, lifecycle, pacing, cancellation, failures, a free loop."""

from __future__ import annotations

import asyncio
import errno
import functools
import importlib.resources
import itertools
import json
import logging
import os
import sqlite3
import stat
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from healthfile import AsyncHealthService, AtomicWriter, CheckResult, HealthReport
from helpers import (
    CONTRACT_KEYS,
    LagProbe,
    ServiceFactory,
    generous,
    healthfile_tasks,
    names,
    needs_posix_modes,
    read_text,
    stray_threads,
    wait_until_async,
)

# aiosqlite 0.22 runs each connection in an unnamed Thread with this target.
AIOSQLITE_THREAD = "_connection_worker_thread"


class ProbeCheck:
    """A check that passes, records when each run starts, and can be told to hang or dawdle."""

    def __init__(self, name: str = "probe", *, duration: float = 0.0) -> None:
        self.name = name
        self.duration = duration
        self.hang = False
        self.starts: list[float] = []
        self.entered = asyncio.Event()  # set when a run starts to hang
        self._never = asyncio.Event()
        self._ran = asyncio.Event()

    async def run(self) -> CheckResult:
        """Record the start, then hang, sleep or pass at once."""
        self.starts.append(asyncio.get_running_loop().time())
        self._ran.set()
        if self.hang:
            self.entered.set()
            await self._never.wait()
        if self.duration:
            await asyncio.sleep(self.duration)
        return CheckResult("pass")

    async def wait_runs(self, count: int, timeout: float = 20.0) -> None:
        """Wait until ``count`` runs have started."""

        async def reached() -> None:
            while len(self.starts) < count:
                self._ran.clear()
                await self._ran.wait()

        await asyncio.wait_for(reached(), timeout)


async def wait_for_hang(probe: ProbeCheck, threads_before: set[threading.Thread]) -> None:
    """Wait until ``probe`` hangs and the same cycle's SQLite probe has closed its connection.

    Cancelling a cycle while aiosqlite is still opening the connection is a separate case,
    pinned in test_database.py; these tests cancel a cycle whose only running check hangs.
    """
    await asyncio.wait_for(probe.entered.wait(), 10)
    await wait_until_async(
        lambda: not any(AIOSQLITE_THREAD in t.name for t in new_threads(threads_before)),
        timeout=20.0,
    )


def new_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    """Threads alive now that were not alive before."""
    return [thread for thread in threading.enumerate() if thread not in before]


def read_health(path: Path) -> dict[str, Any]:
    """Read the health file the way a monitor does."""
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def permissions(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def cancel_and_record(task: asyncio.Future[Any], record: list[bool], _: object) -> None:
    """Cancel ``task`` (a done callback) and record whether the cancel was accepted."""
    record.append(task.cancel())


def parse_timestamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def schema_validator() -> Draft202012Validator:
    schema_text = (importlib.resources.files("healthfile") / "health.schema.json").read_text(
        encoding="utf-8"
    )
    schema = json.loads(schema_text)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def assert_valid(data: dict[str, Any]) -> None:
    errors = [error.message for error in schema_validator().iter_errors(data)]
    assert errors == []


async def assert_no_stray_threads(before: set[threading.Thread], settle: float = 2.0) -> None:
    """Allow a short settle for threads that are returning, then require none is left."""
    deadline = time.monotonic() + settle
    while stray_threads(before) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert stray_threads(before) == set()


def error_records(logs: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [record for record in logs.records if text in record.getMessage()]


# --- construction -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"interval": 0},
        {"interval": -1.0},
        {"interval": float("nan")},
        {"interval": float("inf")},
        {"interval": 1e12},
        {"check_timeout": 0},
        {"check_timeout": -0.5},
        {"start_period": -1.0},
        {"file_mode": -1},
        {"file_mode": 0o10000},
        {"file_mode": 0o1644},
        {"file_mode": 0o244},
        {"file_mode": 0},
        {"app_version": ""},
        {"app_version": "   "},
    ],
    ids=repr,
)
def test_bad_option_raises_value_error(tmp_path: Path, options: dict[str, Any]) -> None:
    """A duration, file mode or app_version out of range is refused with ValueError."""
    with pytest.raises(ValueError, match=next(iter(options))):
        AsyncHealthService(tmp_path / "app.db", health_file=tmp_path / "h.json", **options)


@pytest.mark.parametrize(
    "options",
    [
        {"interval": True},
        {"interval": "30"},
        {"check_timeout": True},
        {"start_period": False},
        {"file_mode": "644"},
        {"file_mode": True},
        {"app_version": 1},
        {"on_change": "print"},
    ],
    ids=repr,
)
def test_option_of_the_wrong_type_raises_type_error(
    tmp_path: Path, options: dict[str, Any]
) -> None:
    """An option of the wrong type (a string for seconds, a bool) is refused with TypeError."""
    with pytest.raises(TypeError, match=next(iter(options))):
        AsyncHealthService(tmp_path / "app.db", health_file=tmp_path / "h.json", **options)


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644, 0o664, 0o400, 0o777])
def test_owner_readable_file_modes_up_to_0o777_are_accepted(tmp_path: Path, mode: int) -> None:
    """Any mode from 0o400 to 0o777 with the owner's read bit is accepted as given."""
    AsyncHealthService(tmp_path / "app.db", health_file=tmp_path / "h.json", file_mode=mode)


@pytest.mark.parametrize(("mode", "meant"), [(644, "0o644"), (600, "0o600"), (640, "0o640")])
def test_decimal_file_mode_is_refused_naming_the_octal(
    tmp_path: Path, mode: int, meant: str
) -> None:
    """file_mode=644 (decimal, 0o1204: the owner could not read) is refused, naming 0o644."""
    with pytest.raises(ValueError, match=rf"file_mode={mode} is .*did you mean {meant}"):
        AsyncHealthService(tmp_path / "app.db", health_file=tmp_path / "h.json", file_mode=mode)


def test_one_file_twice_is_named_as_the_caller_gave_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same-file refusal names an argument, a variable, or a default, as each was given."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HEALTHFILE_DATABASE", raising=False)
    monkeypatch.delenv("HEALTHFILE_HEALTH_FILE", raising=False)
    with pytest.raises(ValueError, match="same file") as caught:
        AsyncHealthService("data/health.json")
    assert str(caught.value).startswith(
        "database='data/health.json' and health_file='data/health.json' (the default) are "
    )
    monkeypatch.setenv("HEALTHFILE_HEALTH_FILE", "app.db")
    with pytest.raises(ValueError, match="same file") as caught:
        AsyncHealthService(tmp_path / "app.db")
    assert str(caught.value).startswith(
        f"database={str(tmp_path / 'app.db')!r} and HEALTHFILE_HEALTH_FILE='app.db' are "
    )


def test_a_single_check_for_checks_says_to_wrap_it_in_a_list(tmp_path: Path) -> None:
    """checks=<one check> raises TypeError saying checks is a list, not "not iterable"."""
    with pytest.raises(
        TypeError, match=r"checks must be a list of checks.*wrap one check in a list"
    ):
        AsyncHealthService(tmp_path / "app.db", checks=ProbeCheck())  # type: ignore[arg-type]


def test_a_function_in_checks_points_at_healthfile_check(tmp_path: Path) -> None:
    """checks=[a_function] raises TypeError naming its place and healthfile.check(name, fn)."""

    def cache_alive() -> bool:
        return True

    with pytest.raises(
        TypeError, match=r"checks\[1\] is a function .*healthfile\.check\(name, fn\)"
    ):
        AsyncHealthService(tmp_path / "app.db", checks=[ProbeCheck(), cache_alive])  # type: ignore[list-item]


def test_zero_start_period_is_accepted(tmp_path: Path) -> None:
    """start_period=0 is valid (it is the default): only negative values are refused."""
    service = AsyncHealthService(tmp_path / "app.db", start_period=0, health_file=tmp_path / "h")
    assert service.start_period == 0.0


def test_duplicate_check_names_raise_value_error(tmp_path: Path) -> None:
    """Two checks with the same name are refused, including one that shadows 'database'."""
    with pytest.raises(ValueError, match="unique"):
        AsyncHealthService(tmp_path / "app.db", checks=[ProbeCheck("x"), ProbeCheck("x")])
    with pytest.raises(ValueError, match="database"):
        AsyncHealthService(tmp_path / "app.db", checks=[ProbeCheck("database")])


@pytest.mark.parametrize("bad", [object(), "disk", None])
def test_non_check_in_checks_raises_type_error(tmp_path: Path, bad: Any) -> None:
    """Anything in checks that has no name and async run() is refused with TypeError."""
    with pytest.raises(TypeError, match="check"):
        AsyncHealthService(tmp_path / "app.db", checks=[ProbeCheck(), bad])


def test_construction_needs_no_loop_and_does_no_io(tmp_path: Path) -> None:
    """Constructing (here, with no event loop running) creates neither the file nor its dir."""
    health_file = tmp_path / "absent" / "deeper" / "health.json"
    database = tmp_path / "missing.db"
    service = AsyncHealthService(database, health_file=health_file, interval=5.0)
    assert not service.running
    assert service.last_report is None
    assert not health_file.parent.exists()
    assert not (tmp_path / "absent").exists()
    assert not database.exists()
    assert "stopped" in repr(service)


# --- start and the first report --------------------------------------------------------


@pytest.mark.asyncio
async def test_start_returns_with_first_report_on_disk(
    make_service: ServiceFactory, health_file: Path
) -> None:
    """start() returns once report 1 (online, database connected) is in the file."""
    service = make_service()
    await service.start()
    assert service.running
    data = read_health(health_file)
    assert data["sequence"] == 1
    assert data["status"] == "online"
    assert data["database"] == "connected"
    report = service.last_report
    assert report is not None
    assert report.as_dict() == data


@pytest.mark.asyncio
async def test_first_report_follows_the_contract(
    make_service: ServiceFactory, health_file: Path
) -> None:
    """The file validates against the shipped schema, keys in order, pid and times correct."""
    before = datetime.now(timezone.utc).replace(microsecond=0)
    service = make_service(interval=30.0, check_timeout=3.0, app_version="1.2.3")
    await service.start()
    text = read_text(health_file)
    data = json.loads(text)
    assert_valid(data)
    assert list(data) == CONTRACT_KEYS
    assert text == json.dumps(data, indent=2) + "\n"
    assert data["pid"] == os.getpid()
    assert data["api_version"] == "v1"
    assert data["app_version"] == "1.2.3"
    assert data["interval_seconds"] == 30.0
    timestamp = parse_timestamp(data["timestamp"])
    started_at = parse_timestamp(data["started_at"])
    assert before <= started_at <= timestamp
    assert parse_timestamp(data["expires_at"]) >= timestamp + timedelta(seconds=30.0 + 3.0)
    assert set(data["checks"]) == {"database"}
    assert data["checks"]["database"]["status"] == "pass"


@pytest.mark.asyncio
async def test_degraded_and_stopped_reports_follow_the_contract(
    make_service: ServiceFactory, health_file: Path, tmp_path: Path
) -> None:
    """A degraded report (missing database) and the final stopped report validate too."""
    service = make_service(tmp_path / "missing.db")
    await service.start()
    degraded = read_health(health_file)
    assert degraded["status"] == "degraded"
    assert degraded["database"] == "disconnected"
    assert_valid(degraded)
    await service.stop()
    stopped = read_health(health_file)
    assert stopped["status"] == "stopped"
    assert_valid(stopped)


@pytest.mark.asyncio
async def test_cycles_repeat_and_sequence_grows_by_one(
    make_service: ServiceFactory, health_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a short interval, cycles repeat on their own and each report is sequence + 1."""
    written: list[int] = []
    original = AtomicWriter.replace

    async def spy(self: AtomicWriter, data: bytes | Callable[[], bytes], **options: Any) -> None:
        payload = data() if callable(data) else data  # the writer may take a renderer
        await original(self, payload, **options)
        written.append(json.loads(payload)["sequence"])

    monkeypatch.setattr(AtomicWriter, "replace", spy)
    service = make_service(interval=0.05)
    await service.start()
    await wait_until_async(
        lambda: service.last_report is not None and service.last_report.sequence >= 6, timeout=20.0
    )
    await service.stop()
    assert written == list(range(1, len(written) + 1))
    assert len(written) >= 7  # six cycles and the final report
    assert read_health(health_file)["sequence"] == written[-1]


@pytest.mark.asyncio
async def test_check_now_writes_a_fresh_report_with_the_next_sequence(
    make_service: ServiceFactory, health_file: Path
) -> None:
    """check_now() runs a cycle at once, writes it and returns it as last_report."""
    service = make_service()
    await service.start()
    first = service.last_report
    assert first is not None
    report = await service.check_now()
    assert isinstance(report, HealthReport)
    assert report.sequence == first.sequence + 1
    assert report.timestamp >= first.timestamp
    assert service.last_report is report
    assert read_health(health_file) == report.as_dict()
    again = await service.check_now()
    assert again.sequence == report.sequence + 1


@pytest.mark.asyncio
async def test_async_with_starts_and_stops(make_service: ServiceFactory, health_file: Path) -> None:
    """`async with` runs the service inside the block and writes stopped on the way out."""
    async with make_service() as service:
        assert service.running
        assert read_health(health_file)["status"] == "online"
    assert not service.running
    assert read_health(health_file)["status"] == "stopped"


# --- stop and restart ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_stop_writes_stopped_and_leaves_nothing_running(
    make_service: ServiceFactory, health_file: Path
) -> None:
    """stop() writes a final stopped report and leaves no healthfile task nor any thread."""
    threads_before = set(threading.enumerate())
    service = make_service()
    await service.start()
    await service.check_now()
    await service.stop()
    assert not service.running
    data = read_health(health_file)
    assert data["status"] == "stopped"
    assert data["sequence"] == 3
    assert service.last_report is not None
    assert service.last_report.status == "stopped"
    assert healthfile_tasks() == []
    await assert_no_stray_threads(threads_before)


@pytest.mark.asyncio
async def test_restart_keeps_counting_the_sequence(
    make_service: ServiceFactory, health_file: Path
) -> None:
    """A service started again after stop() goes on from the sequence it had reached."""
    service = make_service()
    await service.start()
    await service.stop()
    assert read_health(health_file)["sequence"] == 2
    await service.start()
    data = read_health(health_file)
    assert data["sequence"] == 3
    assert data["status"] == "online"
    report = await service.check_now()
    assert report.sequence == 4


@pytest.mark.asyncio
async def test_start_twice_raises_runtime_error(make_service: ServiceFactory) -> None:
    """A second start() while running says the service is already running."""
    service = make_service()
    await service.start()
    with pytest.raises(RuntimeError, match="already running"):
        await service.start()
    assert service.running


@pytest.mark.asyncio
async def test_stop_before_start_and_twice_is_a_no_op(
    make_service: ServiceFactory, health_file: Path
) -> None:
    """stop() before start() writes nothing; a second stop() writes nothing more."""
    service = make_service()
    await service.stop()
    assert not health_file.parent.exists()
    await service.start()
    await service.stop()
    first_stop = read_text(health_file)
    await service.stop()
    assert read_text(health_file) == first_stop
    assert not service.running


@pytest.mark.asyncio
async def test_check_now_when_not_running_raises_runtime_error(
    make_service: ServiceFactory,
) -> None:
    """check_now() before start() and after stop() says the service is not running."""
    service = make_service()
    with pytest.raises(RuntimeError, match="not running"):
        await service.check_now()
    await service.start()
    await service.stop()
    with pytest.raises(RuntimeError, match="not running"):
        await service.check_now()


@pytest.mark.asyncio
async def test_stop_of_idle_service_is_prompt(make_service: ServiceFactory) -> None:
    """With a 30 s interval, stop() of an idle service returns in a small fraction of it."""
    service = make_service(interval=30.0)
    await service.start()
    started = time.perf_counter()
    await service.stop()
    assert time.perf_counter() - started < generous(1.0)


@pytest.mark.asyncio
async def test_stop_does_not_wait_for_a_hung_check(
    make_service: ServiceFactory, health_file: Path
) -> None:
    """stop() cancels a cycle whose check hangs (60 s timeout) and returns promptly."""
    threads_before = set(threading.enumerate())
    probe = ProbeCheck()
    service = make_service(checks=[probe], check_timeout=60.0)
    await service.start()
    probe.hang = True
    cycle = asyncio.ensure_future(service.check_now())
    await wait_for_hang(probe, threads_before)
    started = time.perf_counter()
    await service.stop()
    assert time.perf_counter() - started < generous(1.0)
    with pytest.raises(RuntimeError, match="stopped"):
        await cycle
    assert read_health(health_file)["status"] == "stopped"
    assert healthfile_tasks() == []


@pytest.mark.asyncio
async def test_stop_during_start_makes_start_return(
    make_service: ServiceFactory, health_file: Path
) -> None:
    """stop() while start()'s first cycle hangs on the database check lets start() return."""
    database = ProbeCheck("database")
    database.hang = True
    service = make_service(database, check_timeout=60.0)
    starting = asyncio.ensure_future(service.start())
    await asyncio.wait_for(database.entered.wait(), 10)
    assert not service.running
    started = time.perf_counter()
    await service.stop()
    assert time.perf_counter() - started < generous(1.0)
    await asyncio.wait_for(starting, 5)
    assert starting.exception() is None
    assert not service.running
    data = read_health(health_file)
    assert data["status"] == "stopped"
    assert_valid(data)
    assert healthfile_tasks() == []


@pytest.mark.asyncio
async def test_cancelled_start_propagates_and_leaves_service_stopped(
    make_service: ServiceFactory, health_file: Path
) -> None:
    """Cancelling start() raises CancelledError after writing stopped; a later start() works."""
    database = ProbeCheck("database")
    database.hang = True
    service = make_service(database, check_timeout=60.0, app_name="app")
    starting = asyncio.ensure_future(service.start())
    await asyncio.wait_for(database.entered.wait(), 10)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert not service.running
    assert healthfile_tasks() == []
    stopped = read_health(health_file)  # as a stop signal through cancel_on_signals leaves it
    assert stopped["status"] == "stopped"
    assert stopped["app_name"] == "app"
    database.hang = False
    await asyncio.wait_for(service.start(), 10)
    assert service.running
    assert read_health(health_file)["status"] == "online"


@pytest.mark.asyncio
async def test_concurrent_stops_write_one_final_report(
    make_service: ServiceFactory, health_file: Path
) -> None:
    """Two concurrent stop() calls both return after the one final stopped report."""
    service = make_service()
    await service.start()
    await asyncio.wait_for(asyncio.gather(service.stop(), service.stop()), 10)
    data = read_health(health_file)
    assert data["status"] == "stopped"
    assert data["sequence"] == 2
    assert not service.running


@pytest.mark.asyncio
async def test_concurrent_check_now_calls_run_one_cycle_at_a_time(
    make_service: ServiceFactory, health_file: Path
) -> None:
    """Concurrent check_now() calls each get their own report, numbered one after another."""
    service = make_service()
    await service.start()
    reports = await asyncio.wait_for(
        asyncio.gather(service.check_now(), service.check_now(), service.check_now()), 10
    )
    assert sorted(report.sequence for report in reports) == [2, 3, 4]
    assert read_health(health_file)["sequence"] == 4


@pytest.mark.asyncio
async def test_stop_propagates_outer_cancel(
    make_service: ServiceFactory, health_file: Path
) -> None:
    """Cancelling the task that awaits stop() while a cycle is in flight cancels that task."""
    threads_before = set(threading.enumerate())
    probe = ProbeCheck()
    service = make_service(checks=[probe], check_timeout=60.0)
    await service.start()
    probe.hang = True
    cycle = asyncio.ensure_future(service.check_now())
    await wait_for_hang(probe, threads_before)
    stopper = asyncio.ensure_future(service.stop())
    await asyncio.sleep(0)  # let stop() begin and wait for the cycle
    assert not stopper.done()
    assert stopper.cancel()
    await asyncio.wait({stopper, cycle}, timeout=10)
    assert stopper.cancelled()
    with pytest.raises(RuntimeError):
        await cycle
    assert not service.running


@pytest.mark.parametrize("cancel_first", [True, False], ids=["cancel-first", "done-first"])
@pytest.mark.parametrize("awaited", ["healthfile-service", "healthfile-cycle"])
@pytest.mark.asyncio
async def test_stop_never_swallows_a_cancel_racing_its_completion(
    make_service: ServiceFactory, cancel_first: bool, awaited: str
) -> None:
    """A cancel landing in the loop iteration in which stop()'s wait completes is never lost.

    This is the shape of CPython gh-86296, where wait_for() on 3.10/3.11 returned normally:
    the task stop() waits for (the idle loop, or a cycle in flight) finishes, and in the same
    iteration of the loop the caller of stop() is cancelled, before or after stop()'s own
    wake-up is scheduled. Repeated, so that no ordering slips through by luck.
    """
    threads_before = set(threading.enumerate())
    for _ in range(25):
        probe = ProbeCheck()
        service = make_service(checks=[probe], check_timeout=60.0)
        await service.start()
        cycle: asyncio.Future[HealthReport] | None = None
        if awaited == "healthfile-cycle":
            probe.hang = True
            cycle = asyncio.ensure_future(service.check_now())
            await wait_for_hang(probe, threads_before)
        (target,) = [task for task in asyncio.all_tasks() if task.get_name() == awaited]
        stopper = asyncio.ensure_future(service.stop())
        cancelled: list[bool] = []
        if not cancel_first:
            await asyncio.sleep(0)  # stop() registers its wake-up on the target first
        target.add_done_callback(functools.partial(cancel_and_record, stopper, cancelled))
        await asyncio.wait({stopper}, timeout=10)
        assert cancelled == [True]
        assert stopper.cancelled(), "stop() swallowed the cancellation of its caller"
        if cycle is not None:
            await asyncio.wait({cycle}, timeout=10)
            assert isinstance(cycle.exception(), RuntimeError)
        assert not service.running


@pytest.mark.parametrize("in_flight", [False, True], ids=["idle", "cycle-in-flight"])
@pytest.mark.asyncio
async def test_stop_cancelled_at_any_point_propagates(
    make_service: ServiceFactory, in_flight: bool
) -> None:
    """However many loop iterations into stop() its caller is cancelled, the cancel is kept."""
    threads_before = set(threading.enumerate())
    cancelled = 0
    for delay in range(1, 40):  # from 1: a task cancelled before its first step never runs
        probe = ProbeCheck()
        service = make_service(checks=[probe], check_timeout=60.0)
        await service.start()
        cycle: asyncio.Future[HealthReport] | None = None
        if in_flight:
            probe.hang = True
            cycle = asyncio.ensure_future(service.check_now())
            await wait_for_hang(probe, threads_before)
        stopper = asyncio.ensure_future(service.stop())
        for _ in range(delay):
            await asyncio.sleep(0)
        if stopper.cancel():
            await asyncio.wait({stopper}, timeout=10)
            assert stopper.cancelled(), f"cancel swallowed {delay} iterations into stop()"
            cancelled += 1
        else:
            assert stopper.result() is None
        if cycle is not None:
            await asyncio.wait({cycle}, timeout=10)
            assert isinstance(cycle.exception(), RuntimeError)
        assert not service.running
    assert cancelled > 0


@pytest.mark.asyncio
async def test_cancelled_check_now_propagates_and_service_goes_on(
    make_service: ServiceFactory, health_file: Path
) -> None:
    """Cancelling a task awaiting check_now() raises CancelledError; the next one succeeds."""
    threads_before = set(threading.enumerate())
    probe = ProbeCheck()
    service = make_service(checks=[probe], check_timeout=60.0)
    await service.start()
    probe.hang = True
    waiting = asyncio.ensure_future(service.check_now())
    await wait_for_hang(probe, threads_before)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert service.running
    probe.hang = False
    report = await asyncio.wait_for(service.check_now(), 10)
    assert report.status == "online"
    assert report.sequence == 2
    assert read_health(health_file)["sequence"] == 2


# --- failures inside cycles ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_cycle_that_raises_is_logged_and_loop_goes_on(
    make_service: ServiceFactory,
    healthfile_logs: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unexpected exception in a cycle is logged with its traceback; cycles continue."""
    service = make_service(interval=0.05)
    await service.start()
    boom = ZeroDivisionError("unexpected in a cycle")
    original = service._reporter.report
    calls: list[int] = []

    def fail_once(*args: Any, **kwargs: Any) -> HealthReport:
        calls.append(1)
        if len(calls) == 1:
            raise boom
        return original(*args, **kwargs)

    monkeypatch.setattr(service._reporter, "report", fail_once)
    await wait_until_async(
        lambda: service.last_report is not None and service.last_report.sequence >= 3, timeout=20.0
    )
    assert service.running
    logged = [
        record
        for record in healthfile_logs.records
        if "unexpected in a cycle" in record.getMessage()
        or (record.exc_info is not None and record.exc_info[1] is boom)
    ]
    assert len(logged) == 1
    assert logged[0].levelno == logging.ERROR
    # The traceback may ride on the record (exc_info) or be rendered into the message.
    text = logged[0].getMessage()
    if logged[0].exc_info is not None:
        text += logging.Formatter().formatException(logged[0].exc_info)
    assert "Traceback (most recent call last)" in text
    assert "ZeroDivisionError: unexpected in a cycle" in text
    assert "in fail_once" in text


@pytest.mark.asyncio
async def test_unwritable_health_file_still_gives_the_report_made_and_says_why(
    database: Path, tmp_path: Path
) -> None:
    """Unwritable file: the README pattern reads last_report; last_write_error says why."""
    blocked = tmp_path / "blocked"
    blocked.write_text("not a directory")
    health_file = blocked / "health.json"
    async with AsyncHealthService(
        database, health_file=health_file, pyproject=None, interval=30.0
    ) as service:
        assert service.last_report is not None
        assert service.last_report.status == "online"  # the README's first example
        assert service.writing  # the file is this service's to write, and it tries
        error = service.last_write_error
        assert error is not None
        assert error.startswith(f"cannot write {health_file}: NotADirectoryError")
        blocked.unlink()
        report = await service.check_now()
        assert service.last_write_error is None
        assert service.last_report == report
        assert read_health(health_file)["sequence"] == report.sequence
    assert service.last_write_error is None
    assert read_health(health_file)["status"] == "stopped"


@pytest.mark.asyncio
async def test_final_report_that_cannot_be_written_leaves_last_write_error(
    database: Path, tmp_path: Path
) -> None:
    """A stopped report that cannot be written is last_report; last_write_error says why."""
    directory = tmp_path / "out"
    health_file = directory / "health.json"
    service = AsyncHealthService(database, health_file=health_file, pyproject=None)
    await service.start()
    assert service.last_write_error is None
    os.rename(directory, tmp_path / "moved")
    directory.write_text("now a file")
    await service.stop()
    assert service.last_report is not None
    assert service.last_report.status == "stopped"
    assert service.last_write_error is not None
    assert str(health_file) in service.last_write_error
    assert not service.writing


@pytest.mark.asyncio
async def test_write_failure_is_logged_once_and_recovery_is_logged(
    make_service: ServiceFactory, healthfile_logs: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """A health file directory that is a regular file: one error log, start() returns, recovery."""
    blocked = tmp_path / "blocked"
    blocked.write_text("not a directory")
    health_file = blocked / "health.json"
    probe = ProbeCheck()
    service = make_service(health_file=health_file, interval=0.05, checks=[probe])
    await service.start()
    assert service.running
    assert len(error_records(healthfile_logs, "cannot write")) == 1
    await probe.wait_runs(6)
    errors = error_records(healthfile_logs, "cannot write")
    assert len(errors) == 1
    assert errors[0].levelno == logging.ERROR
    assert str(health_file) in errors[0].getMessage()
    assert service.last_write_error is not None
    assert service.last_write_error.startswith(f"cannot write {health_file}: ")
    blocked.unlink()
    await wait_until_async(lambda: service.last_write_error is None, timeout=20.0)
    assert read_health(health_file)["status"] == "online"
    await probe.wait_runs(len(probe.starts) + 3)
    assert len(error_records(healthfile_logs, "cannot write")) == 1
    assert len(error_records(healthfile_logs, "again after")) == 1


@pytest.mark.asyncio
async def test_write_errors_are_logged_once_per_distinct_error(
    make_service: ServiceFactory,
    health_file: Path,
    healthfile_logs: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """os.replace failing with ENOSPC, then EIO: one log line each, then one on recovery."""
    failure: list[OSError] = [OSError(errno.ENOSPC, "No space left on device")]
    real_replace = os.replace

    def replace(*args: Any, **kwargs: Any) -> None:
        if failure:
            raise failure[0]
        real_replace(*args, **kwargs)

    monkeypatch.setattr("healthfile._writer.os.replace", replace)
    probe = ProbeCheck()
    service = make_service(interval=0.05, checks=[probe])
    await service.start()
    await probe.wait_runs(5)
    failure[0] = OSError(errno.EIO, "Input/output error")
    await probe.wait_runs(len(probe.starts) + 5)
    errors = error_records(healthfile_logs, "cannot write")
    assert [("No space" in r.getMessage(), "Input/output" in r.getMessage()) for r in errors] == [
        (True, False),
        (False, True),
    ]
    assert names(health_file.parent) == set()  # neither the file nor a temporary file
    failure.clear()
    await wait_until_async(lambda: service.last_report is not None, timeout=20.0)
    await probe.wait_runs(len(probe.starts) + 3)
    assert len(error_records(healthfile_logs, "cannot write")) == 2
    recovered = error_records(healthfile_logs, "again after")
    assert len(recovered) == 1
    assert "Input/output" in recovered[0].getMessage()
    assert read_health(health_file)["status"] == "online"


@pytest.mark.asyncio
async def test_missing_data_directory_is_created(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    """The health file's missing parent directories are created by the first write."""
    health_file = tmp_path / "a" / "b" / "c" / "health.json"
    service = make_service(health_file=health_file)
    await service.start()
    assert read_health(health_file)["sequence"] == 1


@pytest.fixture
def umask_077() -> Iterator[None]:
    """Run the test under umask 077."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


@needs_posix_modes
@pytest.mark.usefixtures("umask_077")
@pytest.mark.parametrize("file_mode", [None, 0o600, 0o640])
@pytest.mark.asyncio
async def test_file_mode_holds_whatever_the_umask(
    make_service: ServiceFactory, health_file: Path, file_mode: int | None
) -> None:
    """The health file gets 0644 (or the configured file_mode) under umask 077."""
    options = {} if file_mode is None else {"file_mode": file_mode}
    service = make_service(**options)
    await service.start()
    expected = 0o644 if file_mode is None else file_mode
    assert permissions(health_file) == expected
    await service.stop()
    assert permissions(health_file) == expected


# --- pacing ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_cycles_do_not_drift(make_service: ServiceFactory) -> None:
    """Cycles of 0.05 s at a 0.1 s interval start on a fixed grid: offsets do not accumulate."""
    interval = 0.1
    probe = ProbeCheck(duration=0.05)
    service = make_service(interval=interval, checks=[probe])
    await service.start()
    await probe.wait_runs(14)
    await service.stop()
    # The first run is start()'s; the loop's runs are due at origin + k * interval. A cycle
    # that overran on a loaded machine is not doubled up: its slot is skipped, not shifted.
    starts = probe.starts[1:14]
    # Each start's distance to the nearest slot of the grid through the first start...
    residuals = [
        (since := start - starts[0]) - interval * round(since / interval) for start in starts
    ]
    # ...re-centred on the most punctual one, since lateness only ever adds to a residual.
    lateness = [residual - min(residuals) for residual in residuals]
    # A loop that slept `interval` after each 0.05 s cycle would start every other cycle
    # half an interval off the grid; allow a couple of late starts on a loaded machine.
    off_grid = [late for late in lateness if late > interval / 4]
    assert len(off_grid) <= 2, lateness


@pytest.mark.asyncio
async def test_overrunning_cycle_is_not_doubled_up(make_service: ServiceFactory) -> None:
    """A check taking 1.25 intervals makes the next cycle wait for the next due time."""
    interval = 0.2
    probe = ProbeCheck(duration=1.25 * interval)
    service = make_service(interval=interval, checks=[probe], check_timeout=5.0)
    await service.start()
    await probe.wait_runs(6)
    await service.stop()
    gaps = [later - earlier for earlier, later in itertools.pairwise(probe.starts[:6])]
    # Each cycle ends 1.25 intervals after it started, the next due time is 2 intervals after
    # it; a loop that caught up on the missed due time would start again after 1.25.
    assert min(gaps) > 1.6 * interval, gaps
    assert abs(statistics.median(gaps) - 2 * interval) < generous(interval / 4), gaps


# --- nothing blocks the loop -------------------------------------------------------------


@pytest.mark.asyncio
async def test_lag_probe_sees_a_blocked_loop() -> None:
    """Control for the tests below: the lateness probe does see a loop blocked for 0.3 s."""
    with LagProbe(asyncio.get_running_loop()) as probe:
        await asyncio.sleep(0.02)
        time.sleep(0.3)
        await asyncio.sleep(0.02)
    assert probe.worst >= 0.2


@pytest.mark.asyncio
async def test_slow_fsync_does_not_block_the_loop(
    make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write whose fsync takes 0.3 s delays the cycle, never the event loop."""
    service = make_service()
    await service.start()
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        time.sleep(0.3)
        real_fsync(fd)

    monkeypatch.setattr("healthfile._writer.os.fsync", slow_fsync)
    with LagProbe(asyncio.get_running_loop()) as probe:
        started = time.perf_counter()
        await service.check_now()
        elapsed = time.perf_counter() - started
        await asyncio.sleep(0.02)  # run the callbacks posted up to now
    assert elapsed >= 0.3
    assert probe.worst < generous(0.15), f"event loop blocked for {probe.worst:.3f} s"


@pytest.mark.asyncio
async def test_locked_database_does_not_block_the_loop(
    make_service: ServiceFactory, database: Path
) -> None:
    """A probe of an exclusively locked database runs out its 0.5 s off the event loop."""
    service = make_service(check_timeout=0.5)
    await service.start()
    holder = sqlite3.connect(database, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        with LagProbe(asyncio.get_running_loop()) as probe:
            started = time.perf_counter()
            report = await service.check_now()
            elapsed = time.perf_counter() - started
            await asyncio.sleep(0.02)  # run the callbacks posted up to now
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    assert report.database == "timeout"
    assert elapsed >= 0.45
    assert probe.worst < generous(0.15), f"event loop blocked for {probe.worst:.3f} s"


@pytest.mark.asyncio
async def test_lifecycle_makes_no_blocking_call_on_the_loop(
    make_service: ServiceFactory, health_file: Path
) -> None:
    """Under blockbuster, start(), check_now() and stop() make no blocking call on the loop.

    blockbuster raises BlockingError for the blocking functions it knows (file reads and
    writes, os.stat, os.replace, sqlite3 execute, time.sleep, Lock.acquire...) when they are
    called on the loop's thread. aiosqlite's Thread.start is in its default allow-list, and
    so is the join of healthfile's worker at stop(), once it has left its queue (it has only
    to return from its function).
    """
    from blockbuster import BlockingError, blockbuster_ctx

    service = make_service()
    with blockbuster_ctx() as blockbuster:
        acquire = blockbuster.functions["threading.Lock.acquire"]
        acquire.can_block_in("healthfile/_threads.py", "end")
        with pytest.raises(BlockingError):  # control: blockbuster is active on this loop
            time.sleep(0.001)
        await service.start()
        await service.check_now()
        await service.stop()
    assert read_health(health_file)["status"] == "stopped"


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("interval", 1.0),
        ("check_timeout", 1.0),
        ("start_period", 1.0),
        ("health_file", Path("elsewhere.json")),
        ("prometheus_file", Path("elsewhere.prom")),
        ("pyproject", None),
    ],
)
def test_settings_that_derived_state_depends_on_are_read_only(
    tmp_path: Path, setting: str, value: object
) -> None:
    """Assigning a setting after construction raises instead of leaving derived state stale."""
    service = AsyncHealthService(tmp_path / "app.db", health_file=tmp_path / "health.json")
    before = getattr(service, setting)

    with pytest.raises(AttributeError):
        setattr(service, setting, value)

    assert getattr(service, setting) == before
