"""Publishing a report: every output of the service, and the one-writer-per-file lock.

A :class:`Publisher` owns the health file's writer and the Prometheus file's, the sweep of a
killed writer's temporary files, the advisory lock that makes one service the file's
writer, the worker thread all of that runs in, systemd's notifications, the ``on_change``
callback, and the log lines for changes and write errors.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Literal, TypeVar

from ._changes import ChangeLog, why_changed
from ._limits import MAX_FILE_BYTES
from ._lock import WriterLock
from ._prometheus import render_textfile, require_prometheus_client
from ._report import HealthReport, fit_report, format_exception
from ._systemd import SystemdNotifier
from ._threads import (
    CheckStillRunning,
    DaemonThreadRunner,
    WorkerThread,
    call_off_loop,
    unwrap_thread_exception,
)
from ._version import AppIdentity
from ._writer import AtomicWriter

__all__ = ["OnChange", "Publisher"]

logger = logging.getLogger("healthfile")

T = TypeVar("T")

OnChange = Callable[[HealthReport | None, HealthReport], Awaitable[object] | object]

# How long a start() waits for the previous start's worker to release the lock (a write hung
# on a dead disk holds it) before trying anyway.
_RELEASE_WAIT = 5.0

# Whether this service writes the file: "held" the lock (or none can be had on this
# platform), "standby" while another process holds it, "unlocked" when the lock file itself
# fails (then it writes without the lock), "unknown" before the first attempt of a start().
_LockState = Literal["unknown", "held", "standby", "unlocked"]


class Publisher:
    """Write each report (while this service is the file's writer) and tell whoever listens.

    :param health_file: the health file, absolute.
    :param prometheus_file: the Prometheus textfile, absolute, or ``None``.
    :param file_mode: both files' permission bits.
    :param notify_systemd: send ``READY=1``, ``WATCHDOG=1`` and ``STOPPING=1``.
    :param on_change: ``callback(previous, current)`` for a change of status, or ``None``.
    :param callback_timeout: seconds ``on_change`` may take.
    :param live: whether the service is starting or running (and so alive for systemd).
    :raises ImportError: for ``prometheus_file`` without prometheus_client installed.
    """

    def __init__(
        self,
        health_file: Path,
        prometheus_file: Path | None,
        *,
        file_mode: int,
        notify_systemd: bool,
        on_change: OnChange | None,
        callback_timeout: float,
        live: Callable[[], bool],
    ) -> None:
        self.writer = AtomicWriter(health_file, mode=file_mode)
        self.prometheus_writer: AtomicWriter | None = None
        if prometheus_file is not None:
            require_prometheus_client()
            self.prometheus_writer = AtomicWriter(prometheus_file, mode=file_mode)
        self._on_change = on_change
        self._on_change_runner = DaemonThreadRunner("on_change")
        self._callback_timeout = callback_timeout
        self._live = live
        self._systemd = SystemdNotifier() if notify_systemd else None
        self._lock = WriterLock(health_file)  # one writer per file, Prometheus file included
        self._lock_state: _LockState = "unknown"
        self._lock_holder: int | None = None
        self._lock_error: str | None = None
        self._logged_holder: int | None = None
        self._logged_error: str | None = None
        self._worker: WorkerThread | None = None  # healthfile's own thread, one per start()
        self._retiring: concurrent.futures.Future[None] | None = None  # the last lock release
        self._ready = False  # READY=1 sent since start()
        self._sequence = 0
        self._previous: HealthReport | None = None
        self._last_report: HealthReport | None = None
        self._write_errors: dict[Path, str] = {}
        self._history = ChangeLog()  # this file's recent changes, carried over a restart
        self._app_name: str | None = None

    @property
    def writing(self) -> bool:
        """True while this service writes the file; False while it stands by for another."""
        return self._lock_state in ("held", "unlocked")

    @property
    def last_report(self) -> HealthReport | None:
        """The last report made, written or not (as written: outputs maybe shortened)."""
        return self._last_report

    @property
    def write_error(self) -> str | None:
        """Why the last write of the health file failed; None once one succeeds, or standing by."""
        error = self._write_errors.get(self.writer.path)
        return None if error is None else f"cannot write {self.writer.path}: {error}"

    @property
    def previous(self) -> HealthReport | None:
        """The last report published, written or not."""
        return self._previous

    @property
    def sequence(self) -> int:
        """The sequence number of the last report written."""
        return self._sequence

    def open(self, read_identity: Callable[[], AppIdentity]) -> Callable[[], AppIdentity]:
        """Make a new worker thread and lock for a start(); return what the worker runs first.

        That is: wait for the previous start's release of the lock, try to take it (and
        sweep), then ``read_identity()``; run it with :meth:`off_loop`.
        """
        self._ready = False
        self._lock_state = "unknown"
        self._lock = WriterLock(self.writer.path)
        self._worker = WorkerThread()
        self.writer.executor = self._worker
        if self.prometheus_writer is not None:
            self.prometheus_writer.executor = self._worker
        return partial(self._prepare, self._retiring, read_identity)

    async def off_loop(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in healthfile's own worker thread, never the loop's default executor."""
        assert self._worker is not None, "the worker exists from start() to stop()"
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn)

    def retire(self) -> None:
        """Release the lock once the work queued (the final write) is done; end the worker.

        Not awaited, so that stop() costs no extra hop: the next start() of this service
        waits for it in its own worker, another service takes over at its next cycle.
        """
        worker, self._worker = self._worker, None
        if worker is not None:
            self._retiring = worker.submit(self._lock.release)  # this start's lock
            worker.shutdown(wait=False)
        self._lock_state = "unknown"

    def close(self) -> None:
        """Close the connection to systemd (at stop())."""
        if self._systemd is not None:
            self._systemd.close()

    def notify(self, message: str) -> None:
        """Send ``message`` to systemd, when asked to notify it."""
        if self._systemd is not None:
            self._systemd.notify(message)

    def _prepare(
        self,
        retiring: concurrent.futures.Future[None] | None,
        read_identity: Callable[[], AppIdentity],
    ) -> AppIdentity:
        """Take the lock if free (sweeping under it), read app_name and app_version (in the worker).

        ``retiring`` is the previous start's release, still under way in its own worker: a
        bounded wait for it, so that this start does not stand by for itself.
        """
        if retiring is not None:
            concurrent.futures.wait([retiring], timeout=_RELEASE_WAIT)
        self._take_lock()
        identity = read_identity()
        self._app_name = identity.name
        if self.writing:
            self._carry_over()
        return identity

    def _carry_over(self) -> None:
        """Take the recent changes of the file this writer replaces, if the same app's (worker)."""
        if self._app_name is not None and self._history.carry_over(
            self.writer.path, self._app_name
        ):
            logger.debug("carried over the recent changes of %s", self.writer.path)

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

    def report_lock(self, before: _LockState = "unknown") -> None:
        """Log entering standby (once per holder), a take-over, a lock that fails."""
        path = self.writer.path
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
            removed = self.writer.sweep()
            if self.prometheus_writer is not None:
                removed += self.prometheus_writer.sweep()
        except OSError as exc:
            logger.warning("cannot remove stale temporary files: %s", exc)
            return
        if removed:
            logger.info("removed %d stale temporary file(s) of a killed writer", removed)

    async def publish(self, report: HealthReport, *, final: bool = False) -> HealthReport:
        """Write the report (and its Prometheus twin), log changes, tell systemd and on_change.

        Only the file's one writer writes, the file's recent changes added to the report; a
        standby keeps the report as its own view. Returns the report as published.
        """
        previous, self._previous = self._previous, report
        if await self._may_write(final):
            report = replace(
                report,
                changes=self._history.record(
                    report.status, report.timestamp, partial(_why, previous, report)
                ),
            )
            self._sequence = report.sequence
            rendering = _Rendering(report)
            written = await self._write(self.writer, rendering)
            # Made, written or not (a failed write is in write_error): as written, outputs
            # maybe shortened, when the write got as far as rendering it.
            self._last_report = rendering.report
            if written:
                self._notify_alive()
            if self.prometheus_writer is not None:
                await self._write(self.prometheus_writer, partial(render_textfile, report))
        else:
            self._last_report = report
            # A standby writes nothing, so none of its writes is failing.
            self._write_errors.pop(self.writer.path, None)
            self._notify_alive()  # alive, and the file is another process's to keep
        if _changed(previous, report):
            _log_change(previous, report)
            if self._on_change is not None:
                await self._call_on_change(previous, report)
        else:
            logger.debug(
                "report %d: %s (database %s)", report.sequence, report.status, report.database
            )
        return report

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
                await self.off_loop(_nothing)
            else:
                before = self._lock_state
                await self.off_loop(self._take_lock)
                self.report_lock(before)
                if self.writing:
                    await self.off_loop(self._carry_over)
        return self.writing

    def _notify_alive(self) -> None:
        """READY=1 with the first report on disk (a standby: its first cycle), then WATCHDOG=1."""
        if self._live():
            self.notify("WATCHDOG=1" if self._ready else "READY=1")
            self._ready = True

    async def _call_on_change(self, previous: HealthReport | None, current: HealthReport) -> None:
        """Call on_change, bounded by the callback timeout; log and swallow what it raises."""
        callback = self._on_change
        assert callback is not None
        call = asyncio.ensure_future(
            call_off_loop(partial(callback, previous, current), self._on_change_runner)
        )
        try:
            done, _ = await asyncio.wait({call}, timeout=self._callback_timeout)
            if not done:
                call.cancel()
                raise TimeoutError(f"on_change took longer than {self._callback_timeout:g} s")
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


def _why(previous: HealthReport | None, current: HealthReport) -> str:
    """Why the status of ``current`` differs from ``previous``: the checks that changed."""
    before = (
        None
        if previous is None
        else {name: (result.status, result.output) for name, result in previous.checks.items()}
    )
    now = {name: (result.status, result.output) for name, result in current.checks.items()}
    return why_changed(before, now, current.status)


def _nothing() -> None:
    """Do nothing (in the worker, after what is queued before it)."""


class _Rendering:
    """Render a report within the probe's size limit (in the write's hop); keep what it wrote."""

    def __init__(self, report: HealthReport) -> None:
        self.report = report

    def __call__(self) -> bytes:
        self.report, data = fit_report(self.report, MAX_FILE_BYTES)
        return data


def _changed(previous: HealthReport | None, current: HealthReport) -> bool:
    """Tell whether the status or any check's status differs from the previous report."""
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
