"""Pluggable checks: check(), concurrency, timeouts, damping, redaction."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import pytest

import healthfile
from healthfile import CheckResult, HealthReport
from helpers import ServiceFactory, generous, healthfile_tasks, read_text

Outcome = Literal["pass", "warn", "fail"]
OnChangeCallback = Callable[[HealthReport | None, HealthReport], object]

TIMESTAMP = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z"


def read_health_file(path: Path) -> dict[str, Any]:
    """Read the health file the way a monitor does."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def scripted(name: str, *outcomes: Outcome, **options: Any) -> healthfile.FunctionCheck:
    """Make a check that returns the given outcomes, one per run, in order."""
    remaining = list(outcomes)

    async def run() -> object:
        if not remaining:
            raise AssertionError(f"check {name!r} ran more often than scripted")
        outcome = remaining.pop(0)
        if outcome == "pass":
            return True
        if outcome == "fail":
            return False
        return CheckResult("warn", "scripted warning")

    return healthfile.check(name, run, **options)


async def run_cycles(service: healthfile.AsyncHealthService, count: int) -> list[HealthReport]:
    """Start the service (its first cycle) and run ``count - 1`` more cycles; return the reports."""
    await service.start()
    first = service.last_report
    assert first is not None
    reports = [first]
    for _ in range(count - 1):
        reports.append(await service.check_now())
    return reports


def statuses(reports: list[HealthReport], name: str) -> list[str]:
    """The status of one check in each report."""
    return [report.checks[name].status for report in reports]


def join_check_thread(name: str) -> None:
    """Wait for the daemon thread running the sync check ``name`` to return."""
    for thread in threading.enumerate():
        if thread.name == f"healthfile-check-{name}":
            thread.join(timeout=5)
            assert not thread.is_alive()


# --- check(): what a function's return value or exception means -----------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("value", [True, None])
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_function_returning_true_or_none_passes(kind: str, value: object) -> None:
    """A sync or async check function that returns True or None passes."""

    def sync_fn() -> object:
        return value

    async def async_fn() -> object:
        return value

    fn = sync_fn if kind == "sync" else async_fn
    result = await healthfile.check("probe", fn).run()
    assert result.status == "pass"


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_function_returning_false_fails(kind: str) -> None:
    """A sync or async check function that returns False fails."""

    def sync_fn() -> bool:
        return False

    async def async_fn() -> bool:
        return False

    fn = sync_fn if kind == "sync" else async_fn
    result = await healthfile.check("probe", fn).run()
    assert result.status == "fail"


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_function_returning_check_result_is_passed_through(
    kind: str, make_service: ServiceFactory
) -> None:
    """A CheckResult returned by the function reaches the report with its status and output."""

    def sync_fn() -> CheckResult:
        return CheckResult("warn", "queue is 90% full")

    async def async_fn() -> CheckResult:
        return CheckResult("warn", "queue is 90% full")

    fn = sync_fn if kind == "sync" else async_fn
    service = make_service(checks=[healthfile.check("queue", fn)])
    await service.start()
    assert service.last_report is not None
    result = service.last_report.checks["queue"]
    assert (result.status, result.output) == ("warn", "queue is 90% full")


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_function_returning_another_type_fails_with_a_clear_output(kind: str) -> None:
    """A function returning neither bool, None nor CheckResult fails and says what it returned."""

    def sync_fn() -> int:
        return 42

    async def async_fn() -> int:
        return 42

    fn = sync_fn if kind == "sync" else async_fn
    result = await healthfile.check("probe", fn).run()
    assert result.status == "fail"
    assert result.output is not None
    assert "int" in result.output
    assert "CheckResult" in result.output


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_raising_function_fails_with_type_and_message(
    kind: str, make_service: ServiceFactory
) -> None:
    """A check function that raises reads fail with "Type: message" as its output."""

    def sync_fn() -> None:
        raise ValueError("queue unreachable")

    async def async_fn() -> None:
        raise ValueError("queue unreachable")

    fn = sync_fn if kind == "sync" else async_fn
    service = make_service(checks=[healthfile.check("queue", fn)])
    await service.start()
    assert service.last_report is not None
    result = service.last_report.checks["queue"]
    assert (result.status, result.output) == ("fail", "ValueError: queue unreachable")
    assert service.last_report.status == "degraded"


def _ok() -> bool:
    return True


