"""Helpers the test modules share: the contract's keys, real SQLite databases, reading the
health file, waiting with a deadline, wall-clock tolerance, threads, mounts, the lag probe."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import math
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import pytest

from healthfile import AsyncHealthService, _lock
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
# msvcrt locks a byte of the open lock file, which cannot then be removed (Windows).
needs_flock = pytest.mark.skipif(
    _lock._fcntl is None, reason="needs fcntl.flock (a lock file that can be removed while held)"
)


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
    "changes",
]


def _slowness() -> float:
    """HEALTHFILE_TEST_SLOWNESS as a positive number (1 when unset)."""
    text = os.environ.get("HEALTHFILE_TEST_SLOWNESS", "1")
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ValueError(f"HEALTHFILE_TEST_SLOWNESS must be a positive number, not {text!r}")
    return value


# Read once, at import: some test modules hide every HEALTHFILE_* variable while they run.
SLOWNESS = _slowness()


def generous(seconds: float) -> float:
    """A wall-clock bound of ``seconds``, scaled for a slow machine.

    Every elapsed-time bound a test asserts goes through this one function, and so do the
    timeouts of poll(), wait_until() and wait_for_report() below. At the default,
    HEALTHFILE_TEST_SLOWNESS=1, the bound is exactly the number written in the test; on a
    slow or loaded machine (a busy CI runner, coverage, a debugger)
    ``HEALTHFILE_TEST_SLOWNESS=3 pytest`` makes every bound three times as long without
    editing a test. The variable is read once, when the tests are collected.
    """
    return seconds * SLOWNESS


def not_before(seconds: float) -> float:
    """The least wall-clock time a loop timer of ``seconds`` may be seen to take.

    uvloop keeps its clock in whole milliseconds, so a timer it runs can fire up to a
    millisecond before ``time.monotonic()`` says its delay is over (a CI run saw a 0.2 s
    read timeout end after 0.19996 s). A lower bound on something a loop timer ends goes
    through this function; bounds on the library's own clock (check durations) do not.
    """
    return seconds - 0.002


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The function that makes a new event loop of kind ``name`` (pytest --loop=NAME)."""
    if name == "uvloop":
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    return asyncio.new_event_loop


# How long a test waits for what a working program does at once: generous, because every
# wait ends as soon as it can. The waits below scale it (and any other timeout) by generous().
DEADLINE = 30.0


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


class UriBlindConnection(sqlite3.Connection):
    """A connection as an SQLite that does not read URIs in ATTACH makes it: ``file:…`` is a
    file name there, under a directory ``file:`` that does not exist, so the attach fails."""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        """Refuse ``ATTACH DATABASE ?`` of a ``file:`` name as such an SQLite does."""
        if sql.lstrip().upper().startswith("ATTACH") and str(parameters[0]).startswith("file:"):
            raise sqlite3.OperationalError(f"unable to open database: {parameters[0]}")
        return super().execute(sql, parameters)


# Holds an exclusive lock on the database in argv[1] until a line arrives on stdin.
LOCK_HOLDER = textwrap.dedent(
    """
    import sqlite3, sys
    connection = sqlite3.connect(sys.argv[1], isolation_level=None)
    connection.execute("BEGIN EXCLUSIVE")
    print("locked", flush=True)
    sys.stdin.readline()
    connection.execute("ROLLBACK")
    connection.close()
    print("released", flush=True)
    """
)


def read_report(path: Path) -> dict[str, Any] | None:
    """The health file's JSON object, or None while there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    report = json.loads(text)
    assert isinstance(report, dict)
    return report


def import_benchmark(name: str) -> ModuleType:
    """benchmarks/NAME.py, imported from its file (benchmarks/ is no package), registered as
    ``healthfile_benchmark_NAME`` (dataclasses look their module up in sys.modules)."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"healthfile_benchmark_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


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


def names(directory: Path) -> set[str]:
    """The names in ``directory``, but for the lock file of a writing service."""
    return {name for name in os.listdir(directory) if not is_lock_file(name)}


def temp_files(directory: Path) -> list[str]:
    """The writer's live or left temporary files in ``directory`` (``*.tmp``), sorted."""
    return sorted(name for name in os.listdir(directory) if name.endswith(".tmp"))


def content(path: Path) -> bytes:
    """The file's bytes, read as a monitor reads them (blocking, also in a coroutine)."""
    return path.read_bytes()


def read_text(path: Path) -> str:
    """The health file's raw text."""
    return path.read_text(encoding="utf-8")


def report_on_disk(path: Path) -> dict[str, Any]:
    """The health file's JSON object; the test fails when there is no file."""
    report = read_report(path)
    assert report is not None, f"no health file at {path}"
    return report


def read_status(path: Path) -> str:
    """The status the health file says (it must exist)."""
    status = report_on_disk(path)["status"]
    assert isinstance(status, str)
    return status


