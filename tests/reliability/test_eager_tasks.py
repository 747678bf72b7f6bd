"""Eager tasks and ``python -O``: stop() from a check's first step; no control flow on assert."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import child_environment, generous

pytestmark = pytest.mark.reliability

needs_eager_tasks = pytest.mark.skipif(
    sys.version_info < (3, 12), reason="asyncio.eager_task_factory is new in Python 3.12"
)

# A check whose first step (before any await) starts stop(), then takes a while: with an
# eager task factory that step runs inside the create_task() that makes the check's task,
# and so does stop()'s first step, before the service knows of the cycle's task. Prints
# what check_now() ended with, the file's status a moment after stop(), and whether a later
# service on the file writes it (it must: the lock was let go).
SCRIPT = """\
import asyncio, json, sys

import healthfile
from healthfile import AsyncHealthService, CheckResult

health_file, mode = sys.argv[1:3]


class Stopper:
    name = "stopper"

    def __init__(self):
        self.service = None
        self.stopping = None

    async def run(self):
        if self.service is not None and self.stopping is None:
            self.stopping = asyncio.ensure_future(self.service.stop())
            await asyncio.sleep(0.1)  # stop() is done by now, unless it cancels this
        return CheckResult("pass")


class Database:
    name = "database"

    async def run(self):
        return CheckResult("pass")


def service(*checks):
    return AsyncHealthService(
        None,
        checks=[Database(), *checks],
        health_file=health_file,
        interval=3600,
        pyproject=None,
        app_version="1",
    )


async def main():
    if mode == "eager":
        asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)
    stopper = Stopper()
    first = service(stopper)
    await first.start()
    stopper.service = first
    try:
        await first.check_now()
        outcome = "returned"
    except RuntimeError as exc:
        outcome = type(exc).__name__
    await stopper.stopping
    await asyncio.sleep(0.2)  # a cycle left running would write meanwhile
    with open(health_file) as file:
        status = json.load(file)["status"]
    later = service()
    await later.start()
    writing = later.writing
    await later.stop()
    print(outcome, status, first.running, writing)


asyncio.run(main())
"""


def run_script(tmp_path: Path, *flags: str, mode: str) -> str:
    """Run the script with the Python flags and task mode; its one line of output."""
    script = tmp_path / "stopper.py"
    script.write_text(SCRIPT)
    process = subprocess.run(
        [sys.executable, *flags, str(script), str(tmp_path / "health.json"), mode],
        capture_output=True,
        text=True,
        timeout=generous(60),
        env=child_environment(),
    )
    assert process.returncode == 0, process.stderr
    assert "Traceback" not in process.stderr, process.stderr
    return process.stdout.strip()


@needs_eager_tasks
def test_stop_from_a_checks_first_step_under_eager_tasks_ends_the_cycle(tmp_path: Path) -> None:
    """With eager tasks, stop() called in a check's first step cancels the cycle: check_now()
    says it was stopped, the file stays `stopped`, and the lock is free for the next service."""
    assert run_script(tmp_path, mode="eager") == "RuntimeError stopped False True"


@needs_eager_tasks
def test_under_python_o_a_stopped_service_never_takes_the_lock_again(tmp_path: Path) -> None:
    """Under `python -O` (no assert runs) the same stop leaves `stopped` and a free lock."""
    assert run_script(tmp_path, "-O", mode="eager") == "RuntimeError stopped False True"


def test_stop_from_a_checks_first_step_ends_the_cycle_with_lazy_tasks(tmp_path: Path) -> None:
    """Without eager tasks (every Python), the same stop() ends the cycle alike, under -O too."""
    assert run_script(tmp_path, "-O", mode="lazy") == "RuntimeError stopped False True"