@pytest.mark.parametrize(
    "options",
    [
        {"name": ""},
        {"name": "   "},
        {"timeout": 0},
        {"timeout": -1.0},
        {"failure_threshold": 0},
        {"success_threshold": 0},
        {"success_threshold": -2},
    ],
)
def test_check_rejects_bad_values(options: dict[str, Any]) -> None:
    """check() rejects an empty name, a non-positive timeout and thresholds below 1: ValueError."""
    name = options.pop("name", "probe")
    with pytest.raises(ValueError, match=r"name|timeout|threshold"):
        healthfile.check(name, _ok, **options)


@pytest.mark.parametrize(
    ("options", "shown"),
    [
        ({"name": 3}, "3 (int)"),
        ({"timeout": True}, "True (bool)"),
        ({"timeout": "3"}, "'3' (str)"),
        ({"failure_threshold": True}, "True (bool)"),
        ({"failure_threshold": 1.5}, "1.5 (float)"),
        ({"success_threshold": True}, "True (bool)"),
        ({"critical": "yes"}, "'yes' (str)"),
        ({"groups": "live"}, "'live'"),
    ],
)
def test_check_rejects_wrong_types_with_type_error(options: dict[str, Any], shown: str) -> None:
    """check() rejects an argument of the wrong type with TypeError showing what was passed."""
    name = options.pop("name", "probe")
    with pytest.raises(TypeError, match=r"name|timeout|threshold|critical|groups") as caught:
        healthfile.check(name, _ok, **options)
    assert shown in str(caught.value)


def test_check_rejects_an_infinite_timeout() -> None:
    """check() refuses timeout=inf at once, like the service's check_timeout, not at every cycle."""
    with pytest.raises(ValueError, match="timeout"):
        healthfile.check("probe", _ok, timeout=float("inf"))


@pytest.mark.asyncio
async def test_sync_function_returning_an_awaitable_is_awaited() -> None:
    """A plain callable returning a coroutine (``lambda: client.ping()``) has its result awaited."""

    async def ping() -> bool:
        return False

    result = await healthfile.check("cache", lambda: ping()).run()
    assert result.status == "fail"


@pytest.mark.asyncio
async def test_object_with_async_call_is_run_as_an_async_check() -> None:
    """An object whose __call__ is async is awaited on the loop like an async function."""

    class Ping:
        async def __call__(self) -> CheckResult:
            return CheckResult("warn", "slow pong")

    result = await healthfile.check("cache", Ping()).run()
    assert (result.status, result.output) == ("warn", "slow pong")


def test_check_rejects_a_non_callable() -> None:
    """check() refuses something that cannot be called."""
    with pytest.raises(TypeError, match="callable"):
        healthfile.check("probe", "not a function")  # type: ignore[arg-type]


# --- concurrency and timeouts ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_checks_of_one_cycle_run_concurrently(make_service: ServiceFactory) -> None:
    """Six 0.4 s checks (three async, three in threads) take about the slowest, not the sum."""
    pause = 0.4

    def sleeper_async() -> Callable[[], Awaitable[bool]]:
        async def fn() -> bool:
            await asyncio.sleep(pause)
            return True

        return fn

    def sleeper_sync() -> Callable[[], bool]:
        def fn() -> bool:
            time.sleep(pause)
            return True

        return fn

    checks = [healthfile.check(f"async_{i}", sleeper_async()) for i in range(3)]
    checks += [healthfile.check(f"sync_{i}", sleeper_sync()) for i in range(3)]
    service = make_service(checks=checks)
    await service.start()

    started = time.perf_counter()
    report = await service.check_now()
    elapsed = time.perf_counter() - started

    total = pause * len(checks)
    assert elapsed < generous(0.5 * total)
    for check in checks:
        result = report.checks[check.name]
        assert result.status == "pass"
        # About 400 ms each: never less than the sleep, never anything like the sum.
        assert 0.95 * pause * 1000 <= result.duration_ms < generous(0.5 * total) * 1000


@pytest.mark.asyncio
async def test_hung_async_check_times_out_without_holding_up_the_cycle(
    make_service: ServiceFactory,
) -> None:
    """A hung check reads "timed out after 0.1 s" while others pass, not holding up the cycle."""
    check_timeout = 30.0

    async def hang() -> bool:
        await asyncio.Event().wait()
        return True

    async def fine() -> bool:
        return True

    service = make_service(
        check_timeout=check_timeout,
        checks=[healthfile.check("hung", hang, timeout=0.1), healthfile.check("fine", fine)],
    )
    started = time.perf_counter()
    await service.start()
    report = await service.check_now()
    elapsed = time.perf_counter() - started

    assert elapsed < generous(0.1 * check_timeout)  # two cycles, each bounded by the 0.1 s timeout
    assert report.checks["hung"].status == "fail"
    assert report.checks["hung"].output == "timed out after 0.1 s"
    assert report.checks["fine"].status == "pass"
    assert report.checks["database"].status == "pass"
    assert report.status == "degraded"


