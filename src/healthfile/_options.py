"""What every check shares: its name, timeout, criticality, groups and flap damping.

Built-in checks take these as keyword arguments (through :class:`CheckOptions`); a custom
check may set them as attributes, which the service reads and validates alike through
:func:`options_of`. Names of checks and groups are given back by ``--only``, ``--ignore``
and ``--group``, comma-separated: neither may hold a comma or begin or end with blanks.

Python's convention, everywhere in healthfile: a value of the wrong type raises
``TypeError``, a value of the right type that is out of range raises ``ValueError``; both
name the argument and show what the caller passed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from ._limits import MAX_NAME_CHARS, MAX_SECONDS, MIN_SECONDS
from ._redact import redact

if TYPE_CHECKING:  # Unpack, for the checks' **options (re-exported: written once)
    if sys.version_info >= (3, 11):
        from typing import Unpack as Unpack
    else:
        from typing_extensions import Unpack as Unpack

__all__ = [
    "LIVE",
    "CheckOptions",
    "CommonOptions",
    "Options",
    "absolute",
    "options_of",
    "validate_critical",
    "validate_file_mode",
    "validate_groups",
    "validate_name",
    "validate_seconds",
    "validate_threshold",
    "validate_timeout",
]

# The one group with a meaning of its own: where no check carries it, `--group live` judges
# the writer alone (fresh, not stopped), so that liveness never restarts a healthy writer.
LIVE = "live"


def validate_name(name: object, what: str = "check name") -> str:
    """Refuse an empty, overlong, unprintable or un-selectable name; return it redacted.

    ``what`` names the argument in the message (``check name``, ``group name``).
    """
    if not isinstance(name, str):
        raise TypeError(f"a {what} must be a string, not {name!r} ({type(name).__name__})")
    if not name.strip():
        raise ValueError(f"a {what} must not be empty or blank, not {name!r}")
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(
            f"a {what} is at most {MAX_NAME_CHARS} characters, not {len(name)}: {name[:20]!r}…"
        )
    if not name.isprintable():
        raise ValueError(f"a {what} must be printable (no control characters), not {name!r}")
    if name != name.strip():
        raise ValueError(
            f"a {what} must not begin or end with blanks ({name!r}): --only, --ignore and "
            "--group could not name it"
        )
    if "," in name:
        raise ValueError(
            f"a {what} must not hold a comma ({name!r}): --only, --ignore and --group take "
            "comma-separated names"
        )
    return redact(name)


def validate_seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    """Validate a duration in seconds: at least 1 ms (or exactly zero) and at most a year.

    :raises TypeError: for anything but an int or a float (a string ``"0.1"`` too).
    :raises ValueError: for a number out of range (or NaN).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{name} must be a number of seconds (int or float), not {value!r} "
            f"({type(value).__name__})"
        )
    if not (value >= MIN_SECONDS or (allow_zero and value == 0)):
        lowest = f"0 or >= {MIN_SECONDS:g}" if allow_zero else f">= {MIN_SECONDS:g}"
        raise ValueError(f"{name} must be {lowest} seconds, not {value!r}")
    if not value <= MAX_SECONDS:
        raise ValueError(f"{name} must be at most {MAX_SECONDS:g} seconds, not {value!r}")
    return float(value)


def validate_grades(warn_after: object, fail_after: object) -> tuple[float, float]:
    """The seconds after which a check warns and fails: each valid, the first not larger."""
    warn = validate_seconds("warn_after", warn_after)
    fail = validate_seconds("fail_after", fail_after)
    if warn > fail:
        raise ValueError(f"warn_after ({warn_after}) must not exceed fail_after ({fail_after})")
    return warn, fail


def validate_timeout(timeout: object, what: str = "timeout") -> float | None:
    """A check's own timeout in seconds, or ``None`` for the service's ``check_timeout``."""
    return None if timeout is None else validate_seconds(what, timeout)


