"""Windows and macOS on Linux: every fallback with the capability it replaces hidden.

Each test hides one capability the way the platform lacks it (an attribute deleted, an empty
``os.supports_dir_fd``, a directory open refused with EACCES, a rename refused while a reader
holds the file) and checks that healthfile still keeps its promises, or fails as an OSError.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import pytest

import healthfile._writer
from healthfile import AtomicWriter, DiskSpaceCheck, SQLiteCheck
from healthfile._judge import judge
from healthfile._sqlite import sqlite_readonly_uri
from healthfile._systemd import SystemdNotifier
from healthfile._version import read_app_version
from helpers import (
    DIRECTORY_FSYNC,
    FOREIGN,
    ServiceFactory,
    make_database,
    needs_directory_fsync,
    needs_unix_sockets,
    read_report,
)

OLD = b'{"status": "online", "old": true}\n'
NEW = b'{"status": "degraded", "new": true}\n'
DIR_FD_KEYWORDS = ("dir_fd", "src_dir_fd", "dst_dir_fd")
# Windows's values, which Linux does not define: only ever seen by the stand-ins below.
O_BINARY = 0x8000
F_FULLFSYNC = 51
needs_dir_fds = pytest.mark.skipif(
    not {os.open, os.stat, os.rename, os.unlink} <= os.supports_dir_fd,
    reason="needs calls relative to a directory descriptor (os.supports_dir_fd; not Windows)",
)


def names_in(directory: Path) -> set[str]:
    """The names of the entries of ``directory``."""
    return {entry.name for entry in directory.iterdir()}


def existing_target(tmp_path: Path) -> Path:
    """A health file holding OLD."""
    target = tmp_path / "health.json"
    target.write_bytes(OLD)
    return target


def kind_of(fd: int) -> str:
    """'dir' or 'file': what an open descriptor refers to."""
    return "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"


class Fsyncs:
    """Records what os.fsync was called on, then calls the real one."""

    def __init__(self) -> None:
        self.kinds: list[str] = []
        self.real = os.fsync

    def __call__(self, fd: int) -> None:
        self.kinds.append(kind_of(fd))
        self.real(fd)


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> Fsyncs:
    """Record every fsync (file or directory)."""
    recorder = Fsyncs()
    monkeypatch.setattr(os, "fsync", recorder)
    return recorder


@pytest.fixture
def no_dir_fds(monkeypatch: pytest.MonkeyPatch) -> None:
    """No calls relative to a directory descriptor, as on Windows: the set is empty and a
    dir_fd argument raises NotImplementedError ("dir_fd unavailable on this platform")."""
    monkeypatch.setattr(os, "supports_dir_fd", set())
    for name in ("open", "stat", "lstat", "rename", "replace", "unlink"):
        real = getattr(os, name)

        def refusing(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            if any(kwargs.get(keyword) is not None for keyword in DIR_FD_KEYWORDS):
                raise NotImplementedError(f"{_name}: dir_fd unavailable on this platform")
            return _real(*args, **kwargs)

        monkeypatch.setattr(os, name, refusing)


@pytest.fixture
def unopenable_directories(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """os.open of a directory fails with PermissionError(EACCES), as on Windows; the refused
    paths are listed."""
    refused: list[str] = []
    real_open = os.open

    def open_(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if dir_fd is None and os.path.isdir(path):
            refused.append(os.fspath(path))
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", open_)
    return refused


@pytest.fixture
def windows_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    """No os.fchmod, and every directory's st_mode reading 0o40777, as on Windows."""
    monkeypatch.delattr(os, "fchmod", raising=False)
    real_stat, real_fstat = os.stat, os.fstat

    def windows_mode(result: os.stat_result) -> os.stat_result:
        if not stat.S_ISDIR(result.st_mode):
            return result
        reduced = result.__reduce__()
        assert isinstance(reduced, tuple)
        fields, extra = reduced[1]
        return os.stat_result((stat.S_IFDIR | 0o777, *fields[1:]), extra)

    monkeypatch.setattr(os, "stat", lambda *a, **k: windows_mode(real_stat(*a, **k)))
    monkeypatch.setattr(os, "fstat", lambda fd: windows_mode(real_fstat(fd)))


