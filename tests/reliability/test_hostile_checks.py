"""Checks that misbehave on purpose: whatever a check raises, returns or is named, the cycle
goes on and the check alone reads fail (or it is refused when the service is made)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import re
import time
from pathlib import Path
from typing import Any

import pytest

import healthfile
from healthfile import CheckResult, HealthReport, check
from helpers import ServiceFactory, generous, read_report

pytestmark = pytest.mark.reliability


class StrRaises(Exception):
    """An exception whose message cannot be rendered."""

    def __str__(self) -> str:
        raise RuntimeError("no message for you")


class StrNotText(Exception):
    """An exception whose __str__ returns something other than a string."""

    def __str__(self) -> str:
        return 42  # type: ignore[return-value]  # the fault under test


class Returning:
    """A hand-written check that returns ``value`` from every run."""

    def __init__(self, name: str, value: object) -> None:
        self.name = name
        self.value = value

    async def run(self) -> CheckResult:
        """Return the value, whatever it is."""
        return self.value  # type: ignore[return-value]  # the fault under test


def raising(exc: BaseException) -> healthfile.FunctionCheck:
    """An async check that raises ``exc``."""

    async def run() -> None:
        raise exc

    return check(type(exc).__name__, run)


@pytest.mark.asyncio
async def test_an_exception_whose_str_fails_is_a_fail_and_cycles_go_on(
    make_service: ServiceFactory, health_file: Path
) -> None:
    """A check raising an exception whose __str__ raises or returns a non-string reads fail,
    named by its type; start() returns and later cycles write the file."""
    service = make_service(checks=[raising(StrRaises()), raising(StrNotText())])
    await service.start()
    for _ in range(2):
        report = await service.check_now()
    first, second = report.checks["StrRaises"], report.checks["StrNotText"]
    assert first.status == second.status == "fail"
    assert first.output == "StrRaises: <str() failed: RuntimeError>"
    assert second.output == "StrNotText: <str() failed: TypeError>"
    on_disk = read_report(health_file)
    assert on_disk is not None
    assert on_disk["sequence"] == report.sequence
    assert report.checks["database"].status == "pass"


@dataclasses.dataclass(frozen=True, slots=True)
class Unchecked(CheckResult):
    """A CheckResult subclass that skips the validation of its fields."""

    def __post_init__(self) -> None:
        pass


def bypassed(status: object, output: object) -> CheckResult:
    """A CheckResult whose fields were set past its validation."""
    result = CheckResult("pass")
    object.__setattr__(result, "status", status)
    object.__setattr__(result, "output", output)
    return result


@pytest.mark.asyncio
async def test_a_check_returning_an_invalid_check_result_reads_fail_and_cycles_go_on(
    make_service: ServiceFactory, health_file: Path
) -> None:
    """A result whose validation was bypassed (a subclass, object.__setattr__) reads fail with a
    clear output; a valid one from a subclass is taken; start() returns and the file is written."""
    returned: dict[str, object] = {
        "bytes-output": Unchecked("fail", b"bytes"),  # type: ignore[arg-type]
        "int-output": bypassed("fail", 42),
        "unknown-status": bypassed("great", None),
        "int-status": bypassed(1, None),
        "text-status": bypassed(type("Text", (str,), {})("pass"), None),
        "valid-subclass": Unchecked("warn", "slow"),
        "not-a-result": {"status": "pass"},
    }
    checks = [Returning(name, value) for name, value in returned.items()]
    service = make_service(checks=checks)
    await service.start()
    report = await service.check_now()
    outputs = {name: (result.status, result.output) for name, result in report.checks.items()}
    invalid = "run() returned an invalid CheckResult: "
    assert outputs == {
        "database": ("pass", None),
        "bytes-output": ("fail", invalid + "TypeError: output is bytes, not str or None"),
        "int-output": ("fail", invalid + "TypeError: output is int, not str or None"),
        "unknown-status": (
            "fail",
            invalid
            + "ValueError: CheckResult status must be 'pass', 'warn' or 'fail', not 'great'",
        ),
        "int-status": ("fail", invalid + "TypeError: status is int, not str"),
        "text-status": ("fail", invalid + "TypeError: status is Text, not str"),
        "valid-subclass": ("warn", "slow"),
        "not-a-result": ("fail", "run() returned dict, not CheckResult"),
    }
    on_disk = read_report(health_file)
    assert on_disk is not None
    assert on_disk["sequence"] == report.sequence
    assert on_disk["status"] == "degraded"


@pytest.mark.parametrize(
    ("timeout", "error"),
    [
        (math.nan, ValueError),
        (math.inf, ValueError),
        (-1.0, ValueError),
        (0.0, ValueError),
        (1e12, ValueError),
        (True, TypeError),
        ("5", TypeError),
    ],
)
def test_a_custom_checks_timeout_attribute_is_validated_at_construction(
    tmp_path: Path, timeout: object, error: type[Exception]
) -> None:
    """A hand-written check whose timeout is NaN, infinite, not positive or past a year
    (ValueError), or not a number (TypeError), is refused when the service is made, naming
    the check and its timeout."""
    custom = Returning("custom", CheckResult("pass"))
    custom.timeout = timeout  # type: ignore[attr-defined]
    with pytest.raises(error, match="check 'custom' timeout"):
        healthfile.AsyncHealthService(tmp_path / "app.db", checks=[custom])


@pytest.mark.parametrize("name", ["a,b", " padded", "padded ", "\tleading tab"])
def test_a_check_name_no_option_could_select_is_refused(tmp_path: Path, name: str) -> None:
    """A name with a comma or surrounding blanks, which --only and --ignore could not name, is
    refused: by check() and, for a hand-written check, by the service."""
    with pytest.raises(ValueError, match="check name"):
        check(name, lambda: True)
    custom = Returning(name, CheckResult("pass"))
    with pytest.raises(ValueError, match="check name"):
        healthfile.AsyncHealthService(tmp_path / "app.db", checks=[custom])


class Blocker:
    """An async check that blocks the event loop (time.sleep in an async def), then passes."""

    def __init__(self, seconds: float, timeout: float) -> None:
        self.name = "blocker"
        self.timeout = timeout
        self.seconds = seconds

    async def run(self) -> CheckResult:
        """Hold the loop for ``seconds``; pass."""
        time.sleep(self.seconds)  # the fault under test
        return CheckResult("pass")


async def _waits() -> CheckResult:
    """An innocent async check: waits a moment on the loop, passes."""
    await asyncio.sleep(0.01)
    return CheckResult("pass")


@pytest.mark.parametrize("blocker_first", [True, False])
@pytest.mark.asyncio
async def test_the_check_that_blocks_the_loop_is_blamed_and_the_innocent_are_not(
    make_service: ServiceFactory, health_file: Path, blocker_first: bool
) -> None:
    """A check blocking the loop past its timeout reads fail, "blocked the event loop"; the
    database check and the others, which only waited for the loop, keep their real results."""
    blocker = Blocker(seconds=0.6, timeout=0.2)
    innocent = [check("waits", _waits), check("thread", lambda: True)]
    checks = [blocker, *innocent] if blocker_first else [*innocent, blocker]
    service = make_service(checks=checks, check_timeout=0.25)
    await service.start()
    for report in (service.last_report, await service.check_now()):
        assert report is not None
        statuses = {name: result.status for name, result in report.checks.items()}
        assert statuses == {
            "database": "pass",
            "blocker": "fail",
            "waits": "pass",
            "thread": "pass",
        }
        assert report.database == "connected"
        output = report.checks["blocker"].output
        assert output is not None
        assert re.fullmatch(r"blocked the event loop for 0\.6\d* s \(timeout 0\.2 s\)", output)
    on_disk = read_report(health_file)
    assert on_disk is not None
    assert on_disk["database"] == "connected"


@pytest.mark.asyncio
async def test_stop_during_an_async_on_change_takes_the_call_down_and_logs_it_redacted(
    make_service: ServiceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """stop() while an async on_change runs cancels it and waits for it: no callback task is
    left running once stop() returns, and what it raises as it ends is logged redacted."""
    calls: list[asyncio.Task[Any]] = []
    entered = asyncio.Event()

    async def on_change(previous: HealthReport | None, current: HealthReport) -> None:
        if current.status != "degraded":
            return
        task = asyncio.current_task()
        assert task is not None
        calls.append(task)
        entered.set()
        try:
            await asyncio.sleep(3600)
        finally:
            raise RuntimeError("could not page: password=hunter2 refused")  # as it is cancelled

    failing = iter([True, False])
    flapping = check("flapping", lambda: next(failing, False))
    service = make_service(checks=[flapping], on_change=on_change)
    with caplog.at_level(logging.DEBUG):
        await service.start()
        cycle = asyncio.ensure_future(service.check_now())
        await asyncio.wait_for(entered.wait(), generous(10))
        await service.stop()
        assert [task.done() for task in calls] == [True]
        with pytest.raises(RuntimeError, match="stopped during check_now"):
            await cycle
        await asyncio.sleep(0.05)  # anything left over would be logged by now
    assert "hunter2" not in caplog.text
    failed = [r for r in caplog.records if r.getMessage().startswith("on_change callback failed")]
    assert len(failed) == 1
    assert "password=***" in failed[0].getMessage()


FORGING = "db down\n2030-01-01 00:00:00 INFO healthfile: health online\x1b[2K\x1b[1A\r\u2028ok"


@pytest.mark.asyncio
async def test_outputs_with_newlines_or_terminal_escapes_are_logged_on_one_escaped_line(
    make_service: ServiceFactory, health_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A check's output holding newlines, ANSI escapes or a line separator is logged on one
    line with each of them escaped (no forged line, no moved cursor); the file keeps it whole."""

    async def forging() -> CheckResult:
        return CheckResult("fail", FORGING)

    async def raising() -> None:
        raise OSError(f"\x1b[31m{FORGING}")

    service = make_service(checks=[check("forging", forging), check("raising", raising)])
    with caplog.at_level(logging.DEBUG, logger="healthfile"):
        await service.start()
        await service.stop()
    messages = [record.getMessage() for record in caplog.records if record.name == "healthfile"]
    changes = [message for message in messages if message.startswith("health ")]
    assert changes
    for message in messages:
        assert message.isprintable(), repr(message)
    escaped = (
        "db down\\n2030-01-01 00:00:00 INFO healthfile: health online\\x1b[2K\\x1b[1A\\r\\u2028ok"
    )
    assert f"forging fail: {escaped}" in changes[0]
    assert f"raising fail: OSError: \\x1b[31m{escaped}" in changes[0]
    on_disk = read_report(health_file)
    assert on_disk is not None
    assert on_disk["checks"]["forging"]["output"] == FORGING
