"""Figure 8: the sidecar's cycle, a config of cheap checks, against the same work in bare asyncio.

A config file with 20 checks of each cheap type, loaded by `healthfile run --config`'s own
loader: `tcp` to a local listener, `file-age` on 20 touched files, `command` running
`true`. healthfile's side is `await service.check_now()`: every check under its timeout,
the `stat` in a daemon thread (it can hang on NFS), each program in a process group of its
own and reaped, then the durable write of the health file. The baseline is the least bare
asyncio can do for the same checks: `asyncio.gather` of `open_connection` (closed at once),
an inline `os.stat`, and `create_subprocess_exec` (output piped and read, the process
awaited), and no file written. The command check's floor is the process start itself
(fork/exec of `true`), which neither side can avoid.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path

from _common import (
    TIMES,
    Context,
    FigureResult,
    Row,
    fmt_time,
    markdown_table,
    median,
    work_dir,
)

import healthfile
from healthfile._cli import _run_option_parsers
from healthfile._config import load_config

COUNT = 20
TYPES = ("tcp", "file-age", "command")


def _config_text(kind: str, port: int, directory: Path, true: str, *, database: bool) -> str:
    """A config of COUNT checks of ``kind``; with ``database``, the first is the database."""
    tables = []
    for index in range(COUNT):
        name = "database" if database and index == 0 else f"{kind}-{index}"
        if kind == "tcp":
            keys = f'host = "127.0.0.1"\nport = {port}'
        elif kind == "file-age":
            keys = f'path = "{directory / f"heartbeat-{index}"}"\nmax_age = 3600'
        else:
            keys = f'argv = ["{true}"]'
        tables.append(f'[[check]]\nname = "{name}"\ntype = "{kind}"\n{keys}\n')
    return "\n".join(tables)


async def _bare(kind: str, port: int, directory: Path, true: str) -> None:
    """The same COUNT checks of ``kind`` done by bare asyncio, concurrently."""

    async def tcp() -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        await writer.wait_closed()

    async def stat(index: int) -> None:
        os.stat(directory / f"heartbeat-{index}")

    async def command() -> None:
        process = await asyncio.create_subprocess_exec(
            true, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        await process.communicate()

    if kind == "tcp":
        await asyncio.gather(*(tcp() for _ in range(COUNT)))
    elif kind == "file-age":
        await asyncio.gather(*(stat(index) for index in range(COUNT)))
    else:
        await asyncio.gather(*(command() for _ in range(COUNT)))


async def _bare_all(port: int, directory: Path, true: str) -> None:
    await asyncio.gather(*(_bare(kind, port, directory, true) for kind in TYPES))


async def _series(fn: object, cycles: int) -> list[float]:
    """Wall times of ``cycles`` awaits of ``fn()``."""
    samples = []
    for _ in range(cycles):
        started = time.perf_counter()
        await fn()  # type: ignore[operator]
        samples.append(time.perf_counter() - started)
    return samples


async def _compare(
    service: healthfile.AsyncHealthService, bare: object, ctx: Context
) -> tuple[list[float], list[float]]:
    """Interleaved blocks of healthfile cycles and bare runs, after warm-ups."""
    for _ in range(3):
        await service.check_now()
        await bare()  # type: ignore[operator]
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(ctx.n(10, 3)):
        ours += await _series(service.check_now, ctx.n(10, 5))
        theirs += await _series(bare, ctx.n(10, 5))
    return ours, theirs


async def run(ctx: Context) -> FigureResult:
    result = FigureResult("8. The sidecar: a config of cheap checks against bare asyncio")
    true = shutil.which("true") or "/bin/true"
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    table = []
    try:
        with work_dir(ctx.root) as directory:
            for index in range(COUNT):
                (directory / f"heartbeat-{index}").touch()
            sets = [(kind, [kind]) for kind in TYPES] + [("all three", list(TYPES))]
            for label, kinds in sets:
                config = directory / f"{label.replace(' ', '-')}.toml"
                texts = [
                    _config_text(kind, port, directory, true, database=kind == kinds[0])
                    for kind in kinds
                ]
                config.write_text("\n".join(texts), encoding="utf-8")
                loaded = load_config(str(config), _run_option_parsers())
                service = healthfile.AsyncHealthService(
                    loaded.database,
                    checks=loaded.checks,
                    health_file=directory / "health.json",
                    interval=3600.0,
                    pyproject=None,
                    app_version="1.0.0",
                    app_name="sidecar",
                )
                if len(kinds) == 1:
                    kind = kinds[0]

                    async def bare(kind: str = kind) -> None:
                        await _bare(kind, port, directory, true)

                else:

                    async def bare(kind: str = "") -> None:
                        await _bare_all(port, directory, true)

                await service.start()
                try:
                    report = service.last_report
                    assert report is not None
                    failing = [n for n, r in report.checks.items() if r.status != "pass"]
                    assert not failing, f"{label}: {failing} do not pass"
                    ours, theirs = await _compare(service, bare, ctx)
                    if kinds == ["file-age"]:
                        _, threaded = await _compare(service, _stat_in_threads(directory), ctx)
                finally:
                    await service.stop()
                count = COUNT * len(kinds)
                if kinds == ["file-age"]:
                    stat_cycles = ours
                ratio = median(ours) / median(theirs)
                what = f"{count} {label} checks" if len(kinds) == 1 else f"{count} checks, all"
                result.rows.append(
                    Row(
                        f"8. sidecar cycle, {what} (baseline: bare asyncio gather, no file)",
                        fmt_time(median(ours)),
                        fmt_time(median(theirs)),
                        ratio,
                    )
                )
                table.append(
                    [
                        label,
                        str(count),
                        fmt_time(median(ours)),
                        fmt_time(median(theirs)),
                        f"{ratio:.2f}{TIMES}",
                        fmt_time((median(ours) - median(theirs)) / count),
                    ]
                )
            one = await _series(lambda: _single_process(true), ctx.n(50, 10))
            result.rows.append(
                Row(
                    f"8. sidecar cycle, {COUNT} file-age checks (baseline: bare asyncio gather of "
                    "os.stat in asyncio.to_thread, no file)",
                    fmt_time(median(stat_cycles)),
                    fmt_time(median(threaded)),
                    median(stat_cycles) / median(threaded),
                )
            )
    finally:
        server.close()
        await server.wait_closed()
    result.notes = [
        "Medians of interleaved blocks; healthfile's cycle includes the durable write of the "
        "health file (about 1 ms on this disk), the baseline writes nothing.",
        "",
        markdown_table(
            [
                "checks",
                "count",
                "healthfile cycle",
                "bare asyncio",
                "ratio",
                "healthfile's extra per check",
            ],
            table,
        ),
        "",
        "A file-age check reads the file's time in a fresh daemon thread of its own (a stat "
        "can hang on NFS, and a hung thread must neither be shared nor hold the exit): the "
        "thread start is most of its cost, as the row against `asyncio.to_thread` (a pool "
        "of warm threads, which a hung stat would block) shows.",
        "",
        f"The floor of a command check is the process start: one `true` started and awaited "
        f"alone by bare asyncio takes {fmt_time(median(one))} (median); 20 of them at once "
        "queue for the two CPUs, whoever starts them. What healthfile adds per command is "
        "a session of its own (`setsid` in the child), the kill of what is left of the "
        "group when the program exits, and the reaping.",
    ]
    return result


def _stat_in_threads(directory: Path) -> object:
    """Bare asyncio's off-loop stat: COUNT ``os.stat`` in the default executor, concurrently."""

    async def stats() -> None:
        await asyncio.gather(
            *(asyncio.to_thread(os.stat, directory / f"heartbeat-{i}") for i in range(COUNT))
        )

    return stats


async def _single_process(true: str) -> None:
    process = await asyncio.create_subprocess_exec(
        true, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    await process.communicate()
