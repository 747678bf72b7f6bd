"""BaseException in a sync check's or on_change's thread: a fail or an error log, not the loop's."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import healthfile
from healthfile import HealthCheckService
from helpers import ServiceFactory, read_report

DEADLINE = 30.0  # generous: a loaded CI machine


class Goodbye(BaseException):
    """A BaseException of the application's own, neither Exception nor asyncio's."""


RAISED: list[tuple[Callable[[], BaseException], str]] = [
    (lambda: SystemExit(3), "SystemExit: 3"),
    (lambda: SystemExit(), "SystemExit"),
    (lambda: Goodbye("see you"), "Goodbye: see you"),
]


def raiser(make: Callable[[], BaseException]) -> Callable[..., None]:
    """A function that raises a fresh exception from ``make`` each call."""

    def raise_it(*args: object) -> None:
        raise make()

    return raise_it


@pytest.mark.reliability
@pytest.mark.asyncio
@pytest.mark.parametrize(("make", "output"), RAISED)
async def test_base_exception_in_a_sync_checks_thread_is_a_fail_and_the_service_goes_on(
    make_service: ServiceFactory,
    health_file: Path,
    make: Callable[[], BaseException],
    output: str,
) -> None:
    """A sync check raising any BaseException fails as `Type: message`; the service goes on."""
    service = make_service(checks=[healthfile.check("exits", raiser(make))])
    await service.start()
    first = service.last_report
    assert first is not None
    assert first.checks["exits"].status == "fail"
    assert first.checks["exits"].output == output
    assert first.status == "degraded"
    later = await service.check_now()
    assert later.checks["exits"].output == output
    on_disk = read_report(health_file)
    assert on_disk is not None
    assert on_disk["sequence"] == later.sequence == first.sequence + 1
    await service.stop()
    stopped = read_report(health_file)
    assert stopped is not None
    assert stopped["status"] == "stopped"
    await service.start()
    assert service.running
    await service.stop()


@pytest.mark.reliability
@pytest.mark.asyncio
@pytest.mark.parametrize(("make", "output"), RAISED)
async def test_base_exception_in_a_sync_on_change_is_a_logged_error(
    make_service: ServiceFactory,
    health_file: Path,
    healthfile_logs: pytest.LogCaptureFixture,
    make: Callable[[], BaseException],
    output: str,
) -> None:
    """A sync on_change raising any BaseException is an error log naming it; nothing else."""
    failing = [True]

    def flapping() -> bool:
        return not failing[0]

    service = make_service(checks=[healthfile.check("flapping", flapping)], on_change=raiser(make))
    await service.start()
    failing[0] = False
    report = await service.check_now()
    assert report.status == "online"
    await service.stop()
    stopped = read_report(health_file)
    assert stopped is not None
    assert stopped["status"] == "stopped"
    errors = [
        record.getMessage()
        for record in healthfile_logs.records
        if record.getMessage().startswith("on_change callback failed")
    ]
    assert len(errors) == 3  # the first report, the recovery, the stopped report
    assert all(output.split(":")[0] in message for message in errors)


@pytest.mark.reliability
def test_thread_facade_survives_a_check_that_raises_system_exit(tmp_path: Path) -> None:
    """Facade, a check raising SystemExit: file kept, stop() writes stopped, restart works."""
    health_file = tmp_path / "health.json"
    facade = HealthCheckService(
        check_interval=0.05,
        health_file=health_file,
        database=None,
        checks=[healthfile.check("database", raiser(lambda: SystemExit(2)))],
        pyproject=None,
    )
    try:
        for _ in range(2):
            facade.start()
            deadline = time.monotonic() + DEADLINE
            first = None
            while time.monotonic() < deadline:
                report = read_report(health_file)
                if report is not None and report["status"] != "stopped":
                    first = first or report
                    if report["sequence"] >= first["sequence"] + 2:
                        break
                time.sleep(0.01)
            else:
                pytest.fail("the facade stopped writing the file")
            assert report["checks"]["database"]["output"] == "SystemExit: 2"
            assert facade.is_running
            facade.stop(timeout=DEADLINE)
            assert not facade.is_running
            stopped = read_report(health_file)
            assert stopped is not None
            assert stopped["status"] == "stopped"
    finally:
        facade.stop(timeout=DEADLINE)


def run_script(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    """Run ``body`` (using ``health_file``) in a fresh interpreter; return what it did."""
    script = tmp_path / "app.py"
    script.write_text(
        "import asyncio, healthfile\n"
        f"health_file = {str(tmp_path / 'health.json')!r}\n" + textwrap.dedent(body)
    )
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


@pytest.mark.reliability
def test_keyboard_interrupt_in_sync_check_and_on_change_threads_never_reaches_asyncio_run(
    tmp_path: Path,
) -> None:
    """KeyboardInterrupt raised in a sync check's and a sync on_change's threads never ends it."""
    done = run_script(
        tmp_path,
        """
        def interrupt(*args):
            raise KeyboardInterrupt("from a thread")

        async def main():
            service = healthfile.AsyncHealthService(
                None,
                health_file=health_file,
                pyproject=None,
                checks=[healthfile.check("database", interrupt)],
                on_change=interrupt,
            )
            await service.start()
            for _ in range(3):
                report = await service.check_now()
            await service.stop()
            print(report.checks["database"].output)

        asyncio.run(main())
        """,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "KeyboardInterrupt: from a thread"
    assert "on_change callback failed" in done.stderr
    stopped = read_report(tmp_path / "health.json")
    assert stopped is not None
    assert stopped["status"] == "stopped"


@pytest.mark.reliability
def test_system_exit_raised_by_an_async_check_on_the_loop_ends_asyncio_run(
    tmp_path: Path,
) -> None:
    """An async check raising SystemExit on the loop ends asyncio.run() with it, as asyncio does."""
    done = run_script(
        tmp_path,
        """
        async def leave():
            raise SystemExit(7)

        async def main():
            service = healthfile.AsyncHealthService(
                None,
                health_file=health_file,
                pyproject=None,
                checks=[healthfile.check("database", leave)],
            )
            await service.start()

        asyncio.run(main())
        """,
    )
    assert done.returncode == 7