@pytest.mark.asyncio
async def test_each_check_times_out_on_its_own_deadline(make_service: ServiceFactory) -> None:
    """Checks with different timeouts expire each at its own time; a slow one still passes."""

    async def hang() -> bool:
        await asyncio.Event().wait()
        return True

    async def slow() -> bool:
        await asyncio.sleep(0.3)
        return True

    service = make_service(
        check_timeout=30.0,
        checks=[
            healthfile.check("short", hang, timeout=0.05),
            healthfile.check("long", hang, timeout=0.2),
            healthfile.check("slow", slow, timeout=5.0),
        ],
    )
    await service.start()
    started = time.perf_counter()
    report = await service.check_now()
    elapsed = time.perf_counter() - started

    short, long, slow_result = (report.checks[name] for name in ("short", "long", "slow"))
    assert (short.status, short.output) == ("fail", "timed out after 0.05 s")
    assert (long.status, long.output) == ("fail", "timed out after 0.2 s")
    assert slow_result.status == "pass"
    # A timeout never fires before its deadline, and they fire in the order of the deadlines.
    # (The slow check's own sleep runs on the loop's clock, which uvloop keeps in whole
    # milliseconds, so its duration gets no lower bound here.)
    assert 50 <= short.duration_ms < long.duration_ms
    assert 200 <= long.duration_ms < slow_result.duration_ms
    assert elapsed < generous(5.0)  # the cycle ends with its slowest check, not the longest timeout
    await asyncio.sleep(0)  # a cancelled task ends at its next step
    # The timed-out runs were cancelled, not left behind.
    assert [name for name in healthfile_tasks() if name.startswith("healthfile-check")] == []


@pytest.mark.asyncio
async def test_hung_thread_check_is_started_once_and_reads_still_running(
    make_service: ServiceFactory,
) -> None:
    """A sync check stuck in its thread is not started again, reads still running, then recovers."""
    release = threading.Event()
    calls = 0

    def blocked() -> bool:
        nonlocal calls
        calls += 1
        release.wait()
        return True

    service = make_service(checks=[healthfile.check("stuck", blocked, timeout=0.05)])
    try:
        reports = await run_cycles(service, 10)

        assert calls == 1
        assert reports[0].checks["stuck"].status == "fail"
        assert reports[0].checks["stuck"].output == "timed out after 0.05 s"
        later = [report.checks["stuck"] for report in reports[1:]]
        assert {result.status for result in later} == {"fail"}
        outputs = {result.output for result in later}
        assert len(outputs) == 1  # always the same start time: the one run in flight
        (output,) = outputs
        assert output is not None
        assert re.fullmatch(f"still running since {TIMESTAMP}", output)
    finally:
        release.set()
        join_check_thread("stuck")

    report = await service.check_now()
    assert calls == 2
    assert report.checks["stuck"].status == "pass"


# --- flap damping ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_failures_below_failure_threshold_read_warn(make_service: ServiceFactory) -> None:
    """With failure_threshold=3 two failures read warn and the third reads fail."""
    flaky = scripted("flaky", "fail", "fail", "fail", failure_threshold=3)
    service = make_service(checks=[flaky])

    reports = await run_cycles(service, 3)

    assert statuses(reports, "flaky") == ["warn", "warn", "fail"]
    assert [r.checks["flaky"].consecutive_failures for r in reports] == [1, 2, 3]
    assert [r.status for r in reports] == ["online", "online", "degraded"]


@pytest.mark.asyncio
async def test_failed_check_needs_success_threshold_passes_to_read_pass(
    make_service: ServiceFactory,
) -> None:
    """With success_threshold=2 a failed check reads fail after one pass and pass after two."""
    flaky = scripted("flaky", "fail", "pass", "pass", success_threshold=2)
    service = make_service(checks=[flaky])

    reports = await run_cycles(service, 3)

    assert statuses(reports, "flaky") == ["fail", "fail", "pass"]
    assert [r.status for r in reports] == ["degraded", "degraded", "online"]
    assert [r.checks["flaky"].consecutive_failures for r in reports] == [1, 0, 0]


@pytest.mark.asyncio
async def test_warn_breaks_a_recovery_streak(make_service: ServiceFactory) -> None:
    """A warn between passes restarts the count of passes a failed check needs."""
    flaky = scripted("flaky", "fail", "pass", "warn", "pass", "pass", success_threshold=2)
    service = make_service(checks=[flaky])

    reports = await run_cycles(service, 5)

    # Without the warn, the second pass (index 3) would already read pass.
    assert statuses(reports, "flaky") == ["fail", "fail", "fail", "fail", "pass"]


