"""Bad input: nonsense options, hostile pyproject files, huge or nested files for the probe."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import (
    NONBLOCKING_FIFOS,
    ServiceFactory,
    child_environment,
    generous,
    needs_nonblocking_fifos,
    one_line,
)

pytestmark = pytest.mark.reliability


# Generous bounds for slow CI machines under coverage; each is far from the failure it guards
# against (a hang, or minutes of parsing).
PROMPT = 10.0


def healthfile_command(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m healthfile ...` to completion (bounded)."""
    return subprocess.run(
        [sys.executable, "-m", "healthfile", *args],
        capture_output=True,
        text=True,
        timeout=2 * PROMPT,
        check=False,
        env=child_environment() if env is None else env,
        stdin=subprocess.DEVNULL,
    )


def exists(path: str) -> bool:
    return os.path.exists(path)


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    """A named pipe that nobody writes to."""
    path = tmp_path / "fifo"
    if hasattr(os, "mkfifo"):  # not on Windows: the tests that need one skip there
        os.mkfifo(path)
    return path


# --- `healthfile run` given nonsense ---------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--interval", "1e400"),  # overflows to inf
        ("--interval", "9" * 5000),  # a huge number, also inf
        ("--interval", "31622401"),  # just past a year
        ("--interval", "-0"),
        ("--check-timeout", "1e-400"),  # underflows to zero
        ("--check-timeout", "NaN"),
        ("--start-period", "-inf"),
        ("--interval", "0x10"),
        ("--database", " "),
        ("--app-version", "\t"),
    ],
)
def test_nonsense_value_in_a_real_process_exits_2_with_one_line(
    option: str, value: str, tmp_path: Path
) -> None:
    """`healthfile run` refuses a nonsense value: exit 2, one line on stderr, nothing written."""
    health_file = tmp_path / "health.json"
    completed = healthfile_command("run", "--health-file", str(health_file), option, value)

    assert completed.returncode == 2, completed.stderr
    assert completed.stdout == ""
    assert option in one_line(completed.stderr)
    assert not health_file.exists()


@pytest.mark.parametrize("option", ["--health-file", "--prometheus-file"])
@pytest.mark.parametrize("kind", ["directory", "device", "fifo"])
def test_output_path_that_is_not_a_regular_file_exits_2_with_one_line(
    option: str, kind: str, tmp_path: Path, fifo: Path
) -> None:
    """An output path naming a directory, a device (/dev/null) or a FIFO exits 2 at once."""
    if kind == "fifo" and not fifo.exists():
        pytest.skip("needs os.mkfifo (not Windows)")
    path = {"directory": str(tmp_path), "device": os.devnull, "fifo": str(fifo)}[kind]
    completed = healthfile_command("run", option, path)

    assert completed.returncode == 2, completed.stderr
    assert option in one_line(completed.stderr)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HEALTHFILE_INTERVAL", "1e999"),
        ("HEALTHFILE_CHECK_TIMEOUT", "-1e-300"),
        ("HEALTHFILE_HEALTH_FILE", os.devnull),
        ("HEALTHFILE_PROMETHEUS_FILE", "/"),
        ("HEALTHFILE_VERBOSE", "-v"),
    ],
)
def test_nonsense_environment_value_in_a_real_process_exits_2_with_one_line(
    variable: str, value: str
) -> None:
    """A nonsense HEALTHFILE_* value exits 2 with one line naming the variable."""
    completed = healthfile_command("run", env=child_environment(**{variable: value}))

    assert completed.returncode == 2, completed.stderr
    assert variable in one_line(completed.stderr)


