"""The health report: check results and the contract-v1 JSON object."""

from __future__ import annotations

import json
import math
import os
import socket
import traceback
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Literal, get_args

from ._changes import MAX_CHANGES, MAX_CHANGES_BYTES, MAX_WHY_CHARS, Change, fit_changes
from ._limits import MAX_FILE_BYTES, MAX_IDENTITY_CHARS, SHORTENED
from ._redact import MAX_OUTPUT_CHARS, clean_output, printable, redact

__all__ = [
    "API_VERSION",
    "UNKNOWN_APP_NAME",
    "CheckResult",
    "CheckStatus",
    "DatabaseState",
    "HealthReport",
    "HealthStatus",
    "clean_output",
    "describe_exception",
    "display_path",
    "first_line",
    "fit_report",
    "format_exception",
    "format_timestamp",
    "printable",
    "redact",
    "refuse_oversized",
    "worst_case_bytes",
]

API_VERSION = "v1"
UNKNOWN_APP_NAME = "unknown"

CheckStatus = Literal["pass", "warn", "fail"]
HealthStatus = Literal["starting", "online", "degraded", "stopped"]
DatabaseState = Literal["connected", "disconnected", "timeout"]

_CHECK_STATUSES: frozenset[str] = frozenset(get_args(CheckStatus))


def describe_exception(exc: BaseException) -> str:
    """Render an exception as ``Type: message`` (or just ``Type``), redacted and bounded.

    Whatever the exception's ``__str__`` does: one that raises, or returns something other
    than a string, gives ``Type: <str() failed: ...>`` rather than an error of its own.
    """
    name = type(exc).__name__
    try:
        message = str(exc)
    except Exception as failure:  # a hostile or broken __str__; TypeError for a non-str
        message = f"<str() failed: {type(failure).__name__}>"
    text = f"{name}: {message}" if message else name
    return clean_output(text) or name


def os_reason(exc: OSError) -> str:
    """Why an OS call failed, in the system's words (``Connection refused``): no errno
    prefix, no path said again."""
    if isinstance(exc, socket.gaierror) and exc.strerror:  # EAI_* codes are no errno
        return exc.strerror
    if isinstance(exc.errno, int) and exc.errno > 0:
        return os.strerror(exc.errno)
    return describe_exception(exc)


def display_path(path: str | os.PathLike[str]) -> str:
    """``path`` as valid Unicode text for outputs and logs: bytes that are not UTF-8 escaped.

    POSIX allows any bytes in a file name; Python keeps those as lone surrogates, which no
    UTF-8 file or log can hold. They are shown as ``\\xff``.
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def first_line(data: bytes) -> str:
    """The first non-blank line of what a program or a server said, decoded, stripped."""
    for line in data.decode("utf-8", "replace").splitlines():
        if line.strip():
            return line.strip()
    return ""


def format_exception(exc: BaseException) -> str:
    """Render an exception with its traceback for a log record: redacted, and no character
    but the traceback's line breaks unprintable (an ANSI escape in a message is escaped)."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return printable(redact(text), keep_newlines=True)


def format_timestamp(moment: datetime) -> str:
    """Render an aware datetime as UTC ``YYYY-MM-DDTHH:MM:SSZ`` (jq's fromdateiso8601 reads it)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def ceil_to_second(moment: datetime) -> datetime:
    """Round an aware datetime up to the next whole second (unchanged when already whole)."""
    seconds = math.ceil(moment.timestamp())
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check in one cycle.

    A check's ``run()`` returns ``CheckResult("pass")``, ``CheckResult("warn", "why")`` or
    ``CheckResult("fail", "why")``; the service fills in ``duration_ms``,
    ``consecutive_failures``, ``last_success``, ``critical`` and ``groups`` when it puts the
    result in a report, and applies flap damping to ``status``. ``output`` is redacted and
    cut to 256 characters.
    """

    status: CheckStatus
    output: str | None = None
    duration_ms: float = 0.0
    consecutive_failures: int = 0
    last_success: datetime | None = None
    critical: bool = True
    groups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.status not in _CHECK_STATUSES:
            raise ValueError(
                f"CheckResult status must be 'pass', 'warn' or 'fail', not {self.status!r}"
            )
        if self.output is not None and not isinstance(self.output, str):
            raise TypeError(
                f"CheckResult output must be a str or None, not {type(self.output).__name__}"
            )
        cleaned = clean_output(self.output)
        if cleaned != self.output:
            object.__setattr__(self, "output", cleaned)

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON object this result takes in the health file's ``checks``."""
        return {
            "status": self.status,
            "output": self.output,
            "duration_ms": round(self.duration_ms, 3),
            "consecutive_failures": self.consecutive_failures,
            "last_success": None
            if self.last_success is None
            else format_timestamp(self.last_success),
            "critical": self.critical,
            "groups": list(self.groups),
        }


