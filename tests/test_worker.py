"""healthfile's own worker thread: never behind the host's default executor, never holding exit."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from healthfile._lock import lock_path
from healthfile._threads import WorkerThread
from helpers import ServiceFactory, generous, read_report

# The app's blocking work waits this long at most; healthfile must finish far sooner.
APP_BLOCKS = 60.0
PROMPT = 10.0


@pytest.mark.reliability
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


def workers() -> list[threading.Thread]:
    """healthfile's worker threads alive now."""
    return [t for t in threading.enumerate() if t.name == "healthfile-worker"]


@pytest.mark.reliability
@pytest.mark.parametrize("prometheus", [False, True], ids=["health-file", "with-prometheus"])
@pytest.mark.asyncio
async def test_a_clean_stop_returns_with_the_lock_file_removed_and_the_worker_ended(
    make_service: ServiceFactory, health_file: Path, tmp_path: Path, prometheus: bool
) -> None:
    """Ten clean stops in a row: each returns with `stopped` on disk, the lock file removed and
    the worker thread gone, as the contract says; each start has its one worker."""
    options = {}
    if prometheus:
        pytest.importorskip("prometheus_client")
        options["prometheus_file"] = tmp_path / "app.prom"
    service = make_service(**options)
    lock = lock_path(health_file)
    for _ in range(10):
        await service.start()
        assert len(workers()) == 1
        assert lock.exists()
        await service.stop()
        assert workers() == []
        assert not lock.exists()
        stopped = read_report(health_file)
        assert stopped is not None
        assert stopped["status"] == "stopped"


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


@pytest.mark.reliability
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


@pytest.mark.asyncio
async def test_end_waits_for_the_queued_calls_then_the_thread_without_blocking_the_loop() -> None:
    """end() returns once the queued calls have run and the thread is gone; the loop runs
    meanwhile; on a worker that never started it returns at once."""
    worker = WorkerThread("healthfile-test-worker")
    await worker.end()  # never started: nothing to wait for
    worker = WorkerThread("healthfile-test-worker")
    gate = threading.Event()
    worker.submit(gate.wait, PROMPT)
    ending = asyncio.ensure_future(worker.end())
    await asyncio.sleep(0.05)
    assert not ending.done()  # the queued call still runs, and the loop is free
    gate.set()
    await asyncio.wait_for(ending, PROMPT)
    assert "healthfile-test-worker" not in {thread.name for thread in threading.enumerate()}
