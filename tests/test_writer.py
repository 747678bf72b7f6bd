"""AtomicWriter: exact bytes, modes, refusals, clean failure and cancellation, real readers."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import healthfile._writer
from healthfile import AtomicWriter, UnsafeDirectoryError
from helpers import needs_directory_fsync, needs_fifos, needs_posix_modes

# The writer's `os` is the process-wide module: patching it patches every caller.
writer_os: ModuleType = vars(healthfile._writer)["os"]
real_fsync = os.fsync
real_open = os.open

OLD = b'{"status": "online", "old": true}\n'
NEW = b'{"status": "degraded", "new": true, "padding": "' + b"x" * 2000 + b'"}\n'


def names_in(directory: Path) -> set[str]:
    """Return the names of the entries of ``directory``."""
    return {entry.name for entry in directory.iterdir()}


def existing_target(tmp_path: Path, content: bytes = OLD) -> Path:
    """Create a health file holding ``content`` and return its path."""
    target = tmp_path / "health.json"
    target.write_bytes(content)
    return target


class TempFiles:
    """Record the temporary files the writer creates (names and descriptors)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.fds: set[int] = set()

    def open(self, path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        fd = real_open(path, flags, mode, **kwargs)
        if flags & os.O_EXCL:
            self.names.append(os.fsdecode(path))
            self.fds.add(fd)
        return fd


@pytest.fixture
def temp_files(monkeypatch: pytest.MonkeyPatch) -> TempFiles:
    """Wrap os.open so a test knows which descriptors are the writer's temporary files."""
    recorder = TempFiles()
    monkeypatch.setattr(writer_os, "open", recorder.open)
    return recorder


# --- what lands on disk -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_replace_writes_exact_bytes(tmp_path: Path) -> None:
    """replace() leaves the target holding exactly the given bytes, and no temporary file."""
    target = existing_target(tmp_path)
    data = bytes(range(256)) * 40

    await AtomicWriter(target).replace(data)

    assert target.read_bytes() == data
    assert names_in(tmp_path) == {"health.json"}


@pytest.mark.asyncio
async def test_replace_creates_new_file(tmp_path: Path) -> None:
    """replace() creates the target when no file exists yet."""
    target = tmp_path / "health.json"

    await AtomicWriter(target).replace(NEW)

    assert target.read_bytes() == NEW


@pytest.mark.asyncio
async def test_replace_writes_empty_bytes(tmp_path: Path) -> None:
    """replace() with empty data leaves an empty file, not the old content."""
    target = existing_target(tmp_path)

    await AtomicWriter(target).replace(b"")

    assert target.read_bytes() == b""


@needs_posix_modes
@pytest.mark.asyncio
@pytest.mark.parametrize("process_umask", [0o077, 0o022, 0o777])
async def test_default_mode_is_0644_whatever_the_umask(
    tmp_path: Path, umask: Callable[[int], None], process_umask: int
) -> None:
    """The written file is mode 0644 by default under any process umask."""
    target = tmp_path / "health.json"
    umask(process_umask)

    await AtomicWriter(target).replace(NEW)

    assert stat.S_IMODE(target.stat().st_mode) == 0o644


@needs_posix_modes
@pytest.mark.asyncio
async def test_default_mode_replaces_mode_of_old_file(tmp_path: Path) -> None:
    """An old file with a restrictive mode is replaced by a file with the configured mode."""
    target = existing_target(tmp_path)
    target.chmod(0o600)

    await AtomicWriter(target).replace(NEW)

    assert stat.S_IMODE(target.stat().st_mode) == 0o644


@needs_posix_modes
@pytest.mark.asyncio
@pytest.mark.parametrize("mode", [0o600, 0o640, 0o444])
async def test_custom_mode_is_applied(
    tmp_path: Path, umask: Callable[[int], None], mode: int
) -> None:
    """A custom mode is applied exactly, even under a umask that would strip it."""
    target = tmp_path / "health.json"
    umask(0o077)

    await AtomicWriter(target, mode=mode).replace(NEW)

    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert target.read_bytes() == NEW


@pytest.mark.asyncio
async def test_missing_parent_directories_are_created(tmp_path: Path) -> None:
    """The missing parent directory (and its missing parents) is created."""
    target = tmp_path / "data" / "nested" / "health.json"

    await AtomicWriter(target).replace(NEW)

    assert target.read_bytes() == NEW


def test_replace_sync_creates_missing_parent_directory(tmp_path: Path) -> None:
    """replace_sync() also creates the missing parent directory."""
    target = tmp_path / "data" / "health.json"

    AtomicWriter(target).replace_sync(NEW)

    assert target.read_bytes() == NEW


@pytest.mark.asyncio
async def test_symlink_at_target_is_replaced_not_followed(tmp_path: Path) -> None:
    """A symlink at the target is replaced by a regular file; the file it pointed to is kept."""
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes(OLD)
    target = tmp_path / "health.json"
    target.symlink_to(elsewhere)

    await AtomicWriter(target).replace(NEW)

    assert not target.is_symlink()
    assert stat.S_ISREG(target.lstat().st_mode)
    assert target.read_bytes() == NEW
    assert elsewhere.read_bytes() == OLD


@pytest.mark.asyncio
async def test_dangling_symlink_at_target_is_replaced(tmp_path: Path) -> None:
    """A dangling symlink at the target is replaced and its missing target is not created."""
    missing = tmp_path / "missing.json"
    target = tmp_path / "health.json"
    target.symlink_to(missing)

    await AtomicWriter(target).replace(NEW)

    assert not target.is_symlink()
    assert target.read_bytes() == NEW
    assert not missing.exists()


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_directory_at_target_is_refused_and_left_alone(tmp_path: Path) -> None:
    """A directory at the target raises OSError and stays a directory with its contents."""
    target = tmp_path / "health.json"
    target.mkdir()
    (target / "inside").write_bytes(OLD)

    with pytest.raises(OSError, match="not a regular file"):
        await AtomicWriter(target).replace(NEW)

    assert target.is_dir()
    assert (target / "inside").read_bytes() == OLD
    assert names_in(tmp_path) == {"health.json"}


@needs_fifos
@pytest.mark.asyncio
async def test_fifo_at_target_is_refused_and_left_alone(tmp_path: Path) -> None:
    """A FIFO at the target raises OSError (without blocking on it) and stays a FIFO."""
    target = tmp_path / "health.json"
    os.mkfifo(target)

    with pytest.raises(OSError, match="not a regular file"):
        await AtomicWriter(target).replace(NEW)

    assert stat.S_ISFIFO(target.lstat().st_mode)
    assert names_in(tmp_path) == {"health.json"}


@needs_fifos
def test_fifo_at_target_is_refused_by_replace_sync(tmp_path: Path) -> None:
    """replace_sync() refuses a FIFO at the target with OSError as well."""
    target = tmp_path / "health.json"
    os.mkfifo(target)

    with pytest.raises(OSError, match="not a regular file"):
        AtomicWriter(target).replace_sync(NEW)

    assert stat.S_ISFIFO(target.lstat().st_mode)


@needs_posix_modes
@pytest.mark.asyncio
async def test_world_writable_directory_without_sticky_bit_is_refused(tmp_path: Path) -> None:
    """A world-writable directory without the sticky bit raises UnsafeDirectoryError."""
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o777)
    target = existing_target(directory)

    with pytest.raises(UnsafeDirectoryError) as raised:
        await AtomicWriter(target).replace(NEW)

    assert isinstance(raised.value, PermissionError)
    assert target.read_bytes() == OLD
    assert names_in(directory) == {"health.json"}


