"""SQLiteCheck on real SQLite files: read-only, honest about every way a database can fail."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from healthfile import CheckResult, SQLiteCheck, _sqlite
from helpers import (
    LOCK_HOLDER,
    ServiceFactory,
    UriBlindConnection,
    generous,
    is_database_thread,
    is_lock_file,
    make_database,
    read_text,
    wait_until_async,
)

# Starts a service in asyncio.run and returns without stop(); with "locked", a probe of a
# database this same process holds locked is in flight when main() returns.
RETURNS_WITHOUT_STOP = textwrap.dedent(
    """
    import asyncio, os, sqlite3, sys
    import healthfile

    database, health_file, mode, loop = sys.argv[1:5]
    holders = []

    def lock(path):
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN EXCLUSIVE")
        return holder

    async def main():
        service = healthfile.AsyncHealthService(
            database, health_file=health_file, pyproject=None, interval=0.05,
            check_timeout=30.0,
        )
        await service.start()
        if mode == "locked":
            # Held until the interpreter exits; taken in a thread, as BEGIN EXCLUSIVE may wait.
            holders.append(await asyncio.to_thread(lock, database))
        await asyncio.sleep(0.3)

    if loop == "uvloop":
        import uvloop
        uvloop.run(main())
    else:
        asyncio.run(main())
    print("main returned", flush=True)
    """
)


@contextmanager
def exclusive_lock(path: Path) -> Iterator[sqlite3.Connection]:
    """Hold ``BEGIN EXCLUSIVE`` on the database from a plain sqlite3 connection."""
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        yield holder
        holder.execute("ROLLBACK")
    finally:
        holder.close()


@asynccontextmanager
async def serving(check: SQLiteCheck) -> AsyncIterator[SQLiteCheck]:
    """The check as a running service holds it: from on_start() to wait_closed() and on_stop()."""
    check.on_start()
    try:
        yield check
    finally:
        await check.wait_closed()
        check.on_stop()


async def probe(path: Path, **options: Any) -> CheckResult:
    """One run of a check on ``path`` as a service runs it (on the design under test)."""
    async with serving(SQLiteCheck(path, **options)) as check:
        return await check.run()


def listing(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def fingerprint(path: Path) -> tuple[str, int]:
    """The file's content hash and its mtime in nanoseconds."""
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


class ConnectionSpy:
    """Record every sqlite3 connection the probe opens; optionally slow its opening or closing."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.close_delay = 0.0
        self.close_error: Exception | None = None
        self.opened: list[sqlite3.Connection] = []
        self.connecting = threading.Event()
        self.closed_underneath = threading.Event()  # the sqlite3 connection is closed
        spy = self
        # Built on the class in use, so that it composes with the sqlite_design fixture.
        base = _sqlite._Opener.connection_class

        class SpiedConnection(base):  # type: ignore[valid-type,misc]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                spy.connecting.set()
                time.sleep(spy.delay)
                super().__init__(*args, **kwargs)
                spy.opened.append(self)

            def close(self) -> None:
                super().close()
                spy.closed_underneath.set()
                time.sleep(spy.close_delay)
                error, spy.close_error = spy.close_error, None
                if error is not None:
                    raise error  # once

        self.connection_class = SpiedConnection

    def still_open(self) -> list[sqlite3.Connection]:
        return [connection for connection in self.opened if _is_open(connection)]


def _is_open(connection: sqlite3.Connection) -> bool:
    try:
        connection.total_changes  # noqa: B018 - raises on a closed connection
    except sqlite3.ProgrammingError:
        return False
    return True


@pytest.fixture
def connection_spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[ConnectionSpy]:
    """Spy on the connections the probe opens (in aiosqlite's thread); close leaks at teardown."""
    spy = ConnectionSpy()
    monkeypatch.setattr(_sqlite._Opener, "connection_class", spy.connection_class)
    yield spy
    for connection in spy.still_open():
        connection.close()


@pytest.fixture
def uri_blind_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the service read by a fresh connection per probe (list it before connection_spy)."""
    monkeypatch.setattr(_sqlite._Opener, "connection_class", UriBlindConnection)


@pytest.fixture
def threads_before() -> set[threading.Thread]:
    """The threads alive before the test, which it must not wait for."""
    return set(threading.enumerate())


def aiosqlite_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    """aiosqlite's connection threads started since ``before``."""
    return [t for t in threading.enumerate() if is_database_thread(t) and t not in before]


# Every way a file at the database path can fail to be a readable database.
def _missing(path: Path) -> None:
    pass


def _directory(path: Path) -> None:
    path.mkdir()


def _random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(8192))


def _truncated(path: Path) -> None:
    real = make_database(path.with_name("source.db")).read_bytes()
    path.with_name("source.db").unlink()
    path.write_bytes(real[:100])


