"""Stop signals handed to the event loop: for ``healthfile run`` and ``cancel_on_signals``.

SIGINT, SIGTERM and, where it exists, SIGBREAK (Ctrl-Break on Windows) are the signals a
terminal, ``docker stop``, systemd and Kubernetes send to end a process. Python's default for
SIGTERM ends the process at once, without a ``finally`` or an ``async with`` exit running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType, TracebackType
from typing import Any

__all__ = ["REPEAT_FORCES_AFTER", "STOP_SIGNALS", "cancel_on_signals", "handle_signals", "insists"]

logger = logging.getLogger("healthfile")

STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGBREAK") if hasattr(signal, name)
)

# Handlers that nobody else is relying on: the loop's own handling may replace them.
_DEFAULTS: tuple[Any, ...] = (signal.SIG_DFL, signal.SIG_IGN, signal.default_int_handler)

SignalCallback = Callable[[signal.Signals], object]

# Seconds after the first stop signal from which another one gives up waiting for the stop.
# A stop takes milliseconds: signals repeated before this (an impatient double Ctrl-C, a
# supervisor that sends SIGTERM to a process group twice) let it finish and write `stopped`;
# one repeated later means the stop is stuck (a hung disk) and the process must go now.
REPEAT_FORCES_AFTER = 1.0


def insists(signum: signal.Signals, first: float) -> bool:
    """Whether a repeated stop signal should end the wait for the stop (and say which it is).

    ``first`` is the ``time.monotonic()`` of the first signal.
    """
    if time.monotonic() - first < REPEAT_FORCES_AFTER:
        logger.info("received %s again: already stopping", signum.name)
        return False
    logger.warning("received %s again: not waiting any longer for the stop", signum.name)
    return True


@contextlib.contextmanager
def handle_signals(
    callback: SignalCallback, *, ignore_after: Callable[[], bool] | None = None
) -> Iterator[bool]:
    """Call ``callback(signum)`` on the running loop for each stop signal until exit.

    ``loop.add_signal_handler`` is used where it works and the signal has no handler of its
    own yet; otherwise (it raises ``NotImplementedError`` on Windows, a loop may lack it, or
    a handler is installed already) ``signal.signal``, whose handler passes the signal to the
    loop with ``call_soon_threadsafe``. Either way the callback runs on the loop, never in
    the middle of a task, and the previous handlers are back when the block is left, unless
    ``ignore_after()`` then returns True: the stop signals are then left ignored (a program
    that was asked to stop and is exiting must not be killed by a signal repeated on its way
    out). Yields True, or False outside the main thread, where Python delivers no signals:
    then nothing is installed and a warning says so.
    """
    loop = asyncio.get_running_loop()
    if threading.current_thread() is not threading.main_thread():
        logger.warning(
            "not handling %s: signals reach only the main thread",
            ", ".join(signum.name for signum in STOP_SIGNALS),
        )
        yield False
        return

    def leave(put_back: _PutBack) -> None:
        """Put the previous handler back, or SIG_IGN when asked to keep ignoring."""
        put_back(signal.SIG_IGN if ignore_after is not None and ignore_after() else None)

    with contextlib.ExitStack() as restore:
        restore.enter_context(_wake_on_signals(loop))
        for signum in STOP_SIGNALS:
            restore.callback(leave, _install(loop, signum, callback))
        yield True


@contextlib.contextmanager
def _wake_on_signals(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Make a signal the kernel hands to any thread wake ``loop`` at once.

    A ``signal.signal`` handler runs in the main thread, between two bytecodes; when the
    kernel delivers the signal to another thread (it does when the main thread has one
    pending already), the main thread sleeps on in the loop's ``select()`` until something
    else wakes it: for ``healthfile run`` in the middle of a stop, maybe never. A wakeup fd
    (``signal.set_wakeup_fd``) watched by the loop wakes it. Where one is set already (the
    loop's own, once it has a signal handler; Windows' proactor loop always) or the loop
    cannot watch a socket, nothing is changed.
    """
    try:
        reader, writer = socket.socketpair()
    except OSError:
        yield
        return
    with reader, writer:
        reader.setblocking(False)
        writer.setblocking(False)
        try:
            previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        except (ValueError, OSError):
            yield
            return
        if previous != -1:  # somebody's wakeup fd (the loop's own): it stays
            signal.set_wakeup_fd(previous)
            yield
            return
        try:
            loop.add_reader(reader.fileno(), _drain, reader)
        except (NotImplementedError, AttributeError):  # a proactor loop: no readers
            signal.set_wakeup_fd(-1)
            yield
            return
        try:
            yield
        finally:
            signal.set_wakeup_fd(-1)
            loop.remove_reader(reader.fileno())


def _drain(reader: socket.socket) -> None:
    """Empty the wakeup socket: waking the loop was its whole job."""
    with contextlib.suppress(OSError):
        while reader.recv(4096):
            pass