@pytest.mark.asyncio
async def test_world_writable_directory_with_sticky_bit_is_accepted(tmp_path: Path) -> None:
    """A world-writable directory with the sticky bit (like /tmp) is written normally."""
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o1777)
    target = existing_target(directory)

    await AtomicWriter(target).replace(NEW)

    assert target.read_bytes() == NEW


# --- failures at the lowest level ---------------------------------------------------------


def test_writer_uses_the_os_module_the_fault_tests_patch() -> None:
    """The writer calls the process-wide os module, so patching it reaches the writer."""
    assert writer_os is os


def failing(function: str, error: int, fds: set[int] | None = None) -> Callable[..., Any]:
    """Return a stand-in for ``os.<function>`` raising OSError(error), for ``fds`` if given."""
    real = getattr(os, function)

    def fail(*args: Any, **kwargs: Any) -> Any:
        if fds is None or args[0] in fds:
            raise OSError(error, os.strerror(error))
        return real(*args, **kwargs)

    return fail


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("function", "error"),
    [
        ("write", errno.ENOSPC),
        ("write", errno.EIO),
        ("fsync", errno.ENOSPC),
        ("fsync", errno.EIO),
        ("replace", errno.EIO),
        ("replace", errno.ENOSPC),
    ],
)
async def test_failed_write_removes_temp_file_and_keeps_old_file(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    temp_files: TempFiles,
    function: str,
    error: int,
) -> None:
    """A write, fsync or rename failure raises OSError, leaves no temp file and the old bytes."""
    target = existing_target(tmp_path)
    fds = None if function == "replace" else temp_files.fds
    monkeypatch.setattr(writer_os, function, failing(function, error, fds))

    with pytest.raises(OSError, match=os.strerror(error)) as raised:
        await AtomicWriter(target).replace(NEW)

    assert raised.value.errno == error
    assert temp_files.names, "the writer never created a temporary file"
    assert names_in(tmp_path) == {"health.json"}
    assert target.read_bytes() == OLD


