"""AsyncHealthService: the lifecycle and the schedule of cycles on the host's event loop.

Start and stop, the grid of cycle start times, one cycle at a time. Running the checks is
``_cycle``'s (a :class:`CheckRunner`), writing and telling is ``_publish``'s (a
:class:`Publisher`); a cycle hands the one's outcome, made a report, to the other.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from ._checks import Check
from ._cycle import CheckRunner
from ._publish import OnChange, Publisher
from ._report import (
    HealthReport,
    format_exception,
)
from ._reporting import Reporter
from ._schedule import Schedule, Stopped
from ._settings import UNSET, Configured, Unset, resolve_settings
from ._version import AppIdentity

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


class AsyncHealthService(Configured):
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
    :raises ImportError: for ``prometheus_file`` without prometheus_client, ``http``
        without h11.
    :raises TypeError: for an argument of the wrong type (``interval="5"``, a function
        where a check goes, one check rather than a list); the message names it.
    :raises ValueError: for a value out of range (see docs/api.md): bad or duplicate check
        names or options, two of database / health_file / prometheus_file that are one
        file, checks too many for the health file, a bad variable above (named).

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
            http=http,
        )
        if on_change is not None and not callable(on_change):
            raise TypeError(f"on_change must be callable, not {type(on_change).__name__}")
        self._http: HTTPServer | None = None
        self._runner = CheckRunner.of_settings(settings, checks)
        self._publisher = Publisher(
            settings.health_file,
            settings.prometheus_file,
            file_mode=settings.file_mode,
            notify_systemd=notify_systemd,
            on_change=on_change,
            callback_timeout=settings.check_timeout,
            live=self._live,
        )
        self._reporter = Reporter(settings, self._runner.longest_timeout)

        self._state: _State = "stopped"
        self._generation = 0  # counts start() calls, so a start() that stop() overtook knows
        self._schedule = Schedule(settings.interval, self._cycle, self._live)
        self._loop_task: asyncio.Task[None] | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._preparing: asyncio.Future[AppIdentity] | None = None

    def __repr__(self) -> str:
        return (
            f"<AsyncHealthService {self._state} interval={self.interval} "
            f"health_file={str(self.health_file)!r}>"
        )

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
        self._reporter.started_at = datetime.now(timezone.utc)
        self._runner.restart_clock()
        self._schedule.begin(loop)
        prepare = self._publisher.open(self._reporter.read_identity)
        try:
            self._preparing = asyncio.ensure_future(self._publisher.off_loop(prepare))
            await self._serve_http(generation)  # a port in use: no report is written
            await asyncio.wait({self._preparing})  # stop() waits for it too: see there
            self._reporter.identity = self._preparing.result()
            self._publisher.report_lock()
            if self._generation != generation or self._state != "starting":
                return  # stop() was called meanwhile
            self._runner.start_checks()
            await self._schedule.run_once()
        except Stopped:
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
            return  # pragma: no cover - stop() cancels the first cycle, raising Stopped
        self._state = "running"
        self._loop_task = loop.create_task(self._schedule.run_forever(), name="healthfile-service")
        self._loop_task.add_done_callback(_report_loop_death)
        logger.debug("health service started: %r", self)

    async def _stop_while_starting(self) -> None:
        """Stop a start() its caller cancelled: the final report with the app's identity."""
        assert self._preparing is not None
        # The lock and the identity are decided there; the final report needs both.
        await asyncio.wait({self._preparing})
        if not self._preparing.cancelled() and self._preparing.exception() is None:
            self._reporter.identity = self._preparing.result()
        await self.stop()

    async def check_now(self) -> HealthReport:
        """Run one extra cycle now and return its report.

        :raises RuntimeError: if the service is not running, or is stopped meanwhile.
        """
        if self._state != "running":
            raise RuntimeError(f"AsyncHealthService is not running ({self._state})")
        try:
            return await self._schedule.run_once()
        except Stopped:
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
        tasks = {task for task in (self._loop_task, self._schedule.task) if task is not None}
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
            final = self._reporter.final_report(
                self._publisher.previous, self._publisher.sequence + 1
            )
            await self._publisher.publish(final, final=True)
            while (cycle := self._schedule.task) is not None and cycle not in tasks:
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
        if self._settings.http_address is not None:
            from ._asgi import asgi_app
            from ._server import HTTPServer

            server = HTTPServer(asgi_app(self.health_file), *self._settings.http_address)
            await server.start()
            if self._generation != generation or self._state != "starting":
                server.shut_down()  # stop() has run, or is past the point where it closes ours
            else:
                self._http = server

    def _close_http(self) -> HTTPServer | None:
        """Close the HTTP server and its connections now; return it to wait for, or None."""
        server, self._http = self._http, None
        if server is not None:
            server.shut_down()
        return server

    def _live(self) -> bool:
        """Whether cycles may run: the service is starting or running."""
        return self._state in ("starting", "running")

    async def _cycle(self) -> HealthReport:
        """Run every check, build the report, publish it."""
        outcome = await self._runner.run()
        if not self._live():
            # stop() began while the checks ran and did not cancel this task (it was still
            # being created: an eager task factory): its `stopped` report is the last.
            raise Stopped
        report = self._reporter.report(
            outcome.status,
            outcome.database,
            outcome.checks,
            outcome.now,
            self._publisher.sequence + 1,  # counted when written
        )
        return await self._publisher.publish(report)


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
