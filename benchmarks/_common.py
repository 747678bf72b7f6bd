"""Shared pieces of the benchmarks: the floor cycle, statistics, the machine (the lag probe
is the tests' LagProbe, in tests/helpers.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

# The multiplication sign by name: ruff (RUF001) flags the literal one as ambiguous.
TIMES = "\N{MULTIPLICATION SIGN}"

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
VENV_BIN = REPO / ".venv" / "bin"

N = TypeVar("N", int, float)

# The database check's probe query: it reads the schema, so it touches the database file.
PROBE_QUERY = "SELECT count(*) FROM sqlite_master"

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


# --- results -------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the results table; ``key`` names it for the pages' prose (render.py)."""

    figure: str
    healthfile: str
    baseline: str
    ratio: float | None = None
    target: str = "—"
    met: bool | None = None
    key: str = ""

    def cells(self) -> list[str]:
        ratio = "—" if self.ratio is None else fmt_ratio(self.ratio)
        met = "—" if self.met is None else ("yes" if self.met else "**no**")
        return [self.figure, self.healthfile, self.baseline, ratio, self.target, met]


@dataclass
class FigureResult:
    """The table rows of one figure, the Markdown lines that explain them, and the numbers
    the pages' prose cites (``facts``: seconds, bytes or counts, by name)."""

    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    facts: dict[str, float] = field(default_factory=dict)
    failed: bool = False  # the figure raised: its one row says what


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# --- statistics ----------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


def mean(values: list[float]) -> float:
    return statistics.fmean(values)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 5000 samples is the 4950th smallest)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def fmt_time(seconds: float) -> str:
    """Render a duration with a unit that keeps three significant figures."""
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.0f} µs"


def fmt_ratio(ratio: float) -> str:
    """Two decimals, or two significant figures for ratios far below 1."""
    text = f"{ratio:.2f}" if ratio >= 0.1 else f"{ratio:.2g}"
    return text + TIMES


def fmt_bytes(count: float) -> str:
    sign = "-" if count < 0 else ""
    count = abs(count)
    if count >= 1024 * 1024:
        return f"{sign}{count / 1024 / 1024:.2f} MiB"
    if count >= 1024:
        return f"{sign}{count / 1024:.0f} KiB"
    return f"{sign}{count:.0f} B"


def timed(fn: Callable[[], object], repeat: int, warmup: int = 20) -> list[float]:
    """Call ``fn`` ``warmup`` times, then return ``repeat`` wall times (perf_counter)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


async def atimed(fn: Callable[[], Awaitable[object]], repeat: int, warmup: int = 20) -> list[float]:
    """Await ``fn()`` ``warmup`` times, then return ``repeat`` wall times (perf_counter)."""
    for _ in range(warmup):
        await fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - start)
    return samples


# --- the work directory, the database, the floor ---------------------------------------------


def work_root() -> Path:
    """Where temporary databases and health files go: on the disk of the repository.

    ``HEALTHFILE_BENCH_DIR`` overrides it (it must exist).
    """
    override = os.environ.get("HEALTHFILE_BENCH_DIR")
    return Path(override) if override else BENCH_DIR


@contextlib.contextmanager
def work_dir(root: Path | None = None) -> Iterator[Path]:
    """A fresh temporary directory under ``root`` (the repository's disk by default)."""
    path = Path(tempfile.mkdtemp(prefix="_tmp-", dir=root or work_root()))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def make_database(path: Path) -> Path:
    """Create a small real SQLite database (rollback journal, a few tables and rows)."""
    connection = sqlite3.connect(path)
    try:
        connection.executescript(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, email TEXT UNIQUE);"
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users,"
            " total REAL, created TEXT);"
            "CREATE INDEX orders_user ON orders (user_id);"
        )
        connection.executemany(
            "INSERT INTO users (name, email) VALUES (?, ?)",
            [(f"user {i}", f"user{i}@example.com") for i in range(200)],
        )
        connection.executemany(
            "INSERT INTO orders (user_id, total, created) VALUES (?, ?, '2025-01-01')",
            [(i % 200 + 1, i * 1.5) for i in range(1000)],
        )
        connection.commit()
    finally:
        connection.close()
    return path


def readonly_uri(path: Path) -> str:
    from urllib.parse import quote

    return f"file:{quote(os.fspath(path))}?mode=ro"


def floor_probe(uri: str) -> None:
    """The database half of the floor: read-only URI connect, schema read, close."""
    connection = sqlite3.connect(uri, uri=True, timeout=3.0)
    try:
        connection.execute(PROBE_QUERY).fetchall()
    finally:
        connection.close()