@pytest.mark.parametrize("function", ["write", "fsync", "replace"])
def test_failed_replace_sync_removes_temp_file_and_keeps_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, temp_files: TempFiles, function: str
) -> None:
    """replace_sync() cleans up and keeps the old file on a low-level failure too."""
    target = existing_target(tmp_path)
    fds = None if function == "replace" else temp_files.fds
    monkeypatch.setattr(writer_os, function, failing(function, errno.ENOSPC, fds))

    with pytest.raises(OSError, match=os.strerror(errno.ENOSPC)):
        AtomicWriter(target).replace_sync(NEW)

    assert names_in(tmp_path) == {"health.json"}
    assert target.read_bytes() == OLD


def sweeping_replace(times: int) -> tuple[Callable[..., None], list[str]]:
    """os.replace that, its first ``times`` calls, first removes the file it is to move
    (what another writer's sweep does to a temporary file under a write); and the list of
    the names removed."""
    real_replace = os.replace
    removed: list[str] = []

    def replace(source: Any, target: Any, **kwargs: Any) -> None:
        if len(removed) < times:
            os.unlink(source, dir_fd=kwargs.get("src_dir_fd"))
            removed.append(os.path.basename(os.fsdecode(source)))
        real_replace(source, target, **kwargs)

    return replace, removed


@pytest.mark.reliability
@pytest.mark.asyncio
async def test_a_temporary_file_removed_under_the_write_makes_it_start_once_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A temporary file gone at the rename is written again, rendered again (a guard in the
    rendering is asked again), and the new bytes land."""
    target = existing_target(tmp_path)
    replace, removed = sweeping_replace(1)
    monkeypatch.setattr(writer_os, "replace", replace)
    renders: list[bytes] = []

    def render() -> bytes:
        renders.append(NEW)
        return NEW

    await AtomicWriter(target).replace(render)

    assert len(removed) == 1
    assert len(renders) == 2
    assert target.read_bytes() == NEW
    assert names_in(tmp_path) == {"health.json"}


@pytest.mark.asyncio
async def test_a_guard_that_fails_on_the_second_rendering_ends_the_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the second rendering raises (a lock found lost) propagates; nothing is written."""
    target = existing_target(tmp_path)
    replace, removed = sweeping_replace(1)
    monkeypatch.setattr(writer_os, "replace", replace)
    guards = iter([True, False])

    def render() -> bytes:
        if not next(guards):
            raise LookupError("the lock is another's now")
        return NEW

    with pytest.raises(LookupError, match="another's"):
        await AtomicWriter(target).replace(render)

    assert removed
    assert target.read_bytes() == OLD
    assert names_in(tmp_path) == {"health.json"}


@pytest.mark.reliability
@pytest.mark.parametrize("sync", [False, True])
def test_a_temporary_file_removed_twice_fails_the_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sync: bool
) -> None:
    """Once more only: a temporary file removed again is the FileNotFoundError of the rename,
    and the old bytes stay."""
    target = existing_target(tmp_path)
    replace, removed = sweeping_replace(3)
    monkeypatch.setattr(writer_os, "replace", replace)
    writer = AtomicWriter(target)

    def write() -> None:
        if sync:
            writer.replace_sync(NEW)
        else:
            asyncio.run(writer.replace(NEW))

    with pytest.raises(FileNotFoundError):
        write()

    assert len(removed) == 2
    assert len(set(removed)) == 2  # a fresh temporary file each time
    assert target.read_bytes() == OLD
    assert names_in(tmp_path) == {"health.json"}


@pytest.mark.asyncio
async def test_short_writes_are_completed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, temp_files: TempFiles
) -> None:
    """os.write writing fewer bytes than asked is continued until every byte is written."""
    target = existing_target(tmp_path)
    real_write = os.write

    def write_a_little(fd: int, data: Any) -> int:
        if fd in temp_files.fds:
            return real_write(fd, bytes(data)[:7])
        return real_write(fd, data)

    monkeypatch.setattr(writer_os, "write", write_a_little)

    await AtomicWriter(target).replace(NEW)

    assert target.read_bytes() == NEW


