"""The writer role: whether this service writes its health file, and the log of its changes.

One writer per file: a :class:`WriterRole` holds the service's :class:`WriterLock`, knows
whether the service writes (it holds the lock, or no lock can be had), stands by (another
process holds it) or lost it (its lock file was removed or replaced), and logs entering
standby once per holder, a take-over, and a lock file that fails.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from ._lock import WriterLock
from ._redact import printable

__all__ = ["LockState", "WriterRole"]

logger = logging.getLogger("healthfile")

# "held" the lock (or none can be had on this platform), "standby" while another process
# holds it, "unlocked" when the lock file itself fails (then it writes without the lock),
# "lost" when its lock file was removed or replaced under it, "unknown" before the first
# attempt of a start().
LockState = Literal["unknown", "held", "standby", "unlocked", "lost"]


class WriterRole:
    """Whether this service writes ``path``; attempts run in healthfile's worker."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = WriterLock(path)  # one writer per file, Prometheus file included
        self.state: LockState = "unknown"
        self._holder: int | None = None
        self._error: str | None = None
        self._logged_holder: int | None = None
        self._logged_error: str | None = None

    @property
    def writing(self) -> bool:
        """True while this service writes the file; False while it stands by for another."""
        if self.state == "held":
            # Not in a child forked from the writer: its copy of the lock holds nothing.
            return self.lock.held or not self.lock.enforced
        return self.state == "unlocked"

    def renew(self) -> None:
        """Start over with a new lock (at start()): nothing tried yet."""
        self.state = "unknown"
        self.lock = WriterLock(self.path)

    def take(self) -> bool:
        """Try once to become the file's writer (in the worker); True on taking the lock."""
        try:
            taken = self.lock.acquire()
        except OSError as exc:
            self.state = "unlocked"
            self._error = f"{type(exc).__name__}: {exc}"
            return False
        if taken:
            self.state = "held"
        else:
            self.state = "standby"
            self._holder = self.lock.holder()
        return taken

    def report(self, before: LockState = "unknown") -> None:
        """Log entering standby (once per holder), a take-over, a lock that fails."""
        path, lock = printable(str(self.path)), printable(str(self.lock.path))
        if self.state == "standby" and (before != "standby" or self._holder != self._logged_holder):
            self._logged_holder = self._holder
            holder = "unknown" if self._holder is None else self._holder
            logger.warning(
                "pid %s writes %s; this service (pid %d) stands by and takes over when it "
                "stops (lock %s)",
                holder,
                path,
                os.getpid(),
                lock,
            )
        elif self.state == "held" and before == "standby":
            logger.info("took over writing %s (from pid %s)", path, self._logged_holder)
        elif self.state == "unlocked" and self._error != self._logged_error:
            logger.error(
                "cannot lock %s: %s; writing %s without the lock (one writer per file is "
                "not enforced; retrying every cycle)",
                lock,
                printable(self._error or ""),
                path,
            )
        if self.state != "standby":
            self._logged_holder = None
        self._logged_error = self._error if self.state == "unlocked" else None