@dataclass(frozen=True, slots=True)
class HealthReport:
    """One cycle's report: exactly what the health file holds (contract v1).

    ``app_name`` says who wrote it, ``changes`` the file's last status changes, newest
    first (the service fills both in). ``timestamp``, ``expires_at``
    and ``started_at`` are aware UTC datetimes; ``as_dict()``
    returns the JSON object with every key of the contract, in order, and ``to_json()`` the
    text written to the file.
    """

    status: HealthStatus
    database: DatabaseState
    timestamp: datetime
    app_version: str
    interval_seconds: float
    expires_at: datetime
    sequence: int
    started_at: datetime
    pid: int
    checks: dict[str, CheckResult] = field(default_factory=dict)
    api_version: str = API_VERSION
    # Last, with defaults: added after 0.1.0, and api_version stays v1.
    app_name: str = UNKNOWN_APP_NAME
    changes: tuple[Change, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Return the health file's JSON object, keys in contract order."""
        return {
            "status": self.status,
            "database": self.database,
            "timestamp": format_timestamp(self.timestamp),
            "app_version": self.app_version,
            "app_name": self.app_name,
            "api_version": self.api_version,
            "interval_seconds": self.interval_seconds,
            "expires_at": format_timestamp(self.expires_at),
            "sequence": self.sequence,
            "started_at": format_timestamp(self.started_at),
            "pid": self.pid,
            "checks": {name: result.as_dict() for name, result in self.checks.items()},
            "changes": [change.as_dict() for change in self.changes],
        }

    def to_json(self) -> str:
        """Render the file's text: 2-space indented JSON with a final newline."""
        return json.dumps(self.as_dict(), indent=2) + "\n"


def _shorten(output: str | None, limit: int) -> str | None:
    """``output`` cut to ``limit`` characters, ending with the SHORTENED mark when cut.

    ``limit`` 0 is the floor: every output whose JSON is longer than the mark's becomes the
    mark, so that no output takes more room than the construction-time estimate gave it.
    """
    if output is None:
        return output
    if limit == 0:
        return output if len(json.dumps(output)) <= len(json.dumps(SHORTENED)) else SHORTENED
    if len(output) <= limit:
        return output
    return output[: max(limit - len(SHORTENED), 0)] + SHORTENED


def _with_outputs_cut(report: HealthReport, limit: int) -> HealthReport:
    """The report with every check output longer than ``limit`` characters shortened."""
    checks = {
        name: replace(result, output=_shorten(result.output, limit))
        for name, result in report.checks.items()
    }
    return replace(report, checks=checks)


def fit_report(report: HealthReport, max_bytes: int) -> tuple[HealthReport, bytes]:
    """Render ``report`` in at most ``max_bytes``, shortening check outputs when it must.

    Returns the report as written (outputs cut, each ending with ``…(shortened)``, at the
    longest bound that fits) and its bytes. The common case renders once. A report that
    fits with no output left but the mark is returned in that form, even if still too large
    (the service refuses such a check list at construction).
    """
    changes = fit_changes(report.changes, MAX_CHANGES_BYTES)
    if changes is not report.changes:
        report = replace(report, changes=changes)
    data = report.to_json().encode("utf-8")
    if len(data) <= max_bytes:
        return report, data
    low, high = 0, MAX_OUTPUT_CHARS  # the floor, 0, always fits (or nothing does)
    best = _with_outputs_cut(report, low)
    best_data = best.to_json().encode("utf-8")
    while low < high:
        middle = (low + high + 1) // 2
        trial = _with_outputs_cut(report, middle)
        trial_data = trial.to_json().encode("utf-8")
        if len(trial_data) <= max_bytes:
            low, best, best_data = middle, trial, trial_data
        else:
            high = middle - 1
    return best, best_data


def worst_case_bytes(
    names: list[str],
    *,
    app_version: str,
    app_name: str,
    interval: float,
    groups: list[tuple[str, ...]] | None = None,
) -> int:
    """The size of the largest report these checks can make once outputs are shortened.

    Every check fails with a shortened output, its numbers at their longest, its groups
    ``groups`` (one tuple per name); the top-level fields take their longest values and
    ``changes`` is full, at its byte budget.
    """
    moment = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
    all_groups = groups if groups is not None else [()] * len(names)
    results = {
        name: CheckResult(
            "fail",
            SHORTENED,
            duration_ms=123456789012.345,  # past a year in milliseconds: past any timeout
            consecutive_failures=10**15,
            last_success=moment,
            critical=False,
            groups=check_groups,
        )
        for name, check_groups in zip(names, all_groups, strict=True)
    }
    changes = fit_changes(
        (Change(moment, "degraded", "starting", "x" * MAX_WHY_CHARS),) * MAX_CHANGES,
        MAX_CHANGES_BYTES,
    )
    report = HealthReport(
        status="degraded",
        database="disconnected",
        timestamp=moment,
        app_version=app_version,
        app_name=app_name,
        interval_seconds=interval,
        expires_at=moment,
        sequence=10**15,
        started_at=moment,
        pid=2**31,
        checks=results,
        changes=changes,
    )
    return len(report.to_json().encode("utf-8"))


def refuse_oversized(
    names: list[str],
    groups: list[tuple[str, ...]],
    *,
    app_version: str | None,
    app_name: str | None,
    interval: float,
) -> None:
    """Refuse checks too many to fit in the health file even with outputs shortened.

    ``app_version`` and ``app_name`` of ``None`` (read at start) count at their longest.
    :raises ValueError: saying how large a report may grow.
    """
    largest = worst_case_bytes(
        names,
        groups=groups,
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