@pytest.mark.asyncio
async def test_check_never_reads_pass_before_its_first_success(
    make_service: ServiceFactory,
) -> None:
    """A check that fails from the start reads warn under its failure_threshold, never pass."""
    flaky = scripted("flaky", "fail", "fail", "fail", "fail", failure_threshold=5)
    service = make_service(checks=[flaky])

    reports = await run_cycles(service, 4)

    assert statuses(reports, "flaky") == ["warn"] * 4
    assert [r.status for r in reports] == ["online"] * 4
    assert all(r.checks["flaky"].last_success is None for r in reports)


@pytest.mark.asyncio
async def test_last_success_is_the_last_pass_and_survives_failures(
    make_service: ServiceFactory, health_file: Path
) -> None:
    """last_success is null until the first pass, then that pass's time, kept through failures."""
    flaky = scripted("flaky", "fail", "pass", "fail")
    service = make_service(checks=[flaky])

    await service.start()
    first = read_health_file(health_file)
    second_report = await service.check_now()
    second = read_health_file(health_file)
    third_report = await service.check_now()
    third = read_health_file(health_file)

    assert first["checks"]["flaky"]["last_success"] is None
    assert second["checks"]["flaky"]["last_success"] == second["timestamp"]
    assert third["checks"]["flaky"]["last_success"] == second["timestamp"]
    assert third["checks"]["flaky"]["status"] == "fail"
    assert third["checks"]["flaky"]["consecutive_failures"] == 1
    assert second_report.checks["flaky"].last_success == second_report.timestamp
    assert third_report.checks["flaky"].last_success == second_report.timestamp


# --- top-level status and start_period -------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("outcome", "expected"),
    [("pass", "online"), ("warn", "online"), ("fail", "degraded")],
)
async def test_status_is_degraded_only_when_a_critical_check_fails(
    outcome: Outcome, expected: str, make_service: ServiceFactory
) -> None:
    """The report is online while no critical check fails: a warning leaves it online."""
    service = make_service(checks=[scripted("other", outcome)])
    await service.start()
    assert service.last_report is not None
    assert service.last_report.status == expected


@pytest.mark.asyncio
async def test_failing_check_reads_starting_within_start_period(
    make_service: ServiceFactory,
) -> None:
    """Within start_period a check that has never passed makes the status starting."""
    service = make_service(start_period=60.0, checks=[scripted("slow", "fail", "fail")])
    reports = await run_cycles(service, 2)
    assert [r.status for r in reports] == ["starting", "starting"]


@pytest.mark.asyncio
async def test_failure_after_a_pass_is_degraded_within_start_period(
    make_service: ServiceFactory,
) -> None:
    """A check that has passed once makes a later failure degraded, even within start_period."""
    service = make_service(start_period=60.0, checks=[scripted("slow", "pass", "fail")])
    reports = await run_cycles(service, 2)
    assert [r.status for r in reports] == ["online", "degraded"]


@pytest.mark.asyncio
async def test_failing_check_reads_degraded_after_start_period(
    make_service: ServiceFactory,
) -> None:
    """Once start_period is over, a check that never passed makes the status degraded."""
    start_period = 0.2
    service = make_service(start_period=start_period, checks=[scripted("slow", "fail", "fail")])
    await service.start()
    await asyncio.sleep(2 * start_period)
    report = await service.check_now()
    assert report.status == "degraded"


