"""Shared fixtures: real SQLite databases, services that are always stopped, the loop choice."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import healthfile
from helpers import ServiceFactory, make_database

# HEALTHFILE_TEST_LOOP=uvloop runs every async test on uvloop (the CI runs the suite both ways).
TEST_LOOP = os.environ.get("HEALTHFILE_TEST_LOOP", "asyncio")


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """Choose the event loop every async test runs on."""
    if TEST_LOOP == "uvloop":
        import uvloop

        return {"uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}


@pytest.fixture
def database(tmp_path: Path) -> Path:
    """A real SQLite database file in tmp_path."""
    return make_database(tmp_path / "app.db")


@pytest.fixture
def health_file(tmp_path: Path) -> Path:
    """Where the service under test writes (its directory does not exist yet)."""
    return tmp_path / "out" / "health.json"


@pytest_asyncio.fixture
async def make_service(
    database: Path, health_file: Path, tmp_path: Path
) -> AsyncIterator[ServiceFactory]:
    """Build services with test defaults; every one is stopped when the test ends."""
    made: list[healthfile.AsyncHealthService] = []

    def factory(*args: Any, **options: Any) -> healthfile.AsyncHealthService:
        if not args:
            args = (database,)
        options.setdefault("health_file", health_file)
        options.setdefault("pyproject", tmp_path / "missing-pyproject.toml")
        options.setdefault("interval", 30.0)
        service = healthfile.AsyncHealthService(*args, **options)
        made.append(service)
        return service

    yield factory
    for service in made:
        await service.stop()


@pytest.fixture
def healthfile_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Capture healthfile's log records at DEBUG."""
    with caplog.at_level(logging.DEBUG, logger="healthfile"):
        yield caplog