# --- the writer without directory descriptors ---------------------------------------------


@needs_directory_fsync
@pytest.mark.asyncio
@pytest.mark.usefixtures("no_dir_fds")
async def test_writer_uses_full_paths_where_dir_fd_is_unsupported(
    tmp_path: Path, fsyncs: Fsyncs
) -> None:
    """With os.supports_dir_fd empty the file is replaced by full paths, directory fsynced."""
    target = tmp_path / "out" / "health.json"
    writer = AtomicWriter(target)

    await writer.replace(OLD)
    await writer.replace(NEW)

    assert target.read_bytes() == NEW
    assert names_in(target.parent) == {"health.json"}
    assert fsyncs.kinds == ["file", "dir", "file", "dir"]


@pytest.mark.asyncio
@pytest.mark.usefixtures("no_dir_fds")
async def test_writer_works_where_a_directory_cannot_be_opened(
    tmp_path: Path, fsyncs: Fsyncs, unopenable_directories: list[str]
) -> None:
    """Windows: no directory can be opened; the file is replaced all the same, without a
    directory fsync, and the missing parent is created."""
    target = tmp_path / "out" / "health.json"
    writer = AtomicWriter(target)

    await writer.replace(OLD)
    writer.replace_sync(NEW)

    assert unopenable_directories, "the writer never tried to open the directory"
    assert target.read_bytes() == NEW
    assert names_in(target.parent) == {"health.json"}
    assert fsyncs.kinds == ["file", "file"]


