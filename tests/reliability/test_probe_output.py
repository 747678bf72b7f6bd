"""The probe's stdout closed, full or a broken pipe: the exit status stays the verdict's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers import child_environment, generous, write_fresh_report

pytestmark = pytest.mark.reliability


def console_script() -> str:
    """The installed `healthfile` console script, next to this Python: what monitors run."""
    script = shutil.which("healthfile", path=os.path.dirname(sys.executable))
    assert script is not None, "the healthfile console script is not installed"
    return script


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
        write_fresh_report(health_file, status)
    process = stdout([console_script(), "check", "--health-file", str(health_file), *flags])
    _, stderr = process.communicate(timeout=generous(30))
    assert b"Traceback" not in stderr, stderr.decode()
    assert b"Exception ignored" not in stderr, stderr.decode()
    assert process.returncode == expected, stderr.decode()
