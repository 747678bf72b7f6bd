"""HealthCheckService: the thread facade for programs without an event loop of their own."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, TypedDict

from ._checks import Check
from ._options import validate_seconds
from ._report import HealthReport
from ._service import AsyncHealthService, OnChange
from ._settings import ENVIRONMENT, refuse_shared_files

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import Unpack
    else:
        from typing_extensions import Unpack

__all__ = ["HealthCheckService", "ServiceOptions"]

logger = logging.getLogger("healthfile")

THREAD_NAME = "HealthCheckThread"

# AsyncHealthService's default database, which a health_file given alone must not be.
_DEFAULT_DATABASE = "data/app.db"

# How often a caller blocked in check_now() looks whether the service thread has died under
# it (a cycle submitted as the loop closed is never run, so its future never resolves).
_LIVENESS_POLL = 0.1

# How often the service's loop looks for its first report when the first write failed.
_READY_POLL = 0.1


class ServiceOptions(TypedDict, total=False):
    """The keyword options :class:`HealthCheckService` passes on to :class:`AsyncHealthService`.

    Every option of ``AsyncHealthService`` but ``interval`` (the facade's ``check_interval``)
    and ``health_file`` (its second argument).
    """

    database: str | os.PathLike[str] | Check | None
    check_timeout: float | None
    pyproject: str | os.PathLike[str] | None
    app_version: str | None
    app_name: str | None
    start_period: float
    checks: Iterable[Check]
    on_change: OnChange | None
    file_mode: int
    prometheus_file: str | os.PathLike[str] | None
    notify_systemd: bool


class _Run:
    """One start() of the facade: its thread and loop, and what other threads ask of it.

    Every field another thread writes is a plain attribute store, and every wake-up a lock
    release or a ``call_soon_threadsafe``: :meth:`HealthCheckService.stop` must work from a
    signal handler that interrupted any line of the facade, so it may take no lock and touch
    no ``threading.Event`` (whose internal lock the interrupted line may hold).
    """

    def __init__(self, previous: threading.Thread | None) -> None:
        self.previous = previous  # a thread whose stop() timed out: this run starts after it
        self.thread: threading.Thread | None = None
        self.stop_requested = False
        self.cancelled = False  # start() was interrupted before it let the thread go
        # Held until start() has published this run (or stop() has seen it): until then the
        # thread starts nothing, so that a run nobody can stop never writes a report.
        self.gate = threading.Lock()
        self.gate.acquire()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_event: asyncio.Event | None = None
        self.starting: asyncio.Future[None] | None = None
        self.loop_ready = threading.Event()  # the loop exists, or the thread has ended
        self.ready = threading.Event()  # the first report is on disk, or the thread has ended
        self.first_report = False
        self.ended = threading.Lock()  # released by the thread as it ends
        self.ended.acquire()

    def is_alive(self) -> bool:
        """Whether the run's thread is running the service (not yet past its last act, after
        which it only returns: how long that takes varies with the Python version)."""
        return self.thread is not None and self.thread.is_alive() and self.ended.locked()

    def wait_ended(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the thread to end (also one never started)."""
        if self.ended.acquire(timeout=timeout):
            self.ended.release()

    def open_gate(self) -> None:
        """Let the thread go; a later call (start() and stop() both may call it) is harmless."""
        with contextlib.suppress(RuntimeError):  # already released
            self.gate.release()

    def request_stop(self) -> None:
        """Tell the service to stop (on its loop)."""
        assert self.stop_event is not None
        self.stop_event.set()


