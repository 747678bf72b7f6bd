"""``healthfile check``: read one health file and judge it, for Docker, Kubernetes and Nagios.

A monitor runs this every few seconds on every pod, so it imports only light standard-library
modules: never asyncio, aiosqlite, aiofiles, prometheus_client, nor the service. Whatever the
file holds, the outcome is a :class:`Verdict` and one line of output, never a traceback.
"""

from __future__ import annotations

import codecs
import json
import math
import os
import stat
import sys
import time

# The writer's own redaction, so that the probe never prints a secret the file would not
# hold. (_report also brings dataclasses, inspect and datetime, which the probe never uses.)
from ._limits import CLOCK_TOLERANCE_SECONDS, MAX_FILE_BYTES, MAX_NAME_CHARS, MAX_OUTPUT_CHARS
from ._redact import redact

# Only mypy needs typing here (annotations are strings): this module adds no typing import.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

__all__ = [
    "CLOCK_TOLERANCE_SECONDS",
    "MAX_FILE_BYTES",
    "MAX_LINE_BYTES",
    "NotAHealthFile",
    "Verdict",
    "emit",
    "judge",
    "parse_timestamp",
    "render",
    "run_check",
    "split_check_names",
]

# Docker and Consul keep only the first 4096 bytes of a probe's output: one line, newline
# included, stays below that.
MAX_LINE_BYTES = 4000
# Perfdata never crowds the summary out of the line.
_MAX_PERFDATA_BYTES = 1500
_MAX_LABEL_CHARS = MAX_NAME_CHARS

ONLINE = "online"
STARTING = "starting"
DEGRADED = "degraded"
STOPPED = "stopped"
STALE = "stale"
CLOCK = "clock"
MISSING = "missing"
UNREADABLE = "unreadable"
INVALID = "invalid"
UNKNOWN_CHECK = "unknown_check"
UNKNOWN_GROUP = "unknown_group"
# The one group with a meaning of its own (see judge()); _options.LIVE, without its imports.
LIVE = "live"

_STATUSES = ("starting", "online", "degraded", "stopped")
_DATABASE_STATES = ("connected", "disconnected", "timeout")
_CHECK_STATUSES = ("pass", "warn", "fail")
_NAGIOS_STATES = ("OK", "WARNING", "CRITICAL", "UNKNOWN")
_REQUIRED_KEYS = (
    "status",
    "database",
    "timestamp",
    "app_version",
    "api_version",
    "interval_seconds",
    "expires_at",
    "sequence",
    "started_at",
    "pid",
    "checks",
)
_CHECK_KEYS = ("status", "output", "duration_ms", "consecutive_failures", "last_success")

