"""FileAgeCheck on real files: touched, old, missing, in the future, unreadable, hung."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from healthfile import CheckResult, FileAgeCheck
from helpers import ServiceFactory, generous, run_once, wait_until_async

pytestmark = pytest.mark.usefixtures("clean_environment")


def age(path: Path, seconds: float) -> Path:
    """Set ``path``'s modification time ``seconds`` ago (negative: in the future)."""
    moment = time.time() - seconds
    os.utime(path, (moment, moment))
    return path


def touched(directory: Path) -> Path:
    """A file named heartbeat in ``directory``, touched now."""
    path = directory / "heartbeat"
    path.touch()
    return path


async def run(check: FileAgeCheck) -> CheckResult:
    """One run of ``check``, bounded."""
    result: CheckResult = await run_once(check)
    return result


@pytest.mark.asyncio
async def test_a_freshly_touched_file_passes(tmp_path: Path) -> None:
    """A file touched a moment ago passes, saying how long ago."""
    heartbeat = tmp_path / "heartbeat"
    heartbeat.touch()

    result = await run(FileAgeCheck(heartbeat, max_age=60))

    assert result.status == "pass"
    assert result.output is not None
    assert result.output.startswith(f"{heartbeat} modified ")
    assert result.output.endswith(" s ago")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(75, "75 s"), (30 * 60, "30 min"), (5 * 3600, "5.0 h"), (3 * 86400, "3.0 d")],
)
async def test_a_file_older_than_max_age_fails_saying_its_age(
    tmp_path: Path, seconds: float, shown: str
) -> None:
    """A file not modified within max_age fails, with its age and the bound."""
    path = age(touched(tmp_path), seconds)

    result = await run(FileAgeCheck(path, max_age=60))

    assert result == CheckResult("fail", f"{path} modified {shown} ago, more than max_age 60 s")


@pytest.mark.asyncio
async def test_a_touch_makes_an_old_file_pass_again(tmp_path: Path) -> None:
    """The check reads the file each run: touching it again passes again."""
    path = tmp_path / "heartbeat"
    path.touch()
    check = FileAgeCheck(path, max_age=30)
    age(path, 100)
    stale = await run(check)

    path.touch()
    fresh = await run(check)

    assert (stale.status, fresh.status) == ("fail", "pass")


@pytest.mark.asyncio
async def test_a_missing_file_fails_saying_so(tmp_path: Path) -> None:
    """A file that does not exist fails, "no such file: PATH"."""
    path = tmp_path / "never-written"

    assert await run(FileAgeCheck(path, max_age=60)) == CheckResult("fail", f"no such file: {path}")


@pytest.mark.asyncio
async def test_a_file_in_a_missing_directory_fails_saying_so(tmp_path: Path) -> None:
    """A path whose directory is missing fails the same way."""
    path = tmp_path / "no-dir" / "heartbeat"

    assert await run(FileAgeCheck(path, max_age=60)) == CheckResult("fail", f"no such file: {path}")


@pytest.mark.asyncio
async def test_a_path_that_cannot_be_read_fails_with_the_reason(tmp_path: Path) -> None:
    """A path through a file (not a directory) fails with the system's reason."""
    (tmp_path / "file").touch()
    path = tmp_path / "file" / "heartbeat"

    assert await run(FileAgeCheck(path, max_age=60)) == CheckResult(
        "fail", f"cannot read {path}: Not a directory"
    )


@pytest.mark.asyncio
async def test_a_little_in_the_future_counts_as_now(tmp_path: Path) -> None:
    """A modification time up to 60 s ahead (another machine's clock) passes as just now."""
    path = age(touched(tmp_path), -50)

    assert await run(FileAgeCheck(path, max_age=10)) == CheckResult(
        "pass", f"{path} modified 0.0 s ago"
    )


