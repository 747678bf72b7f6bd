"""The database check's two ways to read: the file attached per cycle to one long-lived
connection, and a fresh connection per probe where that is refused; both on real files."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import aiosqlite
import pytest

from healthfile import SQLiteCheck, _sqlite
from helpers import (
    PROC_FDS,
    SQLITE_THREAD,
    ServiceFactory,
    UriBlindConnection,
    generous,
    is_database_thread,
    make_database,
    messages,
    mounted_tmpfs,
    needs_fifos,
    open_fds,
    wait_until_async,
)


def aiosqlite_threads() -> list[threading.Thread]:
    """aiosqlite's connection threads alive now (fresh probes' and the long-lived one)."""
    return [thread for thread in threading.enumerate() if is_database_thread(thread)]


def database_check(service: object) -> SQLiteCheck:
    """The service's database check."""
    check = service.checks[0]  # type: ignore[attr-defined]
    assert isinstance(check, SQLiteCheck)
    return check


def attached_names(check: SQLiteCheck) -> list[str]:
    """The databases attached to the check's long-lived connection now (it must be idle)."""
    attached = check._attached
    assert attached is not None
    return [row[1] for row in attached.raw.execute("PRAGMA database_list").fetchall()]


def descriptors_of(path: Path) -> list[str]:
    """This process's open descriptors of the database or its journals."""
    return [
        target
        for target in open_fds(required=True).values()
        if target == str(path) or target.startswith(f"{path}-")
    ]