# --- on_change -------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_on_change_fires_only_on_transitions(kind: str, make_service: ServiceFactory) -> None:
    """on_change sees the first report, each status or check-status change and the stop, only."""
    calls: list[tuple[HealthReport | None, HealthReport]] = []

    def record_sync(previous: HealthReport | None, current: HealthReport) -> None:
        calls.append((previous, current))

    async def record_async(previous: HealthReport | None, current: HealthReport) -> None:
        calls.append((previous, current))

    on_change: OnChangeCallback = record_sync if kind == "sync" else record_async
    flaky = scripted("flaky", "pass", "pass", "pass", "warn", "fail", "fail")
    service = make_service(checks=[flaky], on_change=on_change)

    await run_cycles(service, 6)
    await service.stop()

    seen = [
        (
            None if previous is None else (previous.status, previous.checks["flaky"].status),
            (current.status, current.checks["flaky"].status),
        )
        for previous, current in calls
    ]
    assert seen == [
        (None, ("online", "pass")),
        (("online", "pass"), ("online", "warn")),  # a check's status alone changed
        (("online", "warn"), ("degraded", "fail")),
        (("degraded", "fail"), ("stopped", "fail")),
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_raising_on_change_is_logged_and_the_service_keeps_running(
    kind: str,
    make_service: ServiceFactory,
    health_file: Path,
    healthfile_logs: pytest.LogCaptureFixture,
) -> None:
    """An on_change that raises is logged with its (redacted) traceback; the service goes on."""

    def boom_sync(previous: HealthReport | None, current: HealthReport) -> None:
        raise RuntimeError("on_change boom")

    async def boom_async(previous: HealthReport | None, current: HealthReport) -> None:
        raise RuntimeError("on_change boom")

    on_change: OnChangeCallback = boom_sync if kind == "sync" else boom_async
    service = make_service(checks=[scripted("flaky", "pass", "fail", "pass")], on_change=on_change)

    reports = await run_cycles(service, 3)

    failures = [r for r in healthfile_logs.records if "on_change boom" in r.getMessage()]
    assert len(failures) == 3  # one per transition: none -> online -> degraded -> online
    assert all(r.levelname == "ERROR" and "Traceback" in r.getMessage() for r in failures)
    assert service.running
    assert [r.status for r in reports] == ["online", "degraded", "online"]
    assert read_health_file(health_file)["sequence"] == 3


@pytest.mark.asyncio
async def test_on_change_with_an_async_call_is_awaited(make_service: ServiceFactory) -> None:
    """An on_change object whose __call__ is async is awaited, like an async function."""

    class Recorder:
        def __init__(self) -> None:
            self.seen: list[str] = []

        async def __call__(self, previous: HealthReport | None, current: HealthReport) -> None:
            self.seen.append(current.status)

    recorder = Recorder()
    service = make_service(on_change=recorder)
    await service.start()
    await service.stop()
    assert recorder.seen == ["online", "stopped"]


@pytest.mark.asyncio
async def test_hanging_on_change_is_bounded_by_check_timeout(
    make_service: ServiceFactory, healthfile_logs: pytest.LogCaptureFixture
) -> None:
    """An async on_change that never returns is abandoned after check_timeout and logged."""
    check_timeout = 0.3

    async def hang(previous: HealthReport | None, current: HealthReport) -> None:
        await asyncio.Event().wait()

    service = make_service(check_timeout=check_timeout, on_change=hang)
    started = time.perf_counter()
    await service.start()
    elapsed = time.perf_counter() - started

    assert elapsed < generous(10 * check_timeout)  # bounded, against a callback that never returns
    assert service.running
    assert "on_change took longer than 0.3 s" in healthfile_logs.text


@pytest.mark.asyncio
async def test_on_change_still_blocked_skips_the_next_report_with_a_warning(
    make_service: ServiceFactory, healthfile_logs: pytest.LogCaptureFixture
) -> None:
    """A sync on_change blocked on one report is not called again; the skip is a warning."""
    release = threading.Event()
    seen: list[str] = []

    def blocking(previous: HealthReport | None, current: HealthReport) -> None:
        seen.append(current.status)
        release.wait(10)

    service = make_service(
        check_timeout=0.2, on_change=blocking, checks=[scripted("flaky", "pass", "fail")]
    )
    try:
        await service.start()  # online: the callback blocks, and is abandoned at 0.2 s
        report = await service.check_now()  # degraded: a change, while the callback blocks
    finally:
        release.set()
    assert report.status == "degraded"
    assert seen == ["online"]
    skipped = [r for r in healthfile_logs.records if "on_change not called" in r.getMessage()]
    assert [r.levelname for r in skipped] == ["WARNING"]
    assert f"report {report.sequence} (degraded)" in skipped[0].getMessage()
    assert "still running since" in skipped[0].getMessage()
    errors = [r.getMessage() for r in healthfile_logs.records if r.levelname == "ERROR"]
    assert len(errors) == 1  # the first call, abandoned at its bound
    assert "on_change took longer than 0.2 s" in errors[0]


# --- redaction -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_secrets_never_reach_the_file_or_the_logs(
    make_service: ServiceFactory, health_file: Path, healthfile_logs: pytest.LogCaptureFixture
) -> None:
    """A URL password and token=/password= values are redacted in the health file and the logs."""

    def pg() -> None:
        raise ConnectionError("postgresql://app:hunter2@db/x")

    async def api() -> CheckResult:
        return CheckResult("fail", "token=abc123 password=pw")

    service = make_service(checks=[healthfile.check("pg", pg), healthfile.check("api", api)])
    await service.start()
    await service.stop()

    text = read_text(health_file)
    logs = healthfile_logs.text + "\n".join(r.getMessage() for r in healthfile_logs.records)
    for secret in ("hunter2", "abc123", "password=pw"):
        assert secret not in text
        assert secret not in logs
    checks = read_health_file(health_file)["checks"]
    assert checks["pg"]["output"] == "ConnectionError: postgresql://app:***@db/x"
    assert checks["api"]["output"] == "token=*** password=***"
    assert "postgresql://app:***@db/x" in logs  # the output was logged, redacted


