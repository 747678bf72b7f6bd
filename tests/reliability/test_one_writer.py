"""Two processes on one health file: one writes, the other stands by and takes over."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import generous, make_database, needs_flock, temp_files, wait_until

pytestmark = pytest.mark.reliability

DEADLINE = 30.0  # generous: a loaded CI machine; every wait ends as soon as it can

# `healthfile run` in a process of its own. With HOLD_FILE set, the process's fsync of a
# regular file (the temporary file of a write) waits while HOLD_FILE exists, after creating
# HOLD_FILE.inside: a slow disk, frozen at the moment its temporary file is live.
SCRIPT = """\
import os, stat, sys, time

hold = os.environ.get("HOLD_FILE")
if hold:
    real_fsync = os.fsync

    def slow_fsync(fd):
        if stat.S_ISREG(os.fstat(fd).st_mode) and os.path.exists(hold):
            open(hold + ".inside", "w").close()
            deadline = time.monotonic() + 60
            while os.path.exists(hold) and time.monotonic() < deadline:
                time.sleep(0.005)
        real_fsync(fd)

    os.fsync = slow_fsync

from healthfile._cli import main

sys.exit(main(sys.argv[1:]))
"""


class Writer:
    """One `healthfile run` process on the shared health file, its stderr in a file."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def lines(self, text: str) -> list[str]:
        """Its log lines holding ``text``."""
        return [line for line in self.log.read_text().splitlines() if text in line]


