"""The check runner on its own: no file, no service, only checks and their judgement."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from healthfile import CheckResult, check
from healthfile._checks import Check, FunctionCheck
from healthfile._cycle import CheckRunner, Outcome
from healthfile._options import options_of


def runner_of(*checks: Check, check_timeout: float = 5.0, start_period: float = 0.0) -> CheckRunner:
    """A runner of ``checks``, the first one the database check."""
    return CheckRunner(
        checks,
        [options_of(item, check_timeout) for item in checks],
        database_check=checks[0],
        start_period=start_period,
    )


def returning(name: str, *results: CheckResult, **options: Any) -> FunctionCheck:
    """A check that returns ``results`` one per run, the last one from then on."""
    left = list(results)

    async def run() -> CheckResult:
        return left.pop(0) if len(left) > 1 else left[0]

    return check(name, run, **options)


class Lingering:
    """A check that hangs, and once cancelled keeps running until released."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.timeout = 0.05
        self.release = asyncio.Event()

    async def run(self) -> CheckResult:
        """Hang until cancelled, then until released."""
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            # Like a thread that cannot be interrupted: the run outlives its cancellation.
            await self.release.wait()
            raise
        return CheckResult("pass")


async def run_cycles(runner: CheckRunner, count: int) -> list[Outcome]:
    """Run ``count`` cycles in a row."""
    return [await runner.run() for _ in range(count)]


@pytest.mark.asyncio
async def test_every_check_passing_reads_online_and_connected() -> None:
    """A run where every check passes is online, the database connected, each result pass."""
    runner = runner_of(
        returning("database", CheckResult("pass")), returning("cache", CheckResult("pass"))
    )

    outcome = await runner.run()

    assert (outcome.status, outcome.database) == ("online", "connected")
    assert {name: result.status for name, result in outcome.checks.items()} == {
        "database": "pass",
        "cache": "pass",
    }
    assert list(outcome.checks) == ["database", "cache"]


@pytest.mark.asyncio
async def test_failing_extra_check_degrades_but_leaves_the_database_connected() -> None:
    """A failing check other than the database degrades the run; the database stays connected."""
    runner = runner_of(
        returning("database", CheckResult("pass")), returning("cache", CheckResult("fail", "down"))
    )

    outcome = await runner.run()

    assert (outcome.status, outcome.database) == ("degraded", "connected")
    assert (outcome.checks["cache"].status, outcome.checks["cache"].output) == ("fail", "down")


@pytest.mark.asyncio
async def test_hung_check_times_out_within_its_own_timeout() -> None:
    """A check that hangs fails "timed out" at its timeout, and the database field reads timeout."""
    hung: Callable[[], Awaitable[None]] = lambda: asyncio.sleep(60)  # noqa: E731
    runner = runner_of(
        check("database", hung, timeout=0.05), returning("cache", CheckResult("pass"))
    )

    outcome = await asyncio.wait_for(runner.run(), timeout=10)

    assert (outcome.status, outcome.database) == ("degraded", "timeout")
    assert outcome.checks["database"].output == "timed out after 0.05 s"
    assert outcome.checks["cache"].status == "pass"


@pytest.mark.asyncio
async def test_run_that_outlives_its_cancellation_reads_still_running_next_cycle() -> None:
    """A run still going a cycle after its timeout is not started again: it reads still running."""
    lingering = Lingering("database")
    runner = runner_of(lingering)

    first, second = await run_cycles(runner, 2)
    lingering.release.set()
    await runner.wait_abandoned()

    assert first.checks["database"].output == "timed out after 0.05 s"
    assert second.database == "timeout"
    assert (second.checks["database"].output or "").startswith("still running since ")


@pytest.mark.asyncio
async def test_failure_threshold_reads_warn_until_reached_then_success_threshold_recovers() -> None:
    """Failures below failure_threshold read warn; after a failure, fail until enough passes."""
    flapping = returning(
        "database",
        CheckResult("fail", "a"),
        CheckResult("fail", "b"),
        CheckResult("pass"),
        CheckResult("pass"),
        failure_threshold=2,
        success_threshold=2,
    )
    runner = runner_of(flapping)

    outcomes = await run_cycles(runner, 4)

    assert [outcome.checks["database"].status for outcome in outcomes] == [
        "warn",
        "fail",
        "fail",
        "pass",
    ]
    assert outcomes[2].checks["database"].output == "recovering: 1 of 2 consecutive passes"
    assert [outcome.checks["database"].consecutive_failures for outcome in outcomes] == [1, 2, 0, 0]


@pytest.mark.asyncio
async def test_never_passed_failure_reads_starting_within_the_start_period_only() -> None:
    """Within the start period a check that never passed reads starting; once it has, degraded."""
    runner = runner_of(
        returning(
            "database", CheckResult("fail", "x"), CheckResult("pass"), CheckResult("fail", "y")
        ),
        start_period=3600,
    )
    runner.restart_clock()

    outcomes = await run_cycles(runner, 3)

    assert [outcome.status for outcome in outcomes] == ["starting", "online", "degraded"]
    assert (await runner_of(returning("database", CheckResult("fail"))).run()).status == "degraded"


@pytest.mark.asyncio
async def test_check_that_raises_or_returns_the_wrong_type_fails_without_raising() -> None:
    """A check that raises, or returns no CheckResult, fails the run instead of raising from it."""

    class Wrong:
        name = "cache"

        async def run(self) -> CheckResult:
            """Return what is not a CheckResult."""
            return "fine"  # type: ignore[return-value]

    async def broken() -> None:
        raise OSError("no route to host")

    runner = runner_of(check("database", broken), Wrong())

    outcome = await runner.run()

    assert outcome.database == "disconnected"
    assert outcome.checks["database"].output == "OSError: no route to host"
    assert outcome.checks["cache"].output == "run() returned str, not CheckResult"