@pytest.mark.asyncio
async def test_secret_in_a_raising_on_change_is_not_logged(
    make_service: ServiceFactory, healthfile_logs: pytest.LogCaptureFixture
) -> None:
    """The log of a failing on_change, traceback included, never shows a password."""

    # Not in the raise line itself: a traceback quotes that line of this file.
    message = "https://bot:hunter2@hooks.example/notify failed"

    def notify(previous: HealthReport | None, current: HealthReport) -> None:
        raise ConnectionError(message)

    service = make_service(on_change=notify)
    await service.start()

    assert "on_change callback failed" in healthfile_logs.text
    assert "https://bot:***@hooks.example" in healthfile_logs.text
    assert "hunter2" not in healthfile_logs.text


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("message", "secret"),
    [
        ("connect to redis://default:r3d1s-pass@cache:6379/0 failed", "r3d1s-pass"),
        ("login failed: password=s3cr3t-one", "s3cr3t-one"),
        ("login failed: passwd=s3cr3t-two", "s3cr3t-two"),
        ("bad secret=s3cr3t-three for vault", "s3cr3t-three"),
        ("GET /v1?token=t0k3n-four&page=2 returned 401", "t0k3n-four"),
        ('rejected {"api_key": "k3y-five"}', "k3y-five"),
        ("Password: s3cr3t-six", "s3cr3t-six"),
    ],
)
async def test_each_secret_form_is_redacted_in_the_file(
    message: str, secret: str, make_service: ServiceFactory, health_file: Path
) -> None:
    """Every secret form the contract names is replaced by *** in a raising check's output."""

    async def leaky() -> None:
        raise RuntimeError(message)

    service = make_service(checks=[healthfile.check("leaky", leaky)])
    await service.start()

    text = read_text(health_file)
    assert secret not in text
    output = read_health_file(health_file)["checks"]["leaky"]["output"]
    assert output.startswith("RuntimeError: ")
    assert "***" in output


@pytest.mark.asyncio
async def test_long_exception_message_is_cut_to_256_characters(
    make_service: ServiceFactory, health_file: Path
) -> None:
    """A check raising a 10000-character message has at most 256 characters of output."""

    async def verbose() -> None:
        raise RuntimeError("x" * 10000)

    service = make_service(checks=[healthfile.check("verbose", verbose)])
    await service.start()

    output = read_health_file(health_file)["checks"]["verbose"]["output"]
    assert 0 < len(output) <= 256
    assert output.startswith("RuntimeError: xxx")


# --- database= as a Check --------------------------------------------------------------------


async def _hang_forever() -> bool:
    await asyncio.Event().wait()
    return True


async def _pass() -> bool:
    return True


async def _fail() -> bool:
    return False


async def _raise() -> bool:
    raise ConnectionError("connection refused")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (_pass, "connected"),
        (_fail, "disconnected"),
        (_raise, "disconnected"),
        (_hang_forever, "timeout"),
    ],
)
async def test_custom_database_check_feeds_the_database_field(
    fn: Callable[[], Awaitable[bool]], expected: str, make_service: ServiceFactory
) -> None:
    """A check passed as database= sets the database field and is listed under its own name."""
    service = make_service(healthfile.check("pg", fn, timeout=0.05))
    await service.start()
    report = service.last_report
    assert report is not None
    assert report.database == expected
    assert list(report.checks) == ["pg"]
    assert report.checks["pg"].status == ("pass" if expected == "connected" else "fail")


@pytest.mark.asyncio
async def test_database_field_shows_the_observation_while_damping_reads_warn(
    make_service: ServiceFactory,
) -> None:
    """The database field is what the cycle saw, even while the damped check still reads warn."""
    service = make_service(healthfile.check("pg", _fail, failure_threshold=3))
    await service.start()
    report = service.last_report
    assert report is not None
    assert report.checks["pg"].status == "warn"
    assert report.database == "disconnected"


@pytest.mark.asyncio
async def test_database_none_uses_the_check_named_database(make_service: ServiceFactory) -> None:
    """With database=None the check named "database" in checks feeds the database field."""
    service = make_service(
        None,
        checks=[healthfile.check("cache", _pass), healthfile.check("database", _fail)],
    )
    await service.start()
    report = service.last_report
    assert report is not None
    assert report.database == "disconnected"
    assert set(report.checks) == {"database", "cache"}


