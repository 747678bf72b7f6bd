"""Running the checks: one wait for all of them, flap damping, and the overall status.

A :class:`CheckRunner` knows nothing of files: it runs every check once per cycle, each
bounded by its timeout, and judges the run into the statuses a report is built from.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ._checks import Check, SQLiteCheck
from ._limits import SETTLE_SECONDS
from ._options import Options, options_of
from ._report import (
    CheckResult,
    CheckStatus,
    DatabaseState,
    HealthStatus,
    describe_exception,
    format_exception,
    refuse_oversized,
)
from ._settings import Settings, refuse_shared_files
from ._steps import LoopShare, StepTimer, timed
from ._threads import CheckStillRunning, threads_can_start, unwrap_thread_exception

__all__ = [
    "CheckRunner",
    "CheckState",
    "Observation",
    "Outcome",
    "collect_checks",
    "judge_run",
    "returned_result",
]

logger = logging.getLogger("healthfile")

_UNOBSERVED = "not checked: no thread can start while the interpreter shuts down"

# How long stop() gives abandoned checks (a database connection whose thread is coming back
# from an interrupted statement) to close, before leaving them to finish on their own.
_STOP_GRACE = 0.1


@dataclass
class Observation:
    """What one run of one check observed, before flap damping."""

    result: CheckResult
    database: DatabaseState
    duration_ms: float


@dataclass
class Outcome:
    """One cycle's judgement: the overall status, the database field, each check's result."""

    status: HealthStatus
    database: DatabaseState
    checks: dict[str, CheckResult]
    now: datetime  # when the checks had run: the report's timestamp


class CheckState:
    """Flap damping and history of one check across cycles."""

    def __init__(self, check: Check, options: Options) -> None:
        self.check = check
        self.name = options.name  # validated and redacted: the key in the file, labels, logs
        self.timeout = options.timeout
        self.critical = options.critical
        self.groups = options.groups
        self.failure_threshold = options.failure_threshold
        self.success_threshold = options.success_threshold
        self.consecutive_failures = 0
        self.consecutive_passes = 0
        self.last_success: datetime | None = None
        self.failed = False  # latched once the check reads fail, until it has recovered
        self.task: asyncio.Task[CheckResult] | None = None
        self.task_since = datetime.now(timezone.utc)
        # What the last observed run gave: it stands for a run that observed nothing.
        self.last: tuple[CheckResult, DatabaseState] | None = None

    def run_done(self, task: asyncio.Task[CheckResult]) -> None:
        """Forget a run that ended, retrieving its outcome so that it is not reported twice."""
        if self.task is task:
            self.task = None
        if not task.cancelled():
            task.exception()

    def record(self, observed: Observation, now: datetime) -> CheckResult:
        """Fold one observation into the history; return the damped result for the report."""
        raw = observed.result
        status: CheckStatus = raw.status
        output = raw.output
        if raw.status == "pass":
            self.consecutive_failures = 0
            self.consecutive_passes += 1
            self.last_success = now
            if self.failed and self.consecutive_passes < self.success_threshold:
                status = "fail"
                output = (
                    f"recovering: {self.consecutive_passes} of {self.success_threshold} "
                    "consecutive passes"
                )
            else:
                self.failed = False
        else:
            self.consecutive_passes = 0
            if raw.status == "fail":
                self.consecutive_failures += 1
                if self.consecutive_failures >= self.failure_threshold:
                    self.failed = True
            # Below failure_threshold a failure reads warn; once failed, nothing but enough
            # passes reads anything but fail.
            status = "fail" if self.failed else "warn"
        return CheckResult(
            status,
            output,
            duration_ms=observed.duration_ms,
            consecutive_failures=self.consecutive_failures,
            last_success=self.last_success,
            critical=self.critical,
            groups=self.groups,
        )


class CheckRunner:
    """Run a service's checks once per cycle, each under its own timeout, and judge the run.

    :param checks: the checks, the database check among them.
    :param options: each check's validated options (name, timeout, ...), in the same order.
    :param database_check: the check whose outcome is the report's ``database`` field.
    :param start_period: seconds after :meth:`restart_clock` in which failing checks that
        have never passed read ``starting`` rather than ``degraded``.
    """

    def __init__(
        self,
        checks: Sequence[Check],
        options: Sequence[Options],
        *,
        database_check: Check,
        start_period: float = 0.0,
    ) -> None:
        self.checks = tuple(checks)
        self._database_check = database_check
        self._start_period = start_period
        self._states = {
            option.name: CheckState(check, option)
            for option, check in zip(options, self.checks, strict=True)
        }
        self._started = time.monotonic()

    @classmethod
    def of_settings(cls, settings: Settings, checks: Iterable[Check]) -> CheckRunner:
        """The runner of a service's checks: ``settings.database``'s first, then ``checks``.

        :raises ValueError: for bad or duplicate check names or options, the database at
            the health file's (or the Prometheus file's, or the lock's) path, or checks too
            many to fit in the health file.
        :raises TypeError: for what is not a check.
        """
        ordered, database_check, options = collect_checks(
            settings.database, checks, settings.check_timeout
        )
        refuse_shared_files(
            getattr(database_check, "path", None),
            settings.health_file,
            settings.prometheus_file,
            labels=settings.given,
        )
        refuse_oversized(
            [option.name for option in options],
            [option.groups for option in options],
            app_version=settings.app_version,
            app_name=settings.app_name,
            interval=settings.interval,
        )
        return cls(
            ordered, options, database_check=database_check, start_period=settings.start_period
        )

    @property
    def longest_timeout(self) -> float:
        """The longest time, in seconds, one check may run."""
        return max(state.timeout for state in self._states.values())

    def restart_clock(self) -> None:
        """Begin the start period now."""
        self._started = time.monotonic()

    def start_checks(self) -> None:
        """Call every check's ``on_start`` hook (on the loop); what one raises propagates."""
        for check in self.checks:
            hook = getattr(check, "on_start", None)
            if hook is not None:
                hook()

    async def run(self) -> Outcome:
        """Run every check once and judge the run; never raise for the checks' failures."""
        observations = await self._run_checks()
        now = datetime.now(timezone.utc)
        results: dict[str, CheckResult] = {}
        database: DatabaseState = "disconnected"
        for state, observed in zip(self._states.values(), observations, strict=False):
            if observed is not None:
                state.last = (state.record(observed, now), observed.database)
            # A run that observed nothing (the interpreter shutting down) leaves the last
            # result standing; a check never observed reads fail, saying why.
            result, seen = state.last or (CheckResult("fail", _UNOBSERVED), "disconnected")
            results[state.name] = result
            if state.check is self._database_check:
                database = seen
        return Outcome(self.overall_status(results), database, results, now)

    async def _run_checks(self) -> list[Observation | None]:
        """Run every check at once, each under its own timeout; never raise for their failures.

        One task per check and one wait for them all (one more per distinct timeout that
        expires), so that a cycle's cost on the loop grows as little as it can with the
        number of checks.
        """
        states = list(self._states.values())
        lingering = {state.task for state in states if state.task is not None}
        if lingering:
            # Runs cancelled a moment ago (timeout, stop) are usually just finishing.
            await asyncio.wait(lingering, timeout=SETTLE_SECONDS)
        loop = asyncio.get_running_loop()
        since = datetime.now(timezone.utc)
        started = time.perf_counter()
        share = LoopShare()
        observed: dict[CheckState, Observation | None] = {}
        running: dict[asyncio.Task[CheckResult], tuple[CheckState, StepTimer]] = {}
        for state in states:
            if state.task is not None:
                observed[state] = Observation(
                    CheckResult("fail", str(CheckStillRunning(state.task_since))), "timeout", 0.0
                )
                continue
            timer = StepTimer(share)
            task = loop.create_task(
                timed(state.check.run(), timer), name=f"healthfile-check-{state.name}"
            )
            state.task, state.task_since = task, since
            task.add_done_callback(state.run_done)
            running[task] = (state, timer)
        pending = {task for task in running if not task.done()}  # eager tasks may be done
        try:
            while pending:
                # Each run's own time: what other checks held the loop for is not its fault.
                now = time.perf_counter()
                left = {
                    task: timer.left(state.timeout, now, started)
                    for task, (state, timer) in running.items()
                    if task in pending
                }
                for task in [task for task in pending if left[task] <= 0]:
                    task.cancel()
                    pending.discard(task)
                    state, timer = running[task]
                    begun = started if timer.began is None else timer.began
                    observed[state] = Observation(
                        CheckResult("fail", f"timed out after {state.timeout:g} s"),
                        "timeout",
                        (now - begun) * 1000,
                    )
                if pending:
                    _, pending = await asyncio.wait(
                        pending, timeout=min(left[task] for task in pending)
                    )
        except asyncio.CancelledError:
            for task in pending:
                task.cancel()  # the cycle is being cancelled: so are its checks
            raise
        for task, (state, timer) in running.items():
            if state not in observed:
                observed[state] = _observe(task, state, timer, started)
        return [observed[state] for state in states]

    def overall_status(self, results: dict[str, CheckResult]) -> HealthStatus:
        """online unless a critical check reads fail; starting or degraded then.

        A warning (a damped failure, a lag past its warn bound) or a non-critical check at
        fail shows in the checks and leaves the report online. ``starting`` only within the
        start period, and only while every critical failing check has never passed.
        """
        failing = [
            name
            for name, result in results.items()
            if result.status == "fail" and self._states[name].critical
        ]
        if not failing:
            return "online"
        in_start_period = time.monotonic() - self._started < self._start_period
        if in_start_period and all(self._states[name].last_success is None for name in failing):
            return "starting"
        return "degraded"

    async def wait_abandoned(self) -> None:
        """Give checks cancelled mid-run a moment to close their resources."""
        pending: set[asyncio.Future[Any]] = set()
        for state in self._states.values():
            if state.task is not None:
                pending.add(state.task)
            wait_closed = getattr(state.check, "wait_closed", None)
            if wait_closed is not None:
                pending.add(asyncio.ensure_future(wait_closed()))
        if not pending:
            return
        _, still = await asyncio.wait(pending, timeout=_STOP_GRACE)
        for future in still:
            logger.warning(
                "a check did not finish within %g s of stop(); left to finish", _STOP_GRACE
            )
            future.cancel()

    def close(self) -> None:
        """Call every check's ``on_stop`` hook; log what one raises."""
        for name, state in self._states.items():
            hook = getattr(state.check, "on_stop", None)
            if hook is not None:
                try:
                    hook()
                except Exception as exc:
                    logger.error("on_stop of check %r failed: %s", name, format_exception(exc))


