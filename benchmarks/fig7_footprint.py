"""Figure 7: what a running service costs in memory and threads, and whether memory grows.

Each measurement runs in a fresh interpreter (this file run as a worker), so that nothing
else the benchmarks did is counted. RSS is VmRSS and threads are Threads of
/proc/self/status.

- footprint: RSS and threads of a process with a running event loop, before healthfile is
  imported, after the import, and with a service running (after 50 cycles and a pause, with
  whatever threads a cycle leaves behind).
- growth: ``check_now()`` in a loop, RSS sampled every 1000 cycles, on tmpfs (/dev/shm,
  database and health file both, to go faster), and every thread started after ``start()``
  counted (a wrapper around ``threading.Thread.start``). healthfile as it is runs its 100k
  cycles (about half a millisecond each there); the same with the database read by a fresh
  connection per cycle (the check's fallback, the design before: a new thread per cycle,
  1.2 ms or more) runs for a time budget, and its growth over 100k cycles is extrapolated
  from the slope (least squares over the samples after a 2000-cycle warm-up) — the table
  says which. A short diagnostic soak follows: the fresh connection per cycle with
  ``MALLOC_ARENA_MAX=1``.

The original thread design and a lean worker-thread prototype, once measured alongside, are in
docs/design/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import cast

from _common import (
    BENCH_DIR,
    VENV_BIN,
    Context,
    FigureResult,
    Row,
    fmt_bytes,
    fresh_connection_per_cycle,
    make_database,
    markdown_table,
    rss_bytes,
    thread_count,
    work_dir,
)

# stage ("before", "imported", "running", "stopped") -> {"rss": bytes, "threads": count}
Stages = dict[str, dict[str, int]]

SOAK_CYCLES = 100_000
FRESH = "fresh connection per cycle (the design before)"
SOAK_WARMUP = 2_000
SOAK_SAMPLE = 1_000


def _snapshot() -> dict[str, int]:
    gc.collect()
    return {"rss": rss_bytes(), "threads": thread_count()}


async def _footprint_healthfile(directory: Path) -> Stages:
    await asyncio.sleep(0)
    before = _snapshot()
    import healthfile

    healthfile.AsyncHealthService  # noqa: B018 - imports the service, aiosqlite, aiofiles
    imported = _snapshot()
    database = make_database(directory / "app.db")
    service = healthfile.AsyncHealthService(
        database, health_file=directory / "health.json", pyproject=None, app_version="1.0.0"
    )
    await service.start()
    for _ in range(50):
        await service.check_now()
    await asyncio.sleep(0.3)
    running = _snapshot()
    await service.stop()
    await asyncio.sleep(0.3)
    stopped = _snapshot()
    return {"before": before, "imported": imported, "running": running, "stopped": stopped}


async def _soak(directory: Path, budget: float, fresh: bool) -> dict[str, object]:
    """Run cycles back to back until 100k or ``budget`` seconds; sample RSS every 1000."""
    database = make_database(directory / "app.db")
    import healthfile

    service = healthfile.AsyncHealthService(
        database,
        health_file=directory / "health.json",
        interval=3600.0,
        pyproject=None,
        app_version="1.0.0",
    )
    if fresh:
        fresh_connection_per_cycle(service)
    await service.start()
    threads = _count_thread_starts()
    samples: list[tuple[int, int]] = []
    started = time.perf_counter()
    cycles = 0
    try:
        while cycles < SOAK_CYCLES:
            await service.check_now()
            cycles += 1
            if cycles % SOAK_SAMPLE == 0:
                samples.append((cycles, rss_bytes()))
                if time.perf_counter() - started > budget and cycles >= 3 * SOAK_WARMUP:
                    break
    finally:
        started_threads = threads[0]
        await service.stop()
    return {
        "cycles": cycles,
        "seconds": time.perf_counter() - started,
        "samples": samples,
        "threads_started": started_threads,
    }


def _count_thread_starts() -> list[int]:
    """Count every thread started from now on (this worker process only), keeping none."""
    started = [0]
    start = threading.Thread.start

    def counting(thread: threading.Thread) -> None:
        started[0] += 1
        start(thread)

    threading.Thread.start = counting  # type: ignore[method-assign]
    return started


def _worker(argv: list[str]) -> None:
    kind, directory = argv[0], Path(argv[1])
    if kind == "healthfile":
        out: object = asyncio.run(_footprint_healthfile(directory))
    else:
        out = asyncio.run(_soak(directory, float(argv[2]), kind == "soak-fresh"))
    print(json.dumps(out))


def _spawn(*args: str, env: dict[str, str] | None = None) -> dict[str, object]:
    done = subprocess.run(
        [str(VENV_BIN / "python"), str(Path(__file__).resolve()), *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=BENCH_DIR,
        env=None if env is None else {**os.environ, **env},
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


class Soak:
    """One soak run's samples and the growth they show."""

    def __init__(self, raw: dict[str, object]) -> None:
        self.cycles = int(raw["cycles"])  # type: ignore[call-overload]
        self.seconds = float(raw["seconds"])  # type: ignore[arg-type]
        samples = [(int(c), int(r)) for c, r in raw["samples"]]  # type: ignore[attr-defined]
        self.steady = [s for s in samples if s[0] >= SOAK_WARMUP] or samples
        self.measured = self.steady[-1][1] - self.steady[0][1]
        self.per_100k = _slope(self.steady) * SOAK_CYCLES
        self.threads_per_1000 = int(raw["threads_started"]) / self.cycles * 1000  # type: ignore[call-overload]


def _tmpfs() -> Path | None:
    shm = Path("/dev/shm")
    return shm if shm.is_dir() else None


