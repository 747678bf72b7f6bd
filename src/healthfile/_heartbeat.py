"""HeartbeatCheck: liveness of a thread that matters, fed by that thread's own beats."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ._checks import graded
from ._options import LIVE, CheckOptions, CommonOptions, validate_grades

if TYPE_CHECKING:
    from ._options import Unpack
from ._report import CheckResult

__all__ = ["HeartbeatCheck"]


class HeartbeatCheck(CheckOptions):
    """Pass while ``beat()`` keeps being called; warn, then fail, when the beats stop.

    The thread whose liveness matters calls :meth:`beat` from its own loop: a GUI from its
    main loop (Tk's ``root.after``), a worker once per loop turn, a consumer once per
    message. A frozen window or a wedged worker then shows in the health file, Consul-TTL
    style, although healthfile's own thread is fine.

    :param name: the check's name in the report.
    :param warn_after: seconds without a beat from which the check warns.
    :param fail_after: seconds without a beat from which it fails.
    :param options: the keyword arguments every check takes (:class:`CheckOptions`:
        ``timeout``, ``critical``, ``groups``, ``failure_threshold``,
        ``success_threshold``); ``groups`` default to ``("live",)``, so that
        ``healthfile check --group live`` (the liveness probe) judges it.
    :raises ValueError: for non-positive bounds, or ``warn_after`` above ``fail_after``.

    Before the first beat the check fails ("no beat yet"): it never passes on no evidence.
    """

    def __init__(
        self,
        name: str = "heartbeat",
        *,
        warn_after: float = 1.0,
        fail_after: float = 5.0,
        **options: Unpack[CommonOptions],
    ) -> None:
        self.warn_after, self.fail_after = validate_grades(warn_after, fail_after)
        options.setdefault("groups", (LIVE,))
        super().__init__(name=name, **options)
        self._last_beat: float | None = None

    def __repr__(self) -> str:
        age = self.seconds_since_beat()
        state = "no beat yet" if age is None else f"last beat {age:.1f} s ago"
        return (
            f"<HeartbeatCheck {self.name!r} {state} "
            f"warn_after={self.warn_after} fail_after={self.fail_after}>"
        )

    def beat(self) -> None:
        """Record that the calling thread is alive; cheap, and safe from any thread.

        One monotonic clock read and one attribute store. No lock: storing a reference to a
        new float is atomic (under the GIL and in free-threaded builds alike), so a reader
        sees either the previous beat or this one, both true statements about liveness.
        """
        self._last_beat = time.monotonic()

    def seconds_since_beat(self) -> float | None:
        """Seconds since the last beat, or ``None`` before the first one."""
        last = self._last_beat
        return None if last is None else max(0.0, time.monotonic() - last)

    async def run(self) -> CheckResult:
        """Judge the age of the last beat against ``warn_after`` and ``fail_after``."""
        age = self.seconds_since_beat()
        if age is None:
            return CheckResult("fail", "no beat yet")
        return graded(
            age,
            f"last beat {age:.1f} s ago",
            warn_after=self.warn_after,
            fail_after=self.fail_after,
            show=lambda seconds: f"{seconds:g} s",
        )