@pytest.fixture
def start_writer(tmp_path: Path) -> Iterator[Callable[..., Writer]]:
    """Start `healthfile run` processes on tmp_path/health.json; kill what is left at the end."""
    database = make_database(tmp_path / "app.db")
    script = tmp_path / "writer.py"
    script.write_text(SCRIPT)
    started: list[Writer] = []

    def start(
        name: str,
        *,
        interval: float = 0.05,
        hold: Path | None = None,
        health_file: Path = tmp_path / "health.json",
    ) -> Writer:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHFILE_")}
        if hold is not None:
            environ["HOLD_FILE"] = str(hold)
        log = tmp_path / f"{name}.log"
        with log.open("wb") as stderr:
            process = subprocess.Popen(
                [
                    sys.executable,
                    str(script),
                    "run",
                    "--interval",
                    str(interval),
                    "--database",
                    str(database),
                    "--health-file",
                    str(health_file),
                    "--pyproject",
                    str(tmp_path / "missing-pyproject.toml"),
                    "--app-version",
                    name,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=environ,
            )
        writer = Writer(process, log)
        started.append(writer)
        return writer

    yield start
    for writer in started:
        if writer.process.poll() is None:
            writer.process.kill()
        writer.process.wait()


def read(path: Path) -> dict[str, Any] | None:
    """The health file's report, or None while there is none."""
    try:
        report: dict[str, Any] = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    return report


def written_by(path: Path, writer: Writer) -> bool:
    """True when the file's latest report comes from ``writer``'s process."""
    report = read(path)
    return report is not None and report["pid"] == writer.pid


def test_second_process_stands_by_logs_the_writer_once_and_takes_over_after_kill_9(
    start_writer: Callable[..., Writer], tmp_path: Path
) -> None:
    """Reports come from one pid only; the standby names it once and takes over after kill -9."""
    health_file = tmp_path / "health.json"
    first = start_writer("first")
    wait_until(lambda: written_by(health_file, first), "the first writer's report", every=0.005)
    second = start_writer("second")
    wait_until(lambda: second.lines("stands by"), "the second process to stand by", every=0.005)

    seen: list[tuple[int, int]] = []
    until = time.monotonic() + 1.5  # about 30 cycles of each process
    while time.monotonic() < until:
        report = read(health_file)
        assert report is not None
        seen.append((report["pid"], report["sequence"]))
    assert {pid for pid, _ in seen} == {first.pid}
    sequences = [sequence for _, sequence in seen]
    assert sequences == sorted(sequences)
    assert len(set(sequences)) > 5  # the writer kept writing meanwhile

    [standing] = second.lines("stands by")
    assert f"pid {first.pid} writes {health_file}" in standing
    assert second.lines("cannot write") == []

    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    took = wait_until(
        lambda: written_by(health_file, second), "the standby to take over", every=0.005
    )
    assert took < generous(DEADLINE / 3)  # a cycle (50 ms) or two, on a quiet machine
    report = read(health_file)
    assert report is not None
    assert (report["status"], report["app_version"]) == ("online", "second")
    assert second.lines("took over writing")
    assert len(second.lines("stands by")) == 1

    second.process.send_signal(signal.SIGTERM)
    assert second.process.wait(timeout=DEADLINE) == 0
    report = read(health_file)
    assert report is not None
    assert (report["status"], report["pid"]) == ("stopped", second.pid)


def frozen_mid_write(
    start_writer: Callable[..., Writer], health_file: Path
) -> tuple[Writer, Path, str]:
    """A first writer, frozen inside a write once it has written a report: the writer, the
    hold file whose removal lets it go on, and the name of its live temporary file."""
    hold = health_file.parent / "hold"
    first = start_writer("first", interval=0.1, hold=hold)
    wait_until(lambda: written_by(health_file, first), "the first writer's report", every=0.005)
    hold.touch()
    wait_until(Path(f"{hold}.inside").exists, "the writer to freeze inside a write", every=0.005)
    [live] = temp_files(health_file.parent)
    return first, hold, live


def test_a_starting_process_never_sweeps_the_writers_live_temporary_file(
    start_writer: Callable[..., Writer], tmp_path: Path
) -> None:
    """A second process starting while the writer is mid-write leaves its temporary file alone."""
    health_file = tmp_path / "health.json"
    first, hold, live = frozen_mid_write(start_writer, health_file)

    second = start_writer("second")
    wait_until(
        lambda: second.lines("stands by") or written_by(health_file, second),
        "the second process to start",
        every=0.005,
    )
    assert temp_files(tmp_path) == [live]  # not swept under the writer's feet

    before = read(health_file)
    assert before is not None
    hold.unlink()
    wait_until(
        lambda: (
            (report := read(health_file)) is not None and report["sequence"] > before["sequence"]
        ),
        "the writer's next report",
        every=0.005,
    )
    assert first.lines("cannot write") == []
    assert first.lines("FileNotFoundError") == []


@needs_flock
def test_a_writer_whose_lock_file_goes_mid_write_stands_by_without_a_write_error(
    start_writer: Callable[..., Writer], tmp_path: Path
) -> None:
    """The lock file removed while the writer is mid-write, a second process takes a new one
    and sweeps the writer's live temporary file as a killed writer's: the writer then says
    its lock was removed or replaced and stands by, and reports no failed write."""
    health_file = tmp_path / "health.json"
    first, hold, live = frozen_mid_write(start_writer, health_file)

    (tmp_path / ".health.json.lock").unlink()
    second = start_writer("second")
    wait_until(lambda: written_by(health_file, second), "the second process to write", every=0.005)
    assert live not in temp_files(tmp_path)  # swept from under the frozen write
    hold.unlink()

    wait_until(lambda: first.lines("stands by"), "the first process to stand by", every=0.005)
    assert first.lines("was removed or replaced while this service held it")
    assert first.lines("cannot write") == []
    assert second.lines("cannot write") == []
    assert written_by(health_file, second)


# A pre-fork server: the service starts, then the process forks a worker that lives on. The
# worker writes whether it thinks it writes the file and holds the lock, then sleeps.
FORKING_SCRIPT = """\
import asyncio, os, sys, time, warnings

import healthfile

database, health_file, state_file = sys.argv[1:4]
warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() with threads running


async def main():
    service = healthfile.AsyncHealthService(
        database, health_file=health_file, interval=0.05, pyproject=None, app_version="forker"
    )
    await service.start()
    child = os.fork()
    if child == 0:
        state = f"{os.getpid()} {service.writing} {service._publisher._role.lock.held}"
        with open(state_file + ".tmp", "w") as file:
            file.write(state)
        os.replace(state_file + ".tmp", state_file)
        time.sleep(120)
        os._exit(0)
    await asyncio.sleep(3600)


asyncio.run(main())
"""


def test_a_worker_forked_after_start_neither_writes_nor_keeps_the_lock_past_kill_9(
    start_writer: Callable[..., Writer], tmp_path: Path
) -> None:
    """A child forked from the writer holds no lock: after kill -9 of the writer, the standby
    takes over while the child lives."""
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    health_file = tmp_path / "health.json"
    state_file = tmp_path / "child-state"
    script = tmp_path / "forker.py"
    script.write_text(FORKING_SCRIPT)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHFILE_")}
    forker = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "app.db"), str(health_file), str(state_file)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environ,
    )
    child = 0
    try:
        wait_until(state_file.exists, "the forked child's state", every=0.005)
        pid, writing, held = state_file.read_text().split()
        child = int(pid)
        assert (writing, held) == ("False", "False")
        report = read(health_file)
        assert report is not None
        assert report["pid"] == forker.pid
        second = start_writer("second")
        wait_until(lambda: second.lines("stands by"), "the second process to stand by")

        forker.kill()
        forker.wait()
        wait_until(
            lambda: written_by(health_file, second),
            "the standby to take over while the forked child lives",
            timeout=10,
            every=0.005,
        )
        os.kill(child, 0)  # still alive: it did not keep the lock
    finally:
        if forker.poll() is None:
            forker.kill()
            forker.wait()
        if child:
            os.kill(child, signal.SIGKILL)


