"""The schedule of cycles: one at a time, each in its own task, on a drift-free grid.

The service says what a cycle does and whether cycles may run; a :class:`Schedule` runs
them: every ``interval`` seconds on the loop's clock from the start, never two at once, each
in a task that ``stop()`` can cancel.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Coroutine
from typing import Any

from ._report import HealthReport, format_exception

__all__ = ["Schedule", "Stopped"]

logger = logging.getLogger("healthfile")


class Stopped(Exception):
    """stop() cancelled the cycle this caller was waiting for, or cycles may no longer run."""


class Schedule:
    """Run cycles for one service.

    :param interval: seconds between the starts of two cycles.
    :param cycle: makes and publishes one report (raises :class:`Stopped` when it finds
        the service stopping).
    :param live: whether cycles may run now (the service is starting or running).
    """

    def __init__(
        self,
        interval: float,
        cycle: Callable[[], Coroutine[Any, Any, HealthReport]],
        live: Callable[[], bool],
    ) -> None:
        self._interval = interval
        self._cycle = cycle
        self._live = live
        self._origin = 0.0
        self._lock: asyncio.Lock | None = None
        self.task: asyncio.Task[HealthReport] | None = None  # the cycle running now

    def begin(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the grid now (at start())."""
        self._lock = asyncio.Lock()
        self._origin = loop.time()

    async def run_forever(self) -> None:
        """Run a cycle at every due time on the grid until cancelled by stop()."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            periods = math.floor((now - self._origin) / self._interval) + 1
            # stop() cancels this task: the sleep is the stop wait, and a cancellation can
            # only end it, never be swallowed by it (unlike wait_for on 3.10/3.11, gh-86296).
            await asyncio.sleep(self._origin + periods * self._interval - now)
            try:
                await self.run_once()
            except Stopped:  # pragma: no cover - stop() cancels this task first
                return
            except Exception as exc:
                logger.error("health check cycle failed: %s", format_exception(exc))

    async def run_once(self) -> HealthReport:
        """Run one cycle in its own task, after the one running; return its report.

        :raises Stopped: when the service stops before or while the cycle runs.
        """
        lock = self._lock
        if lock is None:
            raise Stopped  # never started
        async with lock:
            if not self._live():
                raise Stopped
            task = asyncio.get_running_loop().create_task(self._cycle(), name="healthfile-cycle")
            self.task = task
            try:
                await asyncio.wait({task})
            except asyncio.CancelledError:
                # Our caller was cancelled: take the cycle down with it, and do not leave
                # it running behind the lock.
                task.cancel()
                await asyncio.wait({task})
                raise
            finally:
                self.task = None
        if task.cancelled():
            raise Stopped
        return task.result()
