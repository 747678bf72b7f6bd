"""The service's settings: each argument, else its ``HEALTHFILE_*`` variable, else the default.

The command line reads the same variables (``healthfile run`` and ``healthfile check``), so
that one variable in a pod spec points the writer and every probe at the same file.
"""

from __future__ import annotations

import enum
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ._limits import MAX_IDENTITY_CHARS
from ._lock import lock_path
from ._options import absolute, validate_file_mode, validate_seconds

__all__ = [
    "ENVIRONMENT",
    "UNSET",
    "Configured",
    "Settings",
    "Unset",
    "refuse_shared_files",
    "resolve_settings",
]

T = TypeVar("T")


class Unset(enum.Enum):
    """The type of :data:`UNSET`."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


# An argument the caller did not pass (``None`` means something for ``database``).
UNSET = Unset.UNSET

# The variables the library reads, by argument.
ENVIRONMENT = {
    "database": "HEALTHFILE_DATABASE",
    "health_file": "HEALTHFILE_HEALTH_FILE",
    "interval": "HEALTHFILE_INTERVAL",
    "check_timeout": "HEALTHFILE_CHECK_TIMEOUT",
    "app_name": "HEALTHFILE_APP_NAME",
    "app_version": "HEALTHFILE_APP_VERSION",
    "prometheus_file": "HEALTHFILE_PROMETHEUS_FILE",
}


@dataclass(frozen=True, slots=True)
class Settings:
    """What a service runs with, validated; every path absolute."""

    database: str | os.PathLike[str] | object | None
    health_file: Path
    interval: float
    check_timeout: float
    start_period: float
    pyproject: Path | None
    app_version: str | None
    app_name: str | None
    file_mode: int
    prometheus_file: Path | None
    http_address: tuple[str, int] | None  # where the built-in HTTP server binds, or None
    # How the caller gave each path, for messages: "health_file='x'", "HEALTHFILE_…='x'",
    # or "health_file='data/health.json' (the default)".
    given: Mapping[str, str]


class Configured:
    """What a service was made with, read-only: its settings as properties."""

    _settings: Settings

    @property
    def interval(self) -> float:
        """Seconds between the starts of two cycles."""
        return self._settings.interval

    @property
    def check_timeout(self) -> float:
        """Seconds a check without its own ``timeout`` may run; also bounds ``on_change``."""
        return self._settings.check_timeout

    @property
    def start_period(self) -> float:
        """Seconds after ``start()`` in which never-passed failing checks read ``starting``."""
        return self._settings.start_period

    @property
    def health_file(self) -> Path:
        """The health file, absolute."""
        return self._settings.health_file

    @property
    def prometheus_file(self) -> Path | None:
        """The Prometheus textfile, absolute, or ``None``."""
        return self._settings.prometheus_file

    @property
    def pyproject(self) -> Path | None:
        """The pyproject.toml ``app_version`` (and ``app_name``) are read from, or ``None``."""
        return self._settings.pyproject


def resolve_settings(
    *,
    database: object,
    health_file: str | os.PathLike[str] | None,
    interval: float | None,
    check_timeout: float | None,
    start_period: float,
    pyproject: str | os.PathLike[str] | None,
    app_version: str | None,
    app_name: str | None,
    file_mode: int,
    prometheus_file: str | os.PathLike[str] | None,
    http: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Validate the arguments; fill the ones not passed from the environment, then defaults.

    ``database`` is not passed when it is :data:`UNSET`; the others when ``None``.
    :raises ValueError: for a bad value, naming the argument or the variable it came from.
    :raises TypeError: for a value of the wrong type.
    :raises ImportError: for ``http`` without h11 installed.
    """
    env = os.environ if environ is None else environ
    http_address = None
    if http is not None:
        from ._server import parse_address, require_h11

        http_address = parse_address(http)
        require_h11()
    passed = {"database": database, "health_file": health_file, "prometheus_file": prometheus_file}
    if database is UNSET:
        database = _from_env(env, "database", _path) or "data/app.db"
    if health_file is None:
        health_file = _from_env(env, "health_file", _path) or "data/health.json"
    if interval is None:
        interval = _from_env(env, "interval", _seconds) or 30.0
    if check_timeout is None:
        check_timeout = _from_env(env, "check_timeout", _seconds) or 3.0
    if app_name is None:
        app_name = _from_env(env, "app_name", _identity)
    if app_version is None:
        app_version = _from_env(env, "app_version", _identity)
    if prometheus_file is None:
        prometheus_file = _from_env(env, "prometheus_file", _path)
    for option, value in (("app_version", app_version), ("app_name", app_name)):
        if value is not None and not isinstance(value, str):
            kind = type(value).__name__
            raise TypeError(f"{option} must be a string or None, not {value!r} ({kind})")
        if not _is_optional_text(value):
            raise ValueError(
                f"{option} must be a non-blank string of at most {MAX_IDENTITY_CHARS} "
                f"characters, not {value!r}"
            )
    resolved = {
        "database": database,
        "health_file": health_file,
        "prometheus_file": prometheus_file,
    }
    return Settings(
        database=database,
        health_file=absolute(health_file),  # once: a later os.chdir() changes nothing
        interval=validate_seconds("interval", interval),
        check_timeout=validate_seconds("check_timeout", check_timeout),
        start_period=validate_seconds("start_period", start_period, allow_zero=True),
        pyproject=None if pyproject is None else absolute(pyproject),
        app_version=app_version,
        app_name=app_name,
        file_mode=validate_file_mode(file_mode),
        prometheus_file=None if prometheus_file is None else absolute(prometheus_file),
        http_address=http_address,
        given={
            option: _given_as(option, passed[option], resolved[option], env) for option in passed
        },
    )