# What _install returns: it puts the previous handler back, or the one it is given instead.
_PutBack = Callable[[Any], None]


def _install(
    loop: asyncio.AbstractEventLoop, signum: signal.Signals, callback: SignalCallback
) -> _PutBack:
    """Route ``signum`` to ``callback`` on ``loop``; return what puts the old handler back."""
    found = signal.getsignal(signum)
    if found is None:
        # Installed outside Python: it could not be put back, so it is left alone.
        logger.warning("not handling %s: its handler was not installed from Python", signum.name)
        return lambda instead: None
    previous: Callable[[int, FrameType | None], Any] | int = found
    if previous in _DEFAULTS:
        try:
            loop.add_signal_handler(signum, callback, signum)
        except (NotImplementedError, AttributeError):
            pass  # every Windows loop; a loop without signal support
        else:

            def remove(instead: Any) -> None:
                """Remove the loop's handler; put the previous one (or ``instead``) back."""
                loop.remove_signal_handler(signum)
                signal.signal(signum, previous if instead is None else instead)

            return remove

    def handler(received: int, frame: FrameType | None) -> None:
        """Pass the signal to the loop: never run the callback inside a running task."""
        loop.call_soon_threadsafe(callback, signal.Signals(received))

    signal.signal(signum, handler)

    def put_back(instead: Any) -> None:
        """Put the previous handler (or ``instead``) back."""
        signal.signal(signum, previous if instead is None else instead)

    return put_back


class cancel_on_signals:  # lower case: a context manager, named like contextlib.suppress
    """Cancel the task that enters the block on SIGINT, SIGTERM or SIGBREAK; end it quietly.

    Use it inside a coroutine, around the part of the program that should end on a stop
    signal (``docker stop``, systemd, Kubernetes and Ctrl-C send one)::

        async with healthfile.AsyncHealthService("data/app.db") as service:
            with healthfile.cancel_on_signals():
                await run_my_app()
            # reached after SIGTERM; the service then writes "stopped"

    The first signal cancels the task; the ``CancelledError`` that this causes ends the block
    and goes no further, so the code after the block runs and the program can exit 0. Any
    other cancellation propagates as usual (on Python 3.10, which counts no cancellations,
    one that lands together with the signal's is swallowed with it). Another signal before
    the block is left, a second or more after the first, raises ``KeyboardInterrupt`` out of
    the event loop, as a second Ctrl-C does in ``asyncio.run``; one sooner is only logged.
    The previous signal handlers are back when the block is left: a signal outside it does
    what it did before. ``received`` is the signal that ended the block, or None.

    Works on any event loop, uvloop included, and where ``loop.add_signal_handler`` is not
    available (Windows). Outside the main thread no signal can be received: a warning is
    logged and the block runs unprotected. Raises ``RuntimeError`` outside a task, or when
    the same object is entered twice.
    """

    received: signal.Signals | None

    def __init__(self) -> None:
        self.received = None
        self._received_at = 0.0
        self._task: asyncio.Task[Any] | None = None
        self._cancelling = 0
        self._cancelled = False
        self._handlers = contextlib.ExitStack()

    def __repr__(self) -> str:
        state = "entered" if self._task is not None else "idle"
        name = self.received.name if self.received is not None else None
        return f"<cancel_on_signals {state} received={name}>"

    def __enter__(self) -> cancel_on_signals:
        if self._task is not None:
            raise RuntimeError("cancel_on_signals has already been entered")
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no running loop
            task = None
        if task is None:
            raise RuntimeError("cancel_on_signals must be used inside a task")
        self.received = None
        self._cancelled = False
        self._cancelling = 0
        if sys.version_info >= (3, 11):
            self._cancelling = task.cancelling()
        self._handlers.enter_context(handle_signals(lambda signum: self._on_signal(task, signum)))
        self._task = task
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        task, self._task = self._task, None
        self._handlers.close()
        if task is None or not self._cancelled:
            return False
        ours = exc_type is not None and issubclass(exc_type, asyncio.CancelledError)
        if sys.version_info >= (3, 11):
            # Taken off even when the block swallowed it; anyone else's stays counted.
            remaining = task.uncancel()
            return ours and remaining <= self._cancelling
        return ours  # 3.10 counts no cancellations: ours is the one this block requested

    def _on_signal(self, task: asyncio.Task[Any], signum: signal.Signals) -> None:
        """Cancel ``task`` on the first signal; raise KeyboardInterrupt on an insistent next."""
        if self._task is not task:
            return  # the block was left while the signal was on its way
        if self.received is not None:
            if insists(signum, self._received_at):
                raise KeyboardInterrupt
            return
        logger.info("received %s: cancelling %s", signum.name, task.get_name())
        self.received, self._received_at = signum, time.monotonic()
        self._cancelled = True
        task.cancel()