BROKEN = {
    "missing": _missing,
    "directory": _directory,
    "random-bytes": _random_bytes,
    "truncated-to-header": _truncated,
}


@pytest.fixture
def db_dir(tmp_path: Path) -> Path:
    """A directory of its own for the database under test (the health file lives elsewhere)."""
    directory = tmp_path / "db"
    directory.mkdir()
    return directory


# --- what the probe reports --------------------------------------------------------------


@pytest.mark.asyncio
async def test_real_database_is_connected(
    sqlite_design: str, make_service: ServiceFactory, database: Path
) -> None:
    """A real database reads connected, both directly and through the service."""
    result = await probe(database)
    assert result.status == "pass"
    service = make_service(database)
    await service.start()
    report = service.last_report
    assert report is not None
    assert report.database == "connected"
    assert report.status == "online"
    assert report.checks["database"].status == "pass"


@pytest.mark.parametrize("breakage", list(BROKEN), ids=list(BROKEN))
@pytest.mark.asyncio
async def test_broken_database_is_disconnected(
    sqlite_design: str, make_service: ServiceFactory, db_dir: Path, breakage: str
) -> None:
    """A missing path, a directory, random bytes or a bare header read disconnected."""
    path = db_dir / "app.db"
    BROKEN[breakage](path)
    before = listing(db_dir)
    result = await probe(path)
    assert result.status == "fail"
    assert result.output is not None
    assert str(path) in result.output
    service = make_service(path)
    await service.start()
    report = await service.check_now()
    assert report.database == "disconnected"
    assert report.status == "degraded"
    assert report.checks["database"].status == "fail"
    assert listing(db_dir) == before


@pytest.mark.asyncio
async def test_missing_database_is_not_created(
    sqlite_design: str, make_service: ServiceFactory, db_dir: Path
) -> None:
    """Probing a missing database creates neither it nor a -journal, -wal or -shm file."""
    path = db_dir / "app.db"
    service = make_service(path)
    await service.start()
    for _ in range(3):
        await service.check_now()
    await service.stop()
    assert not path.exists()
    assert listing(db_dir) == []
    assert service.last_report is not None
    assert service.last_report.database == "disconnected"


@pytest.mark.asyncio
async def test_empty_file_reads_as_an_empty_database(
    sqlite_design: str, make_service: ServiceFactory, db_dir: Path
) -> None:
    """A 0-byte file is connected and stays 0 bytes.

    SQLite defines a zero-length file as a valid, empty database (its schema has no
    tables), so a read-only probe of it succeeds honestly: the file is a database that
    SQLite can read. Whether the application's tables exist is beyond a liveness probe.
    """
    path = db_dir / "app.db"
    path.touch()
    assert (await probe(path)).status == "pass"
    service = make_service(path)
    await service.start()
    assert service.last_report is not None
    assert service.last_report.database == "connected"
    assert path.stat().st_size == 0
    assert listing(db_dir) == ["app.db"]


@pytest.mark.asyncio
async def test_locked_database_reads_timeout(
    sqlite_design: str, make_service: ServiceFactory, database: Path, health_file: Path
) -> None:
    """Held BEGIN EXCLUSIVE: top-level database is timeout, the check fails 'timed out'."""
    service = make_service(database, check_timeout=0.3)
    await service.start()
    with exclusive_lock(database):
        report = await service.check_now()
    assert report.database == "timeout"
    assert report.status == "degraded"
    assert report.checks["database"].status == "fail"
    assert report.checks["database"].output == "timed out after 0.3 s"
    assert report.as_dict()["database"] == "timeout"
    assert json.loads(read_text(health_file))["database"] == "timeout"


@pytest.mark.asyncio
async def test_locked_database_fails_a_check_with_its_own_timeout(
    sqlite_design: str, database: Path
) -> None:
    """Called directly with its own 0.3 s timeout, the check gives up with 'database is locked'."""
    with exclusive_lock(database):
        started = time.perf_counter()
        result = await probe(database, timeout=0.3)
        elapsed = time.perf_counter() - started
    assert result.status == "fail"
    assert result.output is not None
    assert "locked" in result.output
    assert 0.25 <= elapsed < generous(5.0)


@pytest.mark.asyncio
async def test_lock_released_reads_connected_again(
    sqlite_design: str, make_service: ServiceFactory, database: Path
) -> None:
    """Once the exclusive lock is released, the next check_now() reads connected."""
    service = make_service(database, check_timeout=0.3)
    await service.start()
    with exclusive_lock(database):
        assert (await service.check_now()).database == "timeout"
    report = await service.check_now()
    assert report.database == "connected"
    assert report.status == "online"
    assert report.checks["database"].status == "pass"