def _given_as(option: str, passed: object, resolved: object, environ: Mapping[str, str]) -> str:
    """How the caller gave ``option``: as an argument, in its variable, or not at all."""
    if passed is not None and passed is not UNSET:
        return f"{option}={_shown(passed)}"
    name = ENVIRONMENT[option]
    if name in environ:
        return f"{name}={environ[name]!r}"
    return f"{option}={_shown(resolved)} (the default)"


def _shown(value: object) -> str:
    """A path as the caller wrote it (a ``Path`` as its text), anything else as its repr."""
    return repr(os.fspath(value)) if isinstance(value, (str, os.PathLike)) else repr(value)


def _from_env(environ: Mapping[str, str], option: str, parse: Callable[[str], T]) -> T | None:
    """The value of the option's variable, parsed; None when it is not set."""
    name = ENVIRONMENT[option]
    raw = environ.get(name)
    if raw is None:
        return None
    try:
        return parse(raw)
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r}: {exc}") from None


def _path(text: str) -> str:
    if not text.strip():
        raise ValueError("expected a path, not an empty value")
    return text


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    if not math.isfinite(value):
        raise ValueError("expected a finite number of seconds")
    return validate_seconds("the value", value)


def _identity(text: str) -> str:
    if not _is_optional_text(text):
        raise ValueError(f"expected a non-empty value of at most {MAX_IDENTITY_CHARS} characters")
    return text


def _is_optional_text(value: object) -> bool:
    """Tell whether ``value`` is None or a non-blank string short enough for the file."""
    return value is None or (
        isinstance(value, str) and bool(value.strip()) and len(value) <= MAX_IDENTITY_CHARS
    )


def refuse_shared_files(
    database: object,
    health_file: str | os.PathLike[str],
    prometheus_file: str | os.PathLike[str] | None,
    *,
    labels: Mapping[str, str] | None = None,
) -> None:
    """Refuse any two of database / health file / Prometheus file / lock file that are one file.

    The same path once made absolute or once symlinks are resolved, or the same existing
    file (device and inode: a hard link too). Writing the health file over the database
    would destroy the application's data; so would the pid written into the health file's
    lock file (``.<name>.lock``), removed at stop(). ``database`` that is not a path is
    left out.

    :param labels: how the caller gave each (``"database"``, ``"health_file"``,
        ``"prometheus_file"``), e.g. ``"--health-file data/app.db"``; by default
        ``health_file='data/app.db'``, the path as passed.
    :raises ValueError: naming both as the caller gave them, and the file they are.
    """
    labels = labels or {}
    named = [
        (labels.get(what) or f"{what}={_shown(path)}", absolute(path))
        for what, path in (
            ("database", database),
            ("health_file", health_file),
            ("prometheus_file", prometheus_file),
        )
        if isinstance(path, (str, os.PathLike))
    ]
    health = labels.get("health_file") or f"health_file={_shown(health_file)}"
    named.append((f"the lock file of {health}", lock_path(absolute(health_file))))
    for index, (first, first_path) in enumerate(named):
        for second, second_path in named[index + 1 :]:
            if _same_file(first_path, second_path):
                same = repr(str(first_path))
                if first_path != second_path:
                    same = f"{same} and {str(second_path)!r}, two names of one file"
                raise ValueError(
                    f"{first} and {second} are the same file ({same}): the service would "
                    "overwrite it"
                )


def _same_file(first: Path, second: Path) -> bool:
    """Tell whether two absolute paths name one file, existing or not."""
    if os.path.normcase(first) == os.path.normcase(second):
        return True
    if os.path.normcase(os.path.realpath(first)) == os.path.normcase(os.path.realpath(second)):
        return True
    try:
        return os.path.samefile(first, second)  # st_dev and st_ino: hard links too
    except OSError:
        return False  # one of them does not exist (yet): the path comparisons decided