def test_database_none_without_a_database_check_is_refused(tmp_path: Path) -> None:
    """database=None with no check named "database" raises ValueError at construction."""
    with pytest.raises(ValueError, match="database"):
        healthfile.AsyncHealthService(
            None, health_file=tmp_path / "health.json", checks=[healthfile.check("cache", _pass)]
        )


# --- DiskSpaceCheck --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_disk_space_passes_with_no_minimum(tmp_path: Path) -> None:
    """DiskSpaceCheck with min_free_bytes=0 passes on any file system."""
    result = await healthfile.DiskSpaceCheck(tmp_path, min_free_bytes=0).run()
    assert result.status == "pass"


@pytest.mark.asyncio
@pytest.mark.parametrize("options", [{"min_free_bytes": 10**18}, {"min_free_ratio": 1.0}])
async def test_disk_space_fails_on_an_impossible_minimum(
    options: dict[str, Any], tmp_path: Path, make_service: ServiceFactory
) -> None:
    """DiskSpaceCheck fails when the minimum cannot be met, and says how much space is free."""
    service = make_service(checks=[healthfile.DiskSpaceCheck(tmp_path, **options)])
    await service.start()
    report = service.last_report
    assert report is not None
    result = report.checks["disk"]
    assert result.status == "fail"
    assert result.output is not None
    assert "free" in result.output
    assert "minimum" in result.output
    assert report.status == "degraded"


@pytest.mark.parametrize(
    "options",
    [
        {"min_free_bytes": -1},
        {"min_free_ratio": -0.1},
        {"min_free_ratio": 1.5},
        {"min_free_ratio": float("nan")},
        {"name": ""},
        {"timeout": 0},
    ],
)
def test_disk_space_rejects_bad_arguments(options: dict[str, Any], tmp_path: Path) -> None:
    """DiskSpaceCheck refuses out-of-range minimums, an empty name and a zero timeout."""
    with pytest.raises(ValueError):  # noqa: PT011 - each argument has its own message
        healthfile.DiskSpaceCheck(tmp_path, **options)


@pytest.mark.parametrize(
    "options",
    [{"min_free_bytes": True}, {"min_free_bytes": 1.5}, {"min_free_ratio": "0.1"}],
)
def test_disk_space_rejects_wrong_types_with_type_error(
    options: dict[str, Any], tmp_path: Path
) -> None:
    """DiskSpaceCheck refuses a minimum of the wrong type with TypeError naming it."""
    with pytest.raises(TypeError, match=next(iter(options))):
        healthfile.DiskSpaceCheck(tmp_path, **options)


# --- LoopLagCheck ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_loop_lag_passes_when_the_loop_is_idle(make_service: ServiceFactory) -> None:
    """LoopLagCheck passes while nothing blocks the event loop."""
    service = make_service(checks=[healthfile.LoopLagCheck()])
    await service.start()
    await asyncio.sleep(0.1)
    report = await service.check_now()
    assert report.checks["event_loop"].status == "pass"


@pytest.mark.asyncio
async def test_loop_lag_warns_after_the_loop_was_blocked(make_service: ServiceFactory) -> None:
    """LoopLagCheck reads warn after the loop was blocked beyond warn_after, below fail_after."""
    service = make_service(checks=[healthfile.LoopLagCheck(warn_after=0.05, fail_after=10)])
    await service.start()
    time.sleep(0.2)  # wedge the loop
    report = await service.check_now()
    assert report.checks["event_loop"].status == "warn"
    assert report.status == "online"  # a warning never degrades the report


@pytest.mark.asyncio
async def test_loop_lag_fails_then_passes_in_the_next_window(make_service: ServiceFactory) -> None:
    """LoopLagCheck reads fail after a block beyond fail_after and passes again the cycle after."""
    service = make_service(checks=[healthfile.LoopLagCheck(warn_after=0.05, fail_after=0.1)])
    await service.start()
    time.sleep(0.3)  # wedge the loop
    blocked = await service.check_now()
    recovered = await service.check_now()
    assert blocked.checks["event_loop"].status == "fail"
    assert recovered.checks["event_loop"].status == "pass"


