"""Figure 5: cycles with 1, 10, 100 and 1000 async checks of 50 ms each.

Every check is ``healthfile.check(name, fn)`` with ``async def fn(): await
asyncio.sleep(0.05)``, next to the real database check. Checks run concurrently, so a cycle
should take about as long as the slowest check (50 ms), not the sum (N * 50 ms). The
baseline for CPU is bare asyncio doing the least a runner of N timed checks must do:
``gather`` of N ``wait_for(fn(), timeout)``.
"""

from __future__ import annotations

import asyncio
import time

from _common import (
    TIMES,
    Context,
    FigureResult,
    Row,
    fmt_bytes,
    fmt_time,
    make_database,
    markdown_table,
    median,
    timed,
    work_dir,
)

import healthfile

CHECK_SECONDS = 0.05
TARGET = 1.2  # "close to the slowest check": within 20 % of it (this benchmark's reading)


async def _sleep_check() -> None:
    await asyncio.sleep(CHECK_SECONDS)


async def _bare(count: int) -> None:
    await asyncio.gather(*(asyncio.wait_for(_sleep_check(), 3.0) for _ in range(count)))


async def _measure(fn: object, cycles: int) -> tuple[list[float], float]:
    """Wall times of ``cycles`` awaits of ``fn()`` after two warm-ups, and CPU per cycle."""
    for _ in range(2):
        await fn()  # type: ignore[operator]
    walls = []
    cpu = time.process_time()
    for _ in range(cycles):
        start = time.perf_counter()
        await fn()  # type: ignore[operator]
        walls.append(time.perf_counter() - start)
    return walls, (time.process_time() - cpu) / cycles


async def run(ctx: Context) -> FigureResult:
    result = FigureResult("5. Scale of checks (N async checks of 50 ms)")
    table = []
    with work_dir(ctx.root) as directory:
        database = make_database(directory / "app.db")
        for count in (1, 10, 100, 1000):
            cycles = ctx.n(20 if count < 1000 else 12, 5)
            service = healthfile.AsyncHealthService(
                database,
                health_file=directory / f"health-{count}.json",
                interval=3600.0,
                pyproject=None,
                app_version="1.0.0",
                checks=[healthfile.check(f"slow-{i}", _sleep_check) for i in range(count)],
            )
            await service.start()
            try:
                walls, cpu = await _measure(service.check_now, cycles)
                bare_walls, bare_cpu = await _measure(lambda n=count: _bare(n), cycles)
                report = service.last_report
                assert report is not None
                render = median(timed(report.to_json, 5, warmup=1))
                size = (directory / f"health-{count}.json").stat().st_size
            finally:
                await service.stop()
            wall = median(walls)
            ratio = wall / CHECK_SECONDS
            result.rows.append(
                Row(
                    f"5. cycle wall time, {count} check{'s' if count > 1 else ''} of 50 ms "
                    "(baseline: the slowest check)",
                    fmt_time(wall),
                    fmt_time(CHECK_SECONDS),
                    ratio,
                    f"≤ {TARGET}{TIMES}",
                    ratio <= TARGET,
                    key=f"scale_{count}",
                )
            )
            if count == 1000:
                bare_wall = median(bare_walls)
                result.rows.append(
                    Row(
                        "5. cycle wall time, 1000 checks (baseline: bare asyncio gather + "
                        "wait_for of the same 1000 sleeps)",
                        fmt_time(wall),
                        fmt_time(bare_wall),
                        wall / bare_wall,
                        key="scale_1000_bare",
                    )
                )
                result.facts = {
                    "check_seconds": CHECK_SECONDS,
                    "bare_1000": bare_wall,
                    "cpu_per_check": cpu / count,
                    "bare_cpu_per_check": bare_cpu / count,
                }
                result.rows.append(
                    Row(
                        "5. CPU per cycle per check, 1000 checks (baseline: bare asyncio "
                        "gather + wait_for)",
                        fmt_time(cpu / count),
                        fmt_time(bare_cpu / count),
                        cpu / bare_cpu,
                        key="scale_1000_cpu",
                    )
                )
            table.append(
                [
                    str(count),
                    fmt_time(wall),
                    f"{ratio:.2f}{TIMES}",
                    fmt_time(median(bare_walls)),
                    fmt_time(cpu),
                    fmt_time(cpu / count),
                    fmt_time(bare_cpu / count),
                    fmt_time(render),
                    fmt_bytes(size),
                ]
            )
    result.notes = [
        "Medians over the cycles of each size; CPU is `time.process_time()` (all threads of "
        "the process) per cycle, and per check.",
        "",
        markdown_table(
            [
                "checks",
                "cycle wall",
                "/ 50 ms",
                "bare asyncio wall",
                "CPU / cycle",
                "CPU / check",
                "bare CPU / check",
                "JSON rendering",
                "health file",
            ],
            table,
        ),
        "",
        "The sum of the checks would be N * 50 ms (50 s for 1000): every size runs its checks "
        "concurrently. What a cycle adds on top of the slowest check grows with N: a task and "
        "a result per check (one wait covers them all, and one timer per distinct timeout; "
        "bare asyncio's `wait_for` pays a task and a timer per check, see its column), and "
        "the rendering of an N-entry `checks` object (`as_dict` with a `strftime` per check, "
        "then the pure-Python JSON encoder, since `indent=2` bypasses the C one). The "
        "rendering runs in the write's executor hop, off the loop, but it holds the GIL.",
    ]
    return result
