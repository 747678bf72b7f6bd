"""healthfile's own worker thread: never behind the host's default executor, never holding exit."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from healthfile._threads import WorkerThread
from helpers import ServiceFactory, generous, read_report

# The app's blocking work waits this long at most; healthfile must finish far sooner.
APP_BLOCKS = 60.0
PROMPT = 10.0


@pytest.mark.asyncio
async def test_a_full_default_executor_delays_neither_start_nor_cycles_nor_stop(
    make_service: ServiceFactory, health_file: Path, tmp_path: Path
) -> None:
    """With the default executor full of the app's blocking work, start, cycles and stop go on."""
    pytest.importorskip("prometheus_client")
    release = threading.Event()
    blockers = [
        asyncio.ensure_future(asyncio.to_thread(release.wait, APP_BLOCKS)) for _ in range(64)
    ]
    try:
        service = make_service(prometheus_file=tmp_path / "app.prom")
        await asyncio.wait_for(service.start(), PROMPT)
        report = await asyncio.wait_for(service.check_now(), PROMPT)
        on_disk = read_report(health_file)
        assert on_disk is not None
        assert on_disk["sequence"] == report.sequence
        assert "healthfile_up" in (tmp_path / "app.prom").read_text()
        await asyncio.wait_for(service.stop(), PROMPT)
        stopped = read_report(health_file)
        assert stopped is not None
        assert stopped["status"] == "stopped"
        assert not any(blocker.done() for blocker in blockers)  # full the whole time
    finally:
        release.set()
        await asyncio.gather(*blockers)


@pytest.mark.asyncio
async def test_the_worker_thread_runs_from_start_to_stop_and_no_longer(
    make_service: ServiceFactory,
) -> None:
    """Each start() has one worker thread; it ends after stop(), however many restarts."""

    def workers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "healthfile-worker"]

    service = make_service()
    for _ in range(20):
        await service.start()
        assert workers()  # the previous start's may still be ending for a moment
        await service.stop()
    deadline = time.monotonic() + PROMPT
    while workers() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    assert workers() == []


def test_calls_run_in_order_in_one_named_daemon_thread_that_ends_after_shutdown() -> None:
    """Calls run one at a time, in order, in one daemon thread, which ends once shut down."""
    worker = WorkerThread("healthfile-test-worker")
    seen: list[tuple[int, str, bool]] = []

    def record(number: int) -> int:
        thread = threading.current_thread()
        seen.append((number, thread.name, thread.daemon))
        return number * 2

    futures = [worker.submit(record, number) for number in range(20)]
    assert [future.result(timeout=PROMPT) for future in futures] == [n * 2 for n in range(20)]
    assert seen == [(n, "healthfile-test-worker", True) for n in range(20)]
    failing = worker.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing.result(timeout=PROMPT)
    worker.shutdown(wait=True)
    assert "healthfile-test-worker" not in {thread.name for thread in threading.enumerate()}
    with pytest.raises(RuntimeError, match="after shutdown"):
        worker.submit(record, 99)


def test_a_hung_call_does_not_hold_interpreter_exit(tmp_path: Path) -> None:
    """A call hung in the worker (a dead disk) never holds the interpreter's exit."""
    script = tmp_path / "hang.py"
    script.write_text(
        "import time\n"
        "from healthfile._threads import WorkerThread\n"
        f"WorkerThread().submit(time.sleep, {APP_BLOCKS})\n"
        "time.sleep(0.1)\n"
    )
    started = time.monotonic()
    subprocess.run([sys.executable, str(script)], check=True, timeout=APP_BLOCKS * 2)
    assert time.monotonic() - started < generous(APP_BLOCKS / 2)