def _observe(
    task: asyncio.Task[CheckResult], state: CheckState, timer: StepTimer, started: float
) -> Observation | None:
    """A finished run's observation: its result, unless it held the loop past its timeout.

    None for a run that observed nothing: it failed with RuntimeError because no thread can
    start any more (Python 3.12's interpreter shutdown, in atexit handlers), which says
    nothing of what it checks.
    """
    if _failed_for_want_of_threads(task):
        return None
    begun = started if timer.began is None else timer.began
    ended = time.perf_counter() if timer.ended is None else timer.ended
    if timer.busy > state.timeout:
        # Its result came late by its own doing, and every other check waited for it.
        result = CheckResult(
            "fail", f"blocked the event loop for {timer.busy:.3g} s (timeout {state.timeout:g} s)"
        )
        return Observation(result, "timeout", (ended - begun) * 1000)
    result, database = judge_run(task)
    return Observation(result, database, (ended - begun) * 1000)


def _failed_for_want_of_threads(task: asyncio.Task[CheckResult]) -> bool:
    """Whether the run raised RuntimeError at a time when no thread can start."""
    if task.cancelled():
        return False
    exc = task.exception()
    return (
        exc is not None
        and isinstance(unwrap_thread_exception(exc), RuntimeError)
        and not threads_can_start()
    )


