"""Helpers the test modules share: the contract's keys, real SQLite databases, reading."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import pytest

from healthfile import AsyncHealthService
from healthfile._writer import _posix_modes

ServiceFactory = Callable[..., AsyncHealthService]

# A whole run with the POSIX-only capabilities hidden, as Windows lacks them
# (tests/foreign/sitecustomize.py sets it). Tests skip by the capability they need, not by this.
FOREIGN = os.environ.get("HEALTHFILE_FOREIGN") == "1"
needs_posix_modes = pytest.mark.skipif(
    not _posix_modes(), reason="needs POSIX file modes (os.fchmod and os.getuid; not Windows)"
)
needs_unix_sockets = pytest.mark.skipif(
    not hasattr(socket, "AF_UNIX"), reason="needs Unix sockets (socket.AF_UNIX; not Windows)"
)
# A FIFO opened for reading blocks until a writer comes, unless O_NONBLOCK exists.
NONBLOCKING_FIFOS = hasattr(os, "mkfifo") and hasattr(os, "O_NONBLOCK")
needs_nonblocking_fifos = pytest.mark.skipif(
    not NONBLOCKING_FIFOS, reason="needs FIFOs and O_NONBLOCK (os.mkfifo; not Windows)"
)
needs_fifos = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo (not Windows)")


def _can_open_directories() -> bool:
    """Whether os.open takes a directory (so that it can be fsynced): not on Windows."""
    try:
        fd = os.open(os.curdir, os.O_RDONLY)
    except OSError:
        return False
    os.close(fd)
    return True


DIRECTORY_FSYNC = _can_open_directories()
needs_directory_fsync = pytest.mark.skipif(
    not DIRECTORY_FSYNC, reason="needs directories that open and fsync (not Windows)"
)

# The keys of the health file, in the contract's order: written out here, not read from
# the code or the schema, so that the tests pin the contract.
CONTRACT_KEYS = [
    "status",
    "database",
    "timestamp",
    "app_version",
    "app_name",
    "api_version",
    "interval_seconds",
    "expires_at",
    "sequence",
    "started_at",
    "pid",
    "checks",
]


def make_database(path: Path) -> Path:
    """Create a small real SQLite database (rollback journal) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path)
    try:
        connection.executescript(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT);"
            "INSERT INTO items (name) VALUES ('one'), ('two');"
        )
        connection.commit()
    finally:
        connection.close()
    return path


def read_report(path: Path) -> dict[str, Any] | None:
    """The health file's JSON object, or None while there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    report = json.loads(text)
    assert isinstance(report, dict)
    return report


def integration_unavailable(reason: str) -> NoReturn:
    """Skip an integration test for ``reason``, or fail it under HEALTHFILE_REQUIRE_INTEGRATION=1.

    .ci/run sets that variable, so that CI cannot go green by not running these tests.
    """
    if os.environ.get("HEALTHFILE_REQUIRE_INTEGRATION") == "1":
        pytest.fail(f"HEALTHFILE_REQUIRE_INTEGRATION=1 but {reason}")
    pytest.skip(reason)


def require_program(*candidates: str, package: str) -> str:
    """The first of ``candidates`` found (a name on PATH or a path), else skip or fail."""
    for candidate in candidates:
        found = shutil.which(candidate)
        if found is not None:
            return found
    integration_unavailable(f"{' or '.join(candidates)} not found (apt-get install {package})")


def require_module(name: str, package: str) -> ModuleType:
    """The module ``name`` of this interpreter, else skip or fail."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        integration_unavailable(f"this Python has no {name} ({exc}; install {package})")


def is_lock_file(name: str) -> bool:
    """True for the lock file a writing service keeps next to its health file (``.NAME.lock``)."""
    return name.startswith(".") and name.endswith(".lock")