class Running:
    """A `healthfile run` process, always killed and reaped at the end of the test."""

    def __init__(self, tmp_path: Path, *options: str) -> None:
        self.log = tmp_path / "stderr.log"
        with self.log.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "healthfile", "run", *options],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=child_environment(),
            )

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_report(
        self, path: Path, predicate: Callable[[dict[str, Any]], bool], timeout: float = PROMPT
    ) -> dict[str, Any]:
        """Poll ``path`` until a report satisfies ``predicate``; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        report: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            try:
                report = json.loads(path.read_bytes())
            except FileNotFoundError:
                report = None
            if report is not None and predicate(report):
                return report
            if self.process.poll() is not None:
                pytest.fail(f"exited ({self.process.returncode}):\n{self.stderr()}")
            time.sleep(0.02)
        pytest.fail(f"no such report within {timeout} s; last: {report}\n{self.stderr()}")

    def stop(self, timeout: float = PROMPT) -> int:
        """SIGTERM; fail unless the process exits within ``timeout``."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {timeout} s after SIGTERM:\n{self.stderr()}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """Start `healthfile run` processes; every one is killed and reaped at the end."""
    started: list[Running] = []

    def start(*options: str) -> Running:
        process = Running(tmp_path, *options)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


def test_tiny_interval_keeps_the_file_fresh_or_is_refused(
    database: Path, tmp_path: Path, running: Callable[..., Running]
) -> None:
    """`--interval 1e-310` (positive, subnormal) is refused, or cycles keep coming: never stuck."""
    health_file = tmp_path / "health.json"
    run = running(
        "--database", str(database), "--health-file", str(health_file), "--interval", "1e-310"
    )
    deadline = time.monotonic() + generous(PROMPT)
    report: dict[str, Any] | None = None
    while report is None or report["sequence"] < 50:
        if run.process.poll() is not None:
            # Refused: exit 2 with one line.
            assert run.process.returncode == 2, run.stderr()
            assert "--interval" in one_line(run.stderr())
            return
        assert time.monotonic() < deadline, f"cycles stopped at {report}:\n{run.stderr()}"
        time.sleep(0.02)
        try:
            report = json.loads(health_file.read_bytes())
        except FileNotFoundError:
            report = None
    assert run.stop() == 0


@pytest.mark.asyncio
async def test_tiny_interval_through_the_api_keeps_cycling_or_is_refused(
    make_service: ServiceFactory,
) -> None:
    """AsyncHealthService(interval=1e-310) raises ValueError, or its cycles never stop coming."""
    try:
        service = make_service(interval=1e-310)
    except ValueError:
        return
    await service.start()
    deadline = time.monotonic() + generous(PROMPT)
    while (report := service.last_report) is None or report.sequence < 50:
        assert time.monotonic() < deadline, f"cycles stopped at {service.last_report}"
        await asyncio.sleep(0.01)


@needs_nonblocking_fifos
@pytest.mark.parametrize("option", ["--pyproject", "--database"])
def test_fifo_as_an_input_path_neither_hangs_start_nor_exit(
    option: str,
    database: Path,
    tmp_path: Path,
    fifo: Path,
    running: Callable[..., Running],
) -> None:
    """A FIFO nobody writes to as --pyproject or --database: first report, then a clean exit."""
    health_file = tmp_path / "health.json"
    options = {
        "--database": str(database),
        "--pyproject": str(tmp_path / "missing.toml"),
        option: str(fifo),
    }
    run = running(
        *(item for pair in options.items() for item in pair),
        "--health-file",
        str(health_file),
        "--interval",
        "0.2",
        "--check-timeout",
        "0.5",
    )
    report = run.wait_for_report(health_file, lambda report: report["sequence"] >= 2)
    if option == "--pyproject":
        assert report["app_version"] == "unknown"
        assert report["database"] == "connected"
    else:
        assert report["database"] != "connected"
    assert run.stop() == 0
    assert json.loads(health_file.read_bytes())["status"] == "stopped"


# --- hostile pyproject files ---------------------------------------------------------------

MIB = 1024 * 1024


def hostile_pyproject(kind: str, path: Path) -> str | None:
    """Write a hostile pyproject of ``kind`` at ``path``; return the version it should give."""
    version = '[project]\nname = "x-not-installed"\nversion = "1.2.3"\n'
    if kind == "binary":
        path.write_bytes(random.Random(5).randbytes(64 * 1024))
        return None
    if kind == "huge":
        # 1 TiB, sparse: reading it whole would never end.
        path.write_text(version)
        os.truncate(path, 1 << 40)
        return None
    if kind == "just-over-1-MiB":
        path.write_text(version + "# " + "x" * MIB + "\n")
        return None
    if kind == "nested-arrays":
        path.write_text(version + "x = " + "[" * 200_000 + "]" * 200_000 + "\n")
        return None
    if kind == "nested-inline-tables":
        path.write_text(version + "x = " + "{a=" * 100_000 + "1" + "}" * 100_000 + "\n")
        return None
    if kind == "deep-table-header":
        path.write_text(version + "[" + "a." * 250_000 + "a]\n")
        return None
    if kind == "deep-dotted-key":
        path.write_text(version + "a." * 50_000 + "a = 1\n")
        return None
    if kind == "100k-keys":
        keys = "".join(f"k{number}=1\n" for number in range(100_000))
        path.write_text("[tool.junk]\n" + keys + version)
        return "1.2.3"
    if kind == "100k-tables":
        path.write_text("".join(f"[t{number}]\n" for number in range(100_000)) + version)
        return "1.2.3"
    raise AssertionError(kind)


HOSTILE = [
    "binary",
    "huge",
    "just-over-1-MiB",
    "nested-arrays",
    "nested-inline-tables",
    "deep-table-header",
    "deep-dotted-key",
    "100k-keys",
    "100k-tables",
]


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_pyproject_gives_a_version_or_unknown_promptly(
    kind: str, database: Path, tmp_path: Path, running: Callable[..., Running]
) -> None:
    """Binary, huge, or hostile TOML: the first report comes promptly, with a version or unknown."""
    pyproject = tmp_path / "pyproject.toml"
    expected = hostile_pyproject(kind, pyproject)
    if kind not in ("binary", "huge", "just-over-1-MiB"):
        assert pyproject.stat().st_size <= MIB, "hostile TOML past the size bound is never parsed"
    health_file = tmp_path / "health.json"
    run = running(
        "--database",
        str(database),
        "--health-file",
        str(health_file),
        "--pyproject",
        str(pyproject),
    )
    report = run.wait_for_report(health_file, lambda report: True)

    assert report["app_version"] == (expected or "unknown")
    assert report["status"] == "online", report["checks"]
    assert run.stop() == 0
    assert "Traceback" not in run.stderr()


@pytest.mark.asyncio
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
async def test_device_as_pyproject_is_read_boundedly_by_start(
    make_service: ServiceFactory, device: str
) -> None:
    """start() with a device as pyproject reads at most its bound and reports unknown."""
    if not exists(device):
        pytest.skip(f"{device} does not exist here")
    service = make_service(pyproject=device)

    await asyncio.wait_for(service.start(), PROMPT)

    assert service.last_report is not None
    assert service.last_report.app_version == "unknown"


# --- huge or nested files for `healthfile check` ---------------------------------------------


def bad_health_file(kind: str, tmp_path: Path, fifo: Path) -> str:
    """Make a health file of ``kind``; return its path."""
    path = tmp_path / "health.json"
    if kind == "1-TiB-sparse":
        path.write_text("{}")
        os.truncate(path, 1 << 40)
    elif kind == "1-MiB-of-JSON":
        path.write_text(json.dumps({"padding": "x" * MIB}))
    elif kind == "deeply-nested":
        path.write_text("[" * 30_000 + "]" * 30_000)
    elif kind == "nested-objects":
        path.write_text('{"a":' * 10_000 + "1" + "}" * 10_000)
    elif kind == "fifo":
        if not NONBLOCKING_FIFOS:
            pytest.skip("needs FIFOs and O_NONBLOCK (os.mkfifo; not Windows)")
        return str(fifo)
    elif kind == "device":
        return "/dev/zero"
    else:
        raise AssertionError(kind)
    return str(path)


@pytest.mark.parametrize(
    "kind",
    ["1-TiB-sparse", "1-MiB-of-JSON", "deeply-nested", "nested-objects", "fifo", "device"],
)
@pytest.mark.parametrize("convention", ["default", "nagios"])
def test_huge_or_nested_health_file_gets_a_prompt_one_line_verdict(
    kind: str, convention: str, tmp_path: Path, fifo: Path
) -> None:
    """`healthfile check` on a huge, nested, FIFO or device file: one line, not healthy, fast."""
    path = bad_health_file(kind, tmp_path, fifo)
    options = ("--nagios",) if convention == "nagios" else ()
    started = time.monotonic()
    completed = healthfile_command("check", "--health-file", path, *options)
    took = time.monotonic() - started

    assert completed.returncode == (3 if convention == "nagios" else 1), completed
    line = one_line(completed.stdout)
    assert len(line.encode()) < 4096
    assert completed.stderr == ""
    assert took < generous(PROMPT)
    if convention == "nagios":
        assert line.startswith("HEALTHFILE UNKNOWN - ")
