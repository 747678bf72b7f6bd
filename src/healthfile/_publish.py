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
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TypeVar

from ._changes import ChangeLog, why_changed
from ._limits import MAX_FILE_BYTES
from ._on_change import ChangeCallback, OnChange
from ._prometheus import render_textfile, require_prometheus_client
from ._report import HealthReport, fit_report, printable
from ._role import LockState, WriterRole
from ._systemd import SystemdNotifier
from ._threads import WorkerThread
from ._version import AppIdentity
from ._writer import AtomicWriter

__all__ = ["OnChange", "Publisher"]

logger = logging.getLogger("healthfile")

T = TypeVar("T")

# How long a start() waits for the previous start's worker to release the lock (a write hung
# on a dead disk holds it) before trying anyway.
_RELEASE_WAIT = 5.0


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
        self._on_change = None if on_change is None else ChangeCallback(on_change, callback_timeout)
        self._live = live
        self._systemd = SystemdNotifier() if notify_systemd else None
        self._role = WriterRole(health_file)
        self._worker: WorkerThread | None = None  # healthfile's own thread, one per start()
        self._retiring: concurrent.futures.Future[None] | None = None  # the last lock release
        self._released = False  # the lock released in the final write's hop, since start()
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
        return self._role.writing

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
        self._released = False
        self._role.renew()
        self._worker = WorkerThread()
        self.writer.executor = self._worker
        if self.prometheus_writer is not None:
            self.prometheus_writer.executor = self._worker
        return partial(self._prepare, self._retiring, read_identity)

    async def off_loop(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in healthfile's own worker thread, never the loop's default executor."""
        worker = self._worker
        if worker is None:
            # Never the default executor instead: a stopped service must not take the lock.
            raise RuntimeError("the health service is stopped: nothing more runs off the loop")
        return await asyncio.get_running_loop().run_in_executor(worker, fn)

    async def retire(self) -> None:
        """Release the lock once the work queued (the final write) is done; end the worker.

        Returns once both are done: the lock file removed, the worker thread gone. A caller
        cancelled meanwhile does not stop the release, which the next start() of this
        service waits for in its own worker.
        """
        worker = self._worker
        self.retire_soon()
        if worker is not None:
            await worker.end()  # after the release, when it was still to be made

    def retire_soon(self) -> None:
        """Queue the lock's release after the work queued, and end the worker; wait for neither.

        Nothing to queue when the final write released it in its own hop. For a stop() that
        failed or was cancelled: the next start() of this service waits for the release in
        its own worker, another service takes over at its next cycle.
        """
        worker, self._worker = self._worker, None
        if worker is not None:
            # This start's lock; queued again unless surely released (it is idempotent).
            self._retiring = None if self._released else worker.submit(self._role.lock.release)
            worker.shutdown(wait=False)
        self._role.state = "unknown"

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
        if self._role.take():
            self._sweep()  # only under the lock: another writer's temporary file would be live

    def report_lock(self, before: LockState = "unknown") -> None:
        """Log entering standby (once per holder), a take-over, a lock that fails."""
        self._role.report(before)

    def _sweep(self) -> None:
        """Remove temporary files a killed writer left (in the worker)."""
        try:
            removed = self.writer.sweep()
            if self.prometheus_writer is not None:
                removed += self.prometheus_writer.sweep()
        except OSError as exc:
            logger.warning("cannot remove stale temporary files: %s", printable(str(exc)))
            return
        if removed:
            logger.info("removed %d stale temporary file(s) of a killed writer", removed)

    async def publish(self, report: HealthReport, *, final: bool = False) -> HealthReport:
        """Write the report (and its Prometheus twin), log changes, tell systemd and on_change.

        Only the file's one writer writes, the file's recent changes added to the report; a
        standby keeps the report as its own view. Returns the report as published.
        """
        previous, self._previous = self._previous, report
        # The final report's write releases the lock in its own hop: no hop of its own.
        then = self._release_after_final_write if final else None
        if await self._may_write(final):
            report = replace(
                report,
                changes=self._history.record(
                    report.status, report.timestamp, partial(_why, previous, report)
                ),
            )
            if not await self._write_report(report, then):
                logger.warning(
                    "the lock file %s was removed or replaced while this service held it; "
                    "taking the lock again",
                    printable(str(self._role.lock.path)),
                )
                # Even at stop(): the file was this service's to keep until now.
                if await self._retake():
                    await self._write_report(report, then)
        if not self.writing:
            self._last_report = report
            # A standby writes nothing, so none of its writes is failing.
            self._write_errors.pop(self.writer.path, None)
            self._notify_alive()  # alive, and the file is another process's to keep
        if _changed(previous, report):
            _log_change(previous, report)
            if self._on_change is not None:
                await self._on_change.call(previous, report)
        else:
            logger.debug(
                "report %d: %s (database %s)", report.sequence, report.status, report.database
            )
        return report

    async def _write_report(
        self, report: HealthReport, then: Callable[[], None] | None = None
    ) -> bool:
        """Write the report and its Prometheus twin; False when the lock turned out lost.

        The lock is confirmed in the write's own hop, just before the write: a writer whose
        lock file was removed or replaced writes nothing more until it holds the lock again.
        ``then`` runs in the last write's hop, after it.
        """
        self._sequence = report.sequence  # before the write: a stop() meanwhile counts on
        guard = self._role.lock.confirm if self._role.state == "held" else None
        rendering = _Rendering(report, guard)
        last = self.prometheus_writer is None
        try:
            written = await self._write(self.writer, rendering, then if last else None)
        except _LockLost:
            self._role.state = "lost"
            return False
        # Made, written or not (a failed write is in write_error): as written, outputs maybe
        # shortened, when the write got as far as rendering it.
        self._last_report = rendering.report
        if written:
            self._notify_alive()
        if self.prometheus_writer is not None:
            await self._write(self.prometheus_writer, partial(render_textfile, report), then)
        return True

    def _release_after_final_write(self) -> None:
        """Release the lock and end the worker, after the final report written under it.

        In the final write's hop: stop() waits for neither with a hop of its own. A write
        that found the lock lost has released nothing: the lock is taken again and the
        report written once more.
        """
        worker = self._worker
        if self._role.lock.held:
            self._role.lock.release()
            self._released = True
            if worker is not None:
                worker.shutdown(wait=False)  # it ends as soon as this call returns

    async def _write(
        self,
        writer: AtomicWriter,
        render: Callable[[], bytes],
        then: Callable[[], None] | None = None,
    ) -> bool:
        """Replace one output file; log a failure once per distinct error, and the recovery."""
        try:
            await writer.replace(render, then=then)  # rendered off the loop, in the write's hop
        except OSError as exc:
            # Not the message: it may name the random temporary file, new every cycle.
            error = f"{type(exc).__name__}: {exc.strerror or exc}"
            if error != self._write_errors.get(writer.path):
                logger.error(
                    "cannot write %s: %s (retrying every cycle)",
                    printable(str(writer.path)),
                    printable(error),
                )
            self._write_errors[writer.path] = error
            return False
        if writer.path in self._write_errors:
            error = self._write_errors.pop(writer.path)
            logger.info("writing %s again after: %s", printable(str(writer.path)), printable(error))
        return True

    async def _may_write(self, final: bool) -> bool:
        """Whether this service writes now; one that does not tries to take the lock first.

        Never at stop(): a standby's final report is not written. It only waits for a lock
        attempt still under way in the worker (from a cycle stop() cancelled).
        """
        if self._role.state != "held":
            if not final:
                return await self._retake()
            await self.off_loop(_nothing)
        return self.writing

    async def _retake(self) -> bool:
        """Try once to take the lock (in the worker), log what changed; whether it writes."""
        before = self._role.state
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


class _LockLost(Exception):
    """The lock file was removed or replaced under its holder: nothing is written."""


class _Rendering:
    """Render a report within the probe's size limit (in the write's hop); keep what it wrote.

    ``guard``, when given, is asked first whether this process still holds the lock.
    """

    def __init__(self, report: HealthReport, guard: Callable[[], bool] | None = None) -> None:
        self.report = report
        self._guard = guard

    def __call__(self) -> bytes:
        if self._guard is not None and not self._guard():
            raise _LockLost
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
        f": {printable(reasons)}" if reasons else "",  # one line, whatever an output holds
    )
