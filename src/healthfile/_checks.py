"""Checks: the protocol, the built-in disk-space and loop-lag checks, and ``check()``.

The SQLite check has a module of its own (``_sqlite``); it is re-exported here.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ._options import LIVE, CheckOptions, CommonOptions, absolute, validate_grades
from ._report import CheckResult, display_path
from ._sqlite import SQLiteCheck, sqlite_readonly_uri
from ._threads import CheckStillRunning, DaemonThreadRunner, call_off_loop, is_async_callable

if TYPE_CHECKING:
    from ._options import Unpack

__all__ = [
    "Check",
    "CheckStillRunning",
    "DiskSpaceCheck",
    "FunctionCheck",
    "LoopLagCheck",
    "SQLiteCheck",
    "check",
    "display_path",
    "sqlite_readonly_uri",
]


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
        self.warn_after, self.fail_after = validate_grades(warn_after, fail_after)
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