def judge_run(task: asyncio.Task[CheckResult]) -> tuple[CheckResult, DatabaseState]:
    """The result of a finished check run, and what it means for the ``database`` field."""
    if task.cancelled():
        return CheckResult("fail", "cancelled"), "disconnected"
    exc = task.exception()
    if isinstance(exc, CheckStillRunning):
        return CheckResult("fail", str(exc)), "timeout"
    if exc is not None:
        return CheckResult("fail", describe_exception(unwrap_thread_exception(exc))), "disconnected"
    result = returned_result(task.result())
    return result, "disconnected" if result.status == "fail" else "connected"


def returned_result(value: object) -> CheckResult:
    """What a check's run() returned, as a plain, valid CheckResult; a fail for anything else.

    A subclass, or a result whose validation was bypassed (``object.__setattr__``), is read
    for its status and output only, and those are checked again: a cycle survives whatever
    a check returns.
    """
    if not isinstance(value, CheckResult):
        return CheckResult("fail", f"run() returned {type(value).__name__}, not CheckResult")
    try:
        status, output = value.status, value.output
        if type(status) is not str:
            raise TypeError(f"status is {type(status).__name__}, not str")
        if output is not None and type(output) is not str:
            raise TypeError(f"output is {type(output).__name__}, not str or None")
        return CheckResult(status, output)  # the status is validated there
    except Exception as exc:
        return CheckResult(
            "fail", f"run() returned an invalid CheckResult: {describe_exception(exc)}"
        )