@pytest.mark.asyncio
async def test_failed_fsync_is_not_retried_on_the_same_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, temp_files: TempFiles
) -> None:
    """After an fsync failure the writer gives up that temp file; the next write uses a new one."""
    target = existing_target(tmp_path)
    fsynced: list[int] = []

    def fsync_failing_once(fd: int) -> None:
        fsynced.append(fd)
        if len(fsynced) == 1:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(writer_os, "fsync", fsync_failing_once)
    writer = AtomicWriter(target)

    with pytest.raises(OSError, match=os.strerror(errno.EIO)):
        await writer.replace(NEW)

    assert len(fsynced) == 1
    assert len(temp_files.names) == 1
    assert target.read_bytes() == OLD

    await writer.replace(NEW)

    assert len(temp_files.names) == 2
    assert temp_files.names[0] != temp_files.names[1]
    assert target.read_bytes() == NEW
    assert names_in(tmp_path) == {"health.json"}


@needs_directory_fsync
@pytest.mark.asyncio
async def test_directory_is_fsynced_after_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replacement fsyncs both the temporary file and the directory holding the target."""
    target = existing_target(tmp_path)
    kinds: list[str] = []

    def recording_fsync(fd: int) -> None:
        mode = os.fstat(fd).st_mode
        kinds.append("dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "?")
        real_fsync(fd)

    monkeypatch.setattr(writer_os, "fsync", recording_fsync)

    await AtomicWriter(target).replace(NEW)

    assert kinds == ["file", "dir"]


def test_replace_sync_works_from_a_plain_thread(tmp_path: Path) -> None:
    """replace_sync() replaces the file when called from a thread without an event loop."""
    target = existing_target(tmp_path)
    writer = AtomicWriter(target)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            writer.replace_sync(NEW)
        except BaseException as exc:  # handed to the test thread to fail there
            errors.append(exc)

    thread = threading.Thread(target=run, name="plain-writer")
    thread.start()
    thread.join()

    assert errors == []
    assert target.read_bytes() == NEW
    assert names_in(tmp_path) == {"health.json"}


# --- sweep --------------------------------------------------------------------------------


def test_sweep_removes_only_this_targets_temp_files(tmp_path: Path) -> None:
    """sweep() removes `.<name>.<16 hex>.tmp` files and leaves every look-alike alone."""
    target = existing_target(tmp_path)
    leftovers = [".health.json.0123456789abcdef.tmp", ".health.json.fedcba9876543210.tmp"]
    look_alikes = [
        ".health.json.tmp",
        ".health.json.xyz.tmp",
        ".health.json.0123456789abcde.tmp",  # 15 hex digits
        ".health.json.0123456789abcdef0.tmp",  # 17 hex digits
        ".health.json.0123456789abcdeg.tmp",  # not hex
        ".health.json.0123456789abcdef.tmp.bak",
        ".health.json.0123456789abcdef.tmpx",
        "health.json.0123456789abcdef.tmp",  # no leading dot
        ".health.json0123456789abcdef.tmp",
        ".other.json.0123456789abcdef.tmp",  # another target's temp file
        ".xhealth.json.0123456789abcdef.tmp",
        "notes.txt",
    ]
    for name in leftovers + look_alikes:
        (tmp_path / name).write_bytes(b"partial")

    removed = AtomicWriter(target).sweep()

    assert removed == len(leftovers)
    assert names_in(tmp_path) == {"health.json", *look_alikes}
    assert target.read_bytes() == OLD


def test_sweep_of_missing_directory_removes_nothing(tmp_path: Path) -> None:
    """sweep() on a target whose directory does not exist returns 0 without raising."""
    assert AtomicWriter(tmp_path / "missing" / "health.json").sweep() == 0


@pytest.mark.asyncio
async def test_sweep_async_removes_leftovers(tmp_path: Path) -> None:
    """sweep_async() removes leftover temp files off the loop and reports how many."""
    target = existing_target(tmp_path)
    (tmp_path / ".health.json.00000000deadbeef.tmp").write_bytes(b"partial")

    assert await AtomicWriter(target).sweep_async() == 1
    assert names_in(tmp_path) == {"health.json"}


# --- cancellation -------------------------------------------------------------------------


class SlowFsync:
    """An os.fsync whose first call on a temp file waits until the test releases it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, temp_fds: set[int]) -> None:
        self.loop = loop
        self.temp_fds = temp_fds
        self.entered = asyncio.Event()
        self.release = threading.Event()
        self.held = False

    def __call__(self, fd: int) -> None:
        if fd in self.temp_fds and not self.held:
            self.held = True
            self.loop.call_soon_threadsafe(self.entered.set)
            # A bound, not a synchronisation: the test sets `release` explicitly.
            if not self.release.wait(timeout=30):
                raise AssertionError("the test never released the slow fsync")
        real_fsync(fd)


