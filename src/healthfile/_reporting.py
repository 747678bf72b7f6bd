"""Making a cycle's report: the app's identity, the clock's fields, the sequence.

The service decides when a report is made; a :class:`Reporter` knows what goes in it
besides the checks: who writes it (read once per start, in healthfile's worker), when the
service started, until when the report holds, and its place in the sequence.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta, timezone

from ._limits import MAX_IDENTITY_CHARS
from ._report import (
    UNKNOWN_APP_NAME,
    CheckResult,
    DatabaseState,
    HealthReport,
    HealthStatus,
    ceil_to_second,
)
from ._settings import Settings
from ._version import UNKNOWN_VERSION, AppIdentity, read_app_identity

__all__ = ["Reporter"]

logger = logging.getLogger("healthfile")


class Reporter:
    """Make the reports of one service.

    :param settings: the service's settings (interval, the identity given, the pyproject).
    :param longest_timeout: the longest time, in seconds, one of its checks may run.
    """

    def __init__(self, settings: Settings, longest_timeout: float) -> None:
        self._settings = settings
        # A report stays fresh for one interval, the longest check, and a second of slack
        # for the write and the rounding of the timestamps.
        self._freshness = timedelta(seconds=settings.interval + longest_timeout + 1.0)
        self.identity = AppIdentity(UNKNOWN_APP_NAME, UNKNOWN_VERSION)
        self.started_at = datetime.now(timezone.utc)

    def read_identity(self) -> AppIdentity:
        """Read app_name and app_version once (in the worker), the pyproject at most once."""
        name, version = self._settings.app_name, self._settings.app_version
        if name is None or version is None:
            read = read_app_identity(self._settings.pyproject)
            name = _identity("app_name", read.name) if name is None else name
            version = _identity("app_version", read.version) if version is None else version
        return AppIdentity(name, version)

    def report(
        self,
        status: HealthStatus,
        database: DatabaseState,
        checks: dict[str, CheckResult],
        now: datetime,
        sequence: int,
    ) -> HealthReport:
        """Make the report of a cycle judged at ``now``."""
        return HealthReport(
            status=status,
            database=database,
            timestamp=now,
            app_version=self.identity.version,
            app_name=self.identity.name,
            interval_seconds=self._settings.interval,
            expires_at=ceil_to_second(now + self._freshness),
            sequence=sequence,
            started_at=self.started_at,
            pid=os.getpid(),
            checks=checks,
        )

    def final_report(self, previous: HealthReport | None, sequence: int) -> HealthReport:
        """Make the ``stopped`` report: the last one's database and checks, dated now."""
        return self.report(
            "stopped",
            previous.database if previous is not None else "disconnected",
            dict(previous.checks) if previous is not None else {},
            datetime.now(timezone.utc),
            sequence,
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
