"""How long each check held the event loop: its coroutine driven one step at a time, timed.

A check that blocks the loop (a ``time.sleep`` or a long computation in an ``async def``)
delays every other check of the cycle with it. Timing each check's steps tells the one that
held the loop from the ones that only waited for it: the first is blamed for overrunning its
timeout, and time spent waiting for it is not counted against the others' timeouts.
"""

from __future__ import annotations

import time
from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar

__all__ = ["LoopShare", "StepTimer", "timed"]

T = TypeVar("T")


class LoopShare:
    """The time all the timed runs of one cycle held the loop, together, in seconds."""

    __slots__ = ("total",)

    def __init__(self) -> None:
        self.total = 0.0


class StepTimer:
    """What one run of a check measured, in ``time.perf_counter()`` seconds.

    ``began`` and ``ended`` are when its first step began and its last one ended (``None``
    until then); ``busy`` is the time its steps held the loop.
    """

    __slots__ = ("_others_before", "_share", "began", "busy", "ended")

    def __init__(self, share: LoopShare) -> None:
        self._share = share
        self._others_before = 0.0
        self.began: float | None = None
        self.ended: float | None = None
        self.busy = 0.0

    def left(self, timeout: float, now: float, since: float) -> float:
        """Seconds this run has left of ``timeout`` at ``now``; ``since`` if it has not begun.

        Time the other runs of the cycle held the loop since this one began is not counted:
        it could not run meanwhile.
        """
        if self.began is None:
            return timeout - (now - since)
        others = self._share.total - self._others_before - self.busy
        return timeout - (now - self.began - others)

    def _step(self, began: float) -> None:
        """Account one step that began at ``began`` and ends now."""
        ended = time.perf_counter()
        if self.began is None:
            self.began = began
            self._others_before = self._share.total
        self.busy += ended - began
        self._share.total += ended - began
        self.ended = ended


async def timed(coro: Coroutine[Any, Any, T], timer: StepTimer) -> T:
    """Await ``coro``, timing each of its steps into ``timer``."""
    return await _Stepwise(coro, timer)


class _Stepwise(Generic[T]):
    """An awaitable that drives a coroutine as a task would, one timed step at a time."""

    __slots__ = ("_coro", "_timer")

    def __init__(self, coro: Coroutine[Any, Any, T], timer: StepTimer) -> None:
        self._coro = coro
        self._timer = timer

    def __await__(self) -> Generator[Any, Any, T]:
        coro, timer = self._coro, self._timer
        value: Any = None
        error: BaseException | None = None
        while True:
            began = time.perf_counter()
            try:
                if error is None:
                    yielded = coro.send(value)
                else:
                    thrown, error = error, None
                    try:
                        yielded = coro.throw(thrown)
                    finally:
                        del thrown  # it holds this frame in its traceback: no cycle
            except StopIteration as stop:
                timer._step(began)
                result: T = stop.value
                return result
            except BaseException:
                timer._step(began)
                raise
            timer._step(began)
            try:
                value = yield yielded  # what the task waits for (a future), passed through
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # a cancellation, thrown in by the task: passed on
                value, error = None, exc
