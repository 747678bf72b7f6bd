"""kill -9 mid-write: a whole file after every kill, and the next start sweeps the leftovers."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import CONTRACT_KEYS, child_environment

pytestmark = pytest.mark.reliability

KILLS = 30
# Generous bounds for a slow CI machine under coverage; a round normally takes ~0.5 s.
START_DEADLINE = 30.0
# How many SIGSTOP/SIGCONT tries a round makes to freeze a writer between its temporary file's
# creation and its rename; each try lasts a few ms.
HUNT_TRIES = 400

# The writer's temporary files: `.health.json.<16 hex digits>.tmp`.
TEMP_NAME = re.compile(r"\.health\.json\.[0-9a-f]{16}\.tmp\Z")


def start_run(database: Path, health_file: Path, log: Path) -> subprocess.Popen[bytes]:
    """Start `healthfile run` at a 10 ms interval, its stderr going to ``log``."""
    with log.open("ab") as stderr:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "healthfile",
                "run",
                "--interval",
                "0.01",
                "--database",
                str(database),
                "--health-file",
                str(health_file),
                "--pyproject",
                str(database.with_name("missing-pyproject.toml")),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=child_environment(),
        )


def read_whole_report(path: Path) -> dict[str, Any]:
    """Read the health file; fail unless it is one whole contract-v1 report."""
    data = path.read_bytes()
    assert data.endswith(b"}\n"), f"not a whole file: {data[-80:]!r}"
    report = json.loads(data)
    assert isinstance(report, dict)
    assert list(report) == CONTRACT_KEYS
    return report


def temp_names(directory: Path) -> set[str]:
    """The writer's temporary files in ``directory``."""
    return {name for name in os.listdir(directory) if TEMP_NAME.match(name)}


def wait_for_own_report(process: subprocess.Popen[bytes], health_file: Path, log: Path) -> None:
    """Wait until ``process`` has written a report of its own (so its start() has run)."""
    deadline = time.monotonic() + START_DEADLINE
    while True:
        try:
            if read_whole_report(health_file)["pid"] == process.pid:
                return
        except FileNotFoundError:
            pass
        if process.poll() is not None:
            pytest.fail(f"healthfile run exited ({process.returncode}):\n{log.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no report from pid {process.pid} within {START_DEADLINE} s")
        time.sleep(0.005)


def freeze_mid_write(process: subprocess.Popen[bytes], directory: Path, rng: random.Random) -> None:
    """SIGSTOP the process until it is caught with a temporary file in its directory.

    Stopping a process and killing it while stopped is a kill at that very moment: this only
    chooses moments that fall inside a write. The process is left stopped either way.
    """
    for _ in range(HUNT_TRIES):
        process.send_signal(signal.SIGSTOP)
        if temp_names(directory):
            return
        process.send_signal(signal.SIGCONT)
        time.sleep(rng.uniform(0, 0.003))
    process.send_signal(signal.SIGSTOP)


@pytest.mark.timeout(KILLS * 2 * START_DEADLINE)
def test_sigkill_at_random_moments_leaves_a_whole_file_and_the_next_start_sweeps(
    database: Path, tmp_path: Path
) -> None:
    """Dozens of SIGKILLs of `healthfile run`: always a whole report; leftovers swept at start."""
    rng = random.Random(9)
    directory = tmp_path / "out"
    health_file = directory / "health.json"
    log = tmp_path / "stderr.log"
    left_behind: set[str] = set()
    kills_mid_write = 0
    sequences: list[int] = []

    for round_number in range(KILLS):
        process = start_run(database, health_file, log)
        try:
            wait_for_own_report(process, health_file, log)
            # The start that has just run removed every temporary file the last kill left.
            assert temp_names(directory).isdisjoint(left_behind), f"round {round_number}"

            time.sleep(rng.uniform(0, 0.05))
            # Every other round hunts for a moment inside a write; the others kill anywhere.
            if round_number % 2 == 0:
                freeze_mid_write(process, directory, rng)
            process.send_signal(signal.SIGKILL)
            assert process.wait(timeout=START_DEADLINE) == -signal.SIGKILL
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

        report = read_whole_report(health_file)
        assert report["pid"] == process.pid
        assert report["status"] == "online"
        assert report["database"] == "connected"
        sequences.append(report["sequence"])
        left_behind = temp_names(directory)
        kills_mid_write += bool(left_behind)
        # The lock file stays after kill -9 (the kernel released the lock itself).
        assert set(os.listdir(directory)) == {"health.json", ".health.json.lock"} | left_behind

    assert kills_mid_write >= 1, "no kill landed inside a write: the sweep was never exercised"
    assert max(sequences) > 1, "no process lived through more than one cycle"

    # One last start sweeps what the last kill left, and a clean stop leaves nothing else.
    process = start_run(database, health_file, log)
    try:
        wait_for_own_report(process, health_file, log)
        assert temp_names(directory).isdisjoint(left_behind)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=START_DEADLINE) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # The lock file is removed right after the final write, unless the process exits first.
    assert set(os.listdir(directory)) - {".health.json.lock"} == {"health.json"}
    assert read_whole_report(health_file)["status"] == "stopped"
    assert "Traceback" not in log.read_text()
