"""Helpers the test modules share: the contract's keys and real SQLite databases."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from healthfile import AsyncHealthService

ServiceFactory = Callable[..., AsyncHealthService]

# The keys of the health file, in contract order (SPEC §2): written out here, not read from
# the code or the schema, so that the tests pin the contract.
CONTRACT_KEYS = [
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
