"""Durable atomic replacement of a small file: the only code that writes healthfile's output.

One replacement is: a temporary file with a random name, created exclusively in the target's
directory; the bytes written, the mode set, fsynced; renamed over the target; the directory
fsynced. A reader sees the whole old file or the whole new one. The whole replacement runs in
one executor hop, so the event loop never waits on the disk.

What the platform lacks is chosen by capability, never by its name: calls relative to a
directory descriptor where ``os.supports_dir_fd`` has them and a directory can be opened (else
full paths, and no directory fsync: Windows); POSIX modes and the unsafe-directory check where
files have POSIX permission bits; ``F_FULLFSYNC`` where ``fcntl`` has it (macOS); a rename that
a reader's open handle refuses (Windows) retried for about a second. Only ``OSError`` leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import importlib
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from types import ModuleType

from aiofiles.os import wrap

__all__ = ["AtomicWriter", "UnsafeDirectoryError"]

_CREATE_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
# Directories the writer creates: a monitor running as another user must reach the file.
DIRECTORY_MODE = 0o755
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
# The calls the dir-fd path makes: os.replace takes its dir_fd through os.rename's support and
# os.lstat through os.stat's, and neither is ever listed itself, not even on Linux. Captured
# here, so that a test wrapping os.open does not silently switch the writer to full paths.
_DIR_FD_CALLS = (os.open, os.stat, os.rename, os.unlink)
# os.replace over a file that another process holds open fails on Windows with PermissionError
# (a monitor, an antivirus, the search indexer): tried again, 0.25 s apart, for about a second,
# as pip does (src/pip/_internal/utils/filesystem.py).
REPLACE_RETRY_DELAYS = (0.25, 0.25, 0.25, 0.25)


def _import_fcntl() -> ModuleType | None:
    """Return the fcntl module, or None where there is none (Windows)."""
    try:
        return importlib.import_module("fcntl")
    except ImportError:
        return None


# Imported by name, so that mypy checks this module for Windows too (where fcntl is empty).
_fcntl = _import_fcntl()


class UnsafeDirectoryError(PermissionError):
    """The output directory lets any user replace the file (world-writable, no sticky bit)."""


class _Abandoned(Exception):
    """The awaiting task was cancelled before the rename: the write must not land."""


class _TemporaryGone(Exception):
    """The temporary file was gone at the rename: removed under the write."""

    def __init__(self, error: FileNotFoundError) -> None:
        super().__init__(error)
        self.error = error


class AtomicWriter:
    """Replace one file atomically and durably, from the event loop or from a thread.

    ``mode`` is applied with ``fchmod`` whatever the process umask, where files have POSIX
    permission bits (Windows: ignored). A missing directory is created. A failed or cancelled
    replacement removes its temporary file and leaves the target as it was; ``sweep()``
    removes temporary files a killed process left behind. Every failure is an ``OSError``.

    ``executor`` is where :meth:`replace` and :meth:`sweep_async` run: ``None`` (the default)
    is the loop's default executor; the service sets its own worker thread.
    """

    def __init__(self, path: str | os.PathLike[str], *, mode: int = 0o644) -> None:
        self.path = Path(path)
        self.mode = mode
        self._prefix = _temp_prefix(self.path.name)
        self._temp_pattern = re.compile(re.escape(self._prefix) + r"[0-9a-f]{16}\.tmp\Z")
        # Orders the rename step of writes whose tasks were cancelled against later writes.
        self._commit_lock = threading.Lock()
        self.executor: Executor | None = None
        self._replace_off_loop = wrap(self._replace_in_thread)
        self._sweep_off_loop = wrap(self.sweep)

    def __repr__(self) -> str:
        return f"<AtomicWriter path={str(self.path)!r} mode={self.mode:#o}>"

    async def replace(
        self, data: bytes | Callable[[], bytes], *, then: Callable[[], None] | None = None
    ) -> None:
        """Replace the file with ``data`` without blocking the loop.

        ``data`` may be a function that renders the bytes: it is then called in the same
        executor hop as the write, so that rendering a large report does not hold the loop.
        ``then``, when given, is called in that hop too, after the write however it ended
        (a last write's clean-up, without a hop of its own).

        Raises ``OSError`` when the replacement fails (the target is then unchanged). If the
        awaiting task is cancelled, the write is abandoned unless it has already been renamed
        into place; either way no temporary file remains when ``CancelledError`` propagates.
        """
        abandoned = threading.Event()
        hop = asyncio.ensure_future(
            self._replace_off_loop(data, abandoned, then, executor=self.executor)
        )
        try:
            # Shielded so that a cancellation cannot detach the thread from its cleanup:
            # the thread is told to abandon the write and we wait for it to tidy up.
            await asyncio.shield(hop)
        except asyncio.CancelledError:
            abandoned.set()
            await asyncio.wait({hop})
            if not hop.cancelled():
                hop.exception()  # retrieved: a failure after a cancel is not news
            raise

    async def sweep_async(self) -> int:
        """Run ``sweep()`` off the loop."""
        return await self._sweep_off_loop(executor=self.executor)

    def sweep(self) -> int:
        """Remove temporary files of this target left by a killed writer; return how many."""
        try:
            names = os.listdir(self.path.parent)
        except OSError:
            return 0
        removed = 0
        for name in names:
            if self._temp_pattern.match(name):
                try:
                    os.unlink(self.path.parent / name)
                except OSError:  # gone already, or held open by a reader (Windows): next start
                    continue
                removed += 1
        return removed

    def replace_sync(self, data: bytes | Callable[[], bytes]) -> None:
        """Replace the file with ``data`` in the calling thread."""
        self._replace_in_thread(data, None)

    def _replace_in_thread(
        self,
        data: bytes | Callable[[], bytes],
        abandoned: threading.Event | None,
        then: Callable[[], None] | None = None,
    ) -> None:
        """Render the data if asked, then replace the file; every failure is an OSError.

        ``then`` is called last, whatever happened. A temporary file removed under the write
        (by a writer that took over a lock file removed meanwhile, sweeping what it takes for
        a killed writer's files) makes the write start once more, rendering included, so that
        a guard in ``data`` is asked again.
        """
        try:
            for last in (False, True):
                rendered = data() if callable(data) else data
                try:
                    self._replace_rendered(rendered, abandoned)
                    return
                except _TemporaryGone as gone:
                    if last:
                        raise gone.error from None
                except _Abandoned:
                    return
                except (NotImplementedError, AttributeError, ValueError) as exc:
                    # A call this platform lacks, or a path it cannot take (an embedded NUL):
                    # the callers promise to handle OSError only, and the write failed like
                    # any other.
                    code = errno.EINVAL if isinstance(exc, ValueError) else errno.ENOSYS
                    raise OSError(code, f"{type(exc).__name__}: {exc}", str(self.path)) from exc
        finally:
            if then is not None:
                then()

    def _replace_rendered(self, data: bytes, abandoned: threading.Event | None) -> None:
        """Write a temporary file, fsync it, rename it over the target, fsync the directory."""
        directory = _Directory(self.path.parent)
        try:
            if _posix_modes():
                _refuse_unsafe_directory(directory)
            self._refuse_special_target(directory)
            temp_name = self._create_temp(directory, data)
            try:
                self._rename_into_place(directory, temp_name, abandoned)
            except BaseException:
                directory.unlink_quietly(temp_name)
                raise
            directory.fsync()
        finally:
            directory.close()

    def _rename_into_place(
        self, directory: _Directory, temp_name: str, abandoned: threading.Event | None
    ) -> None:
        """Rename the temporary file over the target, retrying while a reader holds it."""
        delays = iter(REPLACE_RETRY_DELAYS)
        while True:
            with self._commit_lock:
                if abandoned is not None and abandoned.is_set():
                    raise _Abandoned
                try:
                    directory.replace(temp_name, self.path.name)
                    return
                except FileNotFoundError as exc:
                    raise _TemporaryGone(exc) from exc
                except PermissionError:
                    delay = next(delays, None)
                    if delay is None:
                        raise
            # Waited outside the lock; a cancellation of the awaiting task ends the wait.
            if abandoned is None:
                time.sleep(delay)
            else:
                abandoned.wait(delay)

    def _refuse_special_target(self, directory: _Directory) -> None:
        """Refuse to replace a directory, device or socket: only files and symlinks go."""
        try:
            mode = directory.lstat(self.path.name).st_mode
        except FileNotFoundError:
            return
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            raise IsADirectoryError(
                errno.EISDIR if stat.S_ISDIR(mode) else errno.EEXIST,
                "refusing to replace something that is not a regular file",
                str(self.path),
            )

    def _create_temp(self, directory: _Directory, data: bytes) -> str:
        """Create, fill, chmod and fsync a fresh temporary file; return its name."""
        while True:
            temp_name = f"{self._prefix}{secrets.token_hex(8)}.tmp"
            try:
                # O_BINARY (Windows): a text-mode descriptor would write "\n" as "\r\n".
                flags = _CREATE_FLAGS | getattr(os, "O_BINARY", 0)
                fd = directory.open(temp_name, flags, 0o600)
            except FileExistsError:  # pragma: no cover - a 64-bit random collision
                continue
            break
        try:
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                _set_mode(fd, self.mode)
                _fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            directory.unlink_quietly(temp_name)
            raise
        return temp_name


# The longest file name most file systems take (ext4, XFS, APFS, NTFS: 255 bytes or units),
# and what a temporary name adds to its prefix: 16 hex digits and ".tmp".
_NAME_MAX = 255
_TEMP_SUFFIX_BYTES = 16 + len(".tmp")


def _temp_prefix(name: str) -> str:
    """``.name.``, or for a name too long to take it, a cut of the name and a hash of it."""
    return sidecar_prefix(name, _TEMP_SUFFIX_BYTES)


def sidecar_prefix(name: str, room: int) -> str:
    """The prefix of a hidden file next to ``name`` with ``room`` bytes after it.

    ``.name.`` where the whole fits in the longest file name; else a cut of the name and a
    hash of all of it, so that a legal long name still has its temporary and lock files.
    """
    prefix = f".{name}."
    if len(os.fsencode(prefix)) + room <= _NAME_MAX:
        return prefix
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:8]
    cut = os.fsencode(name)[: _NAME_MAX - room - len(f"..~{digest}")].decode("utf-8", "ignore")
    return f".{cut}~{digest}."


class _Directory:
    """The target's directory: calls relative to its descriptor where possible, else by path.

    The descriptor pins the directory for the whole replacement (a rename of a parent cannot
    redirect it) and is what gets fsynced. Windows can neither open a directory nor take
    ``dir_fd``: there every call names the full path, and the directory is not fsynced.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = _open_directory(path)
        self._dir_fd = (
            self.fd
            if self.fd is not None and all(call in os.supports_dir_fd for call in _DIR_FD_CALLS)
            else None
        )

    def _at(self, name: str) -> str:
        """Name an entry the way the calls take it: relative to the descriptor, or in full."""
        return name if self._dir_fd is not None else os.path.join(self.path, name)

    def open(self, name: str, flags: int, mode: int) -> int:
        """os.open an entry."""
        return os.open(self._at(name), flags, mode, dir_fd=self._dir_fd)

    def lstat(self, name: str) -> os.stat_result:
        """os.lstat an entry."""
        return os.lstat(self._at(name), dir_fd=self._dir_fd)

    def replace(self, source: str, target: str) -> None:
        """os.replace one entry by another."""
        os.replace(
            self._at(source), self._at(target), src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd
        )

    def unlink_quietly(self, name: str) -> None:
        """Remove an entry, ignoring that it may already be gone."""
        with contextlib.suppress(OSError):
            os.unlink(self._at(name), dir_fd=self._dir_fd)

    def mode(self) -> int:
        """The directory's st_mode."""
        return os.fstat(self.fd).st_mode if self.fd is not None else os.stat(self.path).st_mode

    def fsync(self) -> None:
        """Make the rename durable, where a directory can be opened (not on Windows)."""
        if self.fd is not None:
            _fsync(self.fd)

    def close(self) -> None:
        """Close the descriptor, if there is one."""
        if self.fd is not None:
            os.close(self.fd)


def _open_directory(directory: Path) -> int | None:
    """Open (after creating, if missing) a directory; None where it cannot be opened."""
    try:
        return os.open(directory, _DIR_FLAGS)
    except FileNotFoundError:
        _make_directories(directory)
    except PermissionError:  # Windows never opens a directory (EACCES); POSIX without read
        if not directory.exists():
            _make_directories(directory)
        return None
    try:
        return os.open(directory, _DIR_FLAGS)
    except PermissionError:
        return None


def _posix_modes() -> bool:
    """Whether files have POSIX permission bits, so that a mode can be set and checked.

    Windows has no ``os.getuid``; its ``os.fchmod`` (Python 3.13+) sets only the read-only
    flag, which would make the next ``os.replace`` over the file fail, and every writable
    directory there reports mode 0o777, so a world-writable check would refuse them all.
    """
    return hasattr(os, "fchmod") and hasattr(os, "getuid")


def _set_mode(fd: int, mode: int) -> None:
    """Give the open file its mode where files have POSIX permission bits; else do nothing."""
    fchmod = getattr(os, "fchmod", None)  # missing from Windows before Python 3.13
    if fchmod is not None and _posix_modes():
        fchmod(fd, mode)


def _fsync(fd: int) -> None:
    """Flush a file or directory to the disk: fsync, then F_FULLFSYNC where fcntl has it.

    macOS's fsync leaves the data in the drive's cache; F_FULLFSYNC flushes that too. Not
    every file system takes it (SQLite falls back to fsync too): the fsync stands then.
    """
    os.fsync(fd)
    command = getattr(_fcntl, "F_FULLFSYNC", None)
    if _fcntl is not None and command is not None:
        with contextlib.suppress(OSError):
            _fcntl.fcntl(fd, command)


def _make_directories(directory: Path) -> None:
    """Create missing directories with mode 0755 whatever the umask, so monitors can enter."""
    missing = []
    while not directory.exists() and directory != directory.parent:
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, DIRECTORY_MODE)
        except FileExistsError:
            continue
        if _posix_modes():
            os.chmod(path, DIRECTORY_MODE)


def _refuse_unsafe_directory(directory: _Directory) -> None:
    """Raise if any user could swap the file under us (world-writable without sticky bit)."""
    mode = directory.mode()
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        raise UnsafeDirectoryError(
            errno.EPERM,
            "refusing to write into a world-writable directory without the sticky bit",
            str(directory.path),
        )