@contextmanager
def exclusive_lock(path: Path) -> Iterator[sqlite3.Connection]:
    """Hold ``BEGIN EXCLUSIVE`` on the database from a plain sqlite3 connection."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        yield holder
        holder.execute("ROLLBACK")
    finally:
        holder.close()


@pytest.fixture
def db_dir(tmp_path: Path) -> Path:
    """A directory of its own for the database under test (the health file lives elsewhere)."""
    directory = tmp_path / "db"
    directory.mkdir()
    return directory


@pytest.fixture
def thread_starts(monkeypatch: pytest.MonkeyPatch) -> list[threading.Thread]:
    """Every thread started from now on, recorded by a wrapper around Thread.start."""
    started: list[threading.Thread] = []
    start = threading.Thread.start

    def recording(thread: threading.Thread) -> None:
        started.append(thread)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", recording)
    return started


# --- the file is opened and closed every cycle ---------------------------------------------


@pytest.mark.reliability
@pytest.mark.skipif(not PROC_FDS, reason="needs /proc/self/fd to list open descriptors (Linux)")
@pytest.mark.asyncio
async def test_no_descriptor_of_the_database_is_held_between_cycles(
    sqlite_design: str, make_service: ServiceFactory, db_dir: Path
) -> None:
    """After every cycle, passing or failing, no descriptor of the database is open."""
    path = make_database(db_dir / "app.db")
    service = make_service(path)
    await service.start()
    for _ in range(5):
        assert (await service.check_now()).database == "connected"
        assert descriptors_of(path) == []
    saved = path.read_bytes()
    path.write_bytes(b"not a database\n" * 300)
    assert (await service.check_now()).database == "disconnected"
    assert descriptors_of(path) == []
    path.write_bytes(saved)
    assert (await service.check_now()).database == "connected"
    assert descriptors_of(path) == []


@pytest.mark.reliability
@pytest.mark.asyncio
async def test_the_database_can_be_renamed_replaced_and_deleted_between_cycles(
    sqlite_design: str, make_service: ServiceFactory, db_dir: Path
) -> None:
    """Between cycles the application renames, replaces and deletes its database freely
    (on Windows a handle held open would make each of these fail)."""
    path = make_database(db_dir / "app.db")
    service = make_service(path)
    await service.start()
    os.rename(path, db_dir / "renamed.db")
    assert (await service.check_now()).database == "disconnected"
    os.replace(db_dir / "renamed.db", path)
    assert (await service.check_now()).database == "connected"
    os.replace(make_database(db_dir / "new.db"), path)
    assert (await service.check_now()).database == "connected"
    path.unlink()
    assert (await service.check_now()).database == "disconnected"
    assert sorted(os.listdir(db_dir)) == []


@pytest.mark.asyncio
async def test_database_moved_away_and_back(
    sqlite_design: str, make_service: ServiceFactory, db_dir: Path
) -> None:
    """Moved away, the database reads disconnected at once ("unable to open"); moved back,
    connected again."""
    path = make_database(db_dir / "app.db")
    service = make_service(path)
    await service.start()
    os.rename(path, db_dir / "away.db")
    report = await service.check_now()
    assert report.database == "disconnected"
    assert "unable to open database file" in (report.checks["database"].output or "")
    assert str(path) in (report.checks["database"].output or "")
    os.rename(db_dir / "away.db", path)
    assert (await service.check_now()).database == "connected"
    assert sorted(os.listdir(db_dir)) == ["app.db"]


@pytest.mark.asyncio
async def test_database_replaced_by_another_file_reads_the_new_one(
    sqlite_design: str, make_service: ServiceFactory, db_dir: Path
) -> None:
    """Replaced by rename (a new inode): garbage reads disconnected, a good database connected."""
    path = make_database(db_dir / "app.db")
    service = make_service(path)
    await service.start()
    first = path.stat().st_ino
    garbage = db_dir / "garbage"
    garbage.write_bytes(b"not a database at all\n" * 400)
    os.replace(garbage, path)
    assert path.stat().st_ino != first
    report = await service.check_now()
    assert report.database == "disconnected"
    assert "file is not a database" in (report.checks["database"].output or "")
    os.replace(make_database(db_dir / "other.db"), path)
    assert (await service.check_now()).database == "connected"


@pytest.mark.reliability
@needs_fifos
@pytest.mark.asyncio
async def test_fifo_at_the_path_fails_without_blocking(
    sqlite_design: str, make_service: ServiceFactory, db_dir: Path
) -> None:
    """A FIFO at the database path reads disconnected, "not a regular file", and never blocks."""
    path = db_dir / "app.db"
    os.mkfifo(path)
    service = make_service(path, check_timeout=5.0)
    started = time.perf_counter()
    await service.start()
    report = await service.check_now()
    assert time.perf_counter() - started < generous(4.0)
    assert report.database == "disconnected"
    assert "not a regular file" in (report.checks["database"].output or "")


# --- WAL databases and read-only directories -------------------------------------------------


def make_wal_database(path: Path) -> sqlite3.Connection:
    """A WAL database whose table lives in the WAL; the writer stays open (return it)."""
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    writer.execute("INSERT INTO items (name) VALUES ('one')")
    return writer


@pytest.mark.reliability
@pytest.mark.asyncio
async def test_wal_database_with_and_without_its_side_files(
    sqlite_design: str, make_service: ServiceFactory, db_dir: Path
) -> None:
    """A WAL database reads connected with its -wal and -shm files (a writer open) and without
    them (the writer closed); the probe changes neither the database nor the WAL."""
    path = db_dir / "app.db"
    writer = make_wal_database(path)
    try:
        assert sorted(os.listdir(db_dir)) == ["app.db", "app.db-shm", "app.db-wal"]
        wal = (db_dir / "app.db-wal").read_bytes()
        service = make_service(path)
        await service.start()
        for _ in range(3):
            assert (await service.check_now()).database == "connected"
        assert (db_dir / "app.db-wal").read_bytes() == wal
    finally:
        writer.close()
    assert sorted(os.listdir(db_dir)) == ["app.db"]
    before = path.read_bytes()
    assert (await service.check_now()).database == "connected"
    assert path.read_bytes() == before


@contextmanager
def read_only_directory(directory: Path) -> Iterator[Callable[[], None]]:
    """A directory for the test to fill, then to seal read-only by calling what it yields.

    As root (whom modes do not stop) a tmpfs remounted read-only; otherwise mode 0o555.
    """
    if not hasattr(os, "geteuid"):
        pytest.skip("needs POSIX users and modes (not Windows)")
    if os.geteuid() != 0:
        directory.mkdir()
        try:
            yield lambda: directory.chmod(0o555)
        finally:
            directory.chmod(0o755)
        return
    with mounted_tmpfs(directory, "4m"):

        def seal() -> None:
            subprocess.run(["mount", "-o", "remount,ro", str(directory)], check=True)

        yield seal


def wal_with_side_files(path: Path) -> None:
    """A WAL database whose -wal and -shm files stay beside it, no writer open."""
    writer = make_wal_database(path)
    copies = {f"{path}-wal": path.with_name("wal.copy"), f"{path}-shm": path.with_name("shm.copy")}
    for side, copy in copies.items():
        copy.write_bytes(Path(side).read_bytes())
    writer.close()  # the last connection deletes -wal and -shm: put the copies back
    for side, copy in copies.items():
        os.replace(copy, side)


def wal_alone(path: Path) -> None:
    """A WAL database without its -wal and -shm files."""
    make_wal_database(path).close()


# What each kind of database in a read-only directory reads: SQLite opens a WAL database
# read-only only with its -shm file there; without it no reader can, and both ways say so.
READ_ONLY_CASES = {
    "rollback journal": (make_database, "connected", None),
    "WAL with -wal and -shm": (wal_with_side_files, "connected", None),
    "WAL alone": (wal_alone, "disconnected", "unable to open database file"),
}


@pytest.mark.reliability
@pytest.mark.parametrize("case", list(READ_ONLY_CASES))
@pytest.mark.asyncio
async def test_database_in_a_read_only_directory(
    sqlite_design: str, make_service: ServiceFactory, tmp_path: Path, case: str
) -> None:
    """In a read-only directory each kind of database reads as SQLite can read it, and the
    directory is left as it was."""
    make, state, output = READ_ONLY_CASES[case]
    directory = tmp_path / "ro"
    with read_only_directory(directory) as seal:
        path = directory / "app.db"
        make(path)
        files = sorted(os.listdir(directory))
        seal()
        service = make_service(path)
        await service.start()
        report = await service.check_now()
        await service.stop()
        assert report.database == state
        if output is not None:
            assert output in (report.checks["database"].output or "")
        assert sorted(os.listdir(directory)) == files


# --- no thread per cycle ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_two_hundred_cycles_of_a_running_service_start_no_thread(
    sqlite_design: str, make_service: ServiceFactory, database: Path, thread_starts: list[object]
) -> None:
    """Once the service runs, 200 cycles start no thread (the fallback: one per cycle)."""
    before = set(aiosqlite_threads())
    service = make_service(database)
    await service.start()
    await service.check_now()
    started = len(thread_starts)
    for _ in range(200):
        assert (await service.check_now()).database == "connected"
    expected = 0 if sqlite_design == "attached" else 200
    assert len(thread_starts) - started == expected
    # The long-lived connection's one thread, or (fresh) none once the last one returns.
    alive = 1 if sqlite_design == "attached" else 0
    await wait_until_async(lambda: len(set(aiosqlite_threads()) - before) == alive, timeout=2.0)


@pytest.mark.asyncio
async def test_the_installed_sqlite_and_aiosqlite_take_the_attached_way(
    make_service: ServiceFactory, database: Path, healthfile_logs: pytest.LogCaptureFixture
) -> None:
    """On this SQLite and aiosqlite a service's database check attaches, with no fallback
    logged (an upgrade that loses the way fails here, not silently in production)."""
    before = set(threading.enumerate())
    service = make_service(database)
    await service.start()
    check = database_check(service)
    assert check._refused is None
    assert check._attached is not None
    assert attached_names(check) == ["main"]
    assert messages(healthfile_logs, "cannot attach the database") == []
    # Its thread, for thread dumps: named, and a daemon (it never holds the program's exit).
    [thread] = [
        thread
        for thread in threading.enumerate()
        if thread.name == SQLITE_THREAD and thread not in before
    ]
    assert thread.daemon


@pytest.mark.asyncio
async def test_a_check_run_on_its_own_keeps_no_connection(database: Path) -> None:
    """Outside a service each run opens a connection of its own; none stays open after it."""
    before = set(aiosqlite_threads())
    check = SQLiteCheck(database)
    for _ in range(3):
        assert (await check.run()).status == "pass"
    await check.wait_closed()
    assert check._attached is None
    await wait_until_async(lambda: set(aiosqlite_threads()) <= before, timeout=5.0)


# What a file at the database path can be, other than a database.
BREAKAGES: dict[str, Callable[[Path], object]] = {
    "missing": lambda path: None,
    "a directory": lambda path: path.mkdir(),
    "random bytes": lambda path: path.write_bytes(os.urandom(8192)),
    "text": lambda path: path.write_text("not a database\n" * 300),
    "truncated": lambda path: path.write_bytes(make_database(path).read_bytes()[:100]),
    "a dangling symlink": lambda path: path.symlink_to(path.with_name("nowhere")),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
@pytest.mark.asyncio
async def test_both_ways_say_the_same_about_a_broken_database(db_dir: Path, breakage: str) -> None:
    """Attached or fresh, the check fails a broken database with the very same output (ATTACH's
    own "unable to open database: <uri>" is replaced by what a connection says)."""
    path = db_dir / "app.db"
    BREAKAGES[breakage](path)
    attached = SQLiteCheck(path)
    attached.on_start()
    try:
        by_attaching = await attached.run()
        assert attached._attached is not None  # read the attached way
    finally:
        await attached.wait_closed()
        attached.on_stop()
    fresh = await SQLiteCheck(path).run()  # on its own: a fresh connection
    assert by_attaching.status == fresh.status == "fail"
    assert by_attaching.output == fresh.output
    assert "file:" not in (fresh.output or "")


class RefusingDetach(sqlite3.Connection):
    """A connection whose DETACH fails while ``failures`` lasts (as it does when an interrupt
    meant for the read lands on it)."""

    failures = 0

    def execute(self, sql: str, parameters: object = (), /) -> sqlite3.Cursor:
        """Fail DETACH while failures are left."""
        if sql.startswith("DETACH DATABASE probe") and RefusingDetach.failures > 0:
            RefusingDetach.failures -= 1
            raise sqlite3.OperationalError("interrupted")
        return super().execute(sql, parameters)  # type: ignore[arg-type]


@pytest.mark.parametrize(("failures", "same_connection"), [(1, True), (2, False)])
@pytest.mark.asyncio
async def test_a_database_that_stays_attached_retires_the_connection(
    make_service: ServiceFactory,
    database: Path,
    monkeypatch: pytest.MonkeyPatch,
    failures: int,
    same_connection: bool,
) -> None:
    """A DETACH that fails once is tried again; one that fails twice leaves the database
    attached, so that connection closes and the next probe opens another; both read true."""
    monkeypatch.setattr(_sqlite._Opener, "connection_class", RefusingDetach)
    service = make_service(database)
    await service.start()
    check = database_check(service)
    first = check._attached
    assert first is not None
    monkeypatch.setattr(RefusingDetach, "failures", failures)
    assert (await service.check_now()).database == "connected"
    assert RefusingDetach.failures == 0
    assert (check._attached is first) == same_connection
    assert (await service.check_now()).database == "connected"
    assert check._attached is not None
    assert attached_names(check) == ["main"]


@pytest.mark.skipif(not PROC_FDS, reason="needs /proc/self/fd to list open descriptors (Linux)")
@pytest.mark.asyncio
async def test_a_lock_held_in_the_same_process_defers_the_close_until_it_goes(
    sqlite_design: str, make_service: ServiceFactory, db_dir: Path
) -> None:
    """While another connection of this process holds a lock on the database, SQLite keeps a
    probe's descriptor until that lock goes (POSIX locks belong to the process); then none
    is left."""
    path = make_database(db_dir / "app.db")
    service = make_service(path)
    await service.start()
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # a RESERVED lock: readers still read
        mine = len(descriptors_of(path))
        assert (await service.check_now()).database == "connected"
        assert len(descriptors_of(path)) > mine
        holder.execute("COMMIT")
        assert len(descriptors_of(path)) == mine
    finally:
        holder.close()
    assert descriptors_of(path) == []


# --- detach always; close at stop ------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_database_is_detached_after_a_pass_a_failure_and_an_interrupt(
    make_service: ServiceFactory, db_dir: Path
) -> None:
    """Whatever a probe met (a good file, garbage, a lock past its timeout), only ``main``
    stays attached to the long-lived connection afterwards."""
    path = make_database(db_dir / "app.db")
    saved = path.read_bytes()
    service = make_service(path, check_timeout=0.2)
    await service.start()
    check = database_check(service)
    assert attached_names(check) == ["main"]
    path.write_bytes(os.urandom(4096))
    assert (await service.check_now()).database == "disconnected"
    assert attached_names(check) == ["main"]
    path.write_bytes(saved)
    with exclusive_lock(path):
        assert (await service.check_now()).database == "timeout"
        # The interrupted probe ends at its next step, on the same connection.
        await wait_until_async(lambda: check._probe is None, timeout=10.0)
        assert attached_names(check) == ["main"]
    assert (await service.check_now()).database == "connected"
    assert attached_names(check) == ["main"]


@pytest.mark.asyncio
async def test_stop_closes_the_long_lived_connection_and_a_restart_opens_another(
    make_service: ServiceFactory, database: Path
) -> None:
    """stop() ends the long-lived connection's thread (no ResourceWarning left to collect);
    start() again opens a new one and reads connected."""
    before = set(aiosqlite_threads())
    service = make_service(database)
    await service.start()
    first = set(aiosqlite_threads()) - before
    assert len(first) == 1
    await service.stop()
    # stop() has seen the thread's last act; the thread itself returns a moment later.
    await wait_until_async(lambda: not any(thread.is_alive() for thread in first), timeout=2.0)
    gc.collect()  # an unclosed aiosqlite connection would warn here (warnings are errors)
    await service.start()
    assert service.last_report is not None
    assert service.last_report.database == "connected"
    assert len(set(aiosqlite_threads()) - before) == 1
    await service.stop()
    await wait_until_async(lambda: set(aiosqlite_threads()) <= before, timeout=2.0)


@pytest.mark.asyncio
async def test_stop_while_the_long_lived_connection_opens(
    make_service: ServiceFactory, database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stop() while the first cycle is still opening the long-lived connection is prompt and
    leaves no connection nor thread behind."""
    opening = threading.Event()
    opened: list[sqlite3.Connection] = []

    class SlowToOpen(sqlite3.Connection):
        def __init__(self, *args: object, **kwargs: object) -> None:
            opening.set()
            time.sleep(0.3)
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            opened.append(self)

    monkeypatch.setattr(_sqlite._Opener, "connection_class", SlowToOpen)
    before = set(aiosqlite_threads())
    service = make_service(database)
    starting = asyncio.ensure_future(service.start())
    await wait_until_async(opening.is_set, timeout=10.0)
    started = time.perf_counter()
    await service.stop()
    assert time.perf_counter() - started < generous(1.0)
    await asyncio.wait({starting})
    await wait_until_async(lambda: set(aiosqlite_threads()) <= before and opened, timeout=10.0)
    for connection in opened:
        with pytest.raises(sqlite3.ProgrammingError):
            connection.execute("SELECT 1")  # closed