def writers_seen(path: Path, seconds: float) -> list[int]:
    """The pid of every report read in a tight loop for ``seconds``, one entry per change."""
    pids: list[int] = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        report = read(path)
        if report is not None and (not pids or pids[-1] != report["pid"]):
            pids.append(report["pid"])
    return pids


@needs_flock
@pytest.mark.parametrize("how", ["lock file removed", "directory removed and made again"])
def test_a_removed_lock_file_leaves_one_writer_within_a_cycle_or_two(
    start_writer: Callable[..., Writer], tmp_path: Path, how: str
) -> None:
    """After the lock file (or its whole directory) is removed under two processes, they
    settle on one writer at once instead of both writing for ever."""
    out = tmp_path / "out"
    health_file = out / "health.json"
    first = start_writer("first", health_file=health_file)
    wait_until(lambda: written_by(health_file, first), "the first writer's report", every=0.005)
    second = start_writer("second", health_file=health_file)
    wait_until(lambda: second.lines("stands by"), "the second process to stand by", every=0.005)

    for _ in range(3):
        if how == "lock file removed":
            (out / ".health.json.lock").unlink()
        else:
            # The writers may create a temporary file between rmtree's listing and its
            # rmdir ("Directory not empty"): remove again until the directory is gone.
            for _ in range(100):
                try:
                    shutil.rmtree(out)
                    break
                except OSError:
                    continue
            out.mkdir()
        wait_until(lambda: read(health_file) is not None, "a report", every=0.005)
        changes = writers_seen(health_file, 1.5)  # 30 cycles of each
        # One hand-over at most (a process may see the removal a cycle before the other);
        # two processes both writing change the writer dozens of times.
        assert len(changes) <= 2, changes
        assert set(changes) <= {first.pid, second.pid}
    lost = first.lines("removed or replaced") + second.lines("removed or replaced")
    assert lost
    if how == "lock file removed":  # a write may meet the removed directory: logged, retried
        assert first.lines("cannot write") == second.lines("cannot write") == []
