"""Shared fixtures: real SQLite databases, services that are always stopped, the loop (--loop)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import healthfile
from helpers import ServiceFactory, make_database

LOOPS = ("asyncio", "uvloop")


def pytest_addoption(parser: pytest.Parser) -> None:
    """`pytest --loop=uvloop` runs the suite on uvloop (noxfile.py runs it both ways)."""
    parser.addoption(
        "--loop",
        choices=LOOPS,
        default="asyncio",
        help="the event loop every async test, facade and child process runs on",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Refuse the variable that chose the loop before --loop, rather than ignore it."""
    if "HEALTHFILE_TEST_LOOP" in os.environ:
        raise pytest.UsageError(
            "HEALTHFILE_TEST_LOOP is no longer read: run pytest --loop=uvloop instead"
        )


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The function that makes a new event loop of kind ``name`` (one of LOOPS)."""
    if name == "uvloop":
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    return asyncio.new_event_loop


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """Choose the event loop every async test runs on: the one --loop names."""
    name: str = config.getoption("loop")
    return {name: loop_factory(name)}


@pytest.fixture
def test_loop(pytestconfig: pytest.Config) -> str:
    """The name of the event loop this run tests on (--loop): for facades and child processes."""
    name: str = pytestconfig.getoption("loop")
    return name


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