@pytest.mark.asyncio
async def test_database_locked_by_another_process_is_not_connected(
    sqlite_design: str, make_service: ServiceFactory, database: Path
) -> None:
    """A lock held by another process reads timeout; when it lets go, connected again."""
    service = make_service(database, check_timeout=0.3)
    await service.start()
    with subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(database)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdin is not None
        assert holder.stdout is not None
        try:
            assert await asyncio.to_thread(holder.stdout.readline) == "locked\n"
            report = await service.check_now()
            assert report.database == "timeout"
            assert report.checks["database"].status == "fail"
            holder.stdin.write("\n")
            holder.stdin.flush()
            assert await asyncio.to_thread(holder.stdout.readline) == "released\n"
        finally:
            if holder.poll() is None:
                holder.stdin.close()
                await asyncio.to_thread(holder.wait, 15)
    assert holder.returncode == 0
    report = await service.check_now()
    assert report.database == "connected"


@pytest.mark.asyncio
async def test_probe_never_writes_the_database(
    sqlite_design: str, make_service: ServiceFactory, db_dir: Path
) -> None:
    """After many probes the database's bytes and mtime are unchanged and no journal appears."""
    path = make_database(db_dir / "app.db")
    before = fingerprint(path)
    service = make_service(path)
    await service.start()
    for _ in range(20):
        assert (await service.check_now()).database == "connected"
    await service.stop()
    assert fingerprint(path) == before
    assert listing(db_dir) == ["app.db"]


def tree(root: Path) -> list[str]:
    return sorted(
        str(path.relative_to(root)) for path in root.rglob("*") if not is_lock_file(path.name)
    )


URI_NAMES = ["my db.db", "what?mode=rwc.db", "hash#frag.db", "pct%41%20%.db", "a?b#c%d &e=f.db"]


@pytest.mark.parametrize("name", URI_NAMES)
@pytest.mark.asyncio
async def test_path_with_uri_characters_works(
    sqlite_design: str, make_service: ServiceFactory, tmp_path: Path, name: str
) -> None:
    """A path with spaces, '?', '#' and '%' is opened as that very file and nothing else."""
    directory = tmp_path / "dir with spaces #1 ?x=%41"
    path = make_database(directory / name)
    before, files = fingerprint(path), tree(tmp_path)
    assert (await probe(path)).status == "pass"
    service = make_service(path, health_file=tmp_path / "health.json")
    await service.start()
    assert service.last_report is not None
    assert service.last_report.database == "connected"
    assert fingerprint(path) == before
    # The same path holding garbage must read disconnected: the probe opened this file.
    path.write_bytes(os.urandom(4096))
    assert (await service.check_now()).database == "disconnected"
    assert (await probe(path)).status == "fail"
    assert tree(tmp_path) == sorted([*files, "health.json"])


@pytest.mark.asyncio
async def test_missing_path_with_uri_characters_is_not_created(
    sqlite_design: str, make_service: ServiceFactory, db_dir: Path
) -> None:
    """A missing path whose name looks like URI parameters is neither opened rw nor created."""
    path = db_dir / "app.db?mode=rwc"
    service = make_service(path)
    await service.start()
    assert service.last_report is not None
    assert service.last_report.database == "disconnected"
    assert listing(db_dir) == []


@pytest.mark.asyncio
async def test_database_deleted_restored_and_replaced_while_running(
    sqlite_design: str, make_service: ServiceFactory, db_dir: Path
) -> None:
    """Deleted reads disconnected, restored reads connected, replaced by garbage disconnected."""
    path = make_database(db_dir / "app.db")
    saved = path.read_bytes()
    service = make_service(path)
    await service.start()
    assert service.last_report is not None
    assert service.last_report.database == "connected"
    path.unlink()
    assert (await service.check_now()).database == "disconnected"
    assert not path.exists()
    path.write_bytes(saved)
    assert (await service.check_now()).database == "connected"
    path.write_bytes(os.urandom(len(saved)))
    report = await service.check_now()
    assert report.database == "disconnected"
    assert report.checks["database"].output is not None
    assert "not a database" in report.checks["database"].output


@pytest.mark.asyncio
async def test_stop_mid_probe_is_prompt_and_leaves_no_connection_thread(
    sqlite_design: str,
    make_service: ServiceFactory,
    database: Path,
    health_file: Path,
    threads_before: set[threading.Thread],
) -> None:
    """stop() while a probe waits on a locked database returns promptly; its thread ends."""
    service = make_service(database, check_timeout=30.0)
    await service.start()
    with exclusive_lock(database):
        cycle = asyncio.ensure_future(service.check_now())
        await wait_until_async(lambda: bool(aiosqlite_threads(threads_before)), timeout=10.0)
        await asyncio.sleep(0.05)  # let the probe meet the lock
        assert not cycle.done()
        started = time.perf_counter()
        await service.stop()
        elapsed = time.perf_counter() - started
        with pytest.raises(RuntimeError, match="stopped"):
            await cycle
        await wait_until_async(lambda: not aiosqlite_threads(threads_before), timeout=2.0)
    assert elapsed < generous(1.0)
    assert json.loads(read_text(health_file))["status"] == "stopped"


