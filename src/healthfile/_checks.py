"""Checks: the protocol, the built-in SQLite, disk-space and loop-lag checks, and ``check()``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import stat
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path, PurePath, PureWindowsPath
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import quote

import aiosqlite

from ._limits import SETTLE_SECONDS
from ._options import LIVE, CheckOptions, CommonOptions, absolute, validate_seconds
from ._report import CheckResult, describe_exception
from ._threads import CheckStillRunning, DaemonThreadRunner, call_off_loop, is_async_callable

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import Unpack
    else:
        from typing_extensions import Unpack

__all__ = [
    "Check",
    "CheckStillRunning",
    "DiskSpaceCheck",
    "FunctionCheck",
    "LoopLagCheck",
    "SQLiteCheck",
    "check",
]

# The SQLite busy timeout of one attempt. A locked database is retried from the event loop
# in slices this short, so that nothing ever waits long for a busy handler to return:
# sqlite3_interrupt cannot cut a busy wait short.
_BUSY_SLICE = 0.01
# The first wait, in seconds, for aiosqlite's thread to end (doubling up to _BUSY_SLICE),
# and how long a probe waits for a thread that does not end, cancelled or not.
_THREAD_POLL = 0.0002
_THREAD_GRACE = 1.0
# Reads the schema: fails on a file that is not a database and on one locked exclusively,
# where `SELECT 1` would succeed without touching the file.
_PROBE_QUERY = "SELECT count(*) FROM sqlite_master"
# Primary result codes (sqlite3.SQLITE_BUSY exists only from Python 3.11).
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6


@runtime_checkable
class Check(Protocol):
    """Anything with a ``name`` and an async ``run()`` returning a :class:`CheckResult`.

    ``run()`` may also raise: the check then fails with the exception's type and message.
    Optional attributes the service honours: ``timeout`` (seconds, or ``None`` for the
    service's ``check_timeout``), ``failure_threshold`` and ``success_threshold`` (flap
    damping, default 1), and ``on_start()`` / ``on_stop()`` called on the loop when the
    service starts and stops.
    """

    name: str

    async def run(self) -> CheckResult:
        """Run the check once."""
        ...


def _to_result(value: object) -> CheckResult:
    """Interpret what a check function returned."""
    if isinstance(value, CheckResult):
        return value
    if value is None or value is True:
        return CheckResult("pass")
    if value is False:
        return CheckResult("fail", "check returned False")
    return CheckResult(
        "fail", f"check returned {type(value).__name__}; expected bool, None or CheckResult"
    )


class FunctionCheck(CheckOptions):
    """A check made from a plain function; see :func:`check`."""

    def __init__(
        self,
        name: str,
        fn: Callable[[], object],
        **options: Unpack[CommonOptions],
    ) -> None:
        if not callable(fn):
            raise TypeError(f"check {name!r} needs a callable, not {type(fn).__name__}")
        super().__init__(name=name, **options)
        self.fn = fn
        self._is_async = is_async_callable(fn)
        self._runner = DaemonThreadRunner(self.name)

    def __repr__(self) -> str:
        kind = "async" if self._is_async else "sync"
        return f"<FunctionCheck {self.name!r} {kind} timeout={self.timeout}>"

    async def run(self) -> CheckResult:
        """Call the function (a sync one in its own daemon thread) and interpret its result."""
        return _to_result(await call_off_loop(self.fn, self._runner))


def check(
    name: str,
    fn: Callable[[], object] | Callable[[], Awaitable[object]],
    **options: Unpack[CommonOptions],
) -> FunctionCheck:
    """Make a check from a function, sync or async, that takes no arguments.

    The function may return ``True`` or ``None`` (pass), ``False`` (fail), a
    :class:`CheckResult`, or raise (fail, with the exception's type and message as output).
    A sync function runs in its own daemon thread, so a hung one never blocks the loop nor
    the interpreter's exit; while it hangs the check reads fail, "still running since …".

    :param timeout: seconds one run may take, or ``None`` for the service's ``check_timeout``.
    :param critical: whether its failure makes the report ``degraded`` (default True).
    :param groups: the groups it belongs to, e.g. ``("live",)`` for the liveness probe.
    :param failure_threshold: consecutive failures before the check reads fail (warn before).
    :param success_threshold: consecutive passes before a failed check reads pass again.
    """
    return FunctionCheck(name, fn, **options)


def display_path(path: str | os.PathLike[str]) -> str:
    """``path`` as valid Unicode text for outputs and logs: bytes that are not UTF-8 escaped.

    POSIX allows any bytes in a file name; Python keeps those as lone surrogates, which no
    UTF-8 file or log can hold. They are shown as ``\\xff``.
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def sqlite_readonly_uri(path: str | os.PathLike[str]) -> str:
    """Return a ``file:`` URI that opens ``path`` read-only and never creates it.

    Built from the absolute path as SQLite's URI documentation has it (sqlite.org/uri.html).
    A ``PurePath`` is taken in its own flavour, so the Windows forms can be tested anywhere:

    - ``C:\\data\\app.db`` gives ``file:///C:/data/app.db`` (an empty authority, then ``/``
      before the drive letter, which SQLite's Windows VFS drops);
    - the UNC path ``\\\\server\\share\\app.db`` gives ``file:////server/share/app.db``: SQLite
      refuses any authority but "" and "localhost" unless built with
      SQLITE_ALLOW_URI_AUTHORITY, so ``file://server/share/...`` fails; with an empty
      authority the path keeps both leading slashes and Windows opens it as UNC;
    - POSIX paths are percent-encoded byte by byte (``os.fsencode``), so a name that is not
      valid UTF-8 reaches open() as the same bytes.
    """
    pure = path if isinstance(path, PurePath) else Path(path)
    if isinstance(pure, Path) and not pure.is_absolute():
        pure = Path(os.path.abspath(pure))
    if isinstance(pure, PureWindowsPath):
        # "?", "#" and "%" would end or escape the path; ":" and "/" are SQLite's own.
        text = quote(pure.as_posix(), safe="/:", errors="surrogatepass")
        return f"file://{'' if text.startswith('//') else '/'}{text}?mode=ro"
    raw = os.fsencode(str(pure))
    if raw.startswith(b"//"):  # would read as a URI authority; POSIX treats it as "/"
        raw = b"/" + raw.lstrip(b"/")
    return f"file:{quote(raw)}?mode=ro"


def _failed(future: asyncio.Future[Any]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is not None


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    return "locked" in str(exc)  # pragma: no cover - Python 3.10 has no sqlite_errorcode


class _Opener:
    """Open the probe's sqlite3 connection and read the schema once, in aiosqlite's thread.

    Passed to ``sqlite3.connect`` as ``factory``, so that opening and the first read share
    one hop to aiosqlite's thread. A read that fails for a reason other than a lock closes
    the connection and fails the opening; a locked database leaves the connection open and
    the error in ``busy``, for the probe to retry from the event loop. When the opening is
    cancelled, aiosqlite drops the connection its thread opens; ``abandon()`` closes one
    that is already open, and one that opens afterwards is closed at once by its own thread.
    """

    connection_class: type[sqlite3.Connection] = sqlite3.Connection

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._abandoned = False
        self._opened: sqlite3.Connection | None = None
        self.busy: sqlite3.OperationalError | None = None
        self.thread: threading.Thread | None = None  # aiosqlite's, once it calls the opener

    def __call__(self, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        self.thread = threading.current_thread()
        try:
            mode = os.stat(self._path).st_mode
        except OSError:
            pass  # missing or unreachable: SQLite says so in its own words
        else:
            if not stat.S_ISREG(mode):
                # A FIFO would block this thread in open(), and with it interpreter exit.
                raise sqlite3.OperationalError("not a regular file")
        opened = self.connection_class(*args, **kwargs)
        try:
            opened.execute(_PROBE_QUERY).fetchall()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                opened.close()
                raise
            self.busy = exc
        except BaseException:
            opened.close()
            raise
        with self._lock:
            if not self._abandoned:
                self._opened = opened
                return opened
        opened.close()
        raise sqlite3.OperationalError("probe abandoned while opening")

    def abandon(self) -> None:
        """Close the connection if it has opened; make it close itself if it has not."""
        with self._lock:
            self._abandoned = True
            orphan, self._opened = self._opened, None
        if orphan is not None:
            orphan.close()  # read-only, nothing to flush: closing releases a file handle

    async def thread_ended(self, stopping: asyncio.Future[Any] | None = None) -> None:
        """Wait until aiosqlite's thread is done with the event loop, even if cancelled.

        The thread's last act is to hand a result to the loop; after it, the loop may close
        without the thread meeting a closed loop (``asyncio.run()`` cancels the probe at
        exit, then closes the loop). ``stopping`` is the future of that last call; without
        it, the wait is for the thread to call the opener and end. A cancellation is
        re-raised once the wait is over, or after ``_THREAD_GRACE`` seconds of a thread
        that hangs.
        """
        cancelled: asyncio.CancelledError | None = None
        give_up = time.monotonic() + _THREAD_GRACE
        delay = 0.0
        while (left := give_up - time.monotonic()) > 0:
            try:
                if stopping is not None:
                    await asyncio.wait({stopping}, timeout=left)
                    if stopping.done():
                        if not stopping.cancelled():
                            stopping.exception()  # closing a read-only connection: not news
                        break
                elif self.thread is not None and not self.thread.is_alive():
                    break
                else:
                    await asyncio.sleep(delay)
                    delay = min(2 * delay or _THREAD_POLL, _BUSY_SLICE)
            except asyncio.CancelledError as exc:
                cancelled = exc
        if cancelled is not None:
            raise cancelled


class SQLiteCheck(CheckOptions):
    """Read an SQLite database, read-only, to prove it is there, readable and unlocked.

    The file is opened by URI with ``mode=ro``: it is never created nor written. Like any
    SQLite reader it holds a shared lock while it reads, and on a WAL database SQLite itself
    may create the ``-wal`` and ``-shm`` files (left in place: the application's connections
    use them). The probe reads the schema, so a missing, unreadable, corrupt or exclusively
    locked database fails. While the database is locked the probe retries in 10 ms slices
    until its timeout (``timeout``, or the service's ``check_timeout``); when cancelled or
    timed out, the running statement is interrupted and the connection closes as soon as its
    thread returns, without anyone waiting for it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        name: str = "database",
        **options: Unpack[CommonOptions],
    ) -> None:
        super().__init__(name=name, **options)
        self.path = absolute(path)  # once: a later os.chdir() changes nothing
        self._uri = sqlite_readonly_uri(self.path)
        self._probe: asyncio.Task[CheckResult] | None = None
        self._probe_since = datetime.now(timezone.utc)
        self._connection: aiosqlite.Connection | None = None

    def __repr__(self) -> str:
        return f"<SQLiteCheck {self.name!r} path={str(self.path)!r}>"

    async def run(self) -> CheckResult:
        """Probe the database once; raise :class:`CheckStillRunning` if a probe lingers."""
        if self._probe is not None:
            # A probe abandoned a moment ago is usually closing its connection right now.
            await asyncio.wait({self._probe}, timeout=SETTLE_SECONDS)
        if self._probe is not None:
            raise CheckStillRunning(self._probe_since)
        probe = asyncio.get_running_loop().create_task(self._run_probe())
        self._probe, self._probe_since = probe, datetime.now(timezone.utc)
        probe.add_done_callback(self._probe_done)
        try:
            # asyncio.wait, unlike awaiting the probe, never cancels it: a timeout or stop()
            # does not wait for the connection's thread.
            await asyncio.wait({probe})
        except asyncio.CancelledError:
            # Cancelled by our caller (timeout or stop): stop the statement, then let the
            # probe close its connection in the background when the thread comes back.
            connection = self._connection
            if connection is not None:
                # ValueError, ProgrammingError: closed in the meantime.
                with contextlib.suppress(ValueError, sqlite3.ProgrammingError):
                    await connection.interrupt()  # returns at once: sqlite3_interrupt
            probe.cancel()
            raise
        return probe.result()

    async def wait_closed(self) -> None:
        """Wait until the last probe has closed its connection and its thread is done."""
        probe = self._probe
        if probe is not None:
            await asyncio.wait({probe})

    def _probe_done(self, probe: asyncio.Task[CheckResult]) -> None:
        if self._probe is probe:
            self._probe = None
        if not probe.cancelled():
            probe.exception()  # retrieved here: a late failure of an abandoned probe is not news

    async def _run_probe(self) -> CheckResult:
        """Open and read in one hop, retry while locked, close and stop the thread in one."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        opener = _Opener(self.path)
        try:
            opening = aiosqlite.connect(
                self._uri,
                uri=True,
                timeout=_BUSY_SLICE,
                factory=opener,
                check_same_thread=False,  # so that _Opener may close an orphan from the loop
            )
            try:
                connection = await opening  # starts aiosqlite's thread, opens, reads
            except asyncio.CancelledError:
                # aiosqlite drops a connection whose opening was cancelled without closing
                # it: close it here (or, not open yet, the opener closes it as it opens).
                opener.abandon()
                await opener.thread_ended()  # the thread was started: it calls the opener
                raise
            try:
                self._connection = connection
                busy = opener.busy
                while busy is not None:
                    if deadline is not None and time.monotonic() > deadline:
                        raise busy
                    await asyncio.sleep(_BUSY_SLICE)
                    try:
                        await connection.execute_fetchall(_PROBE_QUERY)
                    except sqlite3.OperationalError as exc:
                        if not _is_busy(exc):
                            raise
                        busy = exc
                    else:
                        busy = None
            finally:
                # One hop closes the connection and ends the thread (close() takes two).
                stopping = connection.stop()
                await opener.thread_ended(stopping)
                if stopping is not None and _failed(stopping):
                    # aiosqlite's thread ends only after a clean close: ask once more (closing
                    # a closed sqlite3 connection does nothing) so that it does not linger.
                    await opener.thread_ended(connection.stop())
            return CheckResult("pass")
        except sqlite3.Error as exc:
            return CheckResult("fail", f"{describe_exception(exc)} ({display_path(self.path)})")
        finally:
            self._connection = None


class DiskSpaceCheck(CheckOptions):
    """Fail when the file system holding ``path`` has too little space left.

    :param min_free_bytes: fail below this many bytes available to unprivileged users.
    :param min_free_ratio: fail below this fraction (0 to 1) of the file system available.
        When neither is given, the check fails below 5 % free.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        min_free_bytes: int | None = None,
        min_free_ratio: float | None = None,
        name: str = "disk",
        **options: Unpack[CommonOptions],
    ) -> None:
        if min_free_bytes is None and min_free_ratio is None:
            min_free_ratio = 0.05
        if min_free_bytes is not None:
            if not _is_int(min_free_bytes):
                raise TypeError(
                    f"min_free_bytes must be an int, not {min_free_bytes!r} "
                    f"({type(min_free_bytes).__name__})"
                )
            if min_free_bytes < 0:
                raise ValueError(f"min_free_bytes must be >= 0, not {min_free_bytes!r}")
        if min_free_ratio is not None:
            if not _is_number(min_free_ratio):
                raise TypeError(
                    f"min_free_ratio must be a number from 0 to 1, not {min_free_ratio!r} "
                    f"({type(min_free_ratio).__name__})"
                )
            if not 0 <= min_free_ratio <= 1:
                raise ValueError(f"min_free_ratio must be from 0 to 1, not {min_free_ratio!r}")
        super().__init__(name=name, **options)
        self.path = absolute(path)  # once: a later os.chdir() changes nothing
        self.min_free_bytes = min_free_bytes
        self.min_free_ratio = min_free_ratio
        self._runner = DaemonThreadRunner(self.name)

    def __repr__(self) -> str:
        return (
            f"<DiskSpaceCheck {self.name!r} path={str(self.path)!r} "
            f"min_free_bytes={self.min_free_bytes} min_free_ratio={self.min_free_ratio}>"
        )

    async def run(self) -> CheckResult:
        """Read the file system's free space (in a daemon thread: statvfs can hang on NFS)."""
        # shutil.disk_usage is statvfs's f_bavail and f_blocks times f_frsize on POSIX, and
        # GetDiskFreeSpaceExW on Windows, which has no statvfs.
        usage = await self._runner.call(lambda: shutil.disk_usage(self.path))
        free = usage.free
        total = usage.total
        ratio = free / total if total else 0.0
        summary = f"{_format_bytes(free)} free ({ratio:.1%}) on {display_path(self.path)}"
        if self.min_free_bytes is not None and free < self.min_free_bytes:
            return CheckResult("fail", f"{summary}; minimum {_format_bytes(self.min_free_bytes)}")
        if self.min_free_ratio is not None and ratio < self.min_free_ratio:
            return CheckResult("fail", f"{summary}; minimum {self.min_free_ratio:.1%}")
        return CheckResult("pass", summary)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _format_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


class LoopLagCheck(CheckOptions):
    """Report how late the host event loop runs a scheduled callback.

    A timer on the loop measures lateness continuously (with ``time.perf_counter``, since
    uvloop's clock has millisecond resolution); each run reports the worst lateness seen since
    the previous run. A wedged loop is the failure no other check can see.

    :param warn_after: seconds of lateness from which the check warns.
    :param fail_after: seconds of lateness from which it fails.

    It also takes the keyword arguments every check takes (:class:`CheckOptions`); its
    ``groups`` default to ``("live",)``: a wedged loop is what a restart cures.
    """

    def __init__(
        self,
        *,
        warn_after: float = 0.1,
        fail_after: float = 1.0,
        name: str = "event_loop",
        **options: Unpack[CommonOptions],
    ) -> None:
        self.warn_after = validate_seconds("warn_after", warn_after)
        self.fail_after = validate_seconds("fail_after", fail_after)
        if self.warn_after > self.fail_after:
            raise ValueError(f"warn_after ({warn_after}) must not exceed fail_after ({fail_after})")
        options.setdefault("groups", (LIVE,))
        super().__init__(name=name, **options)
        self._period = max(0.01, min(0.1, self.warn_after / 2))
        self._handle: asyncio.TimerHandle | None = None
        self._expected = 0.0
        self._worst = 0.0

    def __repr__(self) -> str:
        state = "measuring" if self._handle is not None else "idle"
        return (
            f"<LoopLagCheck {self.name!r} {state} "
            f"warn_after={self.warn_after} fail_after={self.fail_after}>"
        )

    def on_start(self) -> None:
        """Start measuring on the running loop."""
        if self._handle is None:
            self._worst = 0.0
            self._schedule(asyncio.get_running_loop())

    def on_stop(self) -> None:
        """Stop measuring."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self._expected = time.perf_counter() + self._period
        self._handle = loop.call_later(self._period, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self._worst = max(self._worst, time.perf_counter() - self._expected)
        self._schedule(loop)

    async def run(self) -> CheckResult:
        """Report the worst lateness since the previous run, then start a new window."""
        self.on_start()
        # A tick that is overdue right now counts too: the loop may have been blocked a
        # moment ago and not yet have run the timer.
        worst = max(self._worst, time.perf_counter() - self._expected, 0.0)
        self._worst = 0.0
        return graded(
            worst,
            f"event loop ran a callback {worst * 1000:.1f} ms late",
            warn_after=self.warn_after,
            fail_after=self.fail_after,
            show=lambda seconds: f"{seconds * 1000:.0f} ms",
        )


def graded(
    value: float,
    output: str,
    *,
    warn_after: float,
    fail_after: float,
    show: Callable[[float], str],
) -> CheckResult:
    """Pass, warn or fail for a measured ``value`` (seconds) against its two bounds.

    ``output`` says what was measured; a bound reached is added to it, written by ``show``.
    """
    if value >= fail_after:
        return CheckResult("fail", f"{output} (fail after {show(fail_after)})")
    if value >= warn_after:
        return CheckResult("warn", f"{output} (warn after {show(warn_after)})")
    return CheckResult("pass", output)