_OPEN_FLAGS = (
    os.O_RDONLY
    # A FIFO at the path must not hang the probe until the kubelet kills it.
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


class NotAHealthFile(Exception):
    """The file is missing, unreadable, or does not hold a contract-v1 health report."""

    def __init__(self, verdict: str, reason: str) -> None:
        super().__init__(reason)
        self.verdict = verdict
        self.reason = reason


class Verdict:
    """What ``healthfile check`` concluded about one health file.

    ``verdict`` is one of ``online``, ``starting``, ``degraded``, ``stopped``, ``stale``,
    ``clock`` (the report's timestamp lies in the future), ``unknown_check``
    (``--only``/``--ignore`` named a check the file does not hold), ``unknown_group``
    (``--group`` named a group no check carries), ``missing``, ``unreadable`` or
    ``invalid``; ``status`` is the file's own status (``None`` when it could not be read);
    ``age`` the whole seconds since the report's ``timestamp`` (``None`` likewise);
    ``reason`` the one-line, redacted summary; ``warning`` whether a judged check warns,
    or a non-critical one fails (Nagios' WARNING for an online verdict); ``durations`` each
    judged check's name and duration in milliseconds; ``report`` the file's JSON object
    when it is a contract-v1 report (for the status page, which shows more of it than a
    verdict), else ``None``.
    """

    __slots__ = (
        "age",
        "durations",
        "health_file",
        "reason",
        "report",
        "status",
        "verdict",
        "warning",
    )

    def __init__(
        self,
        verdict: str,
        reason: str,
        *,
        health_file: str,
        status: str | None = None,
        age: int | None = None,
        warning: bool = False,
        durations: tuple[tuple[str, float], ...] = (),
        report: dict[str, Any] | None = None,
    ) -> None:
        self.verdict = verdict
        self.reason = reason
        self.health_file = health_file
        self.status = status
        self.age = age
        self.warning = warning
        self.durations = durations
        self.report = report

    def __repr__(self) -> str:
        return f"<Verdict {self.verdict} status={self.status} age={self.age}>"

    def exit_code(self, *, nagios: bool = False, allow_degraded: bool = False) -> int:
        """The exit status in the Docker/Kubernetes convention, or the Nagios one.

        Docker/Kubernetes: 0 for online and starting, warnings included (and degraded with
        ``allow_degraded``), 1 for everything else. Nagios: 0 online with every judged check
        passing; 1 online with a warning or a non-critical failure, or starting; 2 degraded,
        stopped, stale; 3 clock, unknown_check, unknown_group, missing, unreadable, invalid
        (a report from the future says nothing sure about the writer: it may be alive with
        a wrong clock, or dead). ``allow_degraded`` does not change the Nagios convention.
        """
        if nagios:
            if self.verdict == ONLINE:
                return 1 if self.warning else 0
            if self.verdict == STARTING:
                return 1
            if self.verdict in (DEGRADED, STOPPED, STALE):
                return 2
            return 3
        if self.verdict in (ONLINE, STARTING) or (self.verdict == DEGRADED and allow_degraded):
            return 0
        return 1


def judge(
    path: str | os.PathLike[str],
    *,
    now: float | None = None,
    max_age: float | None = None,
    only: tuple[str, ...] | None = None,
    ignore: tuple[str, ...] | None = None,
    groups: tuple[str, ...] | None = None,
) -> Verdict:
    """Read the health file at ``path`` and judge it.

    :param now: the current time in Unix seconds (``None``: the system clock).
    :param max_age: seconds after the report's ``timestamp`` from which it is stale even
        before its ``expires_at``, or ``None``. It bounds the absolute age: a timestamp
        further in the future than this is a clock problem too.
    :param only: judge the status from these checks alone (``--only``), or ``None``.
    :param ignore: judge the status from all checks but these (``--ignore``), or ``None``;
        with ``groups``, all checks of those groups but these.
    :param groups: judge the status from the checks of these groups (``--group``), or
        ``None``. A group no check carries is the verdict ``unknown_group``, except
        ``live``: without live checks, ``--group live`` judges the writer alone (the file
        is fresh, not stopped, the contract), so that liveness never restarts a healthy
        writer.
        With any of the three, every selected check counts, critical or not: the status is
        ``online`` when none of them fails (warnings included), else ``starting`` when the
        file says ``starting``, else ``degraded``. Staleness, ``stopped`` and the contract
        still count, and a named check the file does not hold is the verdict
        ``unknown_check``.
    :raises ValueError: for ``only`` with ``ignore`` or with ``groups``.

    A timestamp more than :data:`CLOCK_TOLERANCE_SECONDS` (or ``max_age``, when smaller) in
    the future is the verdict ``clock``: a writer whose clock ran fast, then died, must not
    be judged fresh until its clock-made ``expires_at``.
    """
    if only is not None and ignore is not None:
        raise ValueError("--only and --ignore cannot be used together")
    if only is not None and groups is not None:
        raise ValueError("--only and --group cannot be used together")
    health_file = os.fspath(path)
    if now is None:
        now = time.time()
    try:
        report = _Report(_read_json(health_file))
    except NotAHealthFile as exc:
        return Verdict(exc.verdict, _clean(exc.reason), health_file=health_file)
    except _NotTheContract as exc:
        reason = f"not a health file: {health_file}: {exc}"
        return Verdict(INVALID, _clean(reason), health_file=health_file)
    age = math.floor(now - report.timestamp)
    selected = only is not None or ignore is not None or groups is not None
    judged = report.checks
    if groups is not None:
        judged = [item for item in judged if any(group in item.groups for group in groups)]
    if only is not None:
        judged = [item for item in judged if item.name in only]
    if ignore is not None:
        judged = [item for item in judged if item.name not in ignore]
    judged_names = {item.name for item in judged}

    def verdict(name: str, reason: str) -> Verdict:
        return Verdict(
            name,
            _clean(reason),
            health_file=health_file,
            status=report.status,
            age=age,
            warning=any(
                item.status == "warn" or (item.status == "fail" and not item.critical)
                for item in judged
            ),
            durations=tuple(item for item in report.durations if item[0] in judged_names),
            report=report.data,
        )

    described = f"database {report.database}, app_version {report.app_version}"
    if report.status == STOPPED:
        return verdict(
            STOPPED, f"stopped: the service wrote its final report {_ago(age)} ({described})"
        )
    ahead = report.timestamp - now
    tolerance = (
        CLOCK_TOLERANCE_SECONDS if max_age is None else min(CLOCK_TOLERANCE_SECONDS, max_age)
    )
    if ahead > tolerance:
        return verdict(
            CLOCK,
            f"clock: last report is dated {_ago(age)} (status {report.status}), more than "
            f"{tolerance:g} s ahead of this host's clock: one of the two clocks is wrong",
        )
    if now > report.expires_at:
        expired = math.floor(now - report.expires_at)
        return verdict(
            STALE,
            f"stale: last report {_ago(age)} (status {report.status}), expired "
            f"{_ago(expired)} at {report.expires_at_text}",
        )
    if max_age is not None and now - report.timestamp > max_age:
        return verdict(
            STALE,
            f"stale: last report {_ago(age)} (status {report.status}), "
            f"older than --max-age {max_age:g} s",
        )
    status, scope = report.status, ""
    if selected:
        unknown = _unknown_selection(report.checks, only=only, ignore=ignore, groups=groups)
        if unknown is not None:
            return verdict(unknown[0], f"{unknown[1]}; status {report.status})")
        status = _judged_status(report.status, judged)
        said = "" if status == report.status else f"; the file says {report.status}"
        scope = f" ({_scope(only=only, ignore=ignore, groups=groups, judged=judged)}{said})"
    problems = "".join(
        f"; {_cut(item.name, _MAX_LABEL_CHARS)} {item.status}"
        + ("" if item.critical else " (not critical)")
        + ("" if item.output is None else f": {_cut(_clean(item.output), MAX_OUTPUT_CHARS)}")
        for item in judged
        if item.status != "pass"
    )
    return verdict(status, f"{status}: {described}, updated {_ago(age)}{scope}{problems}")


def _unknown_selection(
    checks: list[_Check],
    *,
    only: tuple[str, ...] | None,
    ignore: tuple[str, ...] | None,
    groups: tuple[str, ...] | None,
) -> tuple[str, str] | None:
    """The verdict and reason for a selection naming what the file does not hold, or None."""
    held = [item.name for item in checks]
    named = only if only is not None else ignore
    if named is not None:
        absent = [name for name in named if name not in held]
        if absent:
            option = "--only" if only is not None else "--ignore"
            return (
                UNKNOWN_CHECK,
                f"unknown check: {option} names {_names(absent)}, which the file does not "
                f"hold (it holds {_names(sorted(held)) or 'none'}",
            )
    if groups is not None:
        carried = {group for item in checks for group in item.groups}
        absent = [group for group in groups if group not in carried and group != LIVE]
        if absent:
            return (
                UNKNOWN_GROUP,
                f"unknown group: --group names {_names(absent)}, which no check in the file "
                f"carries (it has {_names(sorted(carried)) or 'none'}",
            )
    return None


def _scope(
    *,
    only: tuple[str, ...] | None,
    ignore: tuple[str, ...] | None,
    groups: tuple[str, ...] | None,
    judged: list[_Check],
) -> str:
    """What a selection judged, for the summary line."""
    parts = []
    if groups is not None:
        parts.append(f"group {_names(groups)}")
        if not judged:
            parts.append("no check: the writer is alive")
    if only is not None:
        parts.append(f"only {_names(only)}")
    if ignore is not None:
        parts.append(f"ignoring {_names(ignore)}")
    return ", ".join(parts)


def _judged_status(status: str, judged: list[_Check]) -> str:
    """The status the judged checks alone give: online when none fails (warnings are fine),
    else starting while the file says starting, else degraded."""
    if all(item.status != "fail" for item in judged):
        return ONLINE
    return STARTING if status == STARTING else DEGRADED


def _names(names: list[str] | tuple[str, ...]) -> str:
    """Check names for a summary line, each cut short."""
    return ", ".join(_cut(name, _MAX_LABEL_CHARS) for name in names)


def split_check_names(text: str) -> tuple[str, ...]:
    """The names in an ``--only``/``--ignore``/``--group`` value: comma-separated, blanks
    around a name dropped, empty items and repeats skipped (so ``()`` when it names none)."""
    return tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))