def test_missing_directory_whose_open_is_refused_outright_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should a missing directory's open fail with EACCES rather than ENOENT, it is created."""
    real_open = os.open
    directory = tmp_path / "data"

    def open_(path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        if Path(os.fsdecode(path)) == directory:
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(path, flags, mode, **kwargs)

    monkeypatch.setattr(os, "open", open_)

    AtomicWriter(directory / "health.json").replace_sync(NEW)

    assert (directory / "health.json").read_bytes() == NEW


@pytest.mark.asyncio
async def test_directory_that_cannot_be_opened_is_written_by_path_where_dir_fd_exists(
    tmp_path: Path, fsyncs: Fsyncs, unopenable_directories: list[str]
) -> None:
    """A directory open refused (POSIX: no read permission) is no reason not to write."""
    target = existing_target(tmp_path)

    await AtomicWriter(target).replace(NEW)

    assert unopenable_directories == [str(tmp_path)]
    assert target.read_bytes() == NEW
    assert fsyncs.kinds == ["file"]


@pytest.mark.asyncio
@pytest.mark.usefixtures("no_dir_fds", "unopenable_directories")
async def test_failure_on_the_path_route_keeps_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without directory descriptors a failed fsync still removes the temp, keeps the old file."""
    target = existing_target(tmp_path)

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", failing_fsync)

    with pytest.raises(OSError, match=os.strerror(errno.ENOSPC)):
        await AtomicWriter(target).replace(NEW)

    assert names_in(tmp_path) == {"health.json"}
    assert target.read_bytes() == OLD


@pytest.mark.asyncio
@pytest.mark.usefixtures("no_dir_fds", "unopenable_directories")
async def test_path_route_refuses_a_directory_and_replaces_a_symlink(tmp_path: Path) -> None:
    """Without directory descriptors a directory at the target is refused, a symlink replaced."""
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    with pytest.raises(IsADirectoryError):
        await AtomicWriter(blocked).replace(NEW)
    assert blocked.is_dir()

    victim = tmp_path / "victim"
    victim.write_bytes(OLD)
    link = tmp_path / "health.json"
    link.symlink_to(victim)
    await AtomicWriter(link).replace(NEW)

    assert not link.is_symlink()
    assert link.read_bytes() == NEW
    assert victim.read_bytes() == OLD


def test_supports_dir_fd_is_tested_for_the_calls_the_writer_makes() -> None:
    """os.replace and os.lstat are never listed in os.supports_dir_fd; their carriers are."""
    assert os.replace not in os.supports_dir_fd
    assert os.lstat not in os.supports_dir_fd
    assert set(healthfile._writer._DIR_FD_CALLS) == {os.open, os.stat, os.rename, os.unlink}


# --- modes, text mode, fsync --------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.usefixtures("windows_modes")
async def test_without_posix_modes_a_0o777_directory_is_written_and_the_mode_left_alone(
    tmp_path: Path,
) -> None:
    """No os.fchmod and directories reading 0o40777 (Windows): the file is written all the same."""
    directory = tmp_path / "shared"
    directory.mkdir()
    os.chmod(directory, 0o777)
    target = directory / "health.json"

    await AtomicWriter(target, mode=0o640).replace(NEW)
    AtomicWriter(tmp_path / "new" / "health.json").replace_sync(NEW)

    assert target.read_bytes() == NEW
    assert (tmp_path / "new" / "health.json").read_bytes() == NEW


@pytest.mark.asyncio
async def test_fchmod_without_getuid_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows 3.13 has an fchmod that only sets the read-only flag: it is not called there."""
    if not hasattr(os, "fchmod"):
        pytest.skip("no os.fchmod to leave unused")
    calls: list[int] = []
    monkeypatch.delattr(os, "getuid", raising=False)
    monkeypatch.setattr(os, "fchmod", lambda fd, mode: calls.append(mode))
    directory = tmp_path / "shared"
    directory.mkdir()
    os.chmod(directory, 0o777)

    await AtomicWriter(directory / "health.json", mode=0o444).replace(NEW)

    assert calls == []
    assert (directory / "health.json").read_bytes() == NEW


@pytest.mark.asyncio
async def test_temp_file_is_opened_with_o_binary_where_the_platform_has_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """O_BINARY (Windows) is in the temp file's open flags, so no newline becomes CRLF."""
    monkeypatch.setattr(os, "O_BINARY", O_BINARY, raising=False)
    real_open = os.open
    flags_seen: list[int] = []

    def open_(path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        if flags & os.O_EXCL:
            flags_seen.append(flags)
        return real_open(path, flags & ~O_BINARY, mode, **kwargs)

    monkeypatch.setattr(os, "open", open_)

    await AtomicWriter(existing_target(tmp_path)).replace(NEW)

    assert len(flags_seen) == 1
    assert flags_seen[0] & O_BINARY


@pytest.mark.asyncio
async def test_full_fsync_flushes_file_and_directory_where_fcntl_has_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsyncs: Fsyncs
) -> None:
    """macOS: F_FULLFSYNC is issued for the file and the directory, after their fsync."""
    fcntl = pytest.importorskip("fcntl")
    full: list[str] = []
    real_fcntl = fcntl.fcntl

    def fcntl_(fd: int, command: int, *args: Any) -> Any:
        if command == F_FULLFSYNC:
            full.append(kind_of(fd))
            return 0
        return real_fcntl(fd, command, *args)

    monkeypatch.setattr(fcntl, "F_FULLFSYNC", F_FULLFSYNC, raising=False)
    monkeypatch.setattr(fcntl, "fcntl", fcntl_)

    await AtomicWriter(existing_target(tmp_path)).replace(NEW)

    assert full == fsyncs.kinds == (["file", "dir"] if DIRECTORY_FSYNC else ["file"])


@pytest.mark.asyncio
async def test_full_fsync_refused_by_the_file_system_leaves_the_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsyncs: Fsyncs
) -> None:
    """F_FULLFSYNC failing (a file system without it) is no write failure: fsync stands."""
    fcntl = pytest.importorskip("fcntl")
    real_fcntl = fcntl.fcntl

    def fcntl_(fd: int, command: int, *args: Any) -> Any:
        if command == F_FULLFSYNC:
            raise OSError(errno.ENOTSUP, os.strerror(errno.ENOTSUP))
        return real_fcntl(fd, command, *args)

    monkeypatch.setattr(fcntl, "F_FULLFSYNC", F_FULLFSYNC, raising=False)
    monkeypatch.setattr(fcntl, "fcntl", fcntl_)
    target = existing_target(tmp_path)

    await AtomicWriter(target).replace(NEW)

    assert target.read_bytes() == NEW
    assert fsyncs.kinds == (["file", "dir"] if DIRECTORY_FSYNC else ["file"])


