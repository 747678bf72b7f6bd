"""The database under a running service: every way it breaks, and back, reported truly."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from healthfile import AsyncHealthService, HealthReport
from helpers import ServiceFactory, content

# Every test holds on both ways the database check reads (conftest.py: sqlite_design).
pytestmark = [pytest.mark.reliability, pytest.mark.usefixtures("sqlite_design")]


CYCLES = 3
CHECK_TIMEOUT = 1.0

# Holds BEGIN EXCLUSIVE on the database argv[1]; prints "locked". With argv[2] > 0 it lets go
# after that many seconds by itself, else when a line arrives on stdin; then prints "released".
LOCK_HOLDER = textwrap.dedent(
    """
    import sqlite3, sys, time
    connection = sqlite3.connect(sys.argv[1], isolation_level=None)
    connection.execute("BEGIN EXCLUSIVE")
    print("locked", flush=True)
    hold = float(sys.argv[2])
    if hold > 0:
        time.sleep(hold)
    else:
        sys.stdin.readline()
    connection.execute("ROLLBACK")
    connection.close()
    print("released", flush=True)
    """
)


def put(path: Path, data: bytes) -> None:
    """Put ``data`` at ``path`` with one rename, so the probe never sees half of it."""
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def delete(path: Path) -> None:
    path.unlink()


def sqlite_files(directory: Path) -> list[str]:
    """Names of the database and any journal SQLite may have made beside it."""
    return sorted(name for name in os.listdir(directory) if name.startswith("app.db"))


@asynccontextmanager
async def locked_by_another_process(database: Path, hold: float = 0.0) -> AsyncIterator[None]:
    """Hold an exclusive lock on ``database`` from a separate process for the block.

    With ``hold`` the process lets go by itself that many seconds after taking the lock.
    """
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(database), str(hold)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None
    assert holder.stdout is not None
    try:
        assert await asyncio.to_thread(holder.stdout.readline) == "locked\n"
        yield
    finally:
        if hold <= 0 and holder.poll() is None:
            holder.stdin.write("\n")
            holder.stdin.flush()
        out, _ = await asyncio.to_thread(holder.communicate, None, 30)
        assert holder.returncode == 0
        assert "released" in out


async def observe(service: AsyncHealthService, cycles: int = CYCLES) -> list[HealthReport]:
    """Run ``cycles`` cycles now and return their reports."""
    return [await service.check_now() for _ in range(cycles)]


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_every_database_fault_and_restore_is_reported_truly(
    make_service: ServiceFactory, database: Path
) -> None:
    """Deleted, garbage, truncated, a directory, locked (briefly, long), restored: truly told."""
    saved = content(database)
    service = make_service(database, check_timeout=CHECK_TIMEOUT)
    await service.start()
    seen: list[tuple[str, str]] = []
    expected: list[tuple[str, str]] = []

    async def step(name: str, database_state: str, cycles: int = CYCLES) -> None:
        expected.extend([(name, database_state)] * cycles)
        for report in await observe(service, cycles):
            seen.append((name, report.database))
            status = report.checks["database"].status
            assert (report.database == "connected") == (status == "pass"), (name, report)
            assert (report.status == "online") == (status == "pass"), (name, report)

    await step("real", "connected")
    delete(database)
    await step("deleted", "disconnected")
    assert sqlite_files(database.parent) == [], "the probe created the deleted database"
    put(database, saved)
    await step("restored", "connected")
    put(database, b"this is not an SQLite database\n" * 300)
    await step("garbage", "disconnected")
    put(database, saved)
    await step("restored", "connected")
    put(database, saved[:2048])
    await step("truncated inside its first page", "disconnected")
    put(database, saved[:4096])
    await step("truncated to its first page", "disconnected")
    put(database, saved)
    await step("restored", "connected")
    delete(database)
    os.mkdir(database)
    await step("a directory", "disconnected")
    os.rmdir(database)
    put(database, saved)
    await step("restored", "connected")
    async with locked_by_another_process(database):
        await step("locked longer than check_timeout", "timeout", 2)
    await step("released", "connected")
    async with locked_by_another_process(database, hold=0.1):
        # The probe retries a busy database until its timeout: a short lock is waited out.
        await step("locked for less than check_timeout", "connected", 1)
    await step("restored", "connected")

    assert seen == expected
    assert content(database) == saved
    assert sqlite_files(database.parent) == ["app.db"]


@pytest.mark.asyncio
async def test_missing_database_is_never_created_nor_connected(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    """A database that never existed reads disconnected cycle after cycle and is never created."""
    directory = tmp_path / "db"
    directory.mkdir()
    missing = directory / "app.db"
    service = make_service(missing, interval=0.02)
    await service.start()

    reports = await observe(service, 10)
    # Let the service's own cycles run too, in between.
    await asyncio.sleep(0.2)
    reports += await observe(service, 10)

    assert {report.database for report in reports} == {"disconnected"}
    assert {report.status for report in reports} == {"degraded"}
    assert os.listdir(directory) == []
    assert "unable to open database file" in (reports[-1].checks["database"].output or "")


@pytest.mark.asyncio
async def test_database_locked_beyond_check_timeout_never_reads_connected_in_background(
    make_service: ServiceFactory, database: Path
) -> None:
    """While another process holds the lock, the service's own cycles all read timeout."""
    service = make_service(database, interval=0.05, check_timeout=0.2)
    await service.start()
    during: dict[int, HealthReport] = {}
    async with locked_by_another_process(database):
        started = service.last_report
        assert started is not None
        # The cycle after `started` may have begun before the lock was taken: skip it.
        while len(during) < 5:
            await asyncio.sleep(0.02)
            report = service.last_report
            if report is not None and report.sequence > started.sequence + 1:
                during[report.sequence] = report
    after = await service.check_now()

    assert {report.database for report in during.values()} == {"timeout"}
    assert after.database == "connected"


@pytest.mark.asyncio
async def test_database_restored_by_copy_in_place_reads_connected(
    make_service: ServiceFactory, database: Path, tmp_path: Path
) -> None:
    """A database deleted and then copied back (not renamed) reads connected again."""
    backup = tmp_path / "backup.db"
    shutil.copyfile(database, backup)
    service = make_service(database)
    await service.start()
    delete(database)
    assert (await service.check_now()).database == "disconnected"

    shutil.copyfile(backup, database)

    assert (await service.check_now()).database == "connected"