def validate_threshold(name: str, value: object) -> int:
    """A flap-damping threshold: an integer of at least 1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, not {value!r}")
    return value


def validate_critical(value: object, what: str = "critical") -> bool:
    """``critical`` is a bool: a truthy string or number would hide a typo."""
    if not isinstance(value, bool):
        raise TypeError(f"{what} must be True or False, not {value!r} ({type(value).__name__})")
    return value


def validate_groups(groups: object, what: str = "groups") -> tuple[str, ...]:
    """A tuple of group names, each valid as a check name; a bare string is refused.

    ``groups="live"`` would otherwise be four groups of one letter each.
    """
    if isinstance(groups, (str, bytes)) or not isinstance(groups, Iterable):
        raise TypeError(f"{what} must be a tuple of group names such as ('live',), not {groups!r}")
    names = tuple(validate_name(group, "group name") for group in groups)
    return tuple(dict.fromkeys(names))


def validate_file_mode(mode: object, what: str = "file_mode") -> int:
    """Permission bits for a file the service writes: at most ``0o777``, owner may read.

    A decimal ``644`` (``0o1204``: the owner could not read its own file) is refused with
    the octal the caller most likely meant.

    :raises TypeError: for anything but an int.
    :raises ValueError: for bits above ``0o777``, or without the owner's read bit.
    """
    if isinstance(mode, bool) or not isinstance(mode, int):
        raise TypeError(
            f"{what} must be an int such as 0o644, not {mode!r} ({type(mode).__name__})"
        )
    if 0 <= mode <= 0o777 and mode & 0o400:
        return mode
    meant = ""
    digits = str(mode)
    if set(digits) <= set("01234567") and int(digits, 8) <= 0o777 and int(digits, 8) & 0o400:
        meant = f"; did you mean 0o{digits} (octal)?"
    problem = "above 0o777" if not 0 <= mode <= 0o777 else "without the owner's read bit 0o400"
    raise ValueError(f"{what}={mode} is {oct(mode)}: {problem}{meant}")


def absolute(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> Path:
    """``path`` made absolute against today's working directory, symlinks not followed."""
    return Path(os.path.abspath(os.fsdecode(path)))


class CommonOptions(TypedDict, total=False):
    """The keyword arguments every built-in check takes besides its name (see CheckOptions)."""

    timeout: float | None
    critical: bool
    groups: Iterable[str]
    failure_threshold: int
    success_threshold: int


class CheckOptions:
    """The keyword arguments every built-in check takes, validated and kept as attributes.

    A check class takes them as ``**options: Unpack[CommonOptions]`` and hands them on.

    :param name: the check's name: its key in the file, its label, what ``--only`` names.
    :param timeout: seconds one run may take, or ``None`` for the service's
        ``check_timeout``.
    :param critical: whether a failure of this check makes the whole report ``degraded``.
        A non-critical check at fail shows in ``checks`` and leaves the status ``online``.
    :param groups: the groups this check belongs to (``("live",)``: what a liveness probe,
        ``healthfile check --group live``, judges).
    :param failure_threshold: consecutive failures before the check reads fail (it reads
        warn before that).
    :param success_threshold: consecutive passes before a failed check reads pass again.
    """

    def __init__(
        self,
        *,
        name: str,
        timeout: float | None = None,
        critical: bool = True,
        groups: Iterable[str] = (),
        failure_threshold: int = 1,
        success_threshold: int = 1,
    ) -> None:
        self.name = validate_name(name)
        self.timeout = validate_timeout(timeout)
        self.critical = validate_critical(critical)
        self.groups = validate_groups(groups)
        self.failure_threshold = validate_threshold("failure_threshold", failure_threshold)
        self.success_threshold = validate_threshold("success_threshold", success_threshold)


@dataclass(frozen=True, slots=True)
class Options:
    """A check's options as the service runs it, read once at construction."""

    name: str
    timeout: float
    critical: bool
    groups: tuple[str, ...]
    failure_threshold: int
    success_threshold: int


def options_of(check: object, default_timeout: float) -> Options:
    """Read and validate the options of any check, built-in or custom.

    A custom check may lack every attribute but ``name``; one it sets is validated like a
    constructor argument, and a bad one raises ``ValueError`` naming the check and the
    attribute.
    """
    name = validate_name(getattr(check, "name", None))
    where = f"check {name!r}"
    timeout = validate_timeout(getattr(check, "timeout", None), f"{where} timeout")
    return Options(
        name=name,
        timeout=default_timeout if timeout is None else timeout,
        critical=validate_critical(getattr(check, "critical", True), f"{where} critical"),
        groups=validate_groups(getattr(check, "groups", ()), f"{where} groups"),
        failure_threshold=validate_threshold(
            f"{where} failure_threshold", getattr(check, "failure_threshold", 1)
        ),
        success_threshold=validate_threshold(
            f"{where} success_threshold", getattr(check, "success_threshold", 1)
        ),
    )