@pytest.mark.asyncio
@pytest.mark.parametrize("release_before_cancel_is_seen", [False, True])
async def test_cancelled_replace_leaves_no_temp_file_and_a_whole_file(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    temp_files: TempFiles,
    release_before_cancel_is_seen: bool,
) -> None:
    """Cancelling mid-write propagates CancelledError, removes the temp file, keeps a whole file."""
    target = existing_target(tmp_path)
    slow = SlowFsync(asyncio.get_running_loop(), temp_files.fds)
    monkeypatch.setattr(writer_os, "fsync", slow)
    writer = AtomicWriter(target)

    task = asyncio.create_task(writer.replace(NEW))
    await slow.entered.wait()
    assert len(temp_files.names) == 1
    if release_before_cancel_is_seen:
        slow.release.set()
        task.cancel()
    else:
        task.cancel()
        # Runs after the task's wake-up callback, so the task has seen the cancel by then.
        asyncio.get_running_loop().call_soon(slow.release.set)

    with pytest.raises(asyncio.CancelledError):
        await task

    assert task.cancelled()
    assert names_in(tmp_path) == {"health.json"}
    assert target.read_bytes() in {OLD, NEW}

    later = b'{"status": "online", "later": true}\n'
    await writer.replace(later)

    assert target.read_bytes() == later
    assert names_in(tmp_path) == {"health.json"}


@pytest.mark.asyncio
async def test_cancel_of_the_waiting_task_does_not_detach_the_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, temp_files: TempFiles
) -> None:
    """CancelledError reaches the awaiting task only once the write thread has tidied up."""
    target = existing_target(tmp_path)
    slow = SlowFsync(asyncio.get_running_loop(), temp_files.fds)
    monkeypatch.setattr(writer_os, "fsync", slow)

    task = asyncio.create_task(AtomicWriter(target).replace(NEW))
    await slow.entered.wait()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=0)

    assert done == set(), "the task finished while its write thread was still running"

    slow.release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert names_in(tmp_path) == {"health.json"}


# --- a real reader in another process -----------------------------------------------------

READER = textwrap.dedent(
    """
    import json, os, sys

    target, stop = sys.argv[1], sys.argv[2]
    reads = failures = 0
    ready = False
    while True:
        stopping = os.path.exists(stop)
        try:
            with open(target, "rb") as file:
                document = json.loads(file.read())
            if not isinstance(document, dict) or document.get("end") != "end":
                raise ValueError("incomplete document")
        except (OSError, ValueError) as exc:
            failures += 1
            print("failure:", type(exc).__name__, exc, file=sys.stderr)
        reads += 1
        if not ready:
            print("ready", flush=True)
            ready = True
        if stopping:
            break
    print(json.dumps({"reads": reads, "failures": failures}), flush=True)
    """
)


def document(number: int) -> bytes:
    """Return a complete JSON document whose size varies with ``number``."""
    body = {"sequence": number, "padding": "x" * (50 + (number * 37) % 3000), "end": "end"}
    return (json.dumps(body, indent=2) + "\n").encode()


def test_reader_in_another_process_sees_only_whole_files(tmp_path: Path) -> None:
    """A second process reading in a loop never sees a partial or missing file during rewrites."""
    target = tmp_path / "health.json"
    stop = tmp_path / "stop"
    writer = AtomicWriter(target)
    writer.replace_sync(document(0))

    with subprocess.Popen(
        [sys.executable, "-c", READER, str(target), str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as reader:
        try:
            assert reader.stdout is not None
            assert reader.stdout.readline().strip() == "ready"
            for number in range(1, 401):
                writer.replace_sync(document(number))
            stop.touch()
            out, err = reader.communicate(timeout=30)
        finally:
            if reader.poll() is None:
                reader.kill()
                reader.communicate()

    assert reader.returncode == 0, err
    counts = json.loads(out.strip().splitlines()[-1])
    assert counts["failures"] == 0, err
    assert counts["reads"] > 0
    assert target.read_bytes() == document(400)
    assert names_in(tmp_path) == {"health.json", "stop"}


def test_repr_shows_path_and_mode(tmp_path: Path) -> None:
    """repr() names the target path and the octal mode."""
    writer = AtomicWriter(tmp_path / "health.json", mode=0o640)

    assert repr(writer) == f"<AtomicWriter path={str(tmp_path / 'health.json')!r} mode=0o640>"
