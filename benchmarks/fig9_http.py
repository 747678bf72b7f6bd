"""Figure 9: the HTTP window: what a probe over HTTP costs, and what serving costs the host.

Throughput of ``GET /readyz`` on one health file (a real service's report, fresh for the
whole figure), each server a process of its own (``_http_serve.py``), on asyncio's loop:

- the built-in server (``AsyncHealthService(http=...)``'s: h11, ``_server.py``);
- uvicorn serving the same ``healthfile.asgi_app`` (its h11 protocol: httptools is not
  installed; no access log), the baseline: the built-in server must not be the slower;
- ``healthfile check`` exec'd per probe (what an exec probe costs), one after another.

The load generator is ``wrk`` (Debian's), 1 thread, 8 connections, for a few seconds:
keep-alive, and a new connection per request (``Connection: close``). Rounds interleave the
servers; medians of requests per second.

Then the cost to the host: an ``AsyncHealthService`` with ``http=`` on this process's loop,
cycling every 50 ms, without load and while a client process (``_http_load.py``) asks
``/readyz`` on one keep-alive connection at a steady 100 requests per second: the loop's
lag (the tests' LagProbe, a callback posted every 1 ms) and a cycle's cost
(``check_now()``), as ratios to no load.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from _common import (
    TIMES,
    VENV_BIN,
    Context,
    FigureResult,
    Row,
    fmt_time,
    make_database,
    markdown_table,
    median,
    percentile,
    work_dir,
)

import healthfile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import LagProbe

HERE = Path(__file__).resolve().parent
PYTHON = str(VENV_BIN / "python")
CONNECTIONS = 8
LOAD_RATE = 100.0  # requests per second, the steady load of the second part
LAG_TARGET = 1.2  # lag p99 and cycle cost under load, as ratios to no load
INTERVAL = 0.05


@contextlib.contextmanager
def _server(kind: str, health_file: Path) -> Iterator[tuple[int, int]]:
    """Start a server process of ``kind``; yield its port and pid; end it."""
    process = subprocess.Popen(
        [PYTHON, str(HERE / "_http_serve.py"), kind, "asyncio", str(health_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield int(process.stdout.readline()), process.pid
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()


def _cpu_seconds(pid: int) -> float:
    """User and system CPU seconds a process has used so far (Linux /proc), or NaN."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wrk(port: int, seconds: float, *, keep_alive: bool) -> tuple[float, int, str]:
    """Requests per second of wrk against /readyz, how many requests it made, and its line
    about errors (or "")."""
    argv = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s"]
    if not keep_alive:
        argv += ["-H", "Connection: close"]
    done = subprocess.run(
        [*argv, f"http://127.0.0.1:{port}/readyz"],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    )
    match = re.search(r"Requests/sec:\s+([0-9.]+)", done.stdout)
    count = re.search(r"(\d+) requests in", done.stdout)
    assert match is not None, done.stdout
    assert count is not None, done.stdout
    problems = [
        line.strip()
        for line in done.stdout.splitlines()
        if "Non-2xx" in line or "Socket errors" in line
    ]
    return float(match.group(1)), int(count.group(1)), "; ".join(problems)


def _exec_probes(health_file: Path, count: int) -> float:
    """Probes per second of `healthfile check` run one after another."""
    argv = [str(VENV_BIN / "healthfile"), "check", "--health-file", str(health_file)]
    started = time.perf_counter()
    for _ in range(count):
        subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
    return count / (time.perf_counter() - started)


@contextlib.asynccontextmanager
async def _fresh_file(directory: Path) -> AsyncIterator[Path]:
    """A health file kept fresh and online by a real service for the whole figure."""
    database = make_database(directory / "app.db")
    health_file = directory / "health.json"
    async with healthfile.AsyncHealthService(
        database, health_file=health_file, interval=5.0, pyproject=None, app_version="1.0.0"
    ):
        yield health_file


async def _throughput(ctx: Context, health_file: Path, notes: list[str]) -> dict[str, float]:
    """Median requests per second of each server and mode, and of exec'd probes."""
    loop = asyncio.get_running_loop()
    rounds, seconds = ctx.n(3, 1), ctx.n(3.0, 1.0)
    samples: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    problems: set[str] = set()
    for index in range(rounds):
        # Each round in the other order: the machine's drift hits both servers alike.
        for kind in ("builtin", "uvicorn")[:: 1 if index % 2 == 0 else -1]:
            with _server(kind, health_file) as (port, pid):
                for keep_alive in (True, False):
                    used = _cpu_seconds(pid)
                    rate, count, problem = await loop.run_in_executor(
                        None, functools.partial(_wrk, port, seconds, keep_alive=keep_alive)
                    )
                    used = _cpu_seconds(pid) - used
                    name = f"{kind} {'keep-alive' if keep_alive else 'new connections'}"
                    samples.setdefault(name, []).append(rate)
                    cpu.setdefault(name, []).append(used / count)
                    if problem:
                        problems.add(f"{name}: {problem}")
        exec_rate = await loop.run_in_executor(None, _exec_probes, health_file, ctx.n(20, 5))
        samples.setdefault("exec", []).append(exec_rate)
    notes += [
        f"{rounds} interleaved rounds; wrk -t1 -c{CONNECTIONS} for {seconds:g} s per server "
        "and mode; every answer 200 unless said below.",
        "",
        markdown_table(
            ["server, mode", "requests/s (median)", "each round", "server CPU per request"],
            [
                [
                    name,
                    f"{median(values):.0f}",
                    ", ".join(f"{v:.0f}" for v in values),
                    fmt_time(median(cpu[name])) if name in cpu else "—",
                ]
                for name, values in samples.items()
            ],
        ),
        "",
        *(f"- {problem}" for problem in sorted(problems)),
    ]
    rates = {name: median(values) for name, values in samples.items()}
    rates.update({f"cpu {name}": median(values) for name, values in cpu.items()})
    return rates


