"""Helpers the test modules share: the contract's keys, real SQLite databases, reading."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import pytest

from healthfile import AsyncHealthService

ServiceFactory = Callable[..., AsyncHealthService]

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