def is_online(report: dict[str, Any]) -> bool:
    """The report says online."""
    return bool(report["status"] == "online")


def stamp(seconds: float) -> str:
    """A contract timestamp for Unix time ``seconds``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def write_fresh_report(
    path: Path, status: str, check_status: str | None = None, output: str | None = None
) -> Path:
    """Write a fresh contract-v1 report, as plain JSON, with one database check.

    The check passes when ``status`` is online and fails otherwise, unless ``check_status``
    says; ``output`` is its output.
    """
    now = time.time()
    check = check_status or ("pass" if status == "online" else "fail")
    report = {
        "status": status,
        "database": "connected" if check == "pass" else "disconnected",
        "timestamp": stamp(now),
        "app_version": "1.0",
        "api_version": "v1",
        "interval_seconds": 30.0,
        "expires_at": stamp(math.ceil(now + 60)),
        "sequence": 1,
        "started_at": stamp(now),
        "pid": os.getpid(),
        "checks": {
            "database": {
                "status": check,
                "output": output,
                "duration_ms": 1.0,
                "consecutive_failures": 0 if check == "pass" else 1,
                "last_success": None,
            }
        },
    }
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return path


def one_line(text: str) -> str:
    """Assert that ``text`` is exactly one line without a traceback; return it."""
    assert "Traceback" not in text
    assert text.endswith("\n"), repr(text)
    assert text.count("\n") == 1, f"expected one line, got:\n{text}"
    return text.rstrip("\n")


def messages(logs: pytest.LogCaptureFixture, text: str) -> list[str]:
    """Every captured log message containing ``text``."""
    return [r.getMessage() for r in logs.records if text in r.getMessage()]


def child_environment(**variables: str) -> dict[str, str]:
    """This process's environment without HEALTHFILE_* variables, plus ``variables``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("HEALTHFILE_")}
    env.update(variables)
    return env


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_samples(text: str) -> Samples:
    """Prometheus text format, parsed by prometheus_client: (name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


# --- waiting with a deadline ----------------------------------------------------------------


def poll(condition: Callable[[], object], timeout: float, every: float = 0.02) -> bool:
    """Poll ``condition`` until it is true (True) or generous(``timeout``) has passed (False)."""
    deadline = time.monotonic() + generous(timeout)
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


async def poll_async(condition: Callable[[], object], timeout: float, every: float = 0.005) -> bool:
    """poll() for a coroutine: the loop runs while it waits."""
    deadline = time.monotonic() + generous(timeout)
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(every)
    return True


def wait_until(
    condition: Callable[[], object],
    what: str = "the condition",
    timeout: float = DEADLINE,
    every: float = 0.02,
) -> float:
    """Poll ``condition`` until it is true; return the seconds it took; fail the test after
    generous(``timeout``) seconds."""
    started = time.monotonic()
    if not poll(condition, timeout, every):
        pytest.fail(f"timed out waiting for {what} ({generous(timeout):g} s)")
    return time.monotonic() - started


async def wait_until_async(
    condition: Callable[[], object],
    what: str = "the condition",
    timeout: float = DEADLINE,
    every: float = 0.005,
) -> None:
    """wait_until() for a coroutine: the loop runs while it waits."""
    if not await poll_async(condition, timeout, every):
        pytest.fail(f"timed out waiting for {what} ({generous(timeout):g} s)")


def wait_for_report(
    path: Path,
    predicate: Callable[[dict[str, Any]], bool],
    what: str = "a matching report",
    timeout: float = DEADLINE,
    alive: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Poll ``path`` until its report satisfies ``predicate``; return that report.

    ``alive``, when given, is called between reads and fails the test if the writer is gone.
    """
    seen: list[dict[str, Any] | None] = [None]

    def matches() -> bool:
        report = seen[0] = read_report(path)
        if report is not None and predicate(report):
            return True
        if alive is not None:
            alive()
        return False

    if not poll(matches, timeout):
        pytest.fail(f"{path} never showed {what} within {generous(timeout):g} s: {seen[0]}")
    report = seen[0]
    assert report is not None
    return report


# --- running one check, processes --------------------------------------------------------------


async def run_once(check: Any, timeout: float = 10.0) -> Any:
    """One run of a check's ``run()``, bounded by generous(``timeout``) so that a hung one
    fails its test instead of hanging the suite."""
    return await asyncio.wait_for(check.run(), generous(timeout))


