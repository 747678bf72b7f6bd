"""The database check: an SQLite file read read-only every cycle, never held open between cycles.

Two ways to read it, chosen by capability once per check:

- **attached** (while a service runs the check, from ``on_start()`` to ``on_stop()``): one
  aiosqlite connection on ``:memory:`` for the service's life, its thread started by the
  first cycle; each cycle ``ATTACH DATABASE 'file:…?mode=ro' AS probe``, reads the schema of
  ``probe`` and ``DETACH``es it, all in one call in that thread. The file is opened and
  closed every cycle, as with a fresh connection, and no thread starts per cycle.
- **fresh**: a new aiosqlite connection per run (a new thread), opened by URI, read, closed.
  A check run on its own (outside a service) reads this way, and so does every check where
  the attached way is refused: an SQLite that does not read a URI in ``ATTACH``, or an
  aiosqlite without the two internals the attached way needs (``Connection._execute``, to
  run attach, read and detach as one call in its thread, and ``Connection._thread``, made a
  daemon so that a connection an application never closes does not hold its exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import sqlite3
import stat
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path, PurePath, PureWindowsPath
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

import aiosqlite

from ._limits import SETTLE_SECONDS
from ._options import CheckOptions, CommonOptions, absolute
from ._report import CheckResult, describe_exception, display_path
from ._threads import CheckStillRunning

if TYPE_CHECKING:
    from ._options import Unpack

__all__ = ["SQLiteCheck", "sqlite_readonly_uri"]

logger = logging.getLogger("healthfile")

# The name of the long-lived connection's thread, for thread dumps.
_THREAD_NAME = "healthfile-sqlite"
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
_ATTACHED_QUERY = "SELECT count(*) FROM probe.sqlite_master"
# Primary result codes (sqlite3.SQLITE_BUSY exists only from Python 3.11).
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6


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


def _refuse_special_file(path: Path) -> None:
    """Refuse what is at ``path`` unless it is a regular file (or nothing: SQLite says so)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # missing or unreachable: SQLite says so in its own words
    if not stat.S_ISREG(mode):
        # A FIFO would block the connection's thread in open(), and with it interpreter exit.
        raise sqlite3.OperationalError("not a regular file")


def _read_schema(opened: sqlite3.Connection) -> sqlite3.OperationalError | None:
    """Read the schema of a fresh connection; return the error of a locked database."""
    try:
        opened.execute(_PROBE_QUERY).fetchall()
    except sqlite3.OperationalError as exc:
        if not _is_busy(exc):
            raise
        return exc
    return None


def _read_alone(uri: str) -> None:
    """Open ``uri`` read-only on a connection of its own and read its schema; close it."""
    alone = sqlite3.connect(uri, uri=True, timeout=_BUSY_SLICE)
    try:
        alone.execute(_PROBE_QUERY).fetchall()
    finally:
        alone.close()


def _check_attach(opened: sqlite3.Connection) -> None:
    """Raise unless this SQLite reads a URI in ATTACH; create nothing either way.

    The URI names an in-memory database. An SQLite that does not read it as a URI takes it
    for a file name under a directory ``file:`` that does not exist, and fails to open it.
    """
    name = f"file:/healthfile-{secrets.token_hex(8)}/capability?mode=memory"
    opened.execute("ATTACH DATABASE ? AS probe", (name,))
    opened.execute("DETACH DATABASE probe")


def _attach_read_detach(attached: _Attached, path: Path, uri: str) -> None:
    """Attach the database read-only, read its schema, detach it, in the connection's thread.

    A database that stays attached (DETACH failed twice) marks the connection unfit: it is
    closed, and the next probe opens another.
    """
    raw = attached.raw
    _refuse_special_file(path)
    try:
        raw.execute("ATTACH DATABASE ? AS probe", (uri,))
    except sqlite3.OperationalError as exc:
        if not str(exc).startswith("unable to open database:"):
            raise  # busy, or what SQLite said in its own words
        # ATTACH says "unable to open database: <uri>" whatever the cause (a missing file,
        # a directory, a permission): a connection of its own, opened in this thread as the
        # fresh probe opens one, says which.
        _read_alone(uri)
        raise
    try:
        raw.execute(_ATTACHED_QUERY).fetchall()
    finally:
        # Twice: an interrupt meant for the read may land on the first DETACH instead.
        for _ in range(2):
            try:
                raw.execute("DETACH DATABASE probe")
            except sqlite3.Error:
                continue
            break
        else:
            attached.fit = False


