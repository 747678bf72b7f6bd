"""Disk full, for real: a small tmpfs filled to ENOSPC under a running service."""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from healthfile import CheckResult, check
from helpers import ServiceFactory, messages, mounted_tmpfs, names

pytestmark = pytest.mark.reliability


CYCLES = 5
PAGE = 4096


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A fresh 256 KiB tmpfs with 64 inodes, unmounted at the end (skipped where impossible)."""
    with mounted_tmpfs(tmp_path / "tmpfs", "256k,nr_inodes=64") as directory:
        yield directory


def free_bytes(directory: Path) -> int:
    """Bytes still available on the file system holding ``directory``."""
    return shutil.disk_usage(directory).free


def fill(filler: Path) -> None:
    """Write ``filler`` until the file system says ENOSPC."""
    chunk = b"\0" * PAGE
    with filler.open("ab", buffering=0) as file:
        while True:
            try:
                file.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return


def leave_free_pages(filler: Path, pages: int) -> None:
    """Shrink ``filler`` until at least ``pages`` pages are free again."""
    directory = filler.parent
    size = filler.stat().st_size
    while free_bytes(directory) < pages * PAGE:
        size = max(0, (size - 1) // PAGE * PAGE)
        os.truncate(filler, size)


def long_warning(number: int) -> Callable[[], object]:
    """An async check that warns with a 250-character output (to make the report big)."""

    async def warn() -> CheckResult:
        return CheckResult("warn", f"{number:03d}" + "w" * 247)

    return warn


@pytest.mark.asyncio
@pytest.mark.parametrize("free_pages", [0, 1], ids=["no-page-free", "one-page-free"])
async def test_full_disk_keeps_the_old_file_whole_and_writes_again_when_space_returns(
    tmpfs: Path,
    make_service: ServiceFactory,
    healthfile_logs: pytest.LogCaptureFixture,
    free_pages: int,
) -> None:
    """ENOSPC for real: old file identical, no temp file, one log line; recovery when freed."""
    health_file = tmpfs / "health.json"
    # Thirty checks with long outputs make a report of three pages: with one page free, the
    # temporary file is created and partly written before the disk is full.
    checks = [check(f"check{n:02d}", long_warning(n)) for n in range(30)]
    service = make_service(health_file=health_file, checks=checks)
    await service.start()
    old = health_file.read_bytes()
    assert len(old) > 2 * PAGE
    filler = tmpfs / "filler"
    fill(filler)
    leave_free_pages(filler, free_pages)
    assert free_bytes(tmpfs) < len(old)

    for _ in range(CYCLES):
        report = await service.check_now()
        assert service.running
        assert health_file.read_bytes() == old
        assert names(tmpfs) == {"health.json", "filler"}

    errors = messages(healthfile_logs, "cannot write")
    assert len(errors) == 1, errors
    assert "No space left on device" in errors[0]
    assert str(health_file) in errors[0]
    assert messages(healthfile_logs, "again after") == []

    filler.unlink()
    recovered = await service.check_now()

    assert recovered.sequence == report.sequence + 1
    assert json.loads(health_file.read_bytes())["sequence"] == recovered.sequence
    assert service.last_report == recovered
    again = messages(healthfile_logs, "again after")
    assert len(again) == 1, again
    assert "No space left on device" in again[0]
    assert len(messages(healthfile_logs, "cannot write")) == 1
    assert names(tmpfs) == {"health.json"}


@pytest.mark.asyncio
async def test_start_on_a_full_disk_returns_and_the_first_file_appears_when_space_returns(
    tmpfs: Path,
    make_service: ServiceFactory,
    healthfile_logs: pytest.LogCaptureFixture,
) -> None:
    """start() on a full disk returns and logs once; the file appears once space is freed."""
    health_file = tmpfs / "health.json"
    filler = tmpfs / "filler"
    fill(filler)
    service = make_service(health_file=health_file)

    await service.start()
    for _ in range(CYCLES):
        await service.check_now()

    assert service.running
    assert service.last_report is not None  # made, not written
    assert service.last_write_error is not None
    assert "No space left on device" in service.last_write_error
    assert names(tmpfs) == {"filler"}
    assert len(messages(healthfile_logs, "cannot write")) == 1

    filler.unlink()
    report = await service.check_now()

    assert json.loads(health_file.read_bytes())["sequence"] == report.sequence
    assert len(messages(healthfile_logs, "again after")) == 1
    assert names(tmpfs) == {"health.json"}


def use_up_inodes(directory: Path) -> list[Path]:
    """Create empty files in ``directory`` until the file system has no inode left."""
    made: list[Path] = []
    while True:
        path = directory / f"inode{len(made):04d}"
        try:
            path.touch(exist_ok=False)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            return made
        made.append(path)


@pytest.mark.asyncio
async def test_no_inode_left_keeps_the_old_file_logs_once_and_recovers(
    tmpfs: Path,
    make_service: ServiceFactory,
    healthfile_logs: pytest.LogCaptureFixture,
) -> None:
    """Out of inodes (no temporary file can be created): old file kept, one log line, recovery."""
    health_file = tmpfs / "health.json"
    service = make_service(health_file=health_file)
    await service.start()
    old = health_file.read_bytes()
    made = use_up_inodes(tmpfs)

    for _ in range(CYCLES):
        await service.check_now()
        assert service.running
        assert health_file.read_bytes() == old
    errors = messages(healthfile_logs, "cannot write")
    assert len(errors) == 1, errors
    assert "No space left on device" in errors[0]

    for path in made:
        path.unlink()
    report = await service.check_now()

    assert json.loads(health_file.read_bytes())["sequence"] == report.sequence
    assert len(messages(healthfile_logs, "again after")) == 1
    assert names(tmpfs) == {"health.json"}
