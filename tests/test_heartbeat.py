"""HeartbeatCheck: pass while beats arrive, warn then fail when they stop, fail before any."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import healthfile
from healthfile import CheckResult, HeartbeatCheck
from helpers import ServiceFactory, generous, read_report

DEADLINE = 30.0


def age(check: HeartbeatCheck, seconds: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the last beat ``seconds`` old by moving the clock the check reads."""
    now = time.monotonic()
    check.beat()
    monkeypatch.setattr(time, "monotonic", lambda: now + seconds)


def judge(check: HeartbeatCheck) -> CheckResult:
    """Run the check to completion without an event loop: it must never await anything."""
    running = check.run()
    try:
        running.send(None)
    except StopIteration as finished:
        result = finished.value
        assert isinstance(result, CheckResult)
        return result
    running.close()
    raise AssertionError("HeartbeatCheck.run() awaited something")


def test_fails_before_the_first_beat() -> None:
    """A heartbeat that never beat fails with "no beat yet": it never passes on no evidence."""
    result = judge(HeartbeatCheck())
    assert result.status == "fail"
    assert result.output == "no beat yet"


def test_passes_right_after_a_beat() -> None:
    """A beat just now passes, and the output says how long ago it was."""
    check = HeartbeatCheck()
    check.beat()
    result = judge(check)
    assert result.status == "pass"
    assert result.output == "last beat 0.0 s ago"


@pytest.mark.parametrize(
    ("seconds", "status", "output"),
    [
        (0.9, "pass", "last beat 0.9 s ago"),
        (1.01, "warn", "last beat 1.0 s ago (warn after 1 s)"),
        (4.9, "warn", "last beat 4.9 s ago (warn after 1 s)"),
        (6.2, "fail", "last beat 6.2 s ago (fail after 5 s)"),
    ],
)
def test_warns_then_fails_as_the_last_beat_ages(
    seconds: float, status: str, output: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last beat older than warn_after warns, older than fail_after fails, saying its age."""
    check = HeartbeatCheck()
    age(check, seconds, monkeypatch)
    result = judge(check)
    assert (result.status, result.output) == (status, output)


def test_a_new_beat_passes_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a failing silence, one beat makes the check pass again."""
    check = HeartbeatCheck(warn_after=0.5, fail_after=2.0)
    age(check, 10.0, monkeypatch)
    assert judge(check).status == "fail"
    monkeypatch.undo()
    check.beat()
    assert judge(check).status == "pass"


def test_beats_from_many_threads_at_once_keep_it_passing() -> None:
    """beat() from 16 threads at once, thousands of times each, neither fails nor loses a beat."""
    check = HeartbeatCheck(warn_after=0.5, fail_after=1.0)
    barrier = threading.Barrier(16)
    errors: list[BaseException] = []

    def beat_many() -> None:
        try:
            barrier.wait()
            for _ in range(5000):
                check.beat()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=beat_many) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)
    assert errors == []
    result = judge(check)
    assert result.status == "pass"
    since = check.seconds_since_beat()
    assert since is not None
    assert since < generous(0.5)


def test_seconds_since_beat_is_none_before_the_first_beat() -> None:
    """seconds_since_beat() is None until beat() is called, then a small number."""
    check = HeartbeatCheck()
    assert check.seconds_since_beat() is None
    check.beat()
    since = check.seconds_since_beat()
    assert since is not None
    assert 0.0 <= since < generous(DEADLINE)


def test_defaults_and_attributes() -> None:
    """The defaults are name "heartbeat", 1 s and 5 s; timeout and thresholds like other checks."""
    check = HeartbeatCheck()
    assert check.name == "heartbeat"
    assert (check.warn_after, check.fail_after) == (1.0, 5.0)
    assert check.timeout is None
    assert (check.failure_threshold, check.success_threshold) == (1, 1)
    custom = HeartbeatCheck(
        "ui", warn_after=2, fail_after=3, timeout=0.5, failure_threshold=2, success_threshold=3
    )
    assert (custom.name, custom.warn_after, custom.fail_after) == ("ui", 2.0, 3.0)
    assert (custom.timeout, custom.failure_threshold, custom.success_threshold) == (0.5, 2, 3)
    assert isinstance(check, healthfile.Check)


def test_repr_shows_the_state() -> None:
    """repr() names the check and says whether and when it last beat."""
    check = HeartbeatCheck("ui")
    assert "'ui' no beat yet" in repr(check)
    check.beat()
    assert "last beat 0.0 s ago" in repr(check)


@pytest.mark.parametrize(
    "options",
    [
        {"warn_after": 0},
        {"warn_after": -1},
        {"fail_after": math.nan},
        {"fail_after": math.inf},
        {"warn_after": 3, "fail_after": 2},
        {"name": ""},
        {"timeout": 0},
        {"failure_threshold": 0},
    ],
    ids=lambda options: "-".join(f"{key}={value}" for key, value in options.items()),
)
def test_bad_values_raise_value_error(options: dict[str, Any]) -> None:
    """Non-positive or infinite bounds, warn_after over fail_after, bad thresholds fail."""
    with pytest.raises(ValueError):  # noqa: PT011 - the message is the check's to word
        HeartbeatCheck(**options)


@pytest.mark.parametrize(
    "options",
    [{"warn_after": "1"}, {"success_threshold": 1.5}, {"name": None}],
    ids=lambda options: "-".join(f"{key}={value}" for key, value in options.items()),
)
def test_wrong_types_raise_type_error(options: dict[str, Any]) -> None:
    """A bound given as a string, a fractional threshold or no name is a TypeError naming it."""
    with pytest.raises(TypeError, match=r"warn_after|success_threshold|name"):
        HeartbeatCheck(**options)


@pytest.mark.asyncio
async def test_in_a_service_a_silent_heartbeat_degrades_the_file(
    make_service: ServiceFactory, health_file: Path
) -> None:
    """A service with a heartbeat that never beat writes degraded, heartbeat fail "no beat yet"."""
    heartbeat = HeartbeatCheck()
    service = make_service(checks=[heartbeat])
    await service.start()
    report = read_report(health_file)
    assert report is not None
    assert report["status"] == "degraded"
    assert report["checks"]["heartbeat"]["status"] == "fail"
    assert report["checks"]["heartbeat"]["output"] == "no beat yet"
    heartbeat.beat()
    fresh = await service.check_now()
    assert fresh.status == "online"
    assert fresh.checks["heartbeat"].status == "pass"
