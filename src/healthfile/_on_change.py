"""The ``on_change`` callback: called once per change, bounded, and never outliving stop().

A sync callback runs in a daemon thread of its own, an async one as a task on the loop; what
either raises is logged, redacted, and goes no further.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial

from ._report import HealthReport, format_exception
from ._threads import CheckStillRunning, DaemonThreadRunner, call_off_loop, unwrap_thread_exception

__all__ = ["ChangeCallback", "OnChange"]

logger = logging.getLogger("healthfile")

OnChange = Callable[[HealthReport | None, HealthReport], Awaitable[object] | object]


class ChangeCallback:
    """Call ``callback(previous, current)`` for a report, within ``timeout`` seconds."""

    def __init__(self, callback: OnChange, timeout: float) -> None:
        self._callback = callback
        self._timeout = timeout
        self._runner = DaemonThreadRunner("on_change")

    async def call(self, previous: HealthReport | None, current: HealthReport) -> None:
        """Call it and wait for it, bounded by the timeout; log and swallow what it raises.

        If the caller is cancelled (stop() cancels the cycle that publishes), an async
        callback is cancelled too and waited for, up to the timeout, before the cancellation
        goes on: it does not run on after stop() returns. Whatever it raises, then or later,
        is logged redacted, never left to asyncio's own unredacted log.
        """
        call = asyncio.ensure_future(
            call_off_loop(partial(self._callback, previous, current), self._runner)
        )
        call.add_done_callback(partial(_log_failure, current))
        try:
            done, _ = await asyncio.wait({call}, timeout=self._timeout)
        except asyncio.CancelledError:
            # Our caller is cancelled (stop()): take the callback down with it, then go on.
            call.cancel()
            await asyncio.wait({call}, timeout=self._timeout)
            raise
        if not done:
            call.cancel()
            logger.error(
                "on_change callback failed: on_change took longer than %g s", self._timeout
            )
        elif call.cancelled():
            logger.error("on_change callback failed: on_change was cancelled")


def _log_failure(current: HealthReport, call: asyncio.Future[object]) -> None:
    """Log what the call raised (its outcome retrieved, so that asyncio logs nothing)."""
    if call.cancelled():
        return
    error = call.exception()
    if isinstance(error, CheckStillRunning):
        # A sync callback still blocked on an earlier report (its thread cannot be
        # cancelled): this report is not delivered, and that is all that went wrong.
        logger.warning(
            "on_change not called for report %d (%s): its call for an earlier report is %s",
            current.sequence,
            current.status,
            error,
        )
    elif error is not None:
        # A sync callback's SystemExit or KeyboardInterrupt arrives wrapped in RaisedInThread;
        # an async one's ends the loop, as asyncio does.
        logger.error(
            "on_change callback failed: %s", format_exception(unwrap_thread_exception(error))
        )