def test_writer_imports_and_writes_where_there_is_no_fcntl(tmp_path: Path) -> None:
    """Windows has no fcntl module: the writer imports without it and fsyncs plainly."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["fcntl"] = None  # import fcntl now raises ImportError
        from pathlib import Path
        from healthfile._writer import AtomicWriter
        target = Path(sys.argv[1])
        AtomicWriter(target).replace_sync(b"written\\n")
        print(target.read_text(), end="")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "health.json")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "written\n"


# --- a rename refused while a reader holds the file ---------------------------------------


class RefusingReplace:
    """os.replace refused ``times`` times with Windows's "Access is denied" (WinError 5)."""

    def __init__(self, times: float, on_refusal: Callable[[], object] | None = None) -> None:
        self.times = times
        self.calls = 0
        self.on_refusal = on_refusal
        self.real = os.replace

    def __call__(self, source: Any, target: Any, **kwargs: Any) -> None:
        self.calls += 1
        if self.calls <= self.times:
            if self.on_refusal is not None:
                self.on_refusal()
            raise PermissionError(errno.EACCES, "Access is denied", os.fspath(source), 5)
        self.real(source, target, **kwargs)


@pytest.mark.asyncio
async def test_replace_refused_a_few_times_by_a_reader_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rename refused three times (a monitor holds the file) lands on the fourth try."""
    refusing = RefusingReplace(3)
    monkeypatch.setattr(os, "replace", refusing)
    target = existing_target(tmp_path)

    await AtomicWriter(target).replace(NEW)

    assert refusing.calls == 4
    assert target.read_bytes() == NEW
    assert names_in(tmp_path) == {"health.json"}


def test_replace_sync_retries_a_refused_rename_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """replace_sync() retries a rename refused by a reader the same way."""
    refusing = RefusingReplace(2)
    monkeypatch.setattr(os, "replace", refusing)
    target = existing_target(tmp_path)

    AtomicWriter(target).replace_sync(NEW)

    assert refusing.calls == 3
    assert target.read_bytes() == NEW


@pytest.mark.asyncio
async def test_replace_refused_for_good_fails_after_about_a_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rename refused at every try fails after five tries (about 1 s): old file, no temp."""
    refusing = RefusingReplace(float("inf"))
    monkeypatch.setattr(os, "replace", refusing)
    target = existing_target(tmp_path)
    started = time.monotonic()

    with pytest.raises(PermissionError) as raised:
        await AtomicWriter(target).replace(NEW)

    assert time.monotonic() - started < 10.0
    assert raised.value.errno == errno.EACCES
    assert refusing.calls == 1 + len(healthfile._writer.REPLACE_RETRY_DELAYS) == 5
    assert sum(healthfile._writer.REPLACE_RETRY_DELAYS) == pytest.approx(1.0)
    assert target.read_bytes() == OLD
    assert names_in(tmp_path) == {"health.json"}


@pytest.mark.asyncio
async def test_cancel_while_a_refused_rename_waits_abandons_the_write_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelling the writer's task during the retry wait (40 s here) ends it at once, cleanly."""
    monkeypatch.setattr(healthfile._writer, "REPLACE_RETRY_DELAYS", (10.0,) * 4)
    loop = asyncio.get_running_loop()
    refused = asyncio.Event()
    refusing = RefusingReplace(float("inf"), lambda: loop.call_soon_threadsafe(refused.set))
    monkeypatch.setattr(os, "replace", refusing)
    target = existing_target(tmp_path)
    write = asyncio.ensure_future(AtomicWriter(target).replace(NEW))
    await refused.wait()
    started = time.monotonic()

    write.cancel()
    with pytest.raises(asyncio.CancelledError):
        await write

    assert time.monotonic() - started < 5.0
    assert refusing.calls == 1
    assert target.read_bytes() == OLD
    assert names_in(tmp_path) == {"health.json"}