def render(
    verdict: Verdict,
    *,
    nagios: bool = False,
    allow_degraded: bool = False,
    as_json: bool = False,
    encoding: str = "utf-8",
) -> str:
    """The one output line (without its newline), shorter than :data:`MAX_LINE_BYTES`.

    The bytes are counted in ``encoding`` (stdout's), a character it cannot encode counted
    as its backslash escape, which is what :func:`run_check` writes then.
    """
    code = verdict.exit_code(nagios=nagios, allow_degraded=allow_degraded)
    budget = MAX_LINE_BYTES - 1
    if as_json:
        return _json_line(verdict, code, budget, encoding)
    if not nagios:
        return _fit(verdict.reason, budget, encoding)
    head = f"HEALTHFILE {_NAGIOS_STATES[code]} - "
    perfdata = _perfdata(verdict, encoding)
    tail = f" | {perfdata}" if perfdata else ""
    # A '|' in the text would start the perfdata early.
    summary = verdict.reason.replace("|", "/")
    room = budget - _size(head, encoding) - _size(tail, encoding)
    return head + _fit(summary, room, encoding) + tail


def run_check(
    path: str | os.PathLike[str],
    *,
    max_age: float | None = None,
    allow_degraded: bool = False,
    nagios: bool = False,
    as_json: bool = False,
    only: tuple[str, ...] | None = None,
    ignore: tuple[str, ...] | None = None,
    groups: tuple[str, ...] | None = None,
) -> int:
    """Judge the file, print the verdict's line on stdout, and return the exit status."""
    verdict = judge(path, max_age=max_age, only=only, ignore=ignore, groups=groups)
    encoding = _stream_encoding(sys.stdout)
    line = render(
        verdict, nagios=nagios, allow_degraded=allow_degraded, as_json=as_json, encoding=encoding
    )
    emit(line)
    return verdict.exit_code(nagios=nagios, allow_degraded=allow_degraded)