async def _lag_and_cycles(ctx: Context, directory: Path, notes: list[str]) -> dict[str, float]:
    """Loop lag p99/p50 and cycle cost with and without a steady 100 requests/s."""
    loop = asyncio.get_running_loop()
    rounds, window = ctx.n(4, 2), ctx.n(2.0, 1.0)
    database = make_database(directory / "lag.db")
    lateness: dict[str, list[float]] = {"no load": [], "100 req/s": []}
    cycles: dict[str, list[float]] = {"no load": [], "100 req/s": []}
    answered = late = 0
    async with healthfile.AsyncHealthService(
        database,
        health_file=directory / "lag.json",
        interval=INTERVAL,
        pyproject=None,
        app_version="1.0.0",
        http="127.0.0.1:0",
    ) as service:
        assert service.http_address is not None
        port = service.http_address[1]
        for _ in range(rounds):
            for condition in lateness:
                client = None
                if condition != "no load":
                    client = await asyncio.create_subprocess_exec(
                        PYTHON,
                        str(HERE / "_http_load.py"),
                        str(port),
                        "/readyz",
                        str(LOAD_RATE),
                        str(window + 0.6),
                        stdout=asyncio.subprocess.PIPE,
                    )
                await asyncio.sleep(0.3)  # the client is up and asking
                probe = LagProbe(loop, 0.001)
                probe.start()
                ends = loop.time() + window
                while loop.time() < ends:
                    started = time.perf_counter()
                    await service.check_now()
                    cycles[condition].append(time.perf_counter() - started)
                    await asyncio.sleep(INTERVAL)
                lateness[condition] += await probe.stop()
                if client is not None:
                    out, _ = await client.communicate()
                    got, behind = (int(word) for word in out.split())
                    answered += got
                    late += behind
    notes += [
        "",
        f"Host cost: {rounds} interleaved rounds of {window:g} s per condition; the service "
        f"cycles every {INTERVAL * 1000:g} ms and `check_now()` runs back to back with a "
        f"{INTERVAL * 1000:g} ms pause; the client answered {answered} requests, {late} of "
        "them sent more than a period late.",
        "",
        markdown_table(
            ["condition", "lag p50", "lag p99", "cycle (median)", "cycle p99"],
            [
                [
                    name,
                    fmt_time(median(lateness[name])),
                    fmt_time(percentile(lateness[name], 99)),
                    fmt_time(median(cycles[name])),
                    fmt_time(percentile(cycles[name], 99)),
                ]
                for name in lateness
            ],
        ),
    ]
    idle, loaded = "no load", "100 req/s"
    return {
        "lag p99 idle": percentile(lateness[idle], 99),
        "lag p99 load": percentile(lateness[loaded], 99),
        "lag p50 idle": median(lateness[idle]),
        "lag p50 load": median(lateness[loaded]),
        "cycle idle": median(cycles[idle]),
        "cycle load": median(cycles[loaded]),
    }


async def run(ctx: Context) -> FigureResult:
    result = FigureResult("9. HTTP: /readyz served, and what serving costs the host")
    if shutil.which("wrk") is None:
        result.rows.append(Row("9. not run: wrk is not installed (apt-get install wrk)", "—", "—"))
        return result
    notes: list[str] = []
    with work_dir(ctx.root) as directory:
        async with _fresh_file(directory) as health_file:
            rates = await _throughput(ctx, health_file, notes)
        host = await _lag_and_cycles(ctx, directory, notes)
    for mode in ("keep-alive", "new connections"):
        ours, theirs = rates[f"builtin {mode}"], rates[f"uvicorn {mode}"]
        result.rows.append(
            Row(
                f"9. /readyz requests/s, {mode}: built-in server vs uvicorn, same app",
                f"{ours:.0f}/s",
                f"{theirs:.0f}/s",
                ours / theirs,
                f"≥ 1{TIMES}",
                ours >= theirs,
            )
        )
        ours, theirs = rates[f"cpu builtin {mode}"], rates[f"cpu uvicorn {mode}"]
        result.rows.append(
            Row(
                f"9. server CPU per /readyz, {mode}: built-in server vs uvicorn",
                fmt_time(ours),
                fmt_time(theirs),
                ours / theirs,
            )
        )
    ours = rates["builtin new connections"]
    result.rows.append(
        Row(
            "9. probes/s: built-in server, new connections vs `healthfile check` exec'd",
            f"{ours:.0f}/s",
            f"{rates['exec']:.0f}/s",
            ours / rates["exec"],
        )
    )
    for label, key in (("loop lag p99", "lag p99"), ("cycle cost (median)", "cycle")):
        ratio = host[f"{key} load"] / host[f"{key} idle"]
        result.rows.append(
            Row(
                f"9. {label} at 100 req/s vs no load",
                fmt_time(host[f"{key} load"]),
                fmt_time(host[f"{key} idle"]),
                ratio,
                f"≤ {LAG_TARGET}{TIMES}",
                ratio <= LAG_TARGET,
            )
        )
    result.rows.append(
        Row(
            "9. loop lag p50 at 100 req/s vs no load",
            fmt_time(host["lag p50 load"]),
            fmt_time(host["lag p50 idle"]),
            host["lag p50 load"] / host["lag p50 idle"],
        )
    )
    result.notes = notes
    return result