class HealthCheckService:
    """Run an :class:`AsyncHealthService` on its own event loop in a daemon thread.

    For desktop apps and scripts without asyncio::

        service = HealthCheckService()
        service.start()   # returns at once; the first report follows in the background
        ...
        service.stop()    # writes the final "stopped" report before it returns

    ``last_report``, :meth:`check_now` and :meth:`wait_ready` are safe to call from any
    thread but the service's own; :meth:`stop` also from a signal handler, at any moment.

    :param check_interval: seconds between the starts of two cycles; ``None``:
        ``HEALTHFILE_INTERVAL``, else 30.
    :param health_file: the JSON file to keep; ``None``: ``HEALTHFILE_HEALTH_FILE``, else
        ``data/health.json``.
    :param loop_factory: makes the event loop the service runs on (``uvloop.new_event_loop``,
        say); ``None`` means asyncio's default.
    :param options: the keyword options of :class:`AsyncHealthService` (``database``,
        ``check_timeout``, ``pyproject``, ``app_version``, ``checks``, ``on_change``, ...;
        see :class:`ServiceOptions`). Bad values raise here, in the caller's thread:
        ``TypeError`` for a wrong type, ``ValueError`` for a value out of range.
    """

    def __init__(
        self,
        check_interval: float | None = None,
        health_file: str | os.PathLike[str] | None = None,
        *,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
        **options: Unpack[ServiceOptions],
    ) -> None:
        if "interval" in options:
            raise TypeError("HealthCheckService takes check_interval=, not interval=")
        if loop_factory is not None and not callable(loop_factory):
            raise TypeError(f"loop_factory must be callable, not {type(loop_factory).__name__}")
        # Validated here, so that a message names check_interval as the caller wrote it.
        interval = None
        if check_interval is not None:
            interval = validate_seconds("check_interval", check_interval)
        if health_file is not None:
            _refuse_health_file_as_database(health_file, options)
        # A plain dict: the options are typed at this signature, for the caller.
        passed: dict[str, Any] = dict(options)
        self._service = AsyncHealthService(interval=interval, health_file=health_file, **passed)
        self._loop_factory = loop_factory
        self._start_lock = threading.Lock()
        self._run: _Run | None = None
        self._stop_token = object()  # replaced by every stop(): a start() in progress sees it
        self._stop_timeout = 2.0

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<HealthCheckService {state} service={self._service!r}>"

    @property
    def service(self) -> AsyncHealthService:
        """The asyncio service this facade runs (use it only from the service's own loop)."""
        return self._service

    @property
    def is_running(self) -> bool:
        """True while the background thread runs: from :meth:`start` until :meth:`stop` ends it."""
        run = self._run
        return run is not None and run.is_alive()

    @property
    def running(self) -> bool:
        """The same as :attr:`is_running` (the name :class:`AsyncHealthService` uses)."""
        return self.is_running

    @property
    def last_report(self) -> HealthReport | None:
        """The last report made, written or not, or ``None`` before the first; any thread.

        A GUI polls this from its own loop (Tk's ``after``) to show the status; whether the
        report reached the disk, :attr:`last_write_error` says.
        """
        return self._service.last_report

    @property
    def last_write_error(self) -> str | None:
        """Why the last write of the health file failed, or None once one succeeds; any thread."""
        return self._service.last_write_error

    @property
    def writing(self) -> bool:
        """True while this service holds the health file; False while another process does."""
        return self._service.writing

    def start(self) -> None:
        """Launch the daemon thread ``HealthCheckThread``; return without waiting for a cycle.

        A second call while running does nothing but log a warning. After a :meth:`stop`
        that timed out (its thread still writing the final report), the new thread waits for
        the old one to end, then starts the service: nothing is ever silently not started.
        """
        token: object | None = None
        run: _Run | None = None
        try:
            with self._start_lock:  # one start() at a time; stop() never takes it
                token = self._stop_token
                current = self._run
                if current is not None and current.is_alive() and not current.stop_requested:
                    logger.warning("health check service is already running")
                    return
                run = self._launch()
                # A stop() that came while this start() ran (from a signal handler or another
                # thread) stops this run too, as if it had come just after start() returned.
                overtaken = self._stop_token is not token
                run.stop_requested = run.stop_requested or overtaken
                run.open_gate()
        except BaseException:
            # Something raised inside start(), such as a signal handler's SystemExit after its
            # stop(): the start that stop() overtook still ends with "stopped" on disk; any
            # other is dropped before it starts anything.
            if token is not None and self._stop_token is not token:
                if run is None or run.thread is None:  # its thread may not exist: make one
                    run = self._launch()
                run.stop_requested = True
                run.open_gate()
                run.wait_ended(self._stop_timeout)
            elif run is not None:
                run.cancelled = True
                run.open_gate()
            raise
        if overtaken:
            run.wait_ended(self._stop_timeout)

    def _launch(self) -> _Run:
        """Start a new run's thread (held at its gate), then publish the run."""
        previous = None
        current = self._run
        if current is not None and current.is_alive():
            previous = current.thread
            logger.warning(
                "the previous health check thread is still stopping; "
                "the service starts again once it has ended"
            )
        run = _Run(previous)
        thread = threading.Thread(target=self._serve, args=(run,), name=THREAD_NAME, daemon=True)
        thread.start()
        run.thread = thread
        # Published only now that its thread exists, so that a stop() that sees this run can
        # always wait for it.
        self._run = run
        return run

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the service and wait up to ``timeout`` seconds for the final report.

        Idempotent, safe before :meth:`start`, and safe from a signal handler at any moment
        (it takes no lock). Called on the service's own thread (an async ``on_change``), it
        asks the service to stop and returns without waiting for itself.
        """
        self._stop_timeout = timeout
        self._stop_token = object()
        run = self._run
        if run is None or run.thread is None:
            return
        run.stop_requested = True
        # The thread publishes its loop, then reads stop_requested: one of the two sees the
        # other, so the request is never lost.
        loop = run.loop
        if loop is not None:
            # The loop may have just closed: the thread is then ending by itself.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(run.request_stop)
        run.open_gate()  # a start() interrupted between publishing and opening it
        if run.thread is threading.current_thread():
            return  # called on the service's own loop: it cannot wait for itself
        run.thread.join(timeout)
        if run.thread.is_alive():
            logger.warning("health check thread did not stop within %g s", timeout)

    def check_now(self, timeout: float | None = None) -> HealthReport:
        """Run one extra cycle on the service's loop now, wait for it, and return its report.

        Safe from any thread but the service's own. Called while the service is still
        starting, it waits for the first cycle first. A cycle that outlives ``timeout``
        still completes (and writes its report) in the background.

        :param timeout: seconds to wait, or ``None`` to wait as long as the cycle takes.
        :raises RuntimeError: when the service is not running or stops meanwhile, or when
            called on the service's own thread (which would wait for itself).
        :raises TimeoutError: when the cycle has not finished within ``timeout``.
        """
        run = self._current_run("check_now")
        if run is None or run.stop_requested:
            raise RuntimeError("HealthCheckService is not running")
        deadline = None if timeout is None else time.monotonic() + timeout
        if not run.loop_ready.wait(timeout):
            raise TimeoutError(f"check_now() did not finish within {timeout:g} s")
        loop = run.loop
        if loop is None or run.stop_requested:
            raise RuntimeError("HealthCheckService is not running")
        cycle = self._check(run)
        try:
            future = asyncio.run_coroutine_threadsafe(cycle, loop)
        except RuntimeError:  # the loop has closed
            cycle.close()
            raise RuntimeError("HealthCheckService is not running") from None
        assert run.thread is not None
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            step = _LIVENESS_POLL if remaining is None else min(_LIVENESS_POLL, remaining)
            done, _ = concurrent.futures.wait([future], timeout=step)
            if done:
                try:
                    return future.result()
                except concurrent.futures.CancelledError:  # the loop shut down under it
                    raise RuntimeError("HealthCheckService stopped during check_now()") from None
            if remaining is not None and remaining <= step:
                raise TimeoutError(f"check_now() did not finish within {timeout:g} s")
            if not run.thread.is_alive() and not future.done():
                raise RuntimeError("HealthCheckService stopped during check_now()")

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the first report of the latest :meth:`start` is on disk.

        Safe from any thread but the service's own.

        :param timeout: seconds to wait, or ``None`` to wait as long as it takes.
        :returns: True once that report is on disk (even if the service has stopped since);
            False when ``timeout`` passes first, or the service was never started or stopped
            before writing one.
        :raises RuntimeError: when called on the service's own thread.
        """
        run = self._current_run("wait_ready")
        if run is None:
            return False
        run.ready.wait(timeout)
        return run.first_report

    def _current_run(self, method: str) -> _Run | None:
        """The latest run; refuse a caller on the service's own thread, which would hang it."""
        run = self._run
        if run is not None and run.thread is threading.current_thread():
            raise RuntimeError(
                f"{method}() on the service's own thread would wait for itself; "
                "await facade.service.check_now() there instead"
            )
        return run

    async def _check(self, run: _Run) -> HealthReport:
        """Run one cycle, after the first one if the service is still starting."""
        starting = run.starting
        if starting is not None and not starting.done():
            await asyncio.wait({starting})
        return await self._service.check_now()

    def _serve(self, run: _Run) -> None:
        """Body of the service thread: wait to be let go, then run the service's loop."""
        run.gate.acquire()
        if run.cancelled:
            run.loop_ready.set()
            run.ready.set()
            run.ended.release()
            return
        try:
            if run.previous is not None:
                run.previous.join()  # the service object is the old thread's until it ends
            _run_on_new_loop(self._main(run), self._loop_factory)
        except Exception:
            logger.exception("health check thread failed")
        finally:
            run.loop_ready.set()
            run.ready.set()
            run.ended.release()

    async def _main(self, run: _Run) -> None:
        """Start the service, wait for a stop request, stop it (also while it is starting)."""
        service = self._service
        baseline = service.last_report
        run.stop_event = stop_event = asyncio.Event()
        run.starting = starting = asyncio.ensure_future(service.start())
        run.loop = asyncio.get_running_loop()
        run.loop_ready.set()
        if run.stop_requested:  # stop() came before the loop existed (see stop())
            stop_event.set()
        stopping = asyncio.ensure_future(stop_event.wait())
        helpers: set[asyncio.Future[Any]] = {stopping}
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                starting.result()  # a start() that failed is logged by _serve
                helpers.add(asyncio.ensure_future(self._mark_ready(run, baseline)))
                await stopping
            await service.stop()
            await starting
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.wait(helpers)

    async def _mark_ready(self, run: _Run, baseline: HealthReport | None) -> None:
        """Mark the run ready once a report of its own is on disk (polls only while writes fail).

        A service standing by for another process is ready with its first report made: the
        file on disk is the other's to keep.
        """
        service = self._service
        while True:
            report = service.last_report
            new = report is not baseline and report is not None and report.status != "stopped"
            if new and service.last_write_error is None:
                break
            await asyncio.sleep(_READY_POLL)
        run.first_report = True
        run.ready.set()