@pytest.mark.asyncio
async def test_far_in_the_future_warns_of_a_clock(tmp_path: Path) -> None:
    """A modification time more than 60 s ahead warns: a clock is wrong, the age unknown."""
    path = age(touched(tmp_path), -3600)

    result = await run(FileAgeCheck(path, max_age=10))

    assert result == CheckResult("warn", f"{path} modified 60 min in the future: a clock is wrong")


@pytest.mark.asyncio
async def test_a_symlink_is_followed(tmp_path: Path) -> None:
    """A symlink is judged by the file it points to."""
    target = age(touched(tmp_path), 500)
    link = tmp_path / "link"
    try:
        link.symlink_to(target)
    except OSError:
        pytest.skip("cannot make symlinks here")

    result = await run(FileAgeCheck(link, max_age=60))

    assert result.status == "fail"


@pytest.mark.asyncio
async def test_a_hung_stat_times_out_and_is_not_started_twice(
    make_service: ServiceFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stat() runs in a daemon thread: a hung one times out, the next cycle does not start
    a second one but reads "still running", and once it returns the check reads again."""
    path = touched(tmp_path)
    release = threading.Event()
    real_stat = os.stat

    def hung_stat(target: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if Path(target) == path:
            release.wait(generous(30))
        return real_stat(target, *args, **kwargs)

    monkeypatch.setattr(os, "stat", hung_stat)
    service = make_service(checks=[FileAgeCheck(path, max_age=60, timeout=0.1)])
    try:
        await service.start()
        first = service.last_report
        second = await service.check_now()
    finally:
        release.set()

    assert first is not None
    assert first.checks["file_age"].output == "timed out after 0.1 s"
    assert (second.checks["file_age"].output or "").startswith("still running since ")
    deadline = time.monotonic() + generous(30)
    while (await service.check_now()).checks["file_age"].status != "pass":  # once it returns
        assert time.monotonic() < deadline, "the check never read the file again"
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_one_kept_thread_reads_the_file_and_ends_with_the_service(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    """The check reads in one thread of its own across cycles, which ends on stop()."""

    def readers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "healthfile-check-beat"]

    service = make_service(checks=[FileAgeCheck(touched(tmp_path), max_age=60, name="beat")])
    await service.start()
    [first] = readers()
    await service.check_now()
    await service.check_now()

    assert readers() == [first]
    await service.stop()
    await wait_until_async(lambda: not first.is_alive(), "the reading thread to end")


@pytest.mark.parametrize(
    ("max_age", "error"),
    [
        (0, ValueError),
        (-1, ValueError),
        (float("inf"), ValueError),
        ("60", TypeError),
        (True, TypeError),
        (None, TypeError),
    ],
)
def test_max_age_must_be_seconds(tmp_path: Path, max_age: Any, error: type[Exception]) -> None:
    """max_age is a number of seconds (else TypeError), at least 1 ms (else ValueError)."""
    with pytest.raises(error, match="max_age"):
        FileAgeCheck(tmp_path / "x", max_age=max_age)


def test_file_age_check_takes_the_common_options(tmp_path: Path) -> None:
    """FileAgeCheck takes the common options; its path is made absolute once."""
    check = FileAgeCheck(
        "heartbeat",
        max_age=90,
        name="worker",
        timeout=1,
        critical=False,
        groups=["live"],
        failure_threshold=2,
        success_threshold=1,
    )

    assert check.path == Path.cwd() / "heartbeat"
    assert (check.name, check.max_age, check.critical, check.groups) == (
        "worker",
        90.0,
        False,
        ("live",),
    )
    assert repr(check) == f"<FileAgeCheck 'worker' path={str(check.path)!r} max_age=90.0>"


@pytest.mark.asyncio
async def test_a_check_run_on_its_own_keeps_no_thread(tmp_path: Path) -> None:
    """Outside a service (no on_start), each run's reading thread ends after it."""
    check = FileAgeCheck(touched(tmp_path), max_age=60, name="alone")
    assert (await check.run()).status == "pass"
    await wait_until_async(
        lambda: not [t for t in threading.enumerate() if t.name == "healthfile-check-alone"],
        "the reading thread to end",
    )