# --- only OSError leaves the writer -------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("error", [NotImplementedError, AttributeError, ValueError])
@pytest.mark.parametrize("function", ["open", "write", "fsync", "replace", "lstat", "fstat"])
async def test_only_oserror_leaves_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, function: str, error: type[Exception]
) -> None:
    """A call the platform lacks (NotImplementedError, AttributeError, ValueError) is an OSError,
    after which the temp file is gone and the old file is intact."""

    if function == "fstat" and not healthfile._writer._posix_modes():
        pytest.skip("without POSIX modes the writer reads no directory mode (no fstat)")

    def missing(*args: Any, **kwargs: Any) -> Any:
        raise error(f"{function}: unavailable on this platform")

    monkeypatch.setattr(os, function, missing)
    target = existing_target(tmp_path)

    with pytest.raises(OSError, match="unavailable on this platform") as raised:
        await AtomicWriter(target).replace(NEW)
    with pytest.raises(OSError, match="unavailable on this platform") as raised_sync:
        AtomicWriter(target).replace_sync(NEW)
    monkeypatch.undo()

    assert isinstance(raised.value.__cause__, error)
    assert isinstance(raised_sync.value.__cause__, error)
    assert target.read_bytes() == OLD
    assert names_in(tmp_path) == {"health.json"}


@pytest.mark.asyncio
@pytest.mark.usefixtures("no_dir_fds", "unopenable_directories", "windows_modes")
async def test_writer_keeps_its_promises_with_every_windows_capability_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All at once (no dir_fd, no directory open, no fchmod, 0o777 dirs, no fcntl): it writes."""
    monkeypatch.setattr(healthfile._writer, "_fcntl", None)
    monkeypatch.delattr(os, "O_NOFOLLOW", raising=False)
    monkeypatch.delattr(os, "O_CLOEXEC", raising=False)
    target = tmp_path / "data" / "health.json"
    writer = AtomicWriter(target)

    for data in (OLD, NEW):
        await writer.replace(data)

    assert target.read_bytes() == NEW
    assert names_in(target.parent) == {"health.json"}


def test_sweep_leaves_a_temp_file_it_cannot_remove_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A leftover that cannot be removed (held open on Windows) is skipped, not fatal."""
    target = existing_target(tmp_path)
    held = tmp_path / ".health.json.0123456789abcdef.tmp"
    loose = tmp_path / ".health.json.fedcba9876543210.tmp"
    for leftover in (held, loose):
        leftover.write_bytes(OLD)
    real_unlink = os.unlink

    def unlink(path: Any, **kwargs: Any) -> None:
        if Path(path) == held:
            raise PermissionError(errno.EACCES, "Access is denied", os.fspath(path), 32)
        real_unlink(path, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)

    assert AtomicWriter(target).sweep() == 1

    assert names_in(tmp_path) == {"health.json", held.name}


# --- the service on a platform without Unix sockets ---------------------------------------


