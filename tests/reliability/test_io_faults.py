"""Failing fsync, write and rename, and an output directory that goes away or turns read-only."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import healthfile._writer
from helpers import (
    ServiceFactory,
    content,
    messages,
    names,
    needs_directory_fsync,
    report_on_disk,
    unmount,
)

pytestmark = pytest.mark.reliability


# The writer's `os` is the process-wide module: the patches below reach the writer through it,
# and they act only on the writer's own temporary files, passing every other call through.
writer_os: ModuleType = vars(healthfile._writer)["os"]
real_open = os.open
real_close = os.close
real_write = os.write
real_fsync = os.fsync
real_replace = os.replace

CYCLES = 4


class WriterFaults:
    """Fail the writer's own os.write / os.fsync / os.replace on demand and record its calls.

    The writer's temporary files are the ones it creates with O_EXCL; a descriptor leaves the
    record when it is closed, so a reused number is never mistaken for one of them.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.open_temps: dict[int, str] = {}  # fd -> temporary file name, while open
        self.created: list[str] = []  # every temporary file name, in order
        self.fsynced: list[str] = []  # temporary file names passed to a successful fsync
        self.fsync_failed: list[tuple[int, str]] = []
        self.renamed: list[str] = []  # temporary file names os.replace was called with
        self.fail: dict[str, int] = {}  # function name -> errno to fail it with
        self.fail_dir_fsync: int | None = None
        monkeypatch.setattr(writer_os, "open", self._open)
        monkeypatch.setattr(writer_os, "close", self._close)
        monkeypatch.setattr(writer_os, "write", self._write)
        monkeypatch.setattr(writer_os, "fsync", self._fsync)
        monkeypatch.setattr(writer_os, "replace", self._replace)

    def _raise(self, function: str) -> None:
        error = self.fail.get(function)
        if error is not None:
            raise OSError(error, os.strerror(error))

    def _open(self, path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        fd = real_open(path, flags, mode, **kwargs)
        if flags & os.O_EXCL:
            name = os.fsdecode(path)
            self.open_temps[fd] = name
            self.created.append(name)
        return fd

    def _close(self, fd: int) -> None:
        self.open_temps.pop(fd, None)
        real_close(fd)

    def _write(self, fd: int, data: Any) -> int:
        if fd in self.open_temps:
            self._raise("write")
        return real_write(fd, data)

    def _fsync(self, fd: Any) -> None:
        name = self.open_temps.get(fd) if isinstance(fd, int) else None
        if name is None:
            if self.fail_dir_fsync is not None:
                raise OSError(self.fail_dir_fsync, os.strerror(self.fail_dir_fsync))
            real_fsync(fd)
            return
        # An fsync error may have dropped the dirty pages: the file must never be trusted again.
        assert name not in {failed for _, failed in self.fsync_failed}, f"{name} fsynced again"
        try:
            self._raise("fsync")
        except OSError:
            self.fsync_failed.append((fd, name))
            raise
        real_fsync(fd)
        self.fsynced.append(name)

    def _replace(self, src: Any, dst: Any, **kwargs: Any) -> None:
        name = os.fsdecode(src)
        if name in self.created:
            self.renamed.append(name)
            self._raise("replace")
        real_replace(src, dst, **kwargs)


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> WriterFaults:
    """Fault injection into the writer's own os calls."""
    return WriterFaults(monkeypatch)


# --- failing write, fsync, rename --------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("function", "error"),
    [
        ("write", errno.EIO),
        ("write", errno.ENOSPC),
        ("fsync", errno.EIO),
        ("fsync", errno.ENOSPC),
        ("replace", errno.EIO),
        ("replace", errno.EXDEV),
    ],
)
async def test_failing_call_keeps_old_file_logs_once_and_recovers(
    make_service: ServiceFactory,
    health_file: Path,
    faults: WriterFaults,
    healthfile_logs: pytest.LogCaptureFixture,
    function: str,
    error: int,
) -> None:
    """Over several cycles a failing call leaves the old file, no temp file, one log line."""
    service = make_service()
    await service.start()
    old = content(health_file)
    faults.fail[function] = error

    created_before = len(faults.created)
    for _ in range(CYCLES):
        report = await service.check_now()
        assert service.running
        assert content(health_file) == old
        assert names(health_file.parent) == {"health.json"}

    # Every cycle tried a fresh temporary file of its own.
    attempts = faults.created[created_before:]
    assert len(attempts) == CYCLES
    assert len(set(attempts)) == CYCLES
    errors = messages(healthfile_logs, "cannot write")
    assert len(errors) == 1, errors
    assert os.strerror(error) in errors[0]

    del faults.fail[function]
    recovered = await service.check_now()

    assert recovered.sequence == report.sequence + 1
    assert report_on_disk(health_file)["sequence"] == recovered.sequence
    assert len(messages(healthfile_logs, "again after")) == 1
    assert len(messages(healthfile_logs, "cannot write")) == 1
    assert names(health_file.parent) == {"health.json"}


