"""AsyncHealthService: the lifecycle and the schedule of cycles on the host's event loop.

Start and stop, the grid of cycle start times, one cycle at a time. Running the checks is
``_cycle``'s (a :class:`CheckRunner`), writing and telling is ``_publish``'s (a
:class:`Publisher`); a cycle hands the one's outcome, made a report, to the other.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from ._checks import Check
from ._cycle import CheckRunner, collect_checks
from ._limits import MAX_IDENTITY_CHARS
from ._publish import OnChange, Publisher
from ._report import (
    UNKNOWN_APP_NAME,
    CheckResult,
    DatabaseState,
    HealthReport,
    HealthStatus,
    ceil_to_second,
    format_exception,
    refuse_oversized,
)
from ._settings import UNSET, Unset, refuse_shared_files, resolve_settings
from ._version import UNKNOWN_VERSION, AppIdentity, read_app_identity

if TYPE_CHECKING:
    from ._server import HTTPServer

__all__ = ["AsyncHealthService", "OnChange", "serve_until"]

logger = logging.getLogger("healthfile")

# Four clocks, each where it is the right one:
# - the event loop's own clock, loop.time(), for the grid of cycle start times: the wait for
#   the next cycle is a loop timer (asyncio.sleep), so its due time is reckoned in the clock
#   the loop fires it by;
# - time.perf_counter() for what is measured within a cycle (a check's duration, its timeout
#   deadline) and for loop lag: the finest clock there is, where uvloop's loop.time() counts
#   whole milliseconds;
# - time.monotonic() for spans across cycles and threads (the start period, the SQLite
#   probe's busy deadline, a heartbeat's age, the thread facade's waits): immune to clock
#   changes, and comparable between threads;
# - the wall clock, datetime.now(timezone.utc), only for what the file says (timestamp,
#   expires_at, started_at, last_success, "still running since"): read by other processes,
#   which have nothing else to compare against.

_State = Literal["stopped", "starting", "running", "stopping"]


class _Stopped(Exception):
    """stop() cancelled the cycle this caller was waiting for."""


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

    Arguments not passed are read from the environment the command line reads too
    (``HEALTHFILE_DATABASE``, ``_HEALTH_FILE``, ``_INTERVAL``, ``_CHECK_TIMEOUT``,
    ``_APP_NAME``, ``_APP_VERSION``, ``_PROMETHEUS_FILE``), else take their defaults.

    :param database: the SQLite database to probe (a path; default ``data/app.db``), or any
        :class:`Check` whose outcome feeds the report's ``database`` field, or ``None`` when
        ``checks`` holds a check named ``"database"``.
    :param health_file: the JSON file to keep (its directory is created when missing;
        default ``data/health.json``).
    :param interval: seconds between the starts of two cycles (default 30).
    :param check_timeout: seconds a check may run before it counts as timed out (checks may
        set their own ``timeout``); also bounds ``on_change`` (default 3).
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
    :param file_mode: the health file's permission bits, whatever the umask: at most
        ``0o777``, with the owner's read bit.
    :param prometheus_file: also write every report there in the Prometheus text format, for
        node_exporter's textfile collector (needs the extra ``healthfile[prometheus]``).
    :param notify_systemd: send ``READY=1``, ``WATCHDOG=1`` and ``STOPPING=1`` to
        ``NOTIFY_SOCKET`` when it is set.
    :param http: ``"HOST:PORT"`` (IPv6 as ``"[::1]:8081"``) to serve :func:`asgi_app` on
        this service's loop from :meth:`start` to :meth:`stop`, with a built-in HTTP/1.1
        server (needs the extra ``healthfile[http]``); port 0 takes any free port
        (:attr:`http_address` tells which). It answers from the file on disk, also while
        this service stands by for another writer.
    :raises ImportError: for ``prometheus_file`` without prometheus_client installed, or
        ``http`` without h11.
    :raises TypeError: for an argument of the wrong type (``interval="5"``, a check that is
        a plain function, ``checks=`` one check rather than a list, ``critical="yes"``,
        ``http=8081``).
    :raises ValueError: for a value out of range: a non-positive interval or check_timeout,
        a negative start_period, a ``file_mode`` above ``0o777`` or without the owner's read
        bit, duplicate or bad check names (empty, unprintable, over 64 characters, a comma,
        blanks around), bad check options (a timeout or threshold out of range), two of
        database / health_file / prometheus_file that are one file, checks too many to fit
        in the health file even with their outputs shortened, ``http`` that is not
        ``"HOST:PORT"``, or a bad value in one of the variables above (the message names
        it).

    Every path is made absolute once, at construction: a later ``os.chdir()`` changes
    nothing.
    """

    def __init__(
        self,
        database: str | os.PathLike[str] | Check | Unset | None = UNSET,
        *,
        health_file: str | os.PathLike[str] | None = None,
        interval: float | None = None,
        check_timeout: float | None = None,
        pyproject: str | os.PathLike[str] | None = "pyproject.toml",
        app_version: str | None = None,
        start_period: float = 0.0,
        checks: Iterable[Check] = (),
        on_change: OnChange | None = None,
        file_mode: int = 0o644,
        prometheus_file: str | os.PathLike[str] | None = None,
        notify_systemd: bool = False,
        app_name: str | None = None,
        http: str | None = None,
    ) -> None:
        self._settings = settings = resolve_settings(
            database=database,
            health_file=health_file,
            interval=interval,
            check_timeout=check_timeout,
            start_period=start_period,
            pyproject=pyproject,
            app_version=app_version,
            app_name=app_name,
            file_mode=file_mode,
            prometheus_file=prometheus_file,
        )
        if on_change is not None and not callable(on_change):
            raise TypeError(f"on_change must be callable, not {type(on_change).__name__}")
        self._http_address: tuple[str, int] | None = None
        if http is not None:
            from ._server import parse_address, require_h11

            self._http_address = parse_address(http)
            require_h11()
        self._http: HTTPServer | None = None
        checks_in_order, database_check, options = collect_checks(
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
        self._publisher = Publisher(
            settings.health_file,
            settings.prometheus_file,
            file_mode=settings.file_mode,
            notify_systemd=notify_systemd,
            on_change=on_change,
            callback_timeout=settings.check_timeout,
            live=lambda: self._state in ("starting", "running"),
        )
        self._runner = CheckRunner(
            checks_in_order,
            options,
            database_check=database_check,
            start_period=settings.start_period,
        )
        # A report stays fresh for one interval, the longest check, and a second of slack
        # for the write and the rounding of the timestamps.
        self._freshness = timedelta(seconds=settings.interval + self._runner.longest_timeout + 1.0)

        self._state: _State = "stopped"
        self._generation = 0  # counts start() calls, so a start() that stop() overtook knows
        self._app_version = UNKNOWN_VERSION
        self._app_name = UNKNOWN_APP_NAME
        self._started_at = datetime.now(timezone.utc)
        self._grid_origin = 0.0
        self._loop_task: asyncio.Task[None] | None = None
        self._cycle_task: asyncio.Task[HealthReport] | None = None
        self._cycle_lock: asyncio.Lock | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._preparing: asyncio.Future[AppIdentity] | None = None

    def __repr__(self) -> str:
        return (
            f"<AsyncHealthService {self._state} interval={self.interval} "
            f"health_file={str(self.health_file)!r}>"
        )

    @property
    def interval(self) -> float:
        """Seconds between the starts of two cycles."""
        return self._settings.interval

    @property
    def check_timeout(self) -> float:
        """Seconds a check without its own ``timeout`` may run; also bounds ``on_change``."""
        return self._settings.check_timeout

    @property
    def start_period(self) -> float:
        """Seconds after :meth:`start` in which never-passed failing checks read ``starting``."""
        return self._settings.start_period

    @property
    def health_file(self) -> Path:
        """The health file, absolute."""
        return self._settings.health_file

    @property
    def prometheus_file(self) -> Path | None:
        """The Prometheus textfile, absolute, or ``None``."""
        return self._settings.prometheus_file

    @property
    def pyproject(self) -> Path | None:
        """The pyproject.toml ``app_version`` (and ``app_name``) are read from, or ``None``."""
        return self._settings.pyproject

    @property
    def http_address(self) -> tuple[str, int] | None:
        """The host and port the HTTP server listens on while started, else ``None``."""
        return None if self._http is None else self._http.address

    @property
    def running(self) -> bool:
        """True from the end of :meth:`start` until :meth:`stop` begins."""
        return self._state == "running"

    @property
    def last_report(self) -> HealthReport | None:
        """The last report made, written or not; ``None`` only before the first :meth:`start`.

        Whether it reached the disk: :attr:`last_write_error` is None and :attr:`writing` is
        True (a service standing by for another process makes reports it does not write).
        """
        return self._publisher.last_report

    @property
    def last_write_error(self) -> str | None:
        """Why the last write of the health file failed (``"cannot write …: …"``), or None.

        None once a write succeeds, and while the service stands by for another process.
        """
        return self._publisher.write_error

    @property
    def writing(self) -> bool:
        """True while this service holds the file (writes it, or tries to); False otherwise.

        False while it stands by for another process that holds the file, and when stopped.
        """
        return self._publisher.writing

    @property
    def checks(self) -> Sequence[Check]:
        """The checks every cycle runs, the database check first."""
        return self._runner.checks

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

        Returns once the first report is on disk, or its write failed and was logged
        (:attr:`last_write_error` then says why; :attr:`last_report` is the report made).
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
        self._runner.restart_clock()
        self._grid_origin = loop.time()
        prepare = self._publisher.open(self._read_identity)
        try:
            self._preparing = asyncio.ensure_future(self._publisher.off_loop(prepare))
            await self._serve_http(generation)  # a port in use: no report is written
            await asyncio.wait({self._preparing})  # stop() waits for it too: see there
            self._app_name, self._app_version = self._preparing.result()
            self._publisher.report_lock()
            if self._generation != generation or self._state != "starting":
                return  # stop() was called meanwhile
            self._runner.start_checks()
            await self._run_cycle()
        except _Stopped:
            return  # stop() was called while starting: it has written the final report
        except asyncio.CancelledError:
            # The caller was cancelled while starting (a stop signal through
            # cancel_on_signals() around the `async with`): stop as stop() does, so that the
            # file says "stopped", then let the cancellation go on.
            if self._generation == generation and self._state == "starting":
                await self._stop_while_starting()
            raise
        except BaseException:
            if self._generation == generation and self._state == "starting":
                self._close_http()
                self._runner.close()
                self._publisher.retire_soon()
                self._state = "stopped"
            raise
        if self._generation != generation or self._state != "starting":
            return  # pragma: no cover - stop() cancels the first cycle, raising _Stopped
        self._state = "running"
        self._loop_task = loop.create_task(self._run_loop(), name="healthfile-service")
        self._loop_task.add_done_callback(_report_loop_death)
        logger.debug("health service started: %r", self)

    async def _stop_while_starting(self) -> None:
        """Stop a start() its caller cancelled: the final report with the app's identity."""
        assert self._preparing is not None
        # The lock and the identity are decided there; the final report needs both.
        await asyncio.wait({self._preparing})
        if not self._preparing.cancelled() and self._preparing.exception() is None:
            self._app_name, self._app_version = self._preparing.result()
        await self.stop()

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
        if self._state == "stopping" and self._stopped is not None:
            # Another caller is stopping the service: return when it is done.
            await asyncio.wait({self._stopped})
            return
        self._state = "stopping"
        self._stopped = asyncio.get_running_loop().create_future()
        self._publisher.notify("STOPPING=1")
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
            await self._publisher.publish(self._final_report(), final=True)
            while (cycle := self._cycle_task) is not None and cycle not in tasks:
                # A cycle whose task was being created when stop() began (an eager task
                # factory runs a check's first step, which may call stop(), inside
                # create_task): it publishes nothing (_cycle sees the state), and ends here.
                tasks.add(cycle)
                cycle.cancel()
                await asyncio.wait({cycle})
            await self._runner.wait_abandoned()
            await self._publisher.retire()  # the lock file removed, the worker ended
        finally:
            http = self._close_http()  # after the final report: probes see "stopped"
            self._loop_task = None
            self._publisher.retire_soon()  # when the stop failed or was cancelled
            self._runner.close()
            self._publisher.close()
            self._state = "stopped"
            self._stopped.set_result(None)
        if http is not None:
            await http.wait_closed()  # the port is free when stop() returns
        logger.debug("health service stopped: %r", self)

    async def _serve_http(self, generation: int) -> None:
        """Start the HTTP server, when ``http`` was given, unless stop() came meanwhile."""
        if self._http_address is None:
            return
        from ._asgi import asgi_app
        from ._server import HTTPServer

        server = HTTPServer(asgi_app(self.health_file), *self._http_address)
        await server.start()
        if self._generation != generation or self._state != "starting":
            server.close()  # stop() has run (or is past the point where it closes ours)
            return
        self._http = server

    def _close_http(self) -> HTTPServer | None:
        """Close the HTTP server and its connections now; return it to wait for, or None."""
        server, self._http = self._http, None
        if server is not None:
            server.close()
            server.app.close()
        return server

    def _read_identity(self) -> AppIdentity:
        """Read app_name and app_version once (in the worker), the pyproject at most once."""
        name, version = self._settings.app_name, self._settings.app_version
        if name is None or version is None:
            read = read_app_identity(self._settings.pyproject)
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
        cycle_lock = self._cycle_lock
        if cycle_lock is None:
            raise _Stopped  # never started
        async with cycle_lock:
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
        """Run every check, build the report, publish it."""
        outcome = await self._runner.run()
        if self._state not in ("starting", "running"):
            # stop() began while the checks ran and did not cancel this task (it was still
            # being created: an eager task factory): its `stopped` report is the last.
            raise _Stopped
        report = self._new_report(outcome.status, outcome.database, outcome.checks, outcome.now)
        return await self._publisher.publish(report)

    def _new_report(
        self,
        status: HealthStatus,
        database: DatabaseState,
        checks: dict[str, CheckResult],
        now: datetime,
    ) -> HealthReport:
        """Make the report of a cycle judged at ``now``."""
        expires = now + self._freshness
        return HealthReport(
            status=status,
            database=database,
            timestamp=now,
            app_version=self._app_version,
            app_name=self._app_name,
            interval_seconds=self._settings.interval,
            expires_at=ceil_to_second(expires),
            sequence=self._publisher.sequence + 1,  # counted when written
            started_at=self._started_at,
            pid=os.getpid(),
            checks=checks,
        )

    def _final_report(self) -> HealthReport:
        """Make the ``stopped`` report: the last one's database and checks, dated now."""
        previous = self._publisher.previous
        return self._new_report(
            "stopped",
            previous.database if previous is not None else "disconnected",
            dict(previous.checks) if previous is not None else {},
            datetime.now(timezone.utc),
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


def _report_loop_death(task: asyncio.Task[None]) -> None:
    """Log a cycle loop that ended by anything but stop(): the file will go stale."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.critical("the health check loop died; no more reports: %s", format_exception(exc))


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