@pytest.mark.asyncio
async def test_loop_lag_remembers_a_stall_that_ended_before_the_cycle(
    make_service: ServiceFactory,
) -> None:
    """A stall between cycles is reported even when the loop has run freely since."""
    service = make_service(checks=[healthfile.LoopLagCheck(warn_after=0.05, fail_after=10)])
    await service.start()
    time.sleep(0.2)  # wedge the loop
    await asyncio.sleep(0.2)  # then let it run freely for a while
    report = await service.check_now()
    assert report.checks["event_loop"].status == "warn"


@pytest.mark.asyncio
async def test_loop_lag_timer_is_cancelled_at_stop(make_service: ServiceFactory) -> None:
    """Stopping the service stops the lag timer: the check reads idle, with no pending handle."""
    lag = healthfile.LoopLagCheck()
    service = make_service(checks=[lag])
    await service.start()
    assert "measuring" in repr(lag)
    await service.stop()
    assert "idle" in repr(lag)


@pytest.mark.parametrize(
    "options",
    [
        {"warn_after": 0},
        {"fail_after": -1.0},
        {"warn_after": 2.0, "fail_after": 1.0},
        {"name": ""},
    ],
)
def test_loop_lag_rejects_bad_arguments(options: dict[str, Any]) -> None:
    """LoopLagCheck refuses non-positive thresholds, warn above fail, and an empty name."""
    with pytest.raises(ValueError):  # noqa: PT011 - each argument has its own message
        healthfile.LoopLagCheck(**options)


def test_loop_lag_refuses_a_string_bound_with_type_error() -> None:
    """LoopLagCheck(warn_after="0.1") is a TypeError naming warn_after and the string passed."""
    with pytest.raises(TypeError, match=r"warn_after must be a number of seconds .*'0\.1' \(str\)"):
        healthfile.LoopLagCheck(warn_after="0.1")  # type: ignore[arg-type]


# --- promptness and pacing -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_stop_does_not_wait_for_hung_checks(
    make_service: ServiceFactory, health_file: Path
) -> None:
    """stop() with a hung thread check and a hung async check in flight is prompt, no task left."""
    thread_entered = threading.Event()
    release = threading.Event()
    task_entered = asyncio.Event()
    runs = {"thread": 0, "task": 0}

    def stuck_thread() -> bool:
        runs["thread"] += 1
        if runs["thread"] > 1:
            thread_entered.set()
            release.wait()
        return True

    async def stuck_task() -> bool:
        runs["task"] += 1
        if runs["task"] > 1:
            task_entered.set()
            await asyncio.Event().wait()
        return True

    service = make_service(
        check_timeout=60.0,
        checks=[
            healthfile.check("stuck_thread", stuck_thread),
            healthfile.check("stuck_task", stuck_task),
        ],
    )
    try:
        await service.start()
        in_flight = asyncio.ensure_future(service.check_now())
        await task_entered.wait()
        assert await asyncio.to_thread(thread_entered.wait, 10)

        started = time.perf_counter()
        await service.stop()
        elapsed = time.perf_counter() - started

        assert elapsed < generous(2.0)  # against checks that would hang for the 60 s check_timeout
        with pytest.raises(RuntimeError, match="stopped"):
            await in_flight
        assert healthfile_tasks() == []
        assert read_health_file(health_file)["status"] == "stopped"
    finally:
        release.set()
        join_check_thread("stuck_thread")


@pytest.mark.asyncio
async def test_cycles_stay_on_the_interval_grid_with_a_slow_check(
    make_service: ServiceFactory,
) -> None:
    """With a check taking 0.12 s of a 0.2 s interval, cycle starts do not drift off the grid."""
    interval = 0.2
    cycles = 9
    loop = asyncio.get_running_loop()
    starts: list[float] = []
    enough = asyncio.Event()

    async def slow() -> bool:
        starts.append(loop.time())
        if len(starts) >= cycles:
            enough.set()
        await asyncio.sleep(0.12)
        return True

    service = make_service(interval=interval, checks=[healthfile.check("slow", slow)])
    await service.start()
    await asyncio.wait_for(enough.wait(), timeout=20 * interval * cycles)
    await service.stop()

    origin = starts[0]
    steps = [round((start - origin) / interval) for start in starts[:cycles]]
    # One cycle per grid slot, never two. A cycle that overran on a loaded machine has its
    # next slot skipped, by design (a late cycle is not doubled up); a couple are allowed here.
    assert all(later > earlier for earlier, later in itertools.pairwise(steps)), steps
    assert steps[-1] - (cycles - 1) <= 2, steps
    offsets = [start - (origin + k * interval) for k, start in zip(steps, starts, strict=False)]
    assert all(abs(offset) < generous(0.25 * interval) for offset in offsets)
    assert abs(offsets[-1] - offsets[0]) < generous(0.25 * interval)  # no drift accumulates