# --- a probe stuck past its timeout ----------------------------------------------------------


@pytest.mark.reliability
@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_a_stuck_probe_gives_its_connection_up_once_and_stop_stays_prompt(
    make_service: ServiceFactory,
    database: Path,
    monkeypatch: pytest.MonkeyPatch,
    healthfile_logs: pytest.LogCaptureFixture,
) -> None:
    """A busy wait that sqlite3_interrupt cannot cut: the next cycle gives that connection up
    and opens another; while both are stuck the check reads "still running" and no third
    thread starts; stop() stays prompt; every thread ends once the lock is gone."""
    # One busy wait of 2 s per attempt, against a timeout of 0.2 s: the interrupt at the
    # timeout does not cut it (FACTS: sqlite3_interrupt does not stop a busy-handler wait).
    monkeypatch.setattr(_sqlite, "_BUSY_SLICE", 2.0)
    before = set(aiosqlite_threads())
    service = make_service(database, check_timeout=0.2)
    await service.start()
    with exclusive_lock(database):
        first = await service.check_now()  # the probe is stuck in its busy wait
        assert first.database == "timeout"
        second = await service.check_now()  # gives it up, opens another, stuck alike
        assert second.database == "timeout"
        assert second.checks["database"].output == "timed out after 0.2 s"
        third = await service.check_now()  # both stuck: not a third connection
        assert third.database == "timeout"
        assert "still running since" in (third.checks["database"].output or "")
        assert len(set(aiosqlite_threads()) - before) == 2
        assert len(messages(healthfile_logs, "its connection is given up")) == 1
    # The busy waits end within their 2 s; the given-up connection closes, the other serves.
    await wait_until_async(lambda: len(set(aiosqlite_threads()) - before) == 1, timeout=10.0)
    assert (await service.check_now()).database == "connected"
    with exclusive_lock(database):
        await service.check_now()
        started = time.perf_counter()
        await service.stop()  # mid busy wait
        assert time.perf_counter() - started < generous(1.0)
    await wait_until_async(lambda: set(aiosqlite_threads()) <= before, timeout=10.0)


