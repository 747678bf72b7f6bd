"""healthfile's own executor: one daemon thread for the service's writes, sweep and lock."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

__all__ = ["WorkerThread"]

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

    def _work(self) -> None:
        """Run queued calls until the shutdown marker."""
        while (item := self._queue.get()) is not None:
            _run(item)
            del item  # no reference to the last call's arguments while waiting for the next


def _run(item: _Item) -> None:
    """Run one call and settle its future."""
    future, fn, args, kwargs = item
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:  # handed to the awaiting side, as concurrent.futures does
        future.set_exception(exc)
    else:
        future.set_result(result)
