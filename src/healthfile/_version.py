"""The application's name and version, read once at start: pyproject.toml, then metadata."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

from ._toml import MAX_NESTING, MAX_PYPROJECT_BYTES, TOMLFileError, read_toml

__all__ = [
    "MAX_NESTING",
    "MAX_PYPROJECT_BYTES",
    "UNKNOWN_VERSION",
    "AppIdentity",
    "program_name",
    "read_app_identity",
    "read_app_version",
]

UNKNOWN_VERSION = "unknown"
# This package's own distribution name, as _normalized() gives it.
_OWN_NAME = "healthfile"

logger = logging.getLogger("healthfile")


class AppIdentity(NamedTuple):
    """Who writes the health file: ``app_name`` and ``app_version``."""

    name: str
    version: str


def read_app_identity(
    pyproject: str | os.PathLike[str] | None, *, fallback_name: Callable[[], str] | None = None
) -> AppIdentity:
    """Read ``pyproject`` once and return the application's name and version.

    The name is ``[project].name``, else ``fallback_name()`` (by default
    :func:`program_name`); the version is as :func:`read_app_version` says. healthfile's own
    pyproject.toml (a checkout of healthfile, where its examples run) names no application
    that uses healthfile: it is not read (name from the fallback, version ``unknown``).
    Never raises.
    """
    project = {} if pyproject is None else _read_project_table(Path(pyproject))
    name = project.get("name")
    if isinstance(name, str) and _normalized(name) == _OWN_NAME:
        logger.info("app_name: %s is healthfile's own project, not the application's", pyproject)
        project, name = {}, None
    if isinstance(name, str) and name.strip():
        return AppIdentity(name.strip(), _version_of(project))
    return AppIdentity((fallback_name or program_name)(), _version_of(project))


def _normalized(name: str) -> str:
    """A distribution name as PyPI compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def read_app_version(pyproject: str | os.PathLike[str] | None) -> str:
    """Return ``[project].version`` of ``pyproject``, else the installed version, else ``unknown``.

    The installed version is looked up by ``[project].name`` when the version is dynamic or
    missing. A missing, unreadable, oversized or invalid file never raises: it logs why and
    falls back to ``"unknown"``.
    """
    if pyproject is None:
        return UNKNOWN_VERSION
    return _version_of(_read_project_table(Path(pyproject)))


def _version_of(project: dict[str, Any]) -> str:
    """The version a ``[project]`` table gives, directly or through the installed metadata."""
    version = project.get("version")
    if isinstance(version, str) and version.strip():
        return version.strip()
    name = project.get("name")
    if isinstance(name, str) and name.strip():
        try:
            return metadata.version(name.strip())
        except metadata.PackageNotFoundError:
            logger.info("app_version: %s is not an installed distribution", name)
        except Exception as exc:
            logger.warning("app_version: could not read the metadata of %s: %s", name, exc)
    return UNKNOWN_VERSION


def program_name() -> str:
    """The name of the running program, when no pyproject names it.

    The installed distribution that owns the program — the one whose console script is
    ``sys.argv[0]``, or, under ``python -m pkg``, the distribution named ``pkg`` — else
    ``pkg``, else the script's name (``Path(sys.argv[0]).stem``), else ``"python"``.
    """
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    main_module = getattr(spec, "name", None)
    script = sys.argv[0] if sys.argv and isinstance(sys.argv[0], str) else ""
    return _program_name(script, main_module if isinstance(main_module, str) else None)


@lru_cache(maxsize=4)
def _program_name(script: str, main_module: str | None) -> str:
    """Name the program run as ``script`` (argv[0]) with ``main_module`` as ``__main__``."""
    package = None
    if main_module and main_module != "__main__":
        package = main_module.partition(".")[0]
    try:
        distribution = _owning_distribution(Path(script), package)
    except Exception as exc:
        logger.info("app_name: could not read the installed distributions: %s", exc)
        distribution = None
    if distribution:
        return distribution
    if package:  # python -m pkg: the package, not "__main__"
        return package
    stem = Path(script).stem
    return stem if stem.strip() and script != "-c" else "python"


def _owning_distribution(script: Path, package: str | None) -> str | None:
    """The distribution whose console script is ``script``, or the one named ``package``.

    Cheap on purpose (tens of ms at most): entry points are read only for a script that is
    not a ``.py`` file, and ``package`` is looked up by name, never by scanning every
    distribution's file list.
    """
    if package is not None:
        try:
            return str(metadata.distribution(package).metadata["Name"])
        except metadata.PackageNotFoundError:
            return None
    if script.name not in ("", "-c") and script.suffix.lower() not in (".py", ".pyw"):
        names = {script.name, script.stem}
        for group in ("console_scripts", "gui_scripts"):
            for entry in metadata.entry_points(group=group):
                if entry.name in names and entry.dist is not None:
                    return str(entry.dist.name)
    return None


def _read_project_table(path: Path) -> dict[str, Any]:
    """Return the ``[project]`` table of a pyproject file, or ``{}`` when it cannot be had."""
    try:
        document = read_toml(path)
    except TOMLFileError as exc:
        (logger.info if exc.unreadable else logger.warning)("app_version: %s; ignored", exc)
        return {}
    project = document.get("project")
    return project if isinstance(project, dict) else {}
