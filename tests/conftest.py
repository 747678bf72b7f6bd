"""Shared fixtures: real SQLite databases, services that are always stopped, the loop (--loop)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import healthfile
from healthfile import _run, _sqlite
from helpers import (
    ServiceFactory,
    UriBlindConnection,
    loop_factory,
    make_database,
    mount_tmpfs,
    unmount,
)

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


@pytest.fixture(params=["attached", "fresh"])
def sqlite_design(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each way the database check reads, for a test to hold on both: "attached" (the file
    attached to the service's long-lived connection each cycle) and "fresh" (a connection
    per probe, the fallback, forced by an SQLite that does not read URIs in ATTACH)."""
    design: str = request.param
    if design == "fresh":
        monkeypatch.setattr(_sqlite._Opener, "connection_class", UriBlindConnection)
    return design


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


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide the HEALTHFILE_* and NOTIFY_SOCKET variables of the shell that runs the suite.

    Modules that read the environment use it for every test:
    ``pytestmark = pytest.mark.usefixtures("clean_environment")``.
    """
    for name in list(os.environ):
        if name.startswith("HEALTHFILE_") or name == "NOTIFY_SOCKET":
            monkeypatch.delenv(name)


@pytest.fixture
def started_with(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record the options `healthfile run` would run the service with, instead of running it.

    In-process, a foreground service would block the test until a signal; the real service
    runs in the subprocess tests. This also stops a bad value that main() wrongly accepts
    from hanging the suite.
    """
    calls: list[dict[str, Any]] = []

    def fake_run_service(options: dict[str, Any]) -> int:
        calls.append(dict(options))
        return 0

    monkeypatch.setattr(_run, "run_service", fake_run_service)
    return calls


@pytest.fixture
def umask() -> Iterator[Callable[[int], object]]:
    """Set the process umask for one test (call it) and restore the old one afterwards."""
    original = os.umask(0o022)
    os.umask(original)
    try:
        yield os.umask
    finally:
        os.umask(original)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: a Unix socket's path must fit in 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="hf-"))
    yield path
    shutil.rmtree(path)


@pytest.fixture
def fast_dir(tmp_path: Path) -> Iterator[Path]:
    """A fresh tmpfs where one can be mounted (no disk noise, the most rewrites per second),
    else tmp_path."""
    directory = tmp_path / "tmpfs"
    if mount_tmpfs(directory, "4m") is not None:
        yield tmp_path
        return
    try:
        yield directory
    finally:
        unmount(directory)
