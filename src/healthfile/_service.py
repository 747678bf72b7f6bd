"""AsyncHealthService: the lifecycle and the cycle loop on the host application's event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

from ._checks import (
    Check,
    CheckStillRunning,
    SQLiteCheck,
    _absolute,
    _DaemonThreadRunner,
    _validate_name,
    call_off_loop,
    unwrap_thread_exception,
    validate_seconds,
)
from ._limits import MAX_FILE_BYTES, MAX_IDENTITY_CHARS
from ._lock import WriterLock
from ._prometheus import render_textfile, require_prometheus_client
from ._report import (
    UNKNOWN_APP_NAME,
    CheckResult,
    CheckStatus,
    DatabaseState,
    HealthReport,
    HealthStatus,
    ceil_to_second,
    describe_exception,
    fit_report,
    format_exception,
    worst_case_bytes,
)
from ._systemd import SystemdNotifier
from ._version import UNKNOWN_VERSION, AppIdentity, read_app_identity
from ._worker import WorkerThread
from ._writer import AtomicWriter

__all__ = ["AsyncHealthService", "OnChange", "refuse_shared_files", "serve_until"]

logger = logging.getLogger("healthfile")

T = TypeVar("T")

OnChange = Callable[[HealthReport | None, HealthReport], Awaitable[object] | object]

# How long stop() gives abandoned checks (a database connection whose thread is coming back
# from an interrupted statement) to close, before leaving them to finish on their own.
_STOP_GRACE = 0.1

# How long a cycle waits for a check's previous run, cancelled a moment ago, to finish
# before it reports the check as still running.
_SETTLE = 0.05

# How long a start() waits for the previous start's worker to release the lock (a write hung
# on a dead disk holds it) before trying anyway.
_RELEASE_WAIT = 5.0

_State = Literal["stopped", "starting", "running", "stopping"]
# Whether this service writes the file: "held" the lock (or none can be had on this
# platform), "standby" while another process holds it, "unlocked" when the lock file itself
# fails (then it writes without the lock), "unknown" before the first attempt of a start().
_LockState = Literal["unknown", "held", "standby", "unlocked"]


class _Stopped(Exception):
    """stop() cancelled the cycle this caller was waiting for."""


@dataclass
class _Observation:
    """What one run of one check observed, before flap damping."""

    result: CheckResult
    database: DatabaseState
    duration_ms: float


class _CheckState:
    """Flap damping and history of one check across cycles."""

    def __init__(self, check: Check, default_timeout: float, name: str) -> None:
        self.check = check
        self.name = name  # validated and redacted: the key in the file, labels and logs
        self.timeout: float = getattr(check, "timeout", None) or default_timeout
        self.failure_threshold: int = getattr(check, "failure_threshold", 1)
        self.success_threshold: int = getattr(check, "success_threshold", 1)
        self.consecutive_failures = 0
        self.consecutive_passes = 0
        self.last_success: datetime | None = None
        self.failed = False  # latched once the check reads fail, until it has recovered
        self.task: asyncio.Task[CheckResult] | None = None
        self.task_since = datetime.now(timezone.utc)
        self.finished = 0.0  # perf_counter() when the last run ended

    def run_done(self, task: asyncio.Task[CheckResult]) -> None:
        """Note when a run ended; forget it, retrieving its outcome so it is not reported twice."""
        self.finished = time.perf_counter()
        if self.task is task:
            self.task = None
        if not task.cancelled():
            task.exception()

    def record(self, observed: _Observation, now: datetime) -> CheckResult:
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
        )


class AsyncHealthService:
    """Check the application's health every ``interval`` seconds and keep the health file true.

    Runs as one task on the running event loop of whoever calls :meth:`start`. Every cycle
    runs all checks concurrently, each bounded by its timeout, builds a
    :class:`HealthReport` and replaces the health file atomically. File and database I/O
    run off the loop; the file's writes, the start-up sweep and the version read run on the
    service's own worker thread, never the loop's default executor.

    One writer per file: the service that holds the advisory lock ``.<name>.lock`` next to
    the health file writes it (and the Prometheus file); another service on the same file
    stands by: it runs its checks (``last_report`` is then its own, unwritten view), writes
    nothing, logs once which pid writes, and takes over when that one stops or dies.

    :param database: the SQLite database to probe (a path), or any :class:`Check` whose
        outcome feeds the report's ``database`` field, or ``None`` when ``checks`` holds a
        check named ``"database"``.
    :param health_file: the JSON file to keep (its directory is created when missing).
    :param interval: seconds between the starts of two cycles.
    :param check_timeout: seconds a check may run before it counts as timed out (checks may
        set their own ``timeout``); also bounds ``on_change``.
    :param pyproject: the pyproject.toml to read ``app_version`` from, or ``None``.
    :param app_version: a version string that wins over ``pyproject``.
    :param app_name: who writes the file (the report's ``app_name``, the Prometheus label
        ``app``); ``None``: ``[project].name`` of ``pyproject``, else the installed
        distribution that owns the running program, else the script's name.
    :param start_period: seconds after :meth:`start` in which failing checks that have never
        passed read ``starting`` rather than ``degraded``.
    :param checks: more checks to run every cycle.
    :param on_change: ``callback(previous, current)``, sync or async, called when the status
        or a check's status changes. Sync callbacks run in a daemon thread.
    :param file_mode: the health file's permission bits, whatever the umask.
    :param prometheus_file: also write every report there in the Prometheus text format, for
        node_exporter's textfile collector (needs the extra ``healthfile[prometheus]``).
    :param notify_systemd: send ``READY=1``, ``WATCHDOG=1`` and ``STOPPING=1`` to
        ``NOTIFY_SOCKET`` when it is set.
    :raises ImportError: for ``prometheus_file`` without prometheus_client installed.
    :raises ValueError: for a non-positive interval or check_timeout, a negative
        start_period, duplicate or bad check names (empty, unprintable, over 64
        characters), two of database / health_file / prometheus_file that are one file, or
        checks too many to fit in the health file even with their outputs shortened.

    Every path is made absolute once, at construction: a later ``os.chdir()`` changes
    nothing.
    """

    def __init__(
        self,
        database: str | os.PathLike[str] | Check | None = "data/app.db",
        *,
        health_file: str | os.PathLike[str] = "data/health.json",
        interval: float = 30.0,
        check_timeout: float = 3.0,
        pyproject: str | os.PathLike[str] | None = "pyproject.toml",
        app_version: str | None = None,
        start_period: float = 0.0,
        checks: Iterable[Check] = (),
        on_change: OnChange | None = None,
        file_mode: int = 0o644,
        prometheus_file: str | os.PathLike[str] | None = None,
        notify_systemd: bool = False,
        app_name: str | None = None,
    ) -> None:
        self.interval = validate_seconds("interval", interval)
        self.check_timeout = validate_seconds("check_timeout", check_timeout)
        self.start_period = validate_seconds("start_period", start_period, allow_zero=True)
        if not _is_file_mode(file_mode):
            raise ValueError(f"file_mode must be permission bits like 0o644, not {file_mode!r}")
        for option, value in (("app_version", app_version), ("app_name", app_name)):
            if not _is_optional_text(value):
                raise ValueError(f"{option} must be a non-empty string or None, not {value!r}")
        if on_change is not None and not callable(on_change):
            raise TypeError(f"on_change must be callable, not {type(on_change).__name__}")
        # Every path is made absolute once, here: a later os.chdir() changes nothing.
        self.health_file = _absolute(health_file)
        self.pyproject = None if pyproject is None else _absolute(pyproject)
        self._app_version_override = app_version
        self._app_name_override = app_name
        self._checks, self._database_check, names = _collect_checks(database, checks)
        self._on_change = on_change
        self._on_change_runner = _DaemonThreadRunner("on_change")
        self._writer = AtomicWriter(self.health_file, mode=file_mode)
        self.prometheus_file = None if prometheus_file is None else _absolute(prometheus_file)
        refuse_shared_files(
            getattr(self._database_check, "path", None), self.health_file, self.prometheus_file
        )
        self._prometheus_writer: AtomicWriter | None = None
        if self.prometheus_file is not None:
            require_prometheus_client()
            self._prometheus_writer = AtomicWriter(self.prometheus_file, mode=file_mode)
        self._systemd = SystemdNotifier() if notify_systemd else None
        self._lock = WriterLock(self.health_file)  # one writer per file, Prometheus file included
        self._lock_state: _LockState = "unknown"
        self._lock_holder: int | None = None
        self._lock_error: str | None = None
        self._logged_holder: int | None = None
        self._logged_error: str | None = None
        self._worker: WorkerThread | None = None  # healthfile's own thread, one per start()
        self._retiring: concurrent.futures.Future[None] | None = None  # the last lock release
        self._ready = False  # READY=1 sent since start()
        self._states = {
            name: _CheckState(check, self.check_timeout, name)
            for name, check in zip(names, self._checks, strict=True)
        }
        largest = worst_case_bytes(
            names,
            app_version=app_version or "x" * MAX_IDENTITY_CHARS,
            app_name=app_name or "x" * MAX_IDENTITY_CHARS,
            interval=interval,
        )
        if largest > MAX_FILE_BYTES:
            raise ValueError(
                f"{len(names)} checks cannot fit in the health file: with every output "
                f"shortened a report may take {largest} bytes, and `healthfile check` reads "
                f"at most {MAX_FILE_BYTES}; use fewer checks or shorter names"
            )
        # A report stays fresh for one interval, the longest check, and a second of slack
        # for the write and the rounding of the timestamps.
        self._freshness = timedelta(
            seconds=self.interval + max(state.timeout for state in self._states.values()) + 1.0
        )

        self._state: _State = "stopped"
        self._generation = 0  # counts start() calls, so a start() that stop() overtook knows
        self._app_version = UNKNOWN_VERSION
        self._app_name = UNKNOWN_APP_NAME
        self._sequence = 0
        self._started_at = datetime.now(timezone.utc)
        self._started_monotonic = 0.0
        self._grid_origin = 0.0
        self._loop_task: asyncio.Task[None] | None = None
        self._cycle_task: asyncio.Task[HealthReport] | None = None
        self._cycle_lock: asyncio.Lock | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._preparing: asyncio.Future[AppIdentity] | None = None
        self._previous: HealthReport | None = None
        self._last_report: HealthReport | None = None
        self._write_errors: dict[Path, str] = {}

    def __repr__(self) -> str:
        return (
            f"<AsyncHealthService {self._state} interval={self.interval} "
            f"health_file={str(self.health_file)!r}>"
        )

    @property
    def running(self) -> bool:
        """True from the end of :meth:`start` until :meth:`stop` begins."""
        return self._state == "running"

    @property
    def last_report(self) -> HealthReport | None:
        """The last report written to the health file, or ``None``.

        On a service standing by (another process holds the file's lock), the last report
        its own cycle made, which is not on disk.
        """
        return self._last_report

    @property
    def writing(self) -> bool:
        """True while this service writes the file; False while it stands by for another."""
        return self._lock_state in ("held", "unlocked")

    @property
    def checks(self) -> Sequence[Check]:
        """The checks every cycle runs, the database check first."""
        return tuple(self._checks)

    async def __aenter__(self) -> AsyncHealthService:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Run the first cycle, then keep running cycles in a background task.

        Returns once the first report is on disk (or its write failed and was logged).
        :raises RuntimeError: if the service is already started.
        """
        if self._state != "stopped":
            raise RuntimeError(f"AsyncHealthService is already {self._state}")
        loop = asyncio.get_running_loop()
        self._state = "starting"
        self._generation += 1
        generation = self._generation
        self._cycle_lock = asyncio.Lock()
        self._started_at = datetime.now(timezone.utc)
        self._started_monotonic = time.monotonic()
        self._grid_origin = loop.time()
        self._ready = False
        self._lock_state = "unknown"
        self._lock = WriterLock(self.health_file)
        self._worker = WorkerThread()
        self._writer.executor = self._worker
        if self._prometheus_writer is not None:
            self._prometheus_writer.executor = self._worker
        try:
            prepare = partial(self._prepare, self._retiring)
            self._preparing = asyncio.ensure_future(self._off_loop(prepare))
            await asyncio.wait({self._preparing})  # stop() waits for it too: see there
            self._app_name, self._app_version = self._preparing.result()
            self._report_lock("unknown")
            if self._generation != generation or self._state != "starting":
                return  # stop() was called meanwhile
            for check in self._checks:
                hook = getattr(check, "on_start", None)
                if hook is not None:
                    hook()
            await self._run_cycle()
        except _Stopped:
            return  # stop() was called while starting: it has written the final report
        except BaseException:
            if self._generation == generation and self._state == "starting":
                self._close_checks()
                self._retire_worker()
                self._state = "stopped"
            raise
        if self._generation != generation or self._state != "starting":
            return  # pragma: no cover - stop() cancels the first cycle, raising _Stopped
        self._state = "running"
        self._loop_task = loop.create_task(self._run_loop(), name="healthfile-service")
        self._loop_task.add_done_callback(_report_loop_death)
        logger.debug("health service started: %r", self)

    async def check_now(self) -> HealthReport:
        """Run one extra cycle now and return its report.

        :raises RuntimeError: if the service is not running, or is stopped meanwhile.
        """
        if self._state != "running":
            raise RuntimeError(f"AsyncHealthService is not running ({self._state})")
        try:
            return await self._run_cycle()
        except _Stopped:
            raise RuntimeError("AsyncHealthService was stopped during check_now()") from None

    async def stop(self) -> None:
        """Stop promptly and write the final ``stopped`` report.

        A cycle in flight is cancelled; no hung check is waited for. A no-op when the service
        is not started. If the task calling ``stop()`` is itself cancelled,
        ``CancelledError`` propagates.
        """
        if self._state == "stopped":
            return
        if self._state == "stopping":
            # Another caller is stopping the service: return when it is done.
            assert self._stopped is not None
            await asyncio.wait({self._stopped})
            return
        self._state = "stopping"
        self._stopped = asyncio.get_running_loop().create_future()
        self._notify("STOPPING=1")
        tasks = {task for task in (self._loop_task, self._cycle_task) if task is not None}
        for task in tasks:
            task.cancel()
        try:
            if self._preparing is not None and not self._preparing.done():
                # Whether this service may write (the lock) is decided there.
                await asyncio.wait({self._preparing})
            if tasks:
                # asyncio.wait never raises the tasks' own CancelledError (the one we caused);
                # it raises only when our caller is cancelled, which must propagate.
                await asyncio.wait(tasks)
            await self._publish(self._final_report(), final=True)
            await self._wait_for_abandoned_checks()
        finally:
            self._loop_task = None
            self._retire_worker()
            self._close_checks()
            if self._systemd is not None:
                self._systemd.close()
            self._state = "stopped"
            self._stopped.set_result(None)
        logger.debug("health service stopped: %r", self)

    async def _off_loop(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in healthfile's own worker thread, never the loop's default executor."""
        assert self._worker is not None, "the worker exists from start() to stop()"
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn)

    def _retire_worker(self) -> None:
        """Release the lock once the work queued (the final write) is done; end the worker.

        Not awaited, so that stop() costs no extra hop: the next start() of this service
        waits for it in its own worker, another service takes over at its next cycle.
        """
        worker, self._worker = self._worker, None
        if worker is not None:
            self._retiring = worker.submit(self._lock.release)  # this start's lock
            worker.shutdown(wait=False)
        self._lock_state = "unknown"

    def _prepare(self, retiring: concurrent.futures.Future[None] | None) -> AppIdentity:
        """Take the lock if free (sweeping under it), read app_name and app_version (in the worker).

        ``retiring`` is the previous start's release, still under way in its own worker: a
        bounded wait for it, so that this start does not stand by for itself.
        """
        if retiring is not None:
            concurrent.futures.wait([retiring], timeout=_RELEASE_WAIT)
        self._take_lock()
        return self._read_identity()

    def _take_lock(self) -> None:
        """Try once to become the file's writer; on becoming it, sweep (in the worker)."""
        try:
            taken = self._lock.acquire()
        except OSError as exc:
            self._lock_state = "unlocked"
            self._lock_error = f"{type(exc).__name__}: {exc}"
            return
        if taken:
            self._lock_state = "held"
            # Only under the lock: another writer's temporary file would be live.
            self._sweep()
        else:
            self._lock_state = "standby"
            self._lock_holder = self._lock.holder()

    def _report_lock(self, before: _LockState) -> None:
        """Log entering standby (once per holder), a take-over, a lock that fails."""
        path = self.health_file
        if self._lock_state == "standby" and (
            before != "standby" or self._lock_holder != self._logged_holder
        ):
            self._logged_holder = self._lock_holder
            holder = "unknown" if self._lock_holder is None else self._lock_holder
            logger.warning(
                "pid %s writes %s; this service (pid %d) stands by and takes over when it "
                "stops (lock %s)",
                holder,
                path,
                os.getpid(),
                self._lock.path,
            )
        elif self._lock_state == "held" and before == "standby":
            logger.info("took over writing %s (from pid %s)", path, self._logged_holder)
        elif self._lock_state == "unlocked" and self._lock_error != self._logged_error:
            logger.error(
                "cannot lock %s: %s; writing %s without the lock (one writer per file is "
                "not enforced; retrying every cycle)",
                self._lock.path,
                self._lock_error,
                path,
            )
        if self._lock_state != "standby":
            self._logged_holder = None
        self._logged_error = self._lock_error if self._lock_state == "unlocked" else None

    def _sweep(self) -> None:
        """Remove temporary files a killed writer left (in the worker)."""
        try:
            removed = self._writer.sweep()
            if self._prometheus_writer is not None:
                removed += self._prometheus_writer.sweep()
        except OSError as exc:
            logger.warning("cannot remove stale temporary files: %s", exc)
            return
        if removed:
            logger.info("removed %d stale temporary file(s) of a killed writer", removed)

    def _read_identity(self) -> AppIdentity:
        """Read app_name and app_version once (in the worker), the pyproject at most once."""
        name, version = self._app_name_override, self._app_version_override
        if name is None or version is None:
            read = read_app_identity(self.pyproject)
            name = _identity("app_name", read.name) if name is None else name
            version = _identity("app_version", read.version) if version is None else version
        return AppIdentity(name, version)

    async def _run_loop(self) -> None:
        """Run a cycle at every due time on the monotonic grid until cancelled by stop()."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            due = (
                self._grid_origin
                + (math.floor((now - self._grid_origin) / self.interval) + 1) * self.interval
            )
            # stop() cancels this task: the sleep is the stop wait, and a cancellation can
            # only end it, never be swallowed by it (unlike wait_for on 3.10/3.11, gh-86296).
            await asyncio.sleep(due - now)
            try:
                await self._run_cycle()
            except _Stopped:  # pragma: no cover - stop() cancels this task first
                return
            except Exception as exc:
                logger.error("health check cycle failed: %s", format_exception(exc))

    async def _run_cycle(self) -> HealthReport:
        """Run one cycle in its own task, one cycle at a time, so that stop() can cancel it."""
        assert self._cycle_lock is not None
        async with self._cycle_lock:
            if self._state not in ("starting", "running"):
                raise _Stopped
            task = asyncio.get_running_loop().create_task(self._cycle(), name="healthfile-cycle")
            self._cycle_task = task
            try:
                await asyncio.wait({task})
            except asyncio.CancelledError:
                # Our caller was cancelled: take the cycle down with it, and do not leave
                # it running behind the lock.
                task.cancel()
                await asyncio.wait({task})
                raise
            finally:
                self._cycle_task = None
        if task.cancelled():
            raise _Stopped
        return task.result()

    async def _cycle(self) -> HealthReport:
        """Run every check, build the report, write it, tell on_change."""
        observations = await self._run_checks()
        now = datetime.now(timezone.utc)
        results: dict[str, CheckResult] = {}
        database: DatabaseState = "disconnected"
        for state, observed in zip(self._states.values(), observations, strict=False):
            results[state.name] = state.record(observed, now)
            if state.check is self._database_check:
                database = observed.database
        report = self._new_report(self._overall_status(results), database, results, now)
        await self._publish(report)
        return report

    async def _run_checks(self) -> list[_Observation]:
        """Run every check at once, each under its own timeout; never raise for their failures.

        One task per check and one wait for them all (one more per distinct timeout that
        expires), so that a cycle's cost on the loop grows as little as it can with the
        number of checks.
        """
        states = list(self._states.values())
        lingering = {state.task for state in states if state.task is not None}
        if lingering:
            # Runs cancelled a moment ago (timeout, stop) are usually just finishing.
            await asyncio.wait(lingering, timeout=_SETTLE)
        loop = asyncio.get_running_loop()
        since = datetime.now(timezone.utc)
        started = time.perf_counter()
        observed: dict[_CheckState, _Observation] = {}
        running: dict[asyncio.Task[CheckResult], _CheckState] = {}
        for state in states:
            if state.task is not None:
                observed[state] = _Observation(
                    CheckResult("fail", str(CheckStillRunning(state.task_since))), "timeout", 0.0
                )
                continue
            task = loop.create_task(state.check.run(), name=f"healthfile-check-{state.name}")
            state.task, state.task_since = task, since
            task.add_done_callback(state.run_done)
            running[task] = state
        deadlines = {task: started + state.timeout for task, state in running.items()}
        pending = set(running)
        try:
            while pending:
                deadline = min(deadlines[task] for task in pending)
                _, pending = await asyncio.wait(
                    pending, timeout=max(0.0, deadline - time.perf_counter())
                )
                now = time.perf_counter()
                for task in [task for task in pending if deadlines[task] <= now]:
                    task.cancel()
                    pending.discard(task)
                    state = running[task]
                    observed[state] = _Observation(
                        CheckResult("fail", f"timed out after {state.timeout:g} s"),
                        "timeout",
                        (now - started) * 1000,
                    )
        except asyncio.CancelledError:
            for task in pending:
                task.cancel()  # the cycle is being cancelled: so are its checks
            raise
        now = time.perf_counter()
        for task, state in running.items():
            if state not in observed:
                result, database = _judge_run(task)
                # A run that ended in the loop iteration where a timeout woke this cycle has
                # not had its done callback yet: it ended just now.
                finished = state.finished if state.finished >= started else now
                observed[state] = _Observation(result, database, (finished - started) * 1000)
        return [observed[state] for state in states]

    def _overall_status(self, results: dict[str, CheckResult]) -> HealthStatus:
        """online when every check passes; starting or degraded otherwise (SPEC §3.1)."""
        failing = [name for name, result in results.items() if result.status != "pass"]
        if not failing:
            return "online"
        in_start_period = time.monotonic() - self._started_monotonic < self.start_period
        if in_start_period and all(self._states[name].last_success is None for name in failing):
            return "starting"
        return "degraded"

    def _new_report(
        self,
        status: HealthStatus,
        database: DatabaseState,
        checks: dict[str, CheckResult],
        now: datetime,
    ) -> HealthReport:
        expires = now + self._freshness
        return HealthReport(
            status=status,
            database=database,
            timestamp=now,
            app_version=self._app_version,
            app_name=self._app_name,
            interval_seconds=self.interval,
            expires_at=ceil_to_second(expires),
            sequence=self._sequence + 1,  # counted when written: see _publish
            started_at=self._started_at,
            pid=os.getpid(),
            checks=checks,
        )

    def _final_report(self) -> HealthReport:
        previous = self._previous
        return self._new_report(
            "stopped",
            previous.database if previous is not None else "disconnected",
            dict(previous.checks) if previous is not None else {},
            datetime.now(timezone.utc),
        )

    async def _publish(self, report: HealthReport, *, final: bool = False) -> None:
        """Write the report (and its Prometheus twin), log changes, tell systemd and on_change.

        Only the file's one writer writes; a standby keeps the report as its own view.
        """
        previous, self._previous = self._previous, report
        if await self._may_write(final):
            self._sequence = report.sequence
            rendering = _Rendering(report)
            if await self._write(self._writer, rendering):
                self._last_report = rendering.report  # as written: outputs maybe shortened
                self._notify_alive()
            if self._prometheus_writer is not None:
                await self._write(self._prometheus_writer, partial(render_textfile, report))
        else:
            self._last_report = report
            self._notify_alive()  # alive, and the file is another process's to keep
        if _changed(previous, report):
            _log_change(previous, report)
            if self._on_change is not None:
                await self._call_on_change(previous, report)
        else:
            logger.debug(
                "report %d: %s (database %s)", report.sequence, report.status, report.database
            )

    async def _write(self, writer: AtomicWriter, render: Callable[[], bytes]) -> bool:
        """Replace one output file; log a failure once per distinct error, and the recovery."""
        try:
            await writer.replace(render)  # rendered off the loop, in the write's hop
        except OSError as exc:
            # Not the message: it may name the random temporary file, new every cycle.
            error = f"{type(exc).__name__}: {exc.strerror or exc}"
            if error != self._write_errors.get(writer.path):
                logger.error("cannot write %s: %s (retrying every cycle)", writer.path, error)
            self._write_errors[writer.path] = error
            return False
        if writer.path in self._write_errors:
            error = self._write_errors.pop(writer.path)
            logger.info("writing %s again after: %s", writer.path, error)
        return True

    async def _may_write(self, final: bool) -> bool:
        """Whether this service writes now; one that does not tries to take the lock first.

        Never at stop(): a standby's final report is not written. It only waits for a lock
        attempt still under way in the worker (from a cycle stop() cancelled).
        """
        if self._lock_state != "held":
            if final:
                await self._off_loop(_nothing)
            else:
                before = self._lock_state
                await self._off_loop(self._take_lock)
                self._report_lock(before)
        return self.writing

    def _notify_alive(self) -> None:
        """READY=1 with the first report on disk (a standby: its first cycle), then WATCHDOG=1."""
        if self._state in ("starting", "running"):
            self._notify("WATCHDOG=1" if self._ready else "READY=1")
            self._ready = True

    def _notify(self, message: str) -> None:
        if self._systemd is not None:
            self._systemd.notify(message)

    async def _call_on_change(self, previous: HealthReport | None, current: HealthReport) -> None:
        """Call on_change, bounded by check_timeout; log and swallow what it raises."""
        callback = self._on_change
        assert callback is not None
        call = asyncio.ensure_future(
            call_off_loop(partial(callback, previous, current), self._on_change_runner)
        )
        try:
            done, _ = await asyncio.wait({call}, timeout=self.check_timeout)
            if not done:
                call.cancel()
                raise TimeoutError(f"on_change took longer than {self.check_timeout:g} s")
            if call.cancelled():
                raise RuntimeError("on_change was cancelled")
            # Retrieved, not re-raised: whatever the callback raised is logged. A sync one's
            # SystemExit or KeyboardInterrupt arrives wrapped in RaisedInThread; an async
            # one's ends the loop, as asyncio does, before this runs.
            error = call.exception()
            if isinstance(error, CheckStillRunning):
                raise error
            if error is not None:
                logger.error(
                    "on_change callback failed: %s",
                    format_exception(unwrap_thread_exception(error)),
                )
        except CheckStillRunning as exc:
            # A sync callback still blocked on an earlier report (its thread cannot be
            # cancelled): this report is not delivered, and that is all that went wrong.
            logger.warning(
                "on_change not called for report %d (%s): its call for an earlier report is %s",
                current.sequence,
                current.status,
                exc,
            )
        except Exception as exc:
            logger.error("on_change callback failed: %s", format_exception(exc))

    async def _wait_for_abandoned_checks(self) -> None:
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

    def _close_checks(self) -> None:
        for name, state in self._states.items():
            hook = getattr(state.check, "on_stop", None)
            if hook is not None:
                try:
                    hook()
                except Exception as exc:
                    logger.error("on_stop of check %r failed: %s", name, format_exception(exc))


def _is_file_mode(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0o7777


def _is_optional_text(value: object) -> bool:
    return value is None or (
        isinstance(value, str) and bool(value.strip()) and len(value) <= MAX_IDENTITY_CHARS
    )


def _identity(what: str, value: str) -> str:
    """Keep a name or version read from the project, unless it is too long for the file."""
    if len(value) <= MAX_IDENTITY_CHARS:
        return value
    logger.warning(
        "%s read from the project is longer than %d characters; written as %r",
        what,
        MAX_IDENTITY_CHARS,
        UNKNOWN_VERSION,
    )
    return UNKNOWN_VERSION


def _collect_checks(
    database: str | os.PathLike[str] | Check | None, checks: Iterable[Check]
) -> tuple[list[Check], Check, list[str]]:
    """Order the checks (database first), find the database check, validate their names.

    Returns the checks, the database check, and each check's name validated and redacted;
    two names that read alike once redacted are refused like duplicates.
    """
    extra = list(checks)
    for check in extra:
        _require_check(check)
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
    else:
        raise TypeError(f"database must be a path or a Check, not {type(database).__name__}")
    ordered = [database_check, *extra]
    names = [_validate_name(check.name) for check in ordered]
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise ValueError(f"check names must be unique; repeated: {', '.join(duplicates)}")
    return ordered, database_check, names


def refuse_shared_files(
    database: object,
    health_file: str | os.PathLike[str],
    prometheus_file: str | os.PathLike[str] | None,
) -> None:
    """Refuse any two of database / health file / Prometheus file that are one file.

    The same path once made absolute or once symlinks are resolved, or the same existing
    file (device and inode: a hard link too). Writing the health file over the database
    would destroy the application's data. ``database`` that is not a path is left out.

    :raises ValueError: naming both.
    """
    named = [
        (what, _absolute(path))
        for what, path in (
            ("database", database),
            ("health_file", health_file),
            ("prometheus_file", prometheus_file),
        )
        if isinstance(path, (str, os.PathLike))
    ]
    for index, (first, first_path) in enumerate(named):
        for second, second_path in named[index + 1 :]:
            if _same_file(first_path, second_path):
                raise ValueError(
                    f"{first} and {second} are the same file ({str(first_path)!r} and "
                    f"{str(second_path)!r}): the service would overwrite it"
                )


def _same_file(first: Path, second: Path) -> bool:
    """Tell whether two absolute paths name one file, existing or not."""
    if os.path.normcase(first) == os.path.normcase(second):
        return True
    if os.path.normcase(os.path.realpath(first)) == os.path.normcase(os.path.realpath(second)):
        return True
    try:
        return os.path.samefile(first, second)  # st_dev and st_ino: hard links too
    except OSError:
        return False  # one of them does not exist (yet): the path comparisons decided


def _require_check(check: object) -> Check:
    """Refuse objects that are not checks, or whose run() is not async."""
    if not isinstance(check, Check) or not inspect.iscoroutinefunction(check.run):
        raise TypeError(f"a check needs a name and an async run() method, not {check!r}")
    return check


def _judge_run(task: asyncio.Task[CheckResult]) -> tuple[CheckResult, DatabaseState]:
    """The result of a finished check run, and what it means for the ``database`` field."""
    if task.cancelled():
        return CheckResult("fail", "cancelled"), "disconnected"
    exc = task.exception()
    if isinstance(exc, CheckStillRunning):
        return CheckResult("fail", str(exc)), "timeout"
    if exc is not None:
        return CheckResult("fail", describe_exception(unwrap_thread_exception(exc))), "disconnected"
    value = task.result()
    if not isinstance(value, CheckResult):
        return (
            CheckResult("fail", f"run() returned {type(value).__name__}, not CheckResult"),
            "disconnected",
        )
    return value, "disconnected" if value.status == "fail" else "connected"


def _nothing() -> None:
    """Do nothing (in the worker, after what is queued before it)."""


def _report_loop_death(task: asyncio.Task[None]) -> None:
    """Log a cycle loop that ended by anything but stop(): the file will go stale."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.critical("the health check loop died; no more reports: %s", format_exception(exc))


class _Rendering:
    """Render a report within the probe's size limit (in the write's hop); keep what it wrote."""

    def __init__(self, report: HealthReport) -> None:
        self.report = report

    def __call__(self) -> bytes:
        self.report, data = fit_report(self.report, MAX_FILE_BYTES)
        return data


def _changed(previous: HealthReport | None, current: HealthReport) -> bool:
    if previous is None or previous.status != current.status:
        return True
    before = {name: result.status for name, result in previous.checks.items()}
    return before != {name: result.status for name, result in current.checks.items()}


def _log_change(previous: HealthReport | None, current: HealthReport) -> None:
    """Log one line for a change: the status now, and every check that is not passing."""
    reasons = "; ".join(
        f"{name} {result.status}: {result.output}" if result.output else f"{name} {result.status}"
        for name, result in current.checks.items()
        if result.status != "pass"
    )
    before = "none" if previous is None else previous.status
    change = current.status if before == current.status else f"{before} -> {current.status}"
    logger.log(
        logging.WARNING if current.status == "degraded" else logging.INFO,
        "health %s (database %s)%s",
        change,
        current.database,
        f": {reasons}" if reasons else "",
    )


async def serve_until(service: AsyncHealthService, stop_requested: asyncio.Event) -> None:
    """Start ``service``, wait for ``stop_requested``, stop it (also while it is starting)."""
    starting = asyncio.ensure_future(service.start())
    stopping = asyncio.ensure_future(stop_requested.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()  # a start() that failed is the caller's to report
            await stopping
        # stop() also stops a service that is still starting: start() then returns.
        await service.stop()
        await starting
    finally:
        stopping.cancel()