def _slope(samples: list[tuple[int, int]]) -> float:
    """Least-squares bytes per cycle."""
    xs = [float(x) for x, _ in samples]
    ys = [float(y) for _, y in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


async def run(ctx: Context) -> FigureResult:
    result = FigureResult("7. Footprint")
    with work_dir(ctx.root) as directory:
        ours = cast(Stages, await asyncio.to_thread(_spawn, "healthfile", str(directory)))
    soak_root = _tmpfs()
    where = "tmpfs (/dev/shm)" if soak_root is not None else "the default temp dir"
    # healthfile's 100k cycles, the design before for a time budget, then a short diagnostic
    # soak of the design before: glibc limited to one malloc arena.
    runs = {
        "healthfile": ("soak", ctx.n(150.0, 8.0), None),
        FRESH: ("soak-fresh", ctx.n(30.0, 6.0), None),
        f"{FRESH}, MALLOC_ARENA_MAX=1": (
            "soak-fresh",
            ctx.n(12.0, 4.0),
            {"MALLOC_ARENA_MAX": "1"},
        ),
    }
    soaks: dict[str, Soak] = {}
    for name, (kind, budget, env) in runs.items():
        soak_dir = Path(tempfile.mkdtemp(prefix="healthfile-bench-", dir=soak_root))
        try:
            raw = await asyncio.to_thread(_spawn, kind, str(soak_dir), str(budget), env=env)
        finally:
            shutil.rmtree(soak_dir, ignore_errors=True)
        soaks[name] = Soak(raw)

    def added(data: Stages, key: str, since: str = "imported") -> int:
        return data["running"][key] - data[since][key]

    result.rows += [
        Row(
            "7. RSS added by a running service (after import)",
            fmt_bytes(added(ours, "rss")),
            "—",
            key="rss_added",
        ),
        Row(
            "7. threads added by a running service",
            str(added(ours, "threads")),
            "—",
            key="threads_added",
        ),
    ]
    main, fresh = soaks["healthfile"], soaks[FRESH]

    def growth(soak: Soak) -> str:
        extrapolated = soak.cycles < SOAK_CYCLES
        return f" (extrapolated from {soak.cycles // 1000}k on tmpfs)" if extrapolated else ""

    result.rows += [
        Row(
            "7. RSS growth over 100k cycles" + growth(main),
            fmt_bytes(main.per_100k),
            "—",
            None,
            "≈ 0 (< 1 MiB)",
            main.per_100k < 1024 * 1024,
            key="rss_growth",
        ),
        Row(
            "7. RSS growth over 100k cycles, a fresh connection per cycle" + growth(fresh),
            fmt_bytes(fresh.per_100k),
            "—",
            None,
            "≈ 0 (< 1 MiB)",
            fresh.per_100k < 1024 * 1024,
            key="rss_growth_fresh",
        ),
        Row(
            f"7. threads started per 1000 cycles after start() (baseline: {FRESH})",
            f"{main.threads_per_1000:g}",
            f"{fresh.threads_per_1000:g}",
            None,
            "0",
            main.threads_per_1000 == 0,
            key="threads_per_1000",
        ),
    ]
    result.facts = {
        "growth": main.per_100k,
        "growth_cycles": main.cycles,
        "growth_fresh": fresh.per_100k,
        "growth_fresh_one_arena": soaks[f"{FRESH}, MALLOC_ARENA_MAX=1"].per_100k,
        "threads_per_1000": main.threads_per_1000,
        "threads_per_1000_fresh": fresh.threads_per_1000,
    }
    soak_table = markdown_table(
        [
            "soak",
            "cycles",
            "ms / cycle",
            "threads started",
            "RSS at start",
            "RSS at end",
            "measured",
            "per 100k",
        ],
        [
            [
                name,
                str(soak.cycles),
                f"{soak.seconds / soak.cycles * 1e3:.2f}",
                f"{soak.threads_per_1000 * soak.cycles / 1000:.0f}",
                fmt_bytes(soak.steady[0][1]),
                fmt_bytes(soak.steady[-1][1]),
                fmt_bytes(soak.measured),
                fmt_bytes(soak.per_100k) + (" (extrapolated)" if soak.cycles < SOAK_CYCLES else ""),
            ]
            for name, soak in soaks.items()
        ],
    )

    def stage_rows(data: Stages) -> list[list[str]]:
        return [
            [stage, fmt_bytes(data[stage]["rss"]), str(data[stage]["threads"])]
            for stage in ("before", "imported", "running", "stopped")
        ]

    result.notes = [
        "healthfile (one process; *before*: asyncio loop running, healthfile not imported; "
        "*running*: after `start()`, 50 cycles and 0.3 s; *stopped*: 0.3 s after `stop()`):",
        "",
        markdown_table(["stage", "RSS", "threads"], stage_rows(ours)),
        "",
        f"Import of healthfile's service (aiosqlite, aiofiles, the service): "
        f"{fmt_bytes(ours['imported']['rss'] - ours['before']['rss'])} of RSS. The "
        "threads a running healthfile keeps between cycles are its worker (`healthfile-worker`:"
        " the file's writes) and the database check's long-lived connection "
        "(`healthfile-sqlite`); both end at `stop()`.",
        "",
        f"Growth, on {where}; per 100k is the least-squares slope after a {SOAK_WARMUP}-cycle "
        "warm-up (extrapolated where a soak ran for a time budget instead of 100k cycles); "
        "threads started are counted after `start()`:",
        "",
        soak_table,
        "",
        "A fresh connection per cycle starts a thread per cycle; if its row grows and its "
        "diagnostic row does not, the growth is not Python objects but glibc's per-thread "
        "malloc arenas: each cycle allocates SQLite's connection memory in whichever arena "
        "its new thread picks. healthfile's long-lived connection allocates in one thread's "
        "arena for the service's life.",
    ]
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    _worker(sys.argv[1:])