def process_state(pid: int) -> tuple[str, int] | None:
    """The state letter (R, S, Z, …) and parent of process ``pid`` from /proc, or None when
    there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def process_ended(pid: int) -> bool:
    """Process ``pid`` runs no more: gone, or a zombie that is not this process's child (the
    init process reaps those)."""
    state = process_state(pid)
    return state is None or (state[0] == "Z" and state[1] != os.getpid())


# --- threads, tasks, descriptors ----------------------------------------------------------

# Threads of the loop's default executor (aiofiles and asyncio.to_thread run there): asyncio
# names them asyncio_N, uvloop names them uvloop_N. They belong to the loop, not the service.
EXECUTOR_THREAD = re.compile(r"(asyncio|uvloop)_\d+")
# healthfile's own worker thread, alive while a service runs (test_worker.py: it ends).
WORKER_THREAD = "healthfile-worker"
# The thread of the database check's long-lived connection, alive while a service runs.
SQLITE_THREAD = "healthfile-sqlite"
# aiosqlite 0.22 runs each connection in a Thread with this target (in its default name).
AIOSQLITE_THREAD = "_connection_worker_thread"


def is_database_thread(thread: threading.Thread) -> bool:
    """Whether ``thread`` runs an aiosqlite connection (a fresh probe's, or the long-lived one)."""
    return thread.name == SQLITE_THREAD or AIOSQLITE_THREAD in thread.name


def stray_threads(
    before: Collection[threading.Thread] = (), *, worker: bool = False
) -> set[threading.Thread]:
    """The threads alive now but for the main thread, those in ``before`` and the loop's
    default executor's; with ``worker``, but for a running service's own too: healthfile's
    worker thread and the one thread of its database connection (two of those are stray)."""
    threads = {
        thread
        for thread in threading.enumerate()
        if thread is not threading.main_thread()
        and thread not in before
        and not EXECUTOR_THREAD.fullmatch(thread.name)
        and not (worker and thread.name == WORKER_THREAD)
    }
    database = {thread for thread in threads if thread.name == SQLITE_THREAD}
    if worker and len(database) == 1:
        threads -= database
    return threads


def healthfile_tasks() -> list[str]:
    """Names of the healthfile tasks still alive on the running loop."""
    return sorted(
        task.get_name()
        for task in asyncio.all_tasks()
        if task.get_name().startswith("healthfile") and not task.done()
    )


# Linux lists a process's descriptors in /proc/self/fd; elsewhere they are not tracked.
PROC_FDS = os.path.isdir("/proc/self/fd")


def open_fds(*, required: bool = False) -> dict[int, str]:
    """This process's open file descriptors and what each refers to (none where /proc has no
    list of them; with ``required``, the test skips there instead)."""
    fds: dict[int, str] = {}
    if not PROC_FDS:
        if required:
            pytest.skip("needs /proc/self/fd to list open descriptors (Linux)")
        return fds
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the descriptor listdir itself used, closed by now
            continue
    return fds


class LagProbe:
    """A thread that posts a callback to the loop every ``period`` seconds; each records how
    late it ran.

    Lateness is ``perf_counter()`` when the callback runs minus ``perf_counter()`` just before
    ``call_soon_threadsafe`` posted it, so this works on any loop (uvloop's own clock has
    millisecond resolution). benchmarks/fig2_lag.py measures with it too.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, period: float = 0.002) -> None:
        self.lateness: list[float] = []
        self._loop = loop
        self._period = period
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._post, name="lag-probe", daemon=True)

    @property
    def worst(self) -> float:
        """The latest any callback ran so far, in seconds (0 before the first)."""
        return max(self.lateness, default=0.0)

    def start(self) -> None:
        """Start posting."""
        self._thread.start()

    def join(self) -> None:
        """Stop posting and wait for the thread (blocks the caller)."""
        self._done.set()
        self._thread.join()

    async def stop(self) -> list[float]:
        """Stop posting without blocking the loop; let the last callbacks run; all lateness."""
        self._done.set()
        await asyncio.to_thread(self._thread.join)
        await asyncio.sleep(0.005)
        return self.lateness

    def __enter__(self) -> LagProbe:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.join()

    def _post(self) -> None:
        """Post a callback every period until stopped or the loop closes."""
        while not self._done.is_set():
            try:
                self._loop.call_soon_threadsafe(self._record, time.perf_counter())
            except RuntimeError:  # the loop closed
                return
            time.sleep(self._period)

    def _record(self, posted: float) -> None:
        """Record one callback's lateness."""
        self.lateness.append(time.perf_counter() - posted)


# --- mounts ---------------------------------------------------------------------------------


def mount_tmpfs(directory: Path, size: str) -> str | None:
    """Mount a tmpfs of ``size`` at ``directory``; return why it failed, or None."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root (CI runs as root)"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "mount(8) and umount(8) are not installed"
    directory.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        return f"cannot mount a tmpfs here: {mounted.stderr.strip()}"
    return None


def unmount(directory: Path) -> None:
    """Unmount ``directory`` (lazily if it is still busy)."""
    if subprocess.run(["umount", str(directory)], check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(directory)], check=False)


@contextmanager
def mounted_tmpfs(directory: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` at ``directory`` (or skip); always unmount it afterwards."""
    reason = mount_tmpfs(directory, size)
    if reason is not None:
        pytest.skip(reason)
    try:
        yield directory
    finally:
        unmount(directory)