# --- the fallback: a fresh connection per probe ----------------------------------------------


class NoUriMemoryConnection(sqlite3.Connection):
    """The long-lived connection refused as an SQLite without URI support refuses it.

    Only ``:memory:``: the fresh probe needs URIs too, and where SQLite has none it cannot
    read read-only at all (the check then fails, saying so).
    """

    def __init__(self, database: str, *args: object, **kwargs: object) -> None:
        if database == ":memory:" and kwargs.get("uri"):
            raise sqlite3.NotSupportedError("URIs not supported")
        super().__init__(database, *args, **kwargs)  # type: ignore[arg-type]


def refuse_uri_attach(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sqlite._Opener, "connection_class", UriBlindConnection)


def refuse_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sqlite._Opener, "connection_class", NoUriMemoryConnection)


def hide_aiosqlite_internals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(aiosqlite.Connection, "_execute")


FALLBACKS = {
    "SQLite reads no URI in ATTACH": refuse_uri_attach,
    "SQLite refuses uri=True": refuse_uri,
    "aiosqlite without _execute": hide_aiosqlite_internals,
}


@pytest.mark.reliability
@pytest.mark.parametrize("cause", list(FALLBACKS))
@pytest.mark.asyncio
async def test_the_fallback_is_logged_once_and_reads_truly(
    make_service: ServiceFactory,
    db_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    healthfile_logs: pytest.LogCaptureFixture,
    thread_starts: list[object],
    cause: str,
) -> None:
    """Where the attached way is refused, the service says so in the log once and reads by a
    fresh connection per probe: connected, then disconnected when the file goes."""
    FALLBACKS[cause](monkeypatch)
    monkeypatch.chdir(db_dir)  # an SQLite reading the capability URI as a path works here
    path = make_database(db_dir / "app.db")
    service = make_service(path)
    await service.start()
    check = database_check(service)
    assert check._refused is not None
    assert check._attached is None
    started = len(thread_starts)
    for _ in range(3):
        assert (await service.check_now()).database == "connected"
    assert len(thread_starts) - started == 3  # a thread per probe: the fresh way
    path.unlink()
    assert (await service.check_now()).database == "disconnected"
    await service.stop()
    await service.start()  # the same check, started again: decided already, not logged again
    [logged] = [
        record
        for record in healthfile_logs.records
        if "cannot attach the database to a long-lived connection" in record.getMessage()
    ]
    assert logged.levelno == logging.INFO
    assert sorted(os.listdir(db_dir)) == []


def test_the_connections_thread_ends_quietly_when_the_loop_has_closed() -> None:
    """A result handed to a closed loop (a program exiting mid-probe) ends the thread
    without a traceback; any other error still shows."""
    from healthfile._sqlite import _quiet_when_the_loop_is_gone

    def closed() -> None:
        raise RuntimeError("Event loop is closed")

    def other() -> None:
        raise RuntimeError("something else")

    _quiet_when_the_loop_is_gone(closed)()
    with pytest.raises(RuntimeError, match="something else"):
        _quiet_when_the_loop_is_gone(other)()