def _refuse_health_file_as_database(
    health_file: str | os.PathLike[str], options: ServiceOptions
) -> None:
    """Refuse a health_file that is the default database, saying which argument went where.

    ``HealthCheckService(5, "data/app.db")`` passes the database's path as the second
    argument, which is the health file's (as in the original design). A database given
    (as ``database=`` or ``HEALTHFILE_DATABASE``) is AsyncHealthService's to compare.
    """
    if "database" in options or ENVIRONMENT["database"] in os.environ:
        return
    try:
        refuse_shared_files(
            _DEFAULT_DATABASE,
            health_file,
            None,
            labels={
                "database": f"database={_DEFAULT_DATABASE!r} (the default)",
                "health_file": f"health_file={os.fspath(health_file)!r} (HealthCheckService's "
                "second argument)",
            },
        )
    except ValueError as exc:
        raise ValueError(f"{exc}; did you mean database={os.fspath(health_file)!r}?") from None


def _run_on_new_loop(
    main: Coroutine[Any, Any, None], loop_factory: Callable[[], asyncio.AbstractEventLoop] | None
) -> None:
    """Run ``main`` to completion on a new event loop made by ``loop_factory``."""
    if loop_factory is None:
        asyncio.run(main)
        return
    runner = getattr(asyncio, "Runner", None)
    if runner is not None:
        with runner(loop_factory=loop_factory) as loop_runner:
            loop_runner.run(main)
        return
    loop = loop_factory()  # Python 3.10: asyncio.run takes no loop factory
    try:
        loop.run_until_complete(main)
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()