@pytest.mark.asyncio
async def test_direct_probe_cancelled_closes_its_connection(
    database: Path, threads_before: set[threading.Thread]
) -> None:
    """Cancelling SQLiteCheck.run() on a locked database ends its connection thread."""
    check = SQLiteCheck(database)
    with exclusive_lock(database):
        run = asyncio.ensure_future(check.run())
        await wait_until_async(lambda: bool(aiosqlite_threads(threads_before)), timeout=10.0)
        await asyncio.sleep(0.05)  # let the probe meet the lock
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        await asyncio.wait_for(check.wait_closed(), 2.0)
        await wait_until_async(lambda: not aiosqlite_threads(threads_before), timeout=2.0)
    assert (await check.run()).status == "pass"


@pytest.mark.asyncio
async def test_probe_cancelled_while_connecting_closes_its_connection(
    database: Path, connection_spy: ConnectionSpy, threads_before: set[threading.Thread]
) -> None:
    """A probe cancelled while aiosqlite opens the database still closes that connection."""
    check = SQLiteCheck(database)
    connection_spy.delay = 0.2
    run = asyncio.ensure_future(check.run())
    await wait_until_async(connection_spy.connecting.is_set, timeout=10.0)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    await asyncio.wait_for(check.wait_closed(), 2.0)
    await wait_until_async(
        lambda: not aiosqlite_threads(threads_before) and bool(connection_spy.opened), timeout=10.0
    )
    assert connection_spy.still_open() == []


@pytest.mark.asyncio
async def test_stop_while_connecting_closes_the_connection(
    uri_blind_sqlite: None,
    make_service: ServiceFactory,
    database: Path,
    connection_spy: ConnectionSpy,
    threads_before: set[threading.Thread],
) -> None:
    """stop() while a fresh probe is still opening the database leaves no connection open."""
    service = make_service(database)
    await service.start()
    connection_spy.delay = 0.2
    connection_spy.connecting.clear()
    opened = len(connection_spy.opened)
    cycle = asyncio.ensure_future(service.check_now())
    await wait_until_async(connection_spy.connecting.is_set, timeout=10.0)
    await service.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        await cycle
    await wait_until_async(
        lambda: not aiosqlite_threads(threads_before) and len(connection_spy.opened) == opened + 1,
        timeout=10.0,
    )
    assert connection_spy.still_open() == []


@pytest.mark.asyncio
async def test_probe_cancelled_while_closing_raises_cancelled_error(
    database: Path, connection_spy: ConnectionSpy
) -> None:
    """Cancelling SQLiteCheck.run() while its connection is being closed raises CancelledError."""
    connection_spy.close_delay = 0.3
    check = SQLiteCheck(database)
    run = asyncio.ensure_future(check.run())
    await wait_until_async(connection_spy.closed_underneath.is_set, timeout=10.0)
    assert not run.done()
    run.cancel()
    await asyncio.wait({run}, timeout=5)
    assert run.cancelled(), f"run() ended with {run.exception()!r}, not CancelledError"
    await asyncio.wait_for(check.wait_closed(), 5)
    assert connection_spy.still_open() == []


@pytest.mark.asyncio
async def test_a_failing_close_after_a_good_read_passes_and_ends_the_thread(
    database: Path, connection_spy: ConnectionSpy, threads_before: set[threading.Thread]
) -> None:
    """The read decides the result; a close that fails once does not leave the thread behind."""
    connection_spy.close_error = sqlite3.OperationalError("close failed")
    check = SQLiteCheck(database)
    assert (await check.run()).status == "pass"
    assert connection_spy.close_error is None  # the failure happened
    await asyncio.wait_for(check.wait_closed(), 5)
    # aiosqlite's thread waits for more work after a failed close: it must not linger (it
    # is not a daemon thread, and would hold interpreter exit).
    await wait_until_async(lambda: not aiosqlite_threads(threads_before), timeout=2.0)


# --- a process that never calls stop() ---------------------------------------------------


@pytest.mark.parametrize("mode", ["idle", "locked"])
def test_process_exits_without_stop(
    database: Path, health_file: Path, mode: str, test_loop: str
) -> None:
    """A program whose main() returns without stop() exits promptly, also mid-probe."""
    argv = [str(database), str(health_file), mode, test_loop]
    completed = subprocess.run(
        [sys.executable, "-c", RETURNS_WITHOUT_STOP, *argv],
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "main returned\n"
    assert "Traceback" not in completed.stderr
    assert "was destroyed but it is pending" not in completed.stderr
    # Nothing wrote "stopped": the file shows the last completed cycle.
    assert json.loads(read_text(health_file))["status"] == "online"