@pytest.mark.asyncio
async def test_failed_fsync_is_never_retried_on_the_same_file(
    make_service: ServiceFactory,
    health_file: Path,
    faults: WriterFaults,
    healthfile_logs: pytest.LogCaptureFixture,
) -> None:
    """A temporary file whose fsync failed is never fsynced again nor renamed into place."""
    service = make_service()
    await service.start()
    old = content(health_file)
    faults.fail["fsync"] = errno.EIO
    for _ in range(CYCLES):
        await service.check_now()
    faults.fail["fsync"] = errno.ENOSPC
    for _ in range(CYCLES):
        await service.check_now()
    assert content(health_file) == old
    del faults.fail["fsync"]
    report = await service.check_now()

    failed = [name for _, name in faults.fsync_failed]
    assert len(failed) == 2 * CYCLES
    assert len(set(failed)) == len(failed)
    assert set(failed).isdisjoint(faults.fsynced)
    assert set(failed).isdisjoint(faults.renamed)
    assert report_on_disk(health_file)["sequence"] == report.sequence
    # One line per distinct error, one for the recovery.
    assert len(messages(healthfile_logs, "cannot write")) == 2
    assert len(messages(healthfile_logs, "again after")) == 1
    assert names(health_file.parent) == {"health.json"}


@needs_directory_fsync
@pytest.mark.asyncio
async def test_failing_directory_fsync_after_the_rename_is_logged_once_and_recovers(
    make_service: ServiceFactory,
    health_file: Path,
    faults: WriterFaults,
    healthfile_logs: pytest.LogCaptureFixture,
) -> None:
    """fsync of the directory failing (after the rename) leaves a whole file and is logged once."""
    service = make_service()
    await service.start()
    faults.fail_dir_fsync = errno.EIO
    for _ in range(CYCLES):
        report = await service.check_now()
        # The rename has happened: the file is this cycle's report, whole, but not known durable.
        assert report_on_disk(health_file)["sequence"] == report.sequence
        assert names(health_file.parent) == {"health.json"}
    assert len(messages(healthfile_logs, "cannot write")) == 1

    faults.fail_dir_fsync = None
    report = await service.check_now()

    assert service.last_report == report
    assert len(messages(healthfile_logs, "again after")) == 1


# --- the output directory ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_missing_or_removed_output_directory_is_created_by_the_next_cycle(
    make_service: ServiceFactory,
    tmp_path: Path,
    healthfile_logs: pytest.LogCaptureFixture,
) -> None:
    """A missing directory chain is created at start, and again each time it is removed."""
    health_file = tmp_path / "var" / "lib" / "health.json"
    service = make_service(health_file=health_file)
    await service.start()
    assert names(health_file.parent) == {"health.json"}
    for removed in (health_file.parent, health_file.parent.parent, health_file.parent):
        shutil.rmtree(removed)
        report = await service.check_now()
        assert report_on_disk(health_file)["sequence"] == report.sequence
        assert names(health_file.parent) == {"health.json"}
    assert messages(healthfile_logs, "cannot write") == []


@pytest.mark.asyncio
async def test_output_directory_replaced_by_a_file_is_logged_once_and_recovers(
    make_service: ServiceFactory,
    health_file: Path,
    healthfile_logs: pytest.LogCaptureFixture,
) -> None:
    """A regular file where the directory was: writes fail, one log line, the file untouched."""
    service = make_service()
    await service.start()
    shutil.rmtree(health_file.parent)
    health_file.parent.write_bytes(b"someone else's file\n")

    for _ in range(CYCLES):
        await service.check_now()
        assert service.running
        assert content(health_file.parent) == b"someone else's file\n"
    errors = messages(healthfile_logs, "cannot write")
    assert len(errors) == 1, errors
    assert "Not a directory" in errors[0]

    health_file.parent.unlink()
    health_file.parent.mkdir()
    report = await service.check_now()

    assert report_on_disk(health_file)["sequence"] == report.sequence
    assert len(messages(healthfile_logs, "again after")) == 1


def mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


class ReadOnlyMount:
    """A mount point that can be switched between read-only and read-write."""

    def __init__(self, directory: Path, kind: str) -> None:
        self.directory = directory
        self.kind = kind

    def set_read_only(self, read_only: bool) -> None:
        options = ("ro" if read_only else "rw") + (",bind" if self.kind == "bind" else "")
        switched = mount("-o", f"remount,{options}", str(self.directory))
        assert switched.returncode == 0, switched.stderr


@pytest.fixture(params=["tmpfs", "bind"])
def remountable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReadOnlyMount]:
    """A tmpfs, or a bind mount of a directory onto itself, that can be made read-only."""
    if os.geteuid() != 0:
        pytest.skip("mounting needs root (CI runs as root); root also ignores mode bits")
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("mount(8) and umount(8) are not installed")
    directory = tmp_path / "mnt"
    directory.mkdir()
    if request.param == "tmpfs":
        mounted = mount("-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(directory))
    else:
        mounted = mount("--bind", str(directory), str(directory))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount here: {mounted.stderr.strip()}")
    try:
        yield ReadOnlyMount(directory, request.param)
    finally:
        unmount(directory)


@pytest.mark.asyncio
async def test_read_only_output_directory_is_logged_once_and_recovers(
    remountable: ReadOnlyMount,
    make_service: ServiceFactory,
    healthfile_logs: pytest.LogCaptureFixture,
) -> None:
    """A directory remounted read-only: old file kept, one log line, writes resume on rw."""
    health_file = remountable.directory / "health.json"
    service = make_service(health_file=health_file)
    await service.start()
    old = content(health_file)

    remountable.set_read_only(True)
    try:
        for _ in range(CYCLES):
            await service.check_now()
            assert service.running
            assert content(health_file) == old
            assert names(remountable.directory) == {"health.json"}
    finally:
        remountable.set_read_only(False)
    errors = messages(healthfile_logs, "cannot write")
    assert len(errors) == 1, errors
    assert "Read-only file system" in errors[0]

    report = await service.check_now()

    assert report_on_disk(health_file)["sequence"] == report.sequence
    assert len(messages(healthfile_logs, "again after")) == 1
    await service.stop()
    assert report_on_disk(health_file)["status"] == "stopped"
