"""Recent changes: the health file's last status changes, carried over a restart.

The file says what is; ``changes`` says what happened: when the status changed, from what,
to what, and why (the checks whose status changed, with their outputs). A writer that
replaces a file of the same application carries its changes over, so that a restart does
not forget when the database went.
"""

from __future__ import annotations

import json
import os
import stat
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from ._limits import MAX_FILE_BYTES
from ._redact import clean_output

__all__ = [
    "MAX_CHANGES",
    "MAX_CHANGES_BYTES",
    "MAX_WHY_CHARS",
    "Change",
    "ChangeLog",
    "fit_changes",
    "why_changed",
]

# How many changes the file keeps, newest first.
MAX_CHANGES = 10
# The longest ``why``.
MAX_WHY_CHARS = 200
# The most bytes the rendered ``changes`` take in the file: whys are shortened to fit, so
# that a report of the database check alone stays under 4 KiB with a full history.
MAX_CHANGES_BYTES = 1900
_STATUSES = ("starting", "online", "degraded", "stopped")
_ELLIPSIS = "…"


@dataclass(frozen=True, slots=True)
class Change:
    """One change of the report's status: when, to what, from what (None: the first), why."""

    at: datetime
    status: str
    previous: str | None
    why: str

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON object this change takes in the file's ``changes``."""
        return {
            "at": self.at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "status": self.status,
            "previous": self.previous,
            "why": self.why,
        }


def why_changed(
    previous: Mapping[str, tuple[str, str | None]] | None,
    current: Mapping[str, tuple[str, str | None]],
    status: str,
) -> str:
    """Name the checks whose status changed (all not passing, for a first report).

    ``previous`` and ``current`` map check names to (status, output). The text is redacted
    and cut to :data:`MAX_WHY_CHARS` characters.
    """
    if status == "stopped":
        return "the service stopped"
    if previous is None:
        changed = [(name, seen) for name, seen in current.items() if seen[0] != "pass"]
    else:
        changed = [
            (name, seen)
            for name, seen in current.items()
            if previous.get(name, ("pass", None))[0] != seen[0]
        ]
    if not changed:
        return "the service started" if previous is None else "no check changed"
    text = "; ".join(
        f"{name} {check_status}: {output}" if output else f"{name} {check_status}"
        for name, (check_status, output) in changed
    )
    return _cut(clean_output(text) or "", MAX_WHY_CHARS)


class ChangeLog:
    """The last :data:`MAX_CHANGES` status changes of one health file, newest first."""

    def __init__(self) -> None:
        self._changes: deque[Change] = deque(maxlen=MAX_CHANGES)
        self._status: str | None = None  # the status of the last report of this file

    @property
    def changes(self) -> tuple[Change, ...]:
        """The changes, newest first."""
        return tuple(self._changes)

    def record(self, status: str, at: datetime, why: Callable[[], str]) -> tuple[Change, ...]:
        """Note a report of ``status``; a new status is a change, ``why()`` says why.

        Returns the changes, newest first.
        """
        if status != self._status:
            self._changes.appendleft(Change(at, status, self._status, why()))
            self._status = status
        return self.changes

    def carry_over(self, path: os.PathLike[str] | str, app_name: str) -> bool:
        """Take the changes of the file at ``path`` when it is contract v1 of ``app_name``.

        Anything else (no file, another application's, a file that does not parse) is left
        alone: the log starts empty. Returns whether changes were taken.
        """
        data = _read_object(path)
        if (
            data is None
            or data.get("api_version") != "v1"
            or data.get("app_name") != app_name
            or data.get("status") not in _STATUSES
        ):
            return False
        changes = data.get("changes", [])
        if not isinstance(changes, list):
            return False
        carried = [change for change in map(_parse_change, changes) if change is not None]
        self._changes = deque(carried[:MAX_CHANGES], maxlen=MAX_CHANGES)
        self._status = data["status"]
        return True


def fit_changes(changes: tuple[Change, ...], max_bytes: int) -> tuple[Change, ...]:
    """``changes`` with their whys shortened, as little as fits, to render in ``max_bytes``."""
    if _rendered_size(changes) <= max_bytes:
        return changes
    low, high = 0, MAX_WHY_CHARS
    best = _with_whys_cut(changes, 0)
    while low < high:
        middle = (low + high + 1) // 2
        trial = _with_whys_cut(changes, middle)
        if _rendered_size(trial) <= max_bytes:
            low, best = middle, trial
        else:
            high = middle - 1
    return best


def _rendered_size(changes: tuple[Change, ...]) -> int:
    """Bytes the changes take in the file: the key and the list, at the file's indentation."""
    rendered = json.dumps({"changes": [change.as_dict() for change in changes]}, indent=2)
    return len(rendered.encode("utf-8")) - len("{\n\n}")


def _with_whys_cut(changes: tuple[Change, ...], limit: int) -> tuple[Change, ...]:
    return tuple(replace(change, why=_cut(change.why, limit)) for change in changes)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + _ELLIPSIS if limit else ""


def _read_object(path: os.PathLike[str] | str) -> dict[str, Any] | None:
    """The JSON object in a regular file of at most MAX_FILE_BYTES, or None."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES:
            return None
        raw = os.read(fd, MAX_FILE_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _parse_change(item: object) -> Change | None:
    """A change read back from a file, or None when it is not one."""
    if not isinstance(item, dict):
        return None
    at, status, previous, why = (item.get(key) for key in ("at", "status", "previous", "why"))
    if status not in _STATUSES or (previous is not None and previous not in _STATUSES):
        return None
    if not isinstance(at, str) or not isinstance(why, str):
        return None
    try:
        moment = datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    return Change(moment, status, previous, _cut(clean_output(why) or "", MAX_WHY_CHARS))
