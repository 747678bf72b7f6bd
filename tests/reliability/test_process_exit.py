"""Process exit: apps that stop the service and apps that forget both exit; Ctrl-C in start."""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import LOCK_HOLDER, child_environment, generous, report_on_disk

pytestmark = pytest.mark.reliability

# A hang would last an hour (the checks' timeout); a prompt exit takes well under a second.
# The bound is generous for slow CI machines under coverage, and far from the hang.
EXIT_BOUND = 10.0
HANG = 3600.0

LOOPS = ["asyncio", "uvloop"]

# An application that runs the service while a database probe, a check in a thread and an
# async check are all stuck mid-cycle, then returns from main() with or without stop().
APP = textwrap.dedent(
    """
    import asyncio, sqlite3, sys, threading, time
    import healthfile

    database, health_file, mode, loop = sys.argv[1:5]
    HANG = float(sys.argv[5])
    holders = []

    def stuck_in_a_thread():
        threading.Event().wait()

    async def stuck_on_the_loop():
        await asyncio.Event().wait()

    async def main():
        service = healthfile.AsyncHealthService(
            database,
            health_file=health_file,
            pyproject=None,
            interval=0.02,
            check_timeout=HANG,
            checks=[
                healthfile.check("thread", stuck_in_a_thread, timeout=0.05),
                healthfile.check("task", stuck_on_the_loop, timeout=0.05),
            ],
        )
        await service.start()
        # Lock the database from this very process: the next probes wait on it for HANG s.
        holder = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN EXCLUSIVE")
        holders.append(holder)  # held until the interpreter exits
        await asyncio.sleep(0.3)
        if mode == "stops":
            await service.stop()

    if loop == "uvloop":
        import uvloop
        uvloop.run(main())
    else:
        asyncio.run(main())
    print(time.monotonic(), flush=True)
    """
)


def require_loop(loop: str) -> None:
    if loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        pytest.skip("uvloop is not installed")


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("mode", ["stops", "forgets"])
def test_app_exits_promptly_whether_or_not_it_stops_the_service(
    database: Path, health_file: Path, mode: str, loop: str
) -> None:
    """With a probe, a thread and a task all stuck, main() returning ends the process at once."""
    require_loop(loop)
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-c", APP, str(database), str(health_file), mode, loop, str(HANG)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_environment(),
    )
    try:
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    exited = time.monotonic()

    assert process.returncode == 0, err
    returned = float(out.strip())
    assert started < returned < exited
    assert exited - returned < generous(EXIT_BOUND), (
        f"exit took {exited - returned:.1f} s after main()"
    )
    for noise in ("Traceback", "was destroyed but it is pending", "never retrieved", "Warning"):
        assert noise not in err
    report = report_on_disk(health_file)
    if mode == "stops":
        assert report["status"] == "stopped"
    else:
        # Nothing wrote "stopped": the file shows the last completed cycle.
        assert report["status"] == "degraded"
    assert {"thread", "task", "database"} <= set(report["checks"])


@pytest.fixture
def locked_database(database: Path) -> Iterator[Path]:
    """``database`` held under BEGIN EXCLUSIVE by another process for the test."""
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(database)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdin is not None
    try:
        assert holder.stdout.readline() == "locked\n"
        yield database
    finally:
        if holder.poll() is None:
            holder.stdin.write("\n")
            holder.stdin.flush()
        holder.communicate(timeout=30)


class Run:
    """A `healthfile run` process whose stderr is read until a given line appears."""

    def __init__(self, *options: str) -> None:
        self.log: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "healthfile", "run", *options],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=child_environment(),
        )

    def wait_for_line(self, text: str, timeout: float = 30.0) -> None:
        """Read stderr until a line holds ``text`` (readline blocks: bounded by timeout)."""
        assert self.process.stderr is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                pytest.fail(f"healthfile run exited early:\n{''.join(self.log)}")
            self.log.append(line)
            if text in line:
                return
        pytest.fail(f"no {text!r} on stderr within {timeout} s")

    def finish(self, timeout: float) -> tuple[int, str]:
        """Wait for the exit; return the status and all of stderr."""
        _, rest = self.process.communicate(timeout=timeout)
        return self.process.returncode, "".join(self.log) + rest

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


@pytest.mark.parametrize("presses", [1, 3])
def test_ctrl_c_during_a_hung_first_cycle_exits_0_promptly_with_stopped(
    locked_database: Path, health_file: Path, presses: int
) -> None:
    """SIGINT while start() waits on a database locked by another process: exit 0, stopped."""
    run = Run(
        "--database",
        str(locked_database),
        "--health-file",
        str(health_file),
        "--pyproject",
        str(health_file.with_name("missing-pyproject.toml")),
        "--check-timeout",
        "60",
    )
    try:
        # Logged once the signal handlers are in place, just before start().
        run.wait_for_line("checking every ")
        time.sleep(0.2)
        assert not health_file.exists(), "the first cycle finished on a locked database"
        pressed = time.monotonic()
        for _ in range(presses):
            run.process.send_signal(signal.SIGINT)
        status, stderr = run.finish(timeout=60)
        took = time.monotonic() - pressed
    finally:
        run.close()

    assert status == 0, stderr
    assert took < generous(EXIT_BOUND), f"took {took:.1f} s after Ctrl-C; the check would take 60 s"
    assert report_on_disk(health_file)["status"] == "stopped"
    assert "Traceback" not in stderr
    assert "KeyboardInterrupt" not in stderr
