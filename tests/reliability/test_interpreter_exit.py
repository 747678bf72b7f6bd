"""Cycles while the interpreter exits: Python 3.12 starts no thread in atexit handlers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import child_environment, generous, make_database

pytestmark = pytest.mark.reliability

# The thread facade runs cycles every 50 ms; the program ends without stopping it, and an
# atexit handler stops it a few cycles later. On Python 3.12 no thread can start by then:
# the database check's connection thread cannot either. Prints whether one could.
SCRIPT = """\
import atexit, logging, sys, threading, time

import healthfile

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
database, health_file = sys.argv[1:3]
service = healthfile.HealthCheckService(0.05, health_file, database=database, pyproject=None)
service.start()
assert service.wait_ready(30)


def stop_at_exit():
    try:
        threading.Thread(target=lambda: None).start()
        print("threads start", flush=True)
    except RuntimeError:
        print("threads cannot start", flush=True)
    time.sleep(0.3)  # six cycles or so, while the interpreter shuts down
    service.stop()


atexit.register(stop_at_exit)
"""


def test_cycles_while_the_interpreter_exits_leave_the_last_real_observation(
    tmp_path: Path,
) -> None:
    """Cycles that cannot start a thread because the interpreter is exiting observe nothing:
    the report stays online, and the final `stopped` report keeps `connected`."""
    database = make_database(tmp_path / "app.db")
    health_file = tmp_path / "health.json"
    script = tmp_path / "at_exit.py"
    script.write_text(SCRIPT)
    process = subprocess.run(
        [sys.executable, str(script), str(database), str(health_file)],
        capture_output=True,
        text=True,
        timeout=generous(60),
        env=child_environment(),
    )
    assert process.returncode == 0, process.stderr
    assert "Traceback" not in process.stderr, process.stderr
    assert "degraded" not in process.stderr, process.stderr
    report = json.loads(health_file.read_text())
    assert (report["status"], report["database"]) == ("stopped", "connected")
    assert report["checks"]["database"]["status"] == "pass"
    assert process.stdout.strip() in ("threads start", "threads cannot start")
