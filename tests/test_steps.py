"""Timing a coroutine's steps: results, exceptions and cancellations pass through unchanged."""

from __future__ import annotations

import asyncio
import time

import pytest

from healthfile._steps import LoopShare, StepTimer, timed


@pytest.mark.asyncio
async def test_a_timed_coroutine_returns_its_value_and_counts_only_its_own_steps() -> None:
    """The value comes back; busy counts the step that blocked, not the awaits in between."""
    share = LoopShare()
    timer = StepTimer(share)

    async def work() -> str:
        await asyncio.sleep(0.05)  # waiting: not busy
        time.sleep(0.05)  # holding the loop: busy
        await asyncio.sleep(0)
        return "done"

    assert await timed(work(), timer) == "done"
    assert timer.began is not None
    assert timer.ended is not None
    assert 0.05 <= timer.busy < timer.ended - timer.began
    assert share.total == timer.busy


@pytest.mark.asyncio
async def test_exceptions_and_cancellation_pass_through_a_timed_coroutine() -> None:
    """What the coroutine raises reaches the awaiter; a cancellation reaches the coroutine."""
    timer = StepTimer(LoopShare())

    async def failing() -> None:
        await asyncio.sleep(0)
        raise LookupError("gone")

    with pytest.raises(LookupError, match="gone"):
        await timed(failing(), timer)

    cleaned: list[str] = []
    entered = asyncio.Event()

    async def hanging() -> None:
        try:
            entered.set()
            await asyncio.sleep(3600)
        finally:
            cleaned.append("finally")

    task = asyncio.ensure_future(timed(hanging(), StepTimer(LoopShare())))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["finally"]


@pytest.mark.asyncio
async def test_time_left_does_not_count_what_other_runs_held_the_loop_for() -> None:
    """A run waiting while another blocks the loop keeps its time; the blocker's is spent."""
    share = LoopShare()
    waiter, blocker = StepTimer(share), StepTimer(share)
    started = time.perf_counter()

    async def wait() -> None:
        await asyncio.sleep(0.01)

    async def block() -> None:
        time.sleep(0.2)

    await asyncio.gather(timed(wait(), waiter), timed(block(), blocker))
    now = time.perf_counter()
    assert waiter.left(0.15, now, started) > 0  # 0.2 s passed, but the loop was not its
    assert blocker.left(0.15, now, started) < 0
    assert StepTimer(share).left(1.0, started + 0.25, started) == pytest.approx(0.75)
