"""Create the small demo SQLite database `make run` probes, unless one is already there."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path


def main(path: str = "data/app.db") -> int:
    target = Path(path)
    if target.exists():
        print(f"{target} exists; left as it is")
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(target) as connection:
        connection.executescript(
            """
            CREATE TABLE orders (
                id INTEGER PRIMARY KEY, item TEXT NOT NULL, placed_at TEXT NOT NULL
            );
            INSERT INTO orders (item, placed_at) VALUES
                ('sourdough', '2026-11-27T08:00:00Z'),
                ('croissant', '2026-11-27T08:05:00Z');
            """
        )
    connection.close()
    print(f"created demo database {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