def fresh_connection_per_cycle(service: object) -> None:
    """Make a service (not started yet) read its database as the check's fallback does: a
    fresh aiosqlite connection, so a new thread, per cycle (the design before the long-lived
    connection; what an SQLite that cannot attach by URI gets)."""
    check = service.checks[0]  # type: ignore[attr-defined]
    check._refused = "a fresh connection per cycle, for comparison"


def floor_write(directory: Path, name: str, data: bytes) -> None:
    """The file half of the floor: O_EXCL temp, write, fchmod, fsync, rename, fsync the dir."""
    dir_fd = os.open(directory, _DIR_FLAGS)
    try:
        temp = f".{name}.{secrets.token_hex(8)}.tmp"
        fd = os.open(temp, _CREATE_FLAGS, 0o600, dir_fd=dir_fd)
        try:
            os.write(fd, data)
            os.fchmod(fd, 0o644)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def floor_cycle(uri: str, directory: Path, name: str, data: bytes) -> None:
    """One synchronous floor cycle, inline in the calling thread."""
    floor_probe(uri)
    floor_write(directory, name, data)


# --- the process -----------------------------------------------------------------------------


def proc_status(key: str) -> int:
    """A number from /proc/self/status (VmRSS in KiB, Threads)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def rss_bytes() -> int:
    return proc_status("VmRSS") * 1024


def thread_count() -> int:
    return proc_status("Threads")


# --- the machine ---------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def fs_type(path: Path) -> str:
    """The file system type of the mount holding ``path`` (from /proc/self/mountinfo)."""
    target = os.path.realpath(path)
    best, kind, source = "", "unknown", ""
    try:
        with open("/proc/self/mountinfo") as mountinfo:
            for line in mountinfo:
                left, right = line.split(" - ", 1)
                mount_point = left.split()[4]
                inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
                if inside and len(mount_point) >= len(best):
                    best = mount_point
                    kind, source = right.split()[0], right.split()[1]
    except OSError:
        return "unknown"
    return f"{kind} ({source} on {best})"


def machine_info(directory: Path) -> dict[str, str]:
    """What the run ran on: CPU, Python and libraries, kernel, the work directory's disk."""
    from importlib.metadata import version

    import aiosqlite

    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu": _cpu_model(),
        "cores": f"{os.cpu_count()} cores"
        + (f" ({affinity} usable)" if affinity is not None else ""),
        "python": f"{platform.python_version()} ({sys.implementation.name})",
        "sqlite": sqlite3.sqlite_version,
        "aiosqlite": aiosqlite.__version__,
        "aiofiles": version("aiofiles"),
        "kernel": f"{platform.system()} {platform.release()}",
        "directory": str(directory),
        "file_system": fs_type(directory),
    }


def machine_lines(info: dict[str, str]) -> list[str]:
    """The machine, as the list the results open with."""
    return [
        f"- CPU: {info['cpu']}, {info['cores']}",
        f"- Python {info['python']}, SQLite {info['sqlite']}, aiosqlite {info['aiosqlite']}, "
        f"aiofiles {info['aiofiles']}, event loop: asyncio's default (selector, epoll)",
        f"- Kernel: {info['kernel']}",
        f"- File system of the work directory ({info['directory']}): {info['file_system']}",
    ]


@dataclass
class Context:
    """What every figure gets: the run's options."""

    quick: bool
    root: Path

    def n(self, full: N, quick: N) -> N:
        """A repetition count: ``full`` normally, ``quick`` with --quick."""
        return quick if self.quick else full


class LoopBusyMeter:
    """Wall time the loop spends outside its selector's ``select()``: running, not waiting.

    Usable for several ``with`` blocks in a row: the times add up.

    Wraps the selector of asyncio's own selector loop (a private attribute); ``available``
    is False on loops without one (uvloop), and then ``busy`` stays 0.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._selector = getattr(loop, "_selector", None)
        self.available = self._selector is not None
        self.idle = 0.0
        self.elapsed = 0.0
        self._started = 0.0
        self._iterations = 0

    def __enter__(self) -> LoopBusyMeter:
        if self._selector is not None:
            original = self._selector.select

            def select(timeout: float | None = None) -> object:
                start = time.perf_counter()
                try:
                    return original(timeout)
                finally:
                    self.idle += time.perf_counter() - start
                    self._iterations += 1

            self._selector.select = select
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed += time.perf_counter() - self._started
        if self._selector is not None:
            del self._selector.select  # the instance attribute: the class method shows again

    @property
    def busy(self) -> float:
        return self.elapsed - self.idle if self.available else 0.0

    @property
    def iterations(self) -> int:
        return self._iterations
