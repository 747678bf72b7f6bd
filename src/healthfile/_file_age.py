"""FileAgeCheck: a file modified within ``max_age`` seconds, a heartbeat any program can touch."""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import Future
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from ._checks import display_path
from ._limits import CLOCK_TOLERANCE_SECONDS
from ._options import CheckOptions, CommonOptions, absolute, validate_seconds
from ._report import CheckResult
from ._threads import CheckStillRunning, WorkerThread

if TYPE_CHECKING:
    from ._options import Unpack

__all__ = ["FileAgeCheck"]


def _modified(path: str | os.PathLike[str]) -> float:
    return os.stat(path).st_mtime


def _seconds_text(seconds: float) -> str:
    """A duration as a person reads it: ``4.2 s``, ``75 s``, ``12 min``, ``5.0 h``, ``3.2 d``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


class FileAgeCheck(CheckOptions):
    """Pass while ``path`` was modified within the last ``max_age`` seconds.

    A heartbeat for any program: a worker, a cron job or a shell loop touches the file
    (``touch /run/app/heartbeat``), and the check fails once it has not for ``max_age``
    seconds. A missing file fails, ``no such file: PATH``. The file's modification time
    (symlinks followed) is read in a daemon thread the check keeps while the service runs
    (one per check: ``stat`` can hang on a network file system, and a hung one must hold up
    no other check); while one hangs the check reads fail, "still running since …".

    A modification time in the future by up to 60 seconds (clocks of two machines sharing
    a file system differ a little) counts as just now; further ahead, the check warns: a
    clock is wrong, and the file's age cannot be told.

    :param path: the file (or directory) to watch.
    :param max_age: seconds since its last modification after which the check fails.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_age: float,
        name: str = "file_age",
        **options: Unpack[CommonOptions],
    ) -> None:
        self.max_age = validate_seconds("max_age", max_age)
        super().__init__(name=name, **options)
        self.path = absolute(path)  # once: a later os.chdir() changes nothing
        # A kept thread, not a fresh one per run: starting a thread blocks the loop until it
        # runs, which costs more than the stat (benchmarks, figure 8).
        self._thread: WorkerThread | None = None
        self._kept = False  # the thread is kept across runs between on_start() and on_stop()
        self._reading: Future[float] | None = None
        self._reading_since = datetime.now(timezone.utc)

    def __repr__(self) -> str:
        return f"<FileAgeCheck {self.name!r} path={str(self.path)!r} max_age={self.max_age}>"

    def on_start(self) -> None:
        """Keep the reading thread across runs while the service runs."""
        self._kept = True

    def on_stop(self) -> None:
        """Let the reading thread end (at once, or when a hung stat returns)."""
        self._kept = False
        if self._thread is not None:
            self._thread.shutdown(wait=False)
            self._thread = None

    async def _modified(self) -> float:
        """The file's modification time, read in the check's thread."""
        if self._reading is not None and not self._reading.done():
            raise CheckStillRunning(self._reading_since)
        if self._thread is None:
            self._thread = WorkerThread(f"healthfile-check-{self.name}")
        self._reading = self._thread.submit(_modified, self.path)
        self._reading_since = datetime.now(timezone.utc)
        try:
            # A cancelled wait leaves a stat that has started to finish in the thread.
            return await asyncio.wrap_future(self._reading)
        finally:
            if not self._kept:
                self.on_stop()  # run on its own, outside a service: no thread is kept

    async def run(self) -> CheckResult:
        """Read the file's modification time (in a daemon thread) and judge its age."""
        shown = display_path(self.path)
        try:
            modified = await self._modified()
        except FileNotFoundError:
            return CheckResult("fail", f"no such file: {shown}")
        except OSError as exc:
            return CheckResult("fail", f"cannot read {shown}: {exc.strerror or exc}")
        age = time.time() - modified
        if age < -CLOCK_TOLERANCE_SECONDS:
            return CheckResult(
                "warn", f"{shown} modified {_seconds_text(-age)} in the future: a clock is wrong"
            )
        age = max(age, 0.0)
        if age > self.max_age:
            return CheckResult(
                "fail",
                f"{shown} modified {_seconds_text(age)} ago, more than max_age "
                f"{_seconds_text(self.max_age)}",
            )
        return CheckResult("pass", f"{shown} modified {_seconds_text(age)} ago")