class _Opener:
    """Open a sqlite3 connection in aiosqlite's thread and make its first read there.

    Passed to ``sqlite3.connect`` as ``factory``, so that opening and the first read share
    one hop to aiosqlite's thread. ``prepare`` is that read: its exception closes the
    connection and fails the opening; what it returns (a fresh probe's busy error) is kept
    in ``busy``. When the opening is cancelled, aiosqlite drops the connection its thread
    opens; ``abandon()`` closes one that is already open, and one that opens afterwards is
    closed at once by its own thread.
    """

    connection_class: type[sqlite3.Connection] = sqlite3.Connection

    def __init__(
        self,
        prepare: Callable[[sqlite3.Connection], sqlite3.OperationalError | None],
        path: Path | None = None,
    ) -> None:
        self._prepare = prepare
        self._path = path
        self._lock = threading.Lock()
        self._abandoned = False
        self.opened: sqlite3.Connection | None = None
        self.busy: sqlite3.OperationalError | None = None
        self.thread: threading.Thread | None = None  # aiosqlite's, once it calls the opener

    def __call__(self, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        self.thread = threading.current_thread()
        if self._path is not None:
            _refuse_special_file(self._path)
        opened = self.connection_class(*args, **kwargs)
        try:
            self.busy = self._prepare(opened)
        except BaseException:
            opened.close()
            raise
        with self._lock:
            if not self._abandoned:
                self.opened = opened
                return opened
        opened.close()
        raise sqlite3.OperationalError("probe abandoned while opening")

    def interrupt(self) -> None:
        """Stop the statement the connection runs, if it is open (sqlite3_interrupt)."""
        opened = self.opened
        if opened is not None:
            with contextlib.suppress(sqlite3.ProgrammingError):  # closed in the meantime
                opened.interrupt()

    def abandon(self) -> None:
        """Close the connection if it has opened; make it close itself if it has not."""
        with self._lock:
            self._abandoned = True
            orphan, self.opened = self.opened, None
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

    async def stop_thread(self, connection: aiosqlite.Connection) -> None:
        """Close the connection and end its thread in one hop; wait for it, even if cancelled."""
        stopping = connection.stop()
        await self.thread_ended(stopping)
        if stopping is not None and _failed(stopping):
            # aiosqlite's thread ends only after a clean close: ask once more (closing a
            # closed sqlite3 connection does nothing) so that it does not linger.
            await self.thread_ended(connection.stop())


class _Refused(Exception):
    """The attached way cannot be used here; the message says why."""


class _Attached:
    """The long-lived ``:memory:`` connection that each probe attaches the database to.

    ``open()`` starts its aiosqlite thread (a daemon) and checks, in the same hop, that
    SQLite reads a URI in ``ATTACH``. ``close()`` queues the close behind whatever the
    thread runs now; ``closed()`` waits for the thread's last act.
    """

    def __init__(
        self,
        connection: aiosqlite.Connection,
        opener: _Opener,
        execute: Callable[..., Awaitable[Any]],
    ) -> None:
        assert opener.opened is not None
        self.raw = opener.opened
        self.fit = True  # False once the database could not be detached
        self._connection = connection
        self._opener = opener
        self._execute = execute
        self._stopping: asyncio.Future[Any] | None = None
        self._closing = False

    @classmethod
    async def open(cls) -> _Attached:
        """Open the connection and check the capability; raise :class:`_Refused` if missing."""
        opener = _Opener(_check_attach)
        opening = aiosqlite.connect(
            ":memory:",
            uri=True,  # ATTACH reads a URI only on a connection opened with URIs on
            timeout=_BUSY_SLICE,
            isolation_level=None,
            factory=opener,
            check_same_thread=False,  # so that the loop may interrupt and _Opener may close
        )
        thread = getattr(opening, "_thread", None)
        execute = getattr(opening, "_execute", None)
        if not isinstance(thread, threading.Thread) or thread.is_alive() or not callable(execute):
            raise _Refused("this aiosqlite has no Connection._thread and _execute")
        # A non-daemon thread waiting for work would hold the interpreter's exit in an
        # application that never stops the service (aiosqlite issues 290, 299).
        thread.daemon = True
        thread.name = _THREAD_NAME
        thread.run = _quiet_when_the_loop_is_gone(thread.run)  # type: ignore[method-assign]
        try:
            connection = await opening  # starts the thread, opens, checks the capability
        except asyncio.CancelledError:
            # aiosqlite drops a connection whose opening was cancelled without closing it:
            # close it here (or, not open yet, the opener closes it as it opens).
            opener.abandon()
            await opener.thread_ended()
            raise
        except Exception as exc:
            await opener.thread_ended()  # aiosqlite has asked the thread to end
            if isinstance(exc, sqlite3.Error):
                raise _Refused(describe_exception(exc)) from exc
            raise
        return cls(connection, opener, cast(Callable[..., Awaitable[Any]], execute))

    @property
    def closing(self) -> bool:
        """Whether the close is queued: no probe may use the connection any more."""
        return self._closing

    async def probe(self, path: Path, uri: str) -> None:
        """Attach, read and detach, in one hop to the connection's thread."""
        await self._execute(_attach_read_detach, self, path, uri)

    def interrupt(self) -> None:
        """Stop the statement running now (sqlite3_interrupt; a busy wait goes on)."""
        self._opener.interrupt()

    def close(self) -> None:
        """Queue the close: it runs after the call in the thread now, then the thread ends."""
        if not self._closing:
            self._closing = True
            self._stopping = self._connection.stop()

    async def closed(self) -> None:
        """Close, and wait (even if cancelled, at most a grace period) for the thread to end."""
        self.close()
        stopping = self._stopping
        await self._opener.thread_ended(stopping)
        if stopping is not None and _failed(stopping) and self._stopping is stopping:
            # aiosqlite's thread ends only after a clean close: ask once more (closing a
            # closed sqlite3 connection does nothing) so that it does not linger.
            self._stopping = self._connection.stop()
            await self._opener.thread_ended(self._stopping)


class _Run:
    """One run's link to its probe: the run's cancellation reaches the probe through it."""

    __slots__ = ("_waiter", "cancelled", "interrupt")

    def __init__(self) -> None:
        self.cancelled = False
        self.interrupt: Callable[[], None] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def cancel(self) -> None:
        """Stop retrying: end a pause now, and stop the statement running now."""
        self.cancelled = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if self.interrupt is not None:
            self.interrupt()

    async def pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or until the run is cancelled."""
        if self.cancelled:
            return
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        timer = loop.call_later(seconds, _set_result, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None


def _set_result(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def _retry_while_busy(
    attempt: Callable[[], Awaitable[object]],
    run: _Run,
    deadline: float | None,
    busy: sqlite3.OperationalError | None = None,
) -> None:
    """Make ``attempt`` until it succeeds, every ``_BUSY_SLICE`` while the database is locked.

    Gives up with the busy error past ``deadline`` (monotonic) or once the run is cancelled.
    """
    while True:
        if busy is not None:
            if run.cancelled or (deadline is not None and time.monotonic() > deadline):
                raise busy
            await run.pause(_BUSY_SLICE)
        if run.cancelled:
            return
        try:
            await attempt()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
            busy = exc
        else:
            return


class SQLiteCheck(CheckOptions):
    """Read an SQLite database, read-only, to prove it is there, readable and unlocked.

    The file is opened by URI with ``mode=ro``: it is never created nor written. Like any
    SQLite reader it holds a shared lock while it reads, and on a WAL database SQLite itself
    may create the ``-wal`` and ``-shm`` files (left in place: the application's connections
    use them). The probe reads the schema, so a missing, unreadable, corrupt or exclusively
    locked database fails. While the database is locked the probe retries in 10 ms slices
    until its timeout (``timeout``, or the service's ``check_timeout``); when cancelled or
    timed out, the running statement is interrupted and the probe ends at its next step,
    without anyone waiting for it.

    Run by a service, the check keeps one connection to ``:memory:`` open from the service's
    start to its stop, and attaches the database to it for each probe: the file is opened
    and closed every cycle, and no thread starts per cycle. A probe stuck past its run (a
    busy wait ``sqlite3_interrupt`` cannot cut, a hung file system) gives that connection up
    and the next run opens another; while a connection given up is still stuck, the check
    reads "still running". Where SQLite does not read a URI in ``ATTACH``, and for a check
    run on its own, each probe opens a connection of its own instead.
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
        self._serving = False  # from on_start() to on_stop(): the attached way may be used
        self._refused: str | None = None  # why the attached way is not used, once known
        self._attached: _Attached | None = None  # open between the cycles of a service
        self._given_up: asyncio.Task[CheckResult] | None = None  # a stuck probe's, not awaited
        self._closing: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"<SQLiteCheck {self.name!r} path={str(self.path)!r}>"

    def on_start(self) -> None:
        """Let the probes of a running service share one long-lived connection."""
        self._serving = True

    def on_stop(self) -> None:
        """Close the long-lived connection (after the call its thread runs now, if any)."""
        self._serving = False
        attached, self._attached = self._attached, None
        if attached is None:
            return
        attached.close()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # called off the loop: the close is queued; nothing can wait for it
        closing = loop.create_task(attached.closed())
        self._closing.add(closing)  # a strong reference: the loop keeps only a weak one
        closing.add_done_callback(self._closing.discard)

    async def run(self) -> CheckResult:
        """Probe the database once; raise :class:`CheckStillRunning` if a probe lingers."""
        if self._probe is not None:
            # A probe given up a moment ago is usually ending right now.
            await asyncio.wait({self._probe}, timeout=SETTLE_SECONDS)
        if self._probe is not None and not self._give_up_stuck_probe():
            raise CheckStillRunning(self._probe_since)
        run = _Run()
        probe = asyncio.get_running_loop().create_task(self._run_probe(run))
        self._probe, self._probe_since = probe, datetime.now(timezone.utc)
        probe.add_done_callback(self._probe_done)
        try:
            # asyncio.wait, unlike awaiting the probe, never cancels it: a timeout or stop()
            # does not wait for the connection's thread.
            await asyncio.wait({probe})
        except asyncio.CancelledError:
            # Cancelled by our caller (timeout or stop): stop the statement; the probe ends
            # at its next step, in the background, and cleans up after itself.
            run.cancel()
            raise
        return probe.result()

    async def wait_closed(self) -> None:
        """Wait until the probes have ended and every connection is closed, its thread done."""
        probes = {probe for probe in (self._probe, self._given_up) if probe is not None}
        if probes:
            await asyncio.wait(probes)
        attached, self._attached = self._attached, None
        if attached is not None:
            await attached.closed()
        if self._closing:
            await asyncio.wait(set(self._closing))

    def _probe_done(self, probe: asyncio.Task[CheckResult]) -> None:
        if self._probe is probe:
            self._probe = None
        if self._given_up is probe:
            self._given_up = None
        if not probe.cancelled():
            probe.exception()  # retrieved here: a late failure of an abandoned probe is not news

    def _give_up_stuck_probe(self) -> bool:
        """Give up the long-lived connection a stuck probe holds; False when none can be.

        At most one connection given up at a time: while its thread is still stuck, the
        check reads "still running" rather than start a third.
        """
        attached = self._attached
        if attached is None or self._given_up is not None or self._probe is None:
            return False
        logger.warning(
            "check %r: a probe of %s is stuck; its connection is given up and a new one opened",
            self.name,
            display_path(self.path),
        )
        self._given_up, self._probe, self._attached = self._probe, None, None
        attached.close()  # the stuck probe waits for the thread's end when its call returns
        return True

    async def _run_probe(self, run: _Run) -> CheckResult:
        """Probe by the attached way where it can, by a fresh connection where it cannot."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        try:
            attached = await self._long_lived() if self._serving else None
            if attached is not None:
                await self._probe_attached(attached, run, deadline)
            else:
                await self._probe_fresh(run, deadline)
        except sqlite3.Error as exc:
            return CheckResult("fail", f"{describe_exception(exc)} ({display_path(self.path)})")
        return CheckResult("pass")

    async def _long_lived(self) -> _Attached | None:
        """The long-lived connection, opened at the first probe; None where it is refused."""
        if self._attached is None and self._refused is None:
            try:
                self._attached = await _Attached.open()
            except _Refused as exc:
                self._refused = str(exc)
                logger.info(
                    "check %r cannot attach the database to a long-lived connection here "
                    "(%s); each probe opens a connection of its own",
                    self.name,
                    self._refused,
                )
        return self._attached

    async def _probe_attached(self, attached: _Attached, run: _Run, deadline: float | None) -> None:
        """Attach, read, detach on the long-lived connection; retry while locked."""
        run.interrupt = attached.interrupt
        try:
            await _retry_while_busy(lambda: attached.probe(self.path, self._uri), run, deadline)
        except asyncio.CancelledError:
            # The loop is closing (asyncio.run's end cancels every task): close the
            # connection, and below wait for its thread's end, so that the loop is not
            # closed under it.
            attached.close()
            raise
        finally:
            if not attached.fit or not self._serving:
                attached.close()  # unfit, or the service stopped while this probe ran
            if attached.closing:
                if self._attached is attached:
                    self._attached = None
                await attached.closed()

    async def _probe_fresh(self, run: _Run, deadline: float | None) -> None:
        """Open and read in one hop, retry while locked, close and stop the thread in one."""
        opener = _Opener(_read_schema, self.path)
        opening = aiosqlite.connect(
            self._uri,
            uri=True,
            timeout=_BUSY_SLICE,
            factory=opener,
            check_same_thread=False,  # so that _Opener may interrupt or close it from the loop
        )
        try:
            connection = await opening  # starts aiosqlite's thread, opens, reads
        except asyncio.CancelledError:
            # aiosqlite drops a connection whose opening was cancelled without closing it:
            # close it here (or, not open yet, the opener closes it as it opens).
            opener.abandon()
            await opener.thread_ended()  # the thread was started: it calls the opener
            raise
        except Exception:
            # The opener closed what it opened, and aiosqlite asked its thread to end: wait
            # for that, so that a loop closed right after never meets the thread.
            await opener.thread_ended()
            raise
        run.interrupt = opener.interrupt
        try:
            if opener.busy is not None:
                await _retry_while_busy(
                    lambda: connection.execute_fetchall(_PROBE_QUERY), run, deadline, opener.busy
                )
        finally:
            await opener.stop_thread(connection)


def _quiet_when_the_loop_is_gone(run: Callable[[], None]) -> Callable[[], None]:
    """``run`` ending quietly when it cannot hand a result to a loop that has closed.

    A program that exits without stop() (``healthfile run`` given up on by a second signal,
    an app that never stops the service) closes its loop while a probe may be in flight in
    this thread: nobody waits for its answer, and a traceback would only alarm.
    """

    def run_quietly() -> None:
        try:
            run()
        except RuntimeError as exc:
            if "closed" not in str(exc):
                raise

    return run_quietly