def parse_timestamp(text: object) -> int | None:
    """Unix seconds of a contract timestamp ``YYYY-MM-DDTHH:MM:SSZ``; ``None`` if it is not one.

    Plain arithmetic rather than datetime: the probe stays light.
    """
    if not isinstance(text, str) or len(text) != 20:
        return None
    if text[4] + text[7] + text[10] + text[13] + text[16] + text[19] != "--T::Z":
        return None
    fields = (text[0:4], text[5:7], text[8:10], text[11:13], text[14:16], text[17:19])
    if not all(part.isascii() and part.isdigit() for part in fields):
        return None
    year, month, day, hour, minute, second = (int(part) for part in fields)
    if not (1 <= month <= 12 and 1 <= day <= _days_in_month(year, month)):
        return None
    if hour > 23 or minute > 59 or second > 59:
        return None
    return _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second


class _Check:
    """One check of a report, as the judge uses it."""

    __slots__ = ("critical", "groups", "name", "output", "status")

    def __init__(
        self, name: str, status: str, output: str | None, critical: bool, groups: tuple[str, ...]
    ) -> None:
        self.name = name
        self.status = status
        self.output = output
        self.critical = critical
        self.groups = groups


class _Report:
    """The fields of a contract-v1 report that the judge uses, validated."""

    __slots__ = (
        "app_version",
        "checks",
        "data",
        "database",
        "durations",
        "expires_at",
        "expires_at_text",
        "status",
        "timestamp",
    )

    def __init__(self, data: object) -> None:
        if not isinstance(data, dict):
            raise _NotTheContract(f"the JSON is {_json_type(data)}, not an object")
        self.data: dict[str, Any] = data
        missing = [key for key in _REQUIRED_KEYS if key not in data]
        if missing:
            raise _NotTheContract(f"missing keys: {', '.join(missing)}")
        self.status = _one_of(data, "status", _STATUSES)
        self.database = _one_of(data, "database", _DATABASE_STATES)
        self.timestamp = _timestamp(data, "timestamp")
        self.expires_at = _timestamp(data, "expires_at")
        self.expires_at_text: str = data["expires_at"]
        _timestamp(data, "started_at")
        self.app_version = _text(data, "app_version")
        if "app_name" in data:  # written since it was added; v1 files before lack it
            _text(data, "app_name")
        if data["api_version"] != "v1":
            raise _NotTheContract(f'api_version is {_show(data["api_version"])}, not "v1"')
        _number(data, "interval_seconds", positive=True)
        _integer(data, "sequence", minimum=1)
        _integer(data, "pid", minimum=1)
        checks = data["checks"]
        if not isinstance(checks, dict):
            raise _NotTheContract(f"checks is {_json_type(checks)}, not an object")
        self.checks: list[_Check] = []
        self.durations: list[tuple[str, float]] = []
        for name, result in checks.items():
            where = f"check {_show(name)}"
            if not name:
                raise _NotTheContract("a check has an empty name")
            if not isinstance(result, dict):
                raise _NotTheContract(f"{where} is {_json_type(result)}, not an object")
            missing = [key for key in _CHECK_KEYS if key not in result]
            if missing:
                raise _NotTheContract(f"{where} lacks keys: {', '.join(missing)}")
            status = _one_of(result, "status", _CHECK_STATUSES, where)
            output = result["output"]
            if output is not None and not isinstance(output, str):
                raise _NotTheContract(
                    f"{where}: output is {_json_type(output)}, not a string or null"
                )
            duration = _number(result, "duration_ms", where=where)
            _integer(result, "consecutive_failures", minimum=0, where=where)
            if result["last_success"] is not None:
                _timestamp(result, "last_success", where)
            critical = result.get("critical", True)  # files before criticality: all critical
            if not isinstance(critical, bool):
                raise _NotTheContract(f"{where}: critical is {_json_type(critical)}, not a boolean")
            groups = result.get("groups", [])
            if not isinstance(groups, list) or not all(
                isinstance(group, str) and group for group in groups
            ):
                raise _NotTheContract(f"{where}: groups is not an array of names")
            self.checks.append(_Check(name, status, output, critical, tuple(groups)))
            self.durations.append((name, duration))
        changes = data.get("changes", [])  # written since it was added; v1 files before lack it
        if not isinstance(changes, list) or not all(isinstance(item, dict) for item in changes):
            raise _NotTheContract("changes is not an array of objects")