def collect_checks(
    database: object,
    checks: Iterable[Check],
    default_timeout: float,
) -> tuple[list[Check], Check, list[Options]]:
    """Order the checks (database first), find the database check, validate their options.

    Returns the checks, the database check, and each check's options validated (its name
    redacted); two names that read alike once redacted are refused like duplicates.
    """
    extra = _check_list(checks)
    if database is None:
        named = [check for check in extra if check.name == "database"]
        if not named:
            raise ValueError("database=None needs a check named 'database' in checks")
        database_check = named[0]
        extra.remove(database_check)
    elif isinstance(database, Check):
        database_check = _require_check(database)
    elif isinstance(database, (str, os.PathLike)):
        database_check = SQLiteCheck(database)
    elif callable(database):
        database_check = _require_check(database)  # raises, pointing at healthfile.check()
    else:
        raise TypeError(f"database must be a path or a Check, not {database!r}")
    ordered = [database_check, *extra]
    options = [options_of(check, default_timeout) for check in ordered]
    names = [option.name for option in options]
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise ValueError(f"check names must be unique; repeated: {', '.join(duplicates)}")
    return ordered, database_check, options


def _check_list(checks: object) -> list[Check]:
    """The checks of ``checks=``: a list (any iterable) of checks, never one check alone."""
    if isinstance(checks, Check) or not isinstance(checks, Iterable) or isinstance(checks, str):
        raise TypeError(
            f"checks must be a list of checks, not {checks!r}; wrap one check in a list: "
            "checks=[check]"
        )
    return [_require_check(check, f"checks[{index}]") for index, check in enumerate(checks)]


def _require_check(check: object, what: str = "database") -> Check:
    """Refuse objects that are not checks, or whose run() is not async."""
    if isinstance(check, Check) and inspect.iscoroutinefunction(check.run):
        return check
    if isinstance(check, type):
        name = check.__name__
        raise TypeError(f"{what} is the class {name}, not a check: {name}(...) makes one")
    if callable(check):
        raise TypeError(
            f"{what} is a function ({check!r}), not a check: wrap it with "
            "healthfile.check(name, fn)"
        )
    raise TypeError(f"{what}: a check needs a name and an async run() method, not {check!r}")
