"""Figure 1: the cost of one cycle (`check_now()`) against the synchronous floor, broken down.

The floor does the same work inline, in the calling thread: a read-only URI connect, the
schema read, close; then the durable atomic replacement (O_EXCL temp, write, fchmod, fsync,
rename, directory fsync). healthfile must do that work too (a durable file, a real read);
what it adds on top is the price of keeping it off the event loop.

Two services run side by side, in interleaved blocks with the floor: healthfile as it is
(the database attached per cycle to one long-lived connection) and healthfile reading the
database as its fallback does (a fresh aiosqlite connection, so a new thread, per cycle: the
design before the long-lived connection).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiosqlite
from _common import (
    PROBE_QUERY,
    TIMES,
    Context,
    FigureResult,
    LoopBusyMeter,
    Row,
    atimed,
    floor_cycle,
    floor_probe,
    fmt_time,
    fresh_connection_per_cycle,
    make_database,
    markdown_table,
    mean,
    median,
    readonly_uri,
    timed,
    work_dir,
)

import healthfile
from healthfile._report import HealthReport
from healthfile._writer import AtomicWriter

TARGET = 1.5

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _noop() -> None:
    return None


def _floor_write_pieces(directory: Path, data: bytes) -> dict[str, float]:
    """The floor's file replacement with a timestamp after each step."""
    t0 = time.perf_counter()
    dir_fd = os.open(directory, _DIR_FLAGS)
    temp = f".pieces.json.{secrets.token_hex(8)}.tmp"
    fd = os.open(temp, _CREATE_FLAGS, 0o600, dir_fd=dir_fd)
    os.write(fd, data)
    os.fchmod(fd, 0o644)
    t1 = time.perf_counter()
    os.fsync(fd)
    t2 = time.perf_counter()
    os.close(fd)
    os.replace(temp, "pieces.json", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    t3 = time.perf_counter()
    os.fsync(dir_fd)
    t4 = time.perf_counter()
    os.close(dir_fd)
    return {
        "open dir, create temp O_EXCL, write, fchmod": t1 - t0,
        "fsync(temp file)": t2 - t1,
        "close, rename": t3 - t2,
        "fsync(directory)": t4 - t3,
    }


def _sqlite3_pieces(uri: str) -> dict[str, float]:
    t0 = time.perf_counter()
    connection = sqlite3.connect(uri, uri=True, timeout=0.01)
    t1 = time.perf_counter()
    connection.execute(PROBE_QUERY).fetchall()
    t2 = time.perf_counter()
    connection.close()
    t3 = time.perf_counter()
    return {"connect (ro URI)": t1 - t0, "schema query": t2 - t1, "close": t3 - t2}


async def _aiosqlite_pieces(uri: str) -> dict[str, float]:
    """One plain aiosqlite probe (a fresh connection), timed piece by piece (private attributes)."""
    t0 = time.perf_counter()
    connection = aiosqlite.connect(uri, uri=True, timeout=0.01)
    t1 = time.perf_counter()
    connection._thread.start()  # what `await connection` does first, on the loop
    t2 = time.perf_counter()
    _ = await connection._connect()
    t3 = time.perf_counter()
    await connection.execute_fetchall(PROBE_QUERY)
    t4 = time.perf_counter()
    await connection.close()
    t5 = time.perf_counter()
    return {
        "Connection() object": t1 - t0,
        "Thread.start() (blocks the loop until the thread runs)": t2 - t1,
        "connect hop": t3 - t2,
        "query hop": t4 - t3,
        "close: close hop + thread-stop hop": t5 - t4,
    }


def _attached_pieces(memory: sqlite3.Connection, uri: str) -> dict[str, float]:
    t0 = time.perf_counter()
    memory.execute("ATTACH DATABASE ? AS probe", (uri,))
    t1 = time.perf_counter()
    memory.execute("SELECT count(*) FROM probe.sqlite_master").fetchall()
    t2 = time.perf_counter()
    memory.execute("DETACH DATABASE probe")
    t3 = time.perf_counter()
    return {"ATTACH (opens the file)": t1 - t0, "schema query": t2 - t1, "DETACH": t3 - t2}


async def _aiosqlite_probe(uri: str) -> None:
    async with aiosqlite.connect(uri, uri=True, timeout=0.01) as connection:
        await connection.execute_fetchall(PROBE_QUERY)


async def _aiosqlite_probe_stop(uri: str) -> None:
    """aiosqlite kept, one hop fewer: `stop()` closes the connection and ends the thread."""
    connection = await aiosqlite.connect(uri, uri=True, timeout=0.01)
    try:
        await connection.execute_fetchall(PROBE_QUERY)
    finally:
        stopped = connection.stop()
        if stopped is not None:
            await stopped


@contextmanager
def _instrumented(service: healthfile.AsyncHealthService) -> Iterator[dict[str, float]]:
    """Time, inside real cycles, the database check, the file hop and the JSON rendering.

    Wraps the service's own check and writer objects (instance attributes) and
    ``HealthReport.to_json`` for the duration; everything is restored on exit.
    """
    spent = {"check": 0.0, "write": 0.0, "render": 0.0}
    check = service.checks[0]
    writer = service._publisher.writer
    check_run, writer_replace, to_json = check.run, writer.replace, HealthReport.to_json

    async def run() -> object:
        start = time.perf_counter()
        try:
            return await check_run()
        finally:
            spent["check"] += time.perf_counter() - start

    async def replace(data: Any, **options: Any) -> None:
        start = time.perf_counter()
        try:
            await writer_replace(data, **options)
        finally:
            spent["write"] += time.perf_counter() - start

    def render(report: HealthReport) -> str:
        start = time.perf_counter()
        try:
            return to_json(report)
        finally:
            spent["render"] += time.perf_counter() - start

    check.run = run  # type: ignore[method-assign,assignment]
    writer.replace = replace  # type: ignore[method-assign]
    HealthReport.to_json = render  # type: ignore[method-assign,assignment]
    try:
        yield spent
    finally:
        del check.run
        del writer.replace
        HealthReport.to_json = to_json  # type: ignore[method-assign]


async def _pieces_median(fn: object, repeat: int, is_async: bool = False) -> dict[str, float]:
    samples: dict[str, list[float]] = {}
    for i in range(repeat + 20):
        pieces = await fn() if is_async else fn()  # type: ignore[operator]
        if i >= 20:
            for key, value in pieces.items():
                samples.setdefault(key, []).append(value)
    return {key: median(values) for key, values in samples.items()}


def _service(database: Path, health_file: Path) -> healthfile.AsyncHealthService:
    return healthfile.AsyncHealthService(
        database,
        health_file=health_file,
        interval=3600.0,
        pyproject=None,
        app_version="1.0.0",
    )


async def run(ctx: Context) -> FigureResult:
    result = FigureResult("1. Cycle cost against the synchronous floor")
    loop = asyncio.get_running_loop()
    with work_dir(ctx.root) as directory:
        database = make_database(directory / "app.db")
        uri = readonly_uri(database)
        service = _service(database, directory / "health.json")
        fresh = _service(database, directory / "fresh.json")
        fresh_connection_per_cycle(fresh)
        await service.start()
        await fresh.start()
        try:
            report = service.last_report
            assert report is not None
            data = report.to_json().encode("utf-8")

            def floor() -> None:
                floor_cycle(uri, directory, "floor.json", data)

            # Interleaved blocks, so that drift of the machine hits every side alike.
            rounds, block = ctx.n(10, 3), ctx.n(100, 40)
            await atimed(service.check_now, 0, warmup=50)
            await atimed(fresh.check_now, 0, warmup=50)
            timed(floor, 0, warmup=50)
            cycles: list[float] = []
            fresh_cycles: list[float] = []
            floors: list[float] = []
            for _ in range(rounds):
                cycles += await atimed(service.check_now, block, warmup=0)
                fresh_cycles += await atimed(fresh.check_now, block, warmup=0)
                floors += timed(floor, block, warmup=0)

            # Where the time goes inside real cycles, and how long the loop is busy.
            n_in = ctx.n(500, 150)
            with _instrumented(service) as spent, LoopBusyMeter(loop) as meter:
                started = time.perf_counter()
                for _ in range(n_in):
                    await service.check_now()
                in_cycle = (time.perf_counter() - started) / n_in
            with LoopBusyMeter(loop) as fresh_meter:
                for _ in range(n_in):
                    await fresh.check_now()

            # Each piece timed on its own.
            n = ctx.n(300, 80)
            pieces_sqlite3 = await _pieces_median(lambda: _sqlite3_pieces(uri), n)
            memory = sqlite3.connect(":memory:", uri=True, isolation_level=None)
            try:
                pieces_attached = await _pieces_median(lambda: _attached_pieces(memory, uri), n)
            finally:
                memory.close()
            pieces_write = await _pieces_median(lambda: _floor_write_pieces(directory, data), n)
            try:
                pieces_aiosqlite: dict[str, float] | None = await _pieces_median(
                    lambda: _aiosqlite_pieces(uri), n, is_async=True
                )
            except AttributeError:  # aiosqlite's internals changed: only the total below
                pieces_aiosqlite = None
            floor_probe_t = median(timed(lambda: floor_probe(uri), n))
            hop = median(await atimed(lambda: loop.run_in_executor(None, _noop), n))
            thread_start = median(timed(lambda: threading.Thread(target=_noop).start(), n))
            aiosqlite_total = median(await atimed(lambda: _aiosqlite_probe(uri), n))
            aiosqlite_stop = median(await atimed(lambda: _aiosqlite_probe_stop(uri), n))
            check_attached = median(await atimed(service.checks[0].run, n))
            check_fresh = median(await atimed(fresh.checks[0].run, n))
            writer = AtomicWriter(directory / "writer.json")
            writer_hop = median(await atimed(lambda: writer.replace(data), n))
            writer_inline = median(timed(lambda: writer.replace_sync(data), n))
            render = median(timed(lambda: report.to_json().encode("utf-8"), n * 10))

        finally:
            await fresh.stop()
            await service.stop()

    cycle_mean, floor_mean = mean(cycles), mean(floors)
    cycle_med, floor_med = median(cycles), median(floors)
    fresh_mean, fresh_med = mean(fresh_cycles), median(fresh_cycles)
    result.rows += [
        Row(
            "1. cycle cost, mean (`check_now()` vs inline floor)",
            fmt_time(cycle_mean),
            fmt_time(floor_mean),
            cycle_mean / floor_mean,
            f"≤ {TARGET}{TIMES}",
            cycle_mean / floor_mean <= TARGET,
            key="cycle_mean",
        ),
        Row(
            "1. cycle cost, median",
            fmt_time(cycle_med),
            fmt_time(floor_med),
            cycle_med / floor_med,
            f"≤ {TARGET}{TIMES}",
            cycle_med / floor_med <= TARGET,
            key="cycle_median",
        ),
        Row(
            "1. cycle cost, median, vs a fresh connection per cycle (the fallback; the "
            "design before)",
            fmt_time(cycle_med),
            fmt_time(fresh_med),
            cycle_med / fresh_med,
            key="cycle_vs_fresh",
        ),
        Row(
            "1. cycle cost, median, a fresh connection per cycle vs inline floor",
            fmt_time(fresh_med),
            fmt_time(floor_med),
            fresh_med / floor_med,
            f"≤ {TARGET}{TIMES}",
            fresh_med / floor_med <= TARGET,
            key="cycle_fresh_median",
        ),
    ]

    per = {key: value / n_in for key, value in spent.items()}
    rest = in_cycle - per["check"] - per["write"]  # rendering runs inside the write's hop
    share = [
        (
            "database check: `SQLiteCheck.run()` (one hop to the long-lived connection's "
            "thread: attach, read the schema, detach)",
            per["check"],
        ),
        (
            "file: `AtomicWriter.replace()` (one executor hop: rendering, write, fsyncs, rename)",
            per["write"],
        ),
        ("of which JSON rendering (`HealthReport.to_json()`, in that hop)", per["render"]),
        ("the rest: cycle task, lock, check task, one wait for the checks, report", rest),
    ]
    floor_write_t = sum(pieces_write.values())
    fsyncs = pieces_write["fsync(temp file)"] + pieces_write["fsync(directory)"]
    result.facts = {
        "target": TARGET,
        "floor_median": floor_med,
        "floor_probe": floor_probe_t,
        "floor_write": floor_write_t,
        "floor_fsyncs": fsyncs,
        "in_cycle": in_cycle,
        "part_check": per["check"],
        "part_write": per["write"],
        "part_render": per["render"],
        "part_rest": rest,
        "hop": hop,
        "thread_start": thread_start,
        "loop_busy": meter.busy / n_in if meter.available else 0.0,
        "loop_iterations": meter.iterations / n_in if meter.available else 0.0,
        "loop_busy_fresh": fresh_meter.busy / n_in if fresh_meter.available else 0.0,
        "check_attached": check_attached,
        "check_fresh": check_fresh,
        "writer_inline": writer_inline,
        "writer_hop": writer_hop,
    }
    lines = [
        f"`check_now()` median {fmt_time(cycle_med)}, mean {fmt_time(cycle_mean)}; with a "
        f"fresh connection per cycle median {fmt_time(fresh_med)}, mean "
        f"{fmt_time(fresh_mean)}; floor median {fmt_time(floor_med)}, mean "
        f"{fmt_time(floor_mean)} ({len(cycles)} cycles each, interleaved in {rounds} "
        "blocks). The floor itself is "
        f"{fmt_time(floor_probe_t)} of SQLite and {fmt_time(floor_write_t)} of file "
        f"replacement, {fmt_time(fsyncs)} of it the two fsyncs.",
        "",
        f"**Where a cycle's time goes**, measured inside {n_in} real cycles (mean "
        f"{fmt_time(in_cycle)} each, wrapped timers on the service's own objects):",
        "",
        markdown_table(
            ["part of `check_now()`", "mean per cycle", "share"],
            [[name, fmt_time(t), f"{t / in_cycle:.0%}"] for name, t in share],
        ),
        "",
    ]
    if meter.available:
        lines += [
            f"The event loop is busy (outside `select()`) {fmt_time(meter.busy / n_in)} per "
            f"cycle over {meter.iterations / n_in:.0f} loop iterations; with a fresh "
            f"connection per cycle {fmt_time(fresh_meter.busy / n_in)} over "
            f"{fresh_meter.iterations / n_in:.0f}. "
            "Busy time includes waiting for the GIL and for `Thread.start()`.",
            "",
        ]
    lines += [
        markdown_table(
            ["the database check alone", "median"],
            [
                [
                    "`SQLiteCheck.run()`, attached: one hop (attach, schema read, detach)",
                    fmt_time(check_attached),
                ],
                [
                    "`SQLiteCheck.run()`, fresh connection: thread start, a hop to open and "
                    "read, a hop to close and end the thread",
                    fmt_time(check_fresh),
                ],
                ["inline sqlite3 probe (the floor's)", fmt_time(floor_probe_t)],
            ]
            + [
                [f"inline on a `:memory:` connection: {name}", fmt_time(t)]
                for name, t in pieces_attached.items()
            ],
        ),
        "",
    ]
    if pieces_aiosqlite is not None:
        lines += [
            markdown_table(
                ["aiosqlite used plainly (connect, query, `close()`), piece by piece", "median"],
                [[name, fmt_time(t)] for name, t in pieces_aiosqlite.items()]
                + [
                    ["total (`async with` connect, query, close)", fmt_time(aiosqlite_total)],
                ],
            ),
            "",
        ]
    lines += [
        markdown_table(
            ["the floor alone, piece by piece", "median"],
            [[f"sqlite3 {name}", fmt_time(t)] for name, t in pieces_sqlite3.items()]
            + [["sqlite3 probe, total", fmt_time(floor_probe_t)]]
            + [[name, fmt_time(t)] for name, t in pieces_write.items()],
        ),
        "",
        markdown_table(
            ["unit costs", "median"],
            [
                ["one executor hop (`run_in_executor(None, noop)`)", fmt_time(hop)],
                ["`threading.Thread(...).start()`, on the caller", fmt_time(thread_start)],
                ["`AtomicWriter.replace_sync()` inline", fmt_time(writer_inline)],
                ["`AtomicWriter.replace()` from the loop", fmt_time(writer_hop)],
                [
                    "aiosqlite probe minus inline sqlite3 probe",
                    fmt_time(aiosqlite_total - floor_probe_t),
                ],
                [
                    "aiosqlite probe ending with `stop()` instead of `close()` (one hop fewer)",
                    fmt_time(aiosqlite_stop),
                ],
                ["JSON rendering alone", fmt_time(render)],
            ],
        ),
    ]
    result.notes = lines
    return result