def _read_json(path: str) -> object:
    """Read at most MAX_FILE_BYTES of a regular file and decode its JSON.

    On Windows an open that meets the writer's rename (a sharing violation, or the old file
    pending deletion) fails with PermissionError for a moment: it is tried again, 0.05 s
    apart for 0.25 s, before the file is called unreadable.
    """
    retry_delays = [0.05] * 5
    while True:
        try:
            # O_BINARY: Windows reads in text mode otherwise (CRLF folded, ^Z taken for EOF).
            fd = os.open(path, _OPEN_FLAGS | getattr(os, "O_BINARY", 0))
            break
        except FileNotFoundError:
            # A relative path says relative to what: the probe's working directory.
            where = path if os.path.isabs(path) else f"{path} ({os.path.abspath(path)})"
            raise NotAHealthFile(MISSING, f"missing: no health file at {where}") from None
        except PermissionError as exc:
            if not retry_delays:
                raise NotAHealthFile(UNREADABLE, f"unreadable: {path}: {_os_error(exc)}") from None
            time.sleep(retry_delays.pop())
        except OSError as exc:
            raise NotAHealthFile(UNREADABLE, f"unreadable: {path}: {_os_error(exc)}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise NotAHealthFile(UNREADABLE, f"unreadable: {path} is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise NotAHealthFile(UNREADABLE, f"unreadable: {path} is not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise _too_large(path, info.st_size)
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_FILE_BYTES:  # the file may grow after fstat: read one byte past
            chunk = os.read(fd, MAX_FILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise NotAHealthFile(UNREADABLE, f"unreadable: {path}: {_os_error(exc)}") from None
    finally:
        os.close(fd)
    if size > MAX_FILE_BYTES:
        raise _too_large(path)
    raw = b"".join(chunks)
    if not raw.strip():
        raise NotAHealthFile(INVALID, f"not a health file: {path} is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotAHealthFile(
            INVALID, f"not a health file: {path} is not UTF-8 text (byte {exc.start})"
        ) from None
    try:
        return json.loads(text)
    except RecursionError:
        raise NotAHealthFile(
            INVALID, f"not a health file: {path} holds JSON nested too deeply"
        ) from None
    except json.JSONDecodeError as exc:
        # An unterminated string ran into the end of the text, as a cut-short file does.
        if exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):
            problem = f"truncated JSON (it ends at byte {len(raw)}: {exc.msg})"
        else:
            problem = f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        raise NotAHealthFile(INVALID, f"not a health file: {path}: {problem}") from None
    except ValueError as exc:  # e.g. an integer longer than int's digit limit
        raise NotAHealthFile(INVALID, f"not a health file: {path}: {exc}") from None


def _too_large(path: str, size: int | None = None) -> NotAHealthFile:
    """The verdict on a file past the bound; ``size`` when known (not for /proc-like files)."""
    known = "" if size is None else f" ({size} bytes)"
    return NotAHealthFile(
        INVALID, f"not a health file: {path} is larger than {MAX_FILE_BYTES} bytes{known}"
    )


def _os_error(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


class _NotTheContract(Exception):
    """JSON, but not a contract-v1 report (the message says what is wrong)."""


def _one_of(data: dict[str, Any], key: str, allowed: tuple[str, ...], where: str = "") -> str:
    value = data[key]
    if not isinstance(value, str) or value not in allowed:
        raise _NotTheContract(
            f"{_where(where)}{key} is {_show(value)}, not one of {', '.join(allowed)}"
        )
    return value


def _timestamp(data: dict[str, Any], key: str, where: str = "") -> int:
    seconds = parse_timestamp(data[key])
    if seconds is None:
        raise _NotTheContract(
            f"{_where(where)}{key} is {_show(data[key])}, not a UTC time YYYY-MM-DDTHH:MM:SSZ"
        )
    return seconds


def _text(data: dict[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str) or not value.strip():
        raise _NotTheContract(f"{key} is {_show(value)}, not a non-empty string")
    return value


def _number(data: dict[str, Any], key: str, *, positive: bool = False, where: str = "") -> float:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _NotTheContract(f"{_where(where)}{key} is {_json_type(value)}, not a number")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise _NotTheContract(f"{_where(where)}{key} is {_show(value)}, out of range")
    return float(value)


def _integer(data: dict[str, Any], key: str, *, minimum: int, where: str = "") -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _NotTheContract(f"{_where(where)}{key} is {_json_type(value)}, not an integer")
    if value < minimum:
        raise _NotTheContract(f"{_where(where)}{key} is {_show(value)}, below {minimum}")
    return value


def _where(where: str) -> str:
    return f"{where}: " if where else ""


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _show(value: object) -> str:
    """A short rendering of a JSON value for a message."""
    if isinstance(value, (dict, list)):
        return _json_type(value)
    return _cut(json.dumps(value, ensure_ascii=False), 40)


def _ago(age: int) -> str:
    return f"{age} s ago" if age >= 0 else f"{-age} s in the future"


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def _clean(text: str) -> str:
    """One line, secrets redacted."""
    single = "".join(ch if ch.isprintable() else " " for ch in text)
    return redact(single)


def _cut(text: str, limit: int) -> str:
    """At most ``limit`` characters, an ellipsis marking a cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _stream_encoding(stream: object) -> str:
    """The stream's encoding when Python knows it, else UTF-8."""
    encoding = getattr(stream, "encoding", None)
    if isinstance(encoding, str):
        try:
            return codecs.lookup(encoding).name
        except LookupError:
            pass
    return "utf-8"


def _size(text: str, encoding: str) -> int:
    """Bytes of ``text`` in ``encoding``, unencodable characters as backslash escapes, no BOM."""
    return len(text.encode(encoding, "backslashreplace")) - len("".encode(encoding))


def _fit(text: str, max_bytes: int, encoding: str = "utf-8") -> str:
    """At most ``max_bytes`` in ``encoding``, cut on a character boundary, an ellipsis marking
    a cut."""
    if _size(text, encoding) <= max_bytes:
        return text
    ellipsis = "…"
    room = max(max_bytes - _size(ellipsis, encoding), 0)
    used = 0
    for index, char in enumerate(text):
        used += _size(char, encoding)
        if used > room:
            return text[:index] + ellipsis
    return text + ellipsis  # pragma: no cover - the whole text fits: returned above


def _perfdata(verdict: Verdict, encoding: str = "utf-8") -> str:
    """Nagios perfdata: the report's age and every check's duration, within a byte budget."""
    if verdict.age is None:
        return ""
    items = [f"age={verdict.age}s"]
    size = len(items[0])
    for name, duration_ms in verdict.durations:
        item = f"{_perf_label(name + '_duration')}={_perf_number(duration_ms)}ms"
        size += 1 + _size(item, encoding)
        if size > _MAX_PERFDATA_BYTES:
            break
        items.append(item)
    return " ".join(items)


def _perf_label(name: str) -> str:
    """A perfdata label: no '=' or '|' or control characters; quoted unless plain ASCII."""
    label = "".join(
        "_" if ch in "=|" or not ch.isprintable() else ch
        for ch in _cut(redact(name), _MAX_LABEL_CHARS)
    )
    if label.isascii() and all(ch.isalnum() or ch in "_.-" for ch in label):
        return label
    return "'" + label.replace("'", "''") + "'"


def _perf_number(value: float) -> str:
    """A decimal without exponent (perfdata values are ``[-0-9.]``)."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text or "0"


def _json_line(verdict: Verdict, code: int, budget: int, encoding: str) -> str:
    reason = verdict.reason
    health_file = _fit(_clean(verdict.health_file), 512, encoding)
    while True:
        line = json.dumps(
            {
                "verdict": verdict.verdict,
                "status": verdict.status,
                "exit_code": code,
                "age_seconds": verdict.age,
                "reason": reason,
                "health_file": health_file,
            },
            ensure_ascii=False,
        )
        excess = _size(line, encoding) - budget
        if excess <= 0:
            return line
        # Escapes make the JSON at least as long as the text cut from it: this converges.
        reason = _fit(reason, _size(reason, encoding) - excess - 8, encoding)


def emit(line: str) -> None:
    """Print the line on stdout; never let stdout change the exit status.

    A stdout that cannot encode the line gets it escaped. One that is closed (``>&-``), full
    (``/dev/full``) or a pipe its reader closed loses the line, and is pointed at the null
    device so that the interpreter's own flush at exit cannot fail either (that would make
    the status 120): the status stays the verdict's.
    """
    stream = sys.stdout
    if stream is None:  # started with stdout closed
        return
    try:
        try:
            stream.write(line + "\n")
        except UnicodeEncodeError:
            encoding = _stream_encoding(stream)
            stream.write(line.encode(encoding, "backslashreplace").decode(encoding) + "\n")
        stream.flush()
    except (OSError, ValueError):  # EPIPE, ENOSPC, EBADF; ValueError: a closed stream
        _discard(stream)


def _discard(stream: TextIO) -> None:
    """Point ``stream``'s descriptor at the null device, so that what it holds flushes there."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        sys.stdout = None  # as Python leaves a stdout closed at start
        return
    try:
        os.dup2(null, stream.fileno())
    except (OSError, ValueError):
        sys.stdout = None
    finally:
        os.close(null)
