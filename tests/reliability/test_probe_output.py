"""The probe's stdout closed, full or a broken pipe: the exit status stays the verdict's."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers import child_environment, generous, stamp

pytestmark = pytest.mark.reliability


def console_script() -> str:
    """The installed `healthfile` console script, next to this Python: what monitors run."""
    script = shutil.which("healthfile", path=os.path.dirname(sys.executable))
    assert script is not None, "the healthfile console script is not installed"
    return script


def write_report(path: Path, status: str) -> Path:
    """Write a fresh contract-v1 report with the given status and one database check."""
    now = time.time()
    check = "pass" if status == "online" else "fail"
    report = {
        "status": status,
        "database": "connected" if check == "pass" else "disconnected",
        "timestamp": stamp(now),
        "app_version": "1.0",
        "api_version": "v1",
        "interval_seconds": 30.0,
        "expires_at": stamp(math.ceil(now + 60)),
        "sequence": 1,
        "started_at": stamp(now),
        "pid": os.getpid(),
        "checks": {
            "database": {
                "status": check,
                "output": None,
                "duration_ms": 1.0,
                "consecutive_failures": 0 if check == "pass" else 1,
                "last_success": None,
            }
        },
    }
    path.write_text(json.dumps(report))
    return path


Start = Callable[[list[str]], subprocess.Popen[bytes]]


# Each stdout a monitor may hand the probe by mistake, opened for one run.
@pytest.fixture(params=["closed", "full", "broken pipe"])
def stdout(request: pytest.FixtureRequest) -> Iterator[Start]:
    """Start a command with its stdout closed, /dev/full, or a pipe whose reader is gone."""
    kind: str = request.param
    if kind == "full" and not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    if kind == "closed" and not shutil.which("sh"):
        pytest.skip("needs sh")
    opened: list[int] = []

    def start(command: list[str]) -> subprocess.Popen[bytes]:
        environ = child_environment()
        if kind == "closed":
            return subprocess.Popen(
                ["sh", "-c", 'exec "$@" >&-', "sh", *command],
                stderr=subprocess.PIPE,
                env=environ,
            )
        if kind == "full":
            fd = os.open("/dev/full", os.O_WRONLY)
        else:
            reader, fd = os.pipe()
            os.close(reader)  # the reader is gone before a byte is written
        opened.append(fd)
        return subprocess.Popen(command, stdout=fd, stderr=subprocess.PIPE, env=environ)

    yield start
    for fd in opened:
        os.close(fd)


@pytest.mark.parametrize(
    ("status", "flags", "expected"),
    [
        ("online", [], 0),
        ("degraded", [], 1),
        ("online", ["--nagios"], 0),
        ("degraded", ["--nagios"], 2),
        ("missing", ["--nagios"], 3),
        ("online", ["--json"], 0),
        ("online", ["--nagios", "--max-age", "nonsense"], 3),  # a usage error, Nagios' way
    ],
)
def test_the_exit_status_is_the_verdicts_whatever_stdout_is(
    stdout: Start,
    tmp_path: Path,
    status: str,
    flags: list[str],
    expected: int,
) -> None:
    """With stdout closed, full or a broken pipe, `healthfile check` exits with the verdict's
    status (Nagios' too), and writes no traceback."""
    health_file = tmp_path / "health.json"
    if status != "missing":
        write_report(health_file, status)
    process = stdout([console_script(), "check", "--health-file", str(health_file), *flags])
    _, stderr = process.communicate(timeout=generous(30))
    assert b"Traceback" not in stderr, stderr.decode()
    assert b"Exception ignored" not in stderr, stderr.decode()
    assert process.returncode == expected, stderr.decode()
