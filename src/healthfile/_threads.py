"""Thread plumbing: healthfile's own executor, and daemon threads for blocking user code.

``WorkerThread`` runs the service's writes, sweep and lock in order, in one daemon thread.
``DaemonThreadRunner`` runs a sync check or ``on_change`` callback in a fresh daemon thread,
so that one that hangs never blocks the loop nor the interpreter's exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from datetime import datetime, timezone
from typing import Any, TypeVar

from ._report import format_timestamp

__all__ = [
    "CheckStillRunning",
    "DaemonThreadRunner",
    "RaisedInThread",
    "WorkerThread",
    "call_off_loop",
    "is_async_callable",
    "threads_can_start",
    "unwrap_thread_exception",
]

T = TypeVar("T")

_Item = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class WorkerThread(Executor):
    """Run submitted calls one at a time, in the order submitted, in one daemon thread.

    Not the event loop's default executor: the host application's own blocking work queued
    there must never delay a health report (a stale file means the writer is hung, not the
    host's pool). Not a ``ThreadPoolExecutor`` either: ``concurrent.futures`` joins its
    threads at interpreter exit, so a write hung on a dead disk would hold the exit; a
    daemon thread never does. One thread is enough and keeps the order: a sweep, the writes
    and the lock's release never overlap.

    The thread starts with the first call; after :meth:`shutdown` it ends once the calls
    submitted before it are done.
    """

    def __init__(self, name: str = "healthfile-worker") -> None:
        self._name = name
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._finished = False  # the thread has left its queue for good
        self._unfinished = 0  # calls submitted and not yet done
        self._waiters: list[Callable[[], None]] = []  # end()'s, woken as it leaves

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<WorkerThread {self._name!r} {state}>"

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Queue ``fn(*args, **kwargs)``; return its future.

        :raises RuntimeError: after :meth:`shutdown`.
        """
        future: Future[T] = Future()
        with self._guard:
            if self._closed:
                raise RuntimeError("cannot schedule new calls after shutdown")
            self._queue.put((future, fn, args, kwargs))
            self._unfinished += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._thread.start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Let the thread end once the calls already queued are done.

        ``wait`` joins it (never from the thread itself); ``cancel_futures`` is not
        supported: queued calls always run (a final write, a release).
        """
        with self._guard:
            if self._closed:
                thread = self._thread
            else:
                self._closed = True
                thread = self._thread
                self._queue.put(None)
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join()

    async def end(self) -> None:
        """Shut down, and return once the thread has ended (the calls queued before, done).

        Waits on the loop while calls remain: the thread wakes it as it leaves its queue.
        Then (at once when no call remains) it joins the thread, which has only to return
        from its function: a wait of microseconds, which lets it take the GIL to do so
        (polling would hold it back). Cancellable: the thread ends all the same.
        """
        self.shutdown(wait=False)
        loop = asyncio.get_running_loop()
        left: asyncio.Future[None] | None = None
        with self._guard:
            thread = self._thread
            if thread is None:
                return
            if self._unfinished and not self._finished:
                left = loop.create_future()
                self._waiters.append(functools.partial(_wake, loop, left))
        if left is not None:
            await left
        thread.join()

    def _one_done(self) -> None:
        """Count a call done (before its future wakes anyone: end() then sees it done)."""
        with self._guard:
            self._unfinished -= 1

    def _work(self) -> None:
        """Run queued calls until the shutdown marker; then wake whoever waits in end()."""
        while (item := self._queue.get()) is not None:
            _run(item, self._one_done)
            del item  # no reference to the last call's arguments while waiting for the next
        with self._guard:
            self._finished = True
            waiters, self._waiters = self._waiters, []
        for wake in waiters:
            wake()


def _wake(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    """Settle ``future`` on ``loop`` (from the worker: its last call)."""
    with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
        loop.call_soon_threadsafe(_set_result, future, None)


def _run(item: _Item, done: Callable[[], None]) -> None:
    """Run one call, call ``done``, then settle its future (which may wake its awaiter)."""
    future, fn, args, kwargs = item
    if not future.set_running_or_notify_cancel():
        done()
        return
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:  # handed to the awaiting side, as concurrent.futures does
        done()
        future.set_exception(exc)
    else:
        done()
        future.set_result(result)


class CheckStillRunning(Exception):
    """The previous run of a check has not returned; it is not started a second time."""

    def __init__(self, since: datetime) -> None:
        super().__init__(f"still running since {format_timestamp(since)}")
        self.since = since


class RaisedInThread(Exception):
    """A function run in its own thread raised a ``BaseException`` that is not an ``Exception``.

    Carried back to the loop as an ordinary exception, so that it is never re-raised there:
    a check then fails, an ``on_change`` failure is logged. ``exception`` is the original.
    """

    def __init__(self, exception: BaseException) -> None:
        super().__init__(f"{type(exception).__name__} raised in its thread")
        self.exception = exception


def unwrap_thread_exception(exc: BaseException) -> BaseException:
    """The exception a function raised in its thread, for ``Type: message`` and tracebacks."""
    return exc.exception if isinstance(exc, RaisedInThread) else exc


class DaemonThreadRunner:
    """Run a blocking function in a fresh daemon thread, never two at a time.

    A thread cannot be cancelled: one that hangs keeps the runner busy (and reported as
    "still running") until it returns, and being a daemon it never holds interpreter exit.
    """

    def __init__(self, name: str) -> None:
        self._thread_name = f"healthfile-check-{name}"
        self._busy_since: datetime | None = None

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in a daemon thread and return (or raise) what it does."""
        if self._busy_since is not None:
            raise CheckStillRunning(self._busy_since)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def target() -> None:
            try:
                deliver = functools.partial(_set_result, future, fn())
            except Exception as exc:
                deliver = functools.partial(_set_exception, future, exc)
            except BaseException as exc:
                # SystemExit or KeyboardInterrupt from the function ends nothing but this
                # thread; set as it is on the future, the loop would re-raise it and end the
                # application (asyncio.run() raises SystemExit).
                deliver = functools.partial(_set_exception, future, RaisedInThread(exc))
            self._busy_since = None
            # The loop may have closed while the function ran: then nobody is waiting.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(deliver)

        self._busy_since = datetime.now(timezone.utc)
        try:
            threading.Thread(target=target, name=self._thread_name, daemon=True).start()
        except BaseException:
            self._busy_since = None
            raise
        return await future


def _set_result(future: asyncio.Future[T], result: T) -> None:
    """Settle ``future`` with ``result`` unless it is already settled (or cancelled)."""
    if not future.done():
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    """Settle ``future`` with ``exc`` unless it is already settled (or cancelled)."""
    if not future.done():
        future.set_exception(exc)


def threads_can_start() -> bool:
    """Whether a new thread can start now: not while Python 3.12 shuts down (atexit handlers)."""
    thread = threading.Thread(target=_nothing, name="healthfile-thread-probe", daemon=True)
    try:
        thread.start()
    except RuntimeError:
        return False
    thread.join()
    return True


def _nothing() -> None:
    """Do nothing (in a thread started to learn whether one can start)."""


def is_async_callable(fn: object) -> bool:
    """True for async functions, partials of them, and objects with an async ``__call__``."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


async def call_off_loop(fn: Callable[[], object], runner: DaemonThreadRunner) -> object:
    """Await an async callable; run a sync one in ``runner``'s daemon thread.

    What a sync callable returns is awaited too when it is awaitable (a lambda wrapping an
    async function), so that no coroutine is ever dropped unawaited.
    """
    value = fn() if is_async_callable(fn) else await runner.call(fn)
    if inspect.isawaitable(value):
        value = await value
    return value