def test_notify_without_unix_sockets_is_a_logged_no_op(
    monkeypatch: pytest.MonkeyPatch, healthfile_logs: pytest.LogCaptureFixture
) -> None:
    """No socket.AF_UNIX (Windows): notify() returns False, logs once, never raises."""
    monkeypatch.delattr(socket, "AF_UNIX", raising=False)
    notifier = SystemdNotifier({"NOTIFY_SOCKET": "/run/systemd/notify"})

    assert notifier.notify("READY=1") is False
    assert notifier.notify("WATCHDOG=1") is False
    notifier.close()

    warnings = [r.getMessage() for r in healthfile_logs.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "no Unix sockets" in warnings[0]


@pytest.mark.asyncio
async def test_service_with_notify_systemd_and_no_unix_sockets_stops_with_stopped(
    make_service: ServiceFactory, health_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """notify_systemd=True with NOTIFY_SOCKET set, no AF_UNIX: start, stop (twice), 'stopped'."""
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.delattr(socket, "AF_UNIX", raising=False)
    service = make_service(notify_systemd=True)

    await service.start()
    await service.check_now()
    await service.stop()
    await asyncio.wait_for(service.stop(), timeout=10)

    report = read_report(health_file)
    assert report is not None
    assert report["status"] == "stopped"


@needs_unix_sockets
def test_notify_without_sock_cloexec_sends_on_a_non_inheritable_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No socket.SOCK_CLOEXEC (macOS): the message arrives; the socket is not inherited."""
    monkeypatch.delattr(socket, "SOCK_CLOEXEC", raising=False)
    directory = Path(tempfile.mkdtemp(prefix="hf-"))  # a socket path must fit in 108 bytes
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        listener.bind(str(directory / "notify"))
        listener.settimeout(30)
        notifier = SystemdNotifier({"NOTIFY_SOCKET": str(directory / "notify")})

        assert notifier.notify("READY=1") is True
        assert listener.recv(4096) == b"READY=1"
        assert notifier._socket is not None
        assert notifier._socket.get_inheritable() is False
        notifier.close()
    finally:
        listener.close()
        shutil.rmtree(directory)


# --- version, disk space, SQLite URIs, the probe ------------------------------------------


def test_app_version_is_read_without_o_nonblock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No os.O_NONBLOCK (Windows): the version is still read from pyproject.toml."""
    monkeypatch.delattr(os, "O_NONBLOCK", raising=False)
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "app"\nversion = "4.5.6"\n')

    assert read_app_version(pyproject) == "4.5.6"


@pytest.mark.asyncio
async def test_disk_space_check_uses_disk_usage_not_statvfs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No os.statvfs (Windows): DiskSpaceCheck reads shutil.disk_usage, Windows's own call."""
    usage = shutil.disk_usage(tmp_path)
    asked: list[Path] = []

    def disk_usage(path: Any) -> Any:
        asked.append(Path(path))
        return usage

    monkeypatch.delattr(os, "statvfs", raising=False)
    monkeypatch.setattr(shutil, "disk_usage", disk_usage)

    result = await DiskSpaceCheck(tmp_path, min_free_bytes=0, min_free_ratio=0).run()

    assert asked == [tmp_path]
    assert result.status == "pass"
    assert f"({usage.free / usage.total:.1%})" in (result.output or "")


@pytest.mark.parametrize(
    ("path", "uri"),
    [
        (PureWindowsPath(r"C:\data\app.db"), "file:///C:/data/app.db?mode=ro"),
        (PureWindowsPath(r"c:\Users\Ann Lee\app.db"), "file:///c:/Users/Ann%20Lee/app.db?mode=ro"),
        (PureWindowsPath(r"D:\odd#name?%.db"), "file:///D:/odd%23name%3F%25.db?mode=ro"),
        (PureWindowsPath(r"\\server\share\app.db"), "file:////server/share/app.db?mode=ro"),
        (
            PureWindowsPath(r"\\server\share\dir\a b.db"),
            "file:////server/share/dir/a%20b.db?mode=ro",
        ),
        (PurePosixPath("/srv/data/app.db"), "file:/srv/data/app.db?mode=ro"),
        (PurePosixPath("//srv/app.db"), "file:/srv/app.db?mode=ro"),
        (PurePosixPath(os.fsdecode(b"/srv/caf\xe9/app.db")), "file:/srv/caf%E9/app.db?mode=ro"),
        (PurePosixPath("/srv/café/app.db"), "file:/srv/caf%C3%A9/app.db?mode=ro"),
    ],
    ids=[
        "drive",
        "drive-space",
        "drive-reserved",
        "unc",
        "unc-space",
        "posix",
        "posix-double-slash",
        "posix-not-utf8",
        "posix-utf8",
    ],
)
def test_sqlite_uri_is_built_as_sqlite_documents(path: Any, uri: str) -> None:
    """Drive letters as file:///C:/..., UNC as file:////server/share/..., POSIX bytes as-is."""
    assert sqlite_readonly_uri(path) == uri


def test_sqlite_uri_of_a_relative_path_is_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative database path is made absolute once: a later chdir changes nothing."""
    monkeypatch.chdir(tmp_path)

    assert sqlite_readonly_uri("app.db") == sqlite_readonly_uri(tmp_path / "app.db")


@pytest.mark.asyncio
async def test_sqlite_check_opens_a_database_whose_path_is_not_utf8(tmp_path: Path) -> None:
    """A database under a directory named with a byte that is not UTF-8 is found and read."""
    directory = tmp_path / os.fsdecode(b"caf\xe9")
    try:
        directory.mkdir()
    except (OSError, UnicodeEncodeError) as exc:  # macOS's APFS and Windows refuse the name
        pytest.skip(f"this file system refuses names that are not UTF-8: {exc}")
    database = make_database(directory / "app.db")

    result = await SQLiteCheck(database, timeout=30).run()

    assert result.status == "pass", result.output


@pytest.mark.asyncio
async def test_check_retries_an_open_refused_by_a_replace_in_progress(
    make_service: ServiceFactory, health_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """healthfile check: an open refused twice (Windows, mid-replace) is retried, and read."""
    service = make_service()
    await service.start()
    refused = refuse_opening(monkeypatch, health_file, times=2)

    verdict = await asyncio.to_thread(judge, health_file)

    assert verdict.verdict == "online", verdict.reason
    assert refused == [str(health_file)] * 3


@pytest.mark.asyncio
async def test_check_calls_a_file_unreadable_after_a_bounded_retry(
    make_service: ServiceFactory, health_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """healthfile check: an open refused at every try is 'unreadable' after six tries (~0.25 s)."""
    service = make_service()
    await service.start()
    refused = refuse_opening(monkeypatch, health_file, times=1000)
    started = time.monotonic()

    verdict = await asyncio.to_thread(judge, health_file)

    assert time.monotonic() - started < 10.0
    assert verdict.verdict == "unreadable"
    assert "Access is denied" in verdict.reason
    assert len(refused) == 6


def test_check_opens_the_file_with_o_binary_where_the_platform_has_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """healthfile check reads in binary mode on Windows (O_BINARY), so bytes stay bytes."""
    monkeypatch.setattr(os, "O_BINARY", O_BINARY, raising=False)
    path = tmp_path / "health.json"
    path.write_text(json.dumps({"status": "online"}))
    real_open = os.open
    flags_seen: list[int] = []

    def open_(name: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        flags_seen.append(flags)
        return real_open(name, flags & ~O_BINARY, mode, **kwargs)

    monkeypatch.setattr(os, "open", open_)

    judge(path)

    assert flags_seen
    assert flags_seen[0] & O_BINARY


def refuse_opening(monkeypatch: pytest.MonkeyPatch, path: Path, *, times: int) -> list[str]:
    """Make os.open of ``path`` fail ``times`` times with a sharing violation; list the tries."""
    tries: list[str] = []
    real_open = os.open
    lock = threading.Lock()

    def open_(name: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        if os.fspath(name) == str(path):
            with lock:
                tries.append(str(path))
                if len(tries) <= times:
                    raise PermissionError(errno.EACCES, "Access is denied", str(path), 32)
        return real_open(name, flags, mode, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    return tries


# --- the suite itself, and the foreign-platform run ---------------------------------------


def test_suite_imports_without_posix_only_modules() -> None:
    """Every test module imports where pwd, grp, fcntl, termios and resource do not exist."""
    script = textwrap.dedent(
        """
        import importlib.util, pathlib, sys
        for name in ("pwd", "grp", "fcntl", "termios", "resource"):
            sys.modules[name] = None  # importing it now raises ImportError
        tests = pathlib.Path(sys.argv[1])
        sys.path.insert(0, str(tests))
        for path in sorted(tests.rglob("*.py")):
            if "foreign" in path.parts:
                continue
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = sys.modules[path.stem] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        """
    )
    tests = Path(__file__).parent
    done = subprocess.run(
        [sys.executable, "-c", script, str(tests)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.skipif(not FOREIGN, reason="only in the foreign-platform run (HEALTHFILE_FOREIGN=1)")
def test_foreign_run_hides_every_posix_only_capability(tmp_path: Path) -> None:
    """Under tests/foreign/sitecustomize.py the capabilities Windows lacks are really gone."""
    assert os.supports_dir_fd == set()
    for module, name in [
        (os, "fchmod"),
        (os, "O_NONBLOCK"),
        (os, "statvfs"),
        (socket, "AF_UNIX"),
        (socket, "SOCK_CLOEXEC"),
    ]:
        assert not hasattr(module, name), name
    with pytest.raises(PermissionError):
        os.open(tmp_path, os.O_RDONLY)
    assert stat.S_IMODE(os.stat(tmp_path).st_mode) == 0o777
    assert shutil.disk_usage(tmp_path).total > 0
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(NotImplementedError):
            loop.add_signal_handler(signal.SIGINT, lambda: None)
    finally:
        loop.close()


@needs_dir_fds
def test_dir_fd_route_is_kept_where_the_platform_has_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where os.supports_dir_fd has the calls, the temp file is created relative to a dir fd."""
    real_open = os.open
    dir_fds: list[int | None] = []

    def open_(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if flags & os.O_EXCL:
            dir_fds.append(dir_fd)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", open_)

    AtomicWriter(existing_target(tmp_path)).replace_sync(NEW)

    assert len(dir_fds) == 1
    assert dir_fds[0] is not None


# --- the CI workflow ----------------------------------------------------------------------


def test_ci_workflow_runs_the_suite_and_the_type_checks_on_every_platform() -> None:
    """ci.yml: 3 OSes x Python 3.10-3.15 (prereleases taken), exactly the classifiers,
    make's commands, SHA-pinned actions, no credentials."""
    yaml = pytest.importorskip("yaml")
    root = Path(__file__).resolve().parent.parent
    workflow = yaml.safe_load((root / ".github" / "workflows" / "ci.yml").read_text())
    makefile = (root / "Makefile").read_text()
    classifiers = re.findall(
        r'"Programming Language :: Python :: (3\.\d+)"', (root / "pyproject.toml").read_text()
    )
    nox_pythons = classifiers  # noxfile.py reads the same classifiers
    assert nox_pythons == ["3.10", "3.11", "3.12", "3.13", "3.14", "3.15"]

    assert workflow["permissions"] == {}
    matrix = workflow["jobs"]["test"]["strategy"]["matrix"]
    assert set(matrix["os"]) == {"ubuntu-latest", "macos-latest", "windows-latest"}
    assert matrix["python"] == nox_pythons  # the classifiers claim only what CI runs
    [setup] = [
        step
        for step in workflow["jobs"]["test"]["steps"]
        if step.get("uses", "").startswith("actions/setup-python@")
    ]
    assert setup["with"]["python-version"] == "${{ matrix.python }}"
    assert setup["with"]["allow-prereleases"] is True  # 3.15 before its final reaches runners
    test_commands = "\n".join(step.get("run", "") for step in workflow["jobs"]["test"]["steps"])
    for command in (
        "ruff check .",
        "ruff format --check .",
        "mypy --platform win32 src",
        "mypy --platform darwin src",
    ):
        assert command in test_commands, command
        assert command in makefile, command
    # The workflow runs every test; make test leaves the slow ones to make matrix.
    covered = "--cov --cov-report= --cov-fail-under=0 -q"
    assert f"pytest -n 3 {covered}" in test_commands
    assert f'pytest -n 3 -m "not slow" {covered}' in makefile
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            uses = step.get("uses")
            if uses is None:
                continue
            _, _, ref = uses.partition("@")
            assert re.fullmatch(r"[0-9a-f]{40}", ref), uses
            if uses.startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False


def test_noxfile_runs_the_supported_pythons_present_and_names_the_rest(tmp_path: Path) -> None:
    """make matrix: nox takes the classifiers' Pythons found on PATH, the newest of them for
    debug and foreign runs, and names the ones it leaves to CI."""
    pytest.importorskip("nox")
    root = Path(__file__).resolve().parent.parent
    for version in ("3.10", "3.12"):
        fake = tmp_path / f"python{version}"
        fake.write_text("#!/bin/sh\nexit 0\n")
        fake.chmod(0o755)
    if shutil.which("python3.10", path=str(tmp_path)) is None:
        pytest.skip("this platform finds no script without an extension on PATH (Windows)")
    script = "import noxfile; print(noxfile.PRESENT, noxfile.NEWEST)"
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=root,
        env={**os.environ, "PATH": str(tmp_path), "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.split("\n")[0] == "['3.10', '3.12'] 3.12"
    assert "Python 3.11, 3.13, 3.14, 3.15 not installed here: left to CI" in done.stderr
