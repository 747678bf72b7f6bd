"""Figure 3: healthfile against the seed's thread design (``seed_service.py``, WP01).

- cycle cost: ``check_now()`` against one check-and-write of the seed's thread (timed inside
  the thread), in interleaved blocks. The seed's write is plain (no temp file, no fsync, not
  atomic), so it is cheaper by design: the ratio prices durability plus the asyncio design.
- lag at 100 Hz: read from figure 2's run (the seed reaches the host loop only through the
  GIL).
- stop latency: idle (the thread in ``event.wait``), and mid-check on a database locked by
  another connection, where the seed's thread sits in SQLite's busy wait (3 s) and
  ``stop(timeout=2.0)`` gives up after 2 s, leaving the thread running.
"""

from __future__ import annotations

import time
from pathlib import Path

from _common import (
    TIMES,
    Context,
    FigureResult,
    Row,
    atimed,
    fmt_time,
    make_database,
    median,
    percentile,
    work_dir,
)
from fig4_stop import locked, stop_idle, stop_locked
from seed_service import HealthCheckService as SeedService

import healthfile


def _seed_cycles(directory: Path, database: Path, count: int) -> list[float]:
    """Run the seed's thread flat out (interval 1 ms) until ``count`` more cycles are done."""
    seed = SeedService(check_interval=0.001, health_file=directory / "seed.json", database=database)
    seed.start()
    try:
        deadline = time.monotonic() + 30
        while len(seed.cycle_times) < count + 10 and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        seed.stop()
    return seed.cycle_times[10 : 10 + count]


def _seed_stop_idle(directory: Path, database: Path, pairs: int) -> list[float]:
    samples = []
    for _ in range(pairs):
        seed = SeedService(
            check_interval=3600, health_file=directory / "seed.json", database=database
        )
        seed.start()
        seed.first_cycle.wait()
        time.sleep(0.01)  # idle, as in figure 4: the thread waits in event.wait(interval)
        start = time.perf_counter()
        seed.stop()
        samples.append(time.perf_counter() - start)
    return samples


def _seed_stop_locked(directory: Path, database: Path, repeats: int) -> tuple[list[float], bool]:
    samples, left_running = [], False
    for _ in range(repeats):
        seed = SeedService(
            check_interval=0.005, health_file=directory / "seed.json", database=database
        )
        seed.start()
        seed.first_cycle.wait()
        with locked(database):
            time.sleep(0.05)  # the thread is now in SQLite's busy wait
            start = time.perf_counter()
            seed.stop()  # timeout=2.0, as in WP01
            samples.append(time.perf_counter() - start)
            left_running = left_running or seed.is_running
        seed.join()  # the lock is gone: its check returns, the loop sees the event
    return samples, left_running


async def run(ctx: Context) -> FigureResult:
    result = FigureResult("3. Against the seed's thread design")
    with work_dir(ctx.root) as directory:
        database = make_database(directory / "app.db")
        health_file = directory / "health.json"
        service = healthfile.AsyncHealthService(
            database, health_file=health_file, interval=3600.0, pyproject=None, app_version="1"
        )
        ours: list[float] = []
        theirs: list[float] = []
        await service.start()
        try:
            await atimed(service.check_now, 0, warmup=30)
            for _ in range(ctx.n(5, 2)):
                ours += await atimed(service.check_now, ctx.n(100, 40), warmup=0)
                theirs += _seed_cycles(directory, database, ctx.n(100, 40))
        finally:
            await service.stop()
        pairs = ctx.n(100, 30)
        ours_stop, _ = await stop_idle(database, health_file, pairs)
        theirs_stop = _seed_stop_idle(directory, database, pairs)
        ours_locked = await stop_locked(database, health_file, ctx.n(10, 4))
        theirs_locked, left_running = _seed_stop_locked(directory, database, 1)

    result.rows.append(
        Row(
            "3. cycle cost, median: healthfile vs seed thread (plain write, no fsync)",
            fmt_time(median(ours)),
            fmt_time(median(theirs)),
            median(ours) / median(theirs),
        )
    )
    lag = ctx.shared.get("lag")
    if isinstance(lag, dict):
        for index, label in ((1, "p99"), (2, "max")):
            ours_lag, theirs_lag = lag["healthfile"][index], lag["seed thread"][index]
            result.rows.append(
                Row(
                    f"3. host loop lag {label} at 100 Hz: healthfile vs seed thread",
                    fmt_time(ours_lag),
                    fmt_time(theirs_lag),
                    ours_lag / theirs_lag,
                )
            )
    result.rows += [
        Row(
            "3. stop latency, idle (median): healthfile vs seed thread",
            fmt_time(median(ours_stop)),
            fmt_time(median(theirs_stop)),
            median(ours_stop) / median(theirs_stop),
        ),
        Row(
            "3. stop latency, mid-check on a locked database: healthfile vs seed thread",
            fmt_time(median(ours_locked)),
            fmt_time(median(theirs_locked)) + (" (thread left running)" if left_running else ""),
            median(ours_locked) / median(theirs_locked),
        ),
    ]
    notes = [
        f"Cycle cost, interleaved blocks: healthfile `check_now()` median "
        f"{fmt_time(median(ours))} (p99 {fmt_time(percentile(ours, 99))}), seed "
        f"check-and-write median {fmt_time(median(theirs))} (p99 "
        f"{fmt_time(percentile(theirs, 99))}). The seed's plain `open(..., 'w')` + "
        "`json.dump` is neither atomic (a reader can see a half-written file) nor durable "
        "(no fsync): its cycle is cheaper than the floor of figure 1, which it does not meet.",
        "",
    ]
    if isinstance(lag, dict):
        seed_lag, our_lag, idle_lag = lag["seed thread"], lag["healthfile"], lag["idle"]
        notes += [
            f"Host loop lag at 100 Hz (figure 2's run): seed p50/p99/max "
            f"{fmt_time(seed_lag[0])} / {fmt_time(seed_lag[1])} / {fmt_time(seed_lag[2])}, "
            f"healthfile {fmt_time(our_lag[0])} / {fmt_time(our_lag[1])} / "
            f"{fmt_time(our_lag[2])}, idle {fmt_time(idle_lag[0])} / {fmt_time(idle_lag[1])}"
            f" / {fmt_time(idle_lag[2])}; seed p99 / idle p99 = "
            f"{seed_lag[1] / idle_lag[1]:.2f}{TIMES}.",
            "",
        ]
    else:
        notes += ["Lag: run figure 2 in the same run to compare (it measures the seed too).", ""]
    notes += [
        f"Stop, idle: healthfile median {fmt_time(median(ours_stop))} (it writes the final "
        f"`stopped` report durably), seed median {fmt_time(median(theirs_stop))} (sets the "
        "event and joins; it writes no final report).",
        "",
        f"Stop, mid-check on a locked database: healthfile median "
        f"{fmt_time(median(ours_locked))} over {len(ours_locked)} runs; seed "
        f"{fmt_time(median(theirs_locked))} over {len(theirs_locked)} run(s): its thread "
        "waits in SQLite's busy handler (3 s), `join(timeout=2.0)` gives up"
        + (", and the thread was still running after `stop()` returned." if left_running else "."),
    ]
    result.notes = notes
    return result
