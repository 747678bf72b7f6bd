"""Durable atomic replacement of a small file: the only code that writes healthfile's output.

One replacement is: a temporary file with a random name, created exclusively in the target's
directory; the bytes written, the mode set, fsynced; renamed over the target; the directory
fsynced. A reader sees the whole old file or the whole new one. The whole replacement runs in
one executor hop, so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import re
import secrets
import stat
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path

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


class UnsafeDirectoryError(PermissionError):
    """The output directory lets any user replace the file (world-writable, no sticky bit)."""


class _Abandoned(Exception):
    """The awaiting task was cancelled before the rename: the write must not land."""


class AtomicWriter:
    """Replace one file atomically and durably, from the event loop or from a thread.

    ``mode`` is applied with ``fchmod`` whatever the process umask. A missing directory is
    created. A failed or cancelled replacement removes its temporary file and leaves the
    target as it was; ``sweep()`` removes temporary files a killed process left behind.

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

    async def replace(self, data: bytes | Callable[[], bytes]) -> None:
        """Replace the file with ``data`` without blocking the loop.

        ``data`` may be a function that renders the bytes: it is then called in the same
        executor hop as the write, so that rendering a large report does not hold the loop.

        Raises ``OSError`` when the replacement fails (the target is then unchanged). If the
        awaiting task is cancelled, the write is abandoned unless it has already been renamed
        into place; either way no temporary file remains when ``CancelledError`` propagates.
        """
        abandoned = threading.Event()
        hop = asyncio.ensure_future(self._replace_off_loop(data, abandoned, executor=self.executor))
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
                except FileNotFoundError:
                    continue
                removed += 1
        return removed

    def replace_sync(self, data: bytes | Callable[[], bytes]) -> None:
        """Replace the file with ``data`` in the calling thread."""
        self._replace_in_thread(data, None)

    def _replace_in_thread(
        self, data: bytes | Callable[[], bytes], abandoned: threading.Event | None
    ) -> None:
        """Write a temporary file, fsync it, rename it over the target, fsync the directory."""
        if callable(data):
            data = data()
        directory = self.path.parent
        try:
            dir_fd = os.open(directory, _DIR_FLAGS)
        except FileNotFoundError:
            _make_directories(directory)
            dir_fd = os.open(directory, _DIR_FLAGS)
        try:
            _refuse_unsafe_directory(dir_fd, directory)
            self._refuse_special_target(dir_fd)
            temp_name = self._create_temp(dir_fd, data)
            try:
                with self._commit_lock:
                    if abandoned is not None and abandoned.is_set():
                        raise _Abandoned
                    os.replace(temp_name, self.path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                _unlink_quietly(temp_name, dir_fd)
                raise
            os.fsync(dir_fd)
        except _Abandoned:
            return
        finally:
            os.close(dir_fd)

    def _refuse_special_target(self, dir_fd: int) -> None:
        """Refuse to replace a directory, device or socket: only files and symlinks go."""
        try:
            mode = os.lstat(self.path.name, dir_fd=dir_fd).st_mode
        except FileNotFoundError:
            return
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            raise IsADirectoryError(
                errno.EISDIR if stat.S_ISDIR(mode) else errno.EEXIST,
                "refusing to replace something that is not a regular file",
                str(self.path),
            )

    def _create_temp(self, dir_fd: int, data: bytes) -> str:
        """Create, fill, chmod and fsync a fresh temporary file; return its name."""
        while True:
            temp_name = f"{self._prefix}{secrets.token_hex(8)}.tmp"
            try:
                fd = os.open(temp_name, _CREATE_FLAGS, 0o600, dir_fd=dir_fd)
            except FileExistsError:  # pragma: no cover - a 64-bit random collision
                continue
            break
        try:
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fchmod(fd, self.mode)
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            _unlink_quietly(temp_name, dir_fd)
            raise
        return temp_name


# The longest file name most file systems take (ext4, XFS, APFS, NTFS: 255 bytes or units),
# and what a temporary name adds to its prefix: 16 hex digits and ".tmp".
_NAME_MAX = 255
_TEMP_SUFFIX_BYTES = 16 + len(".tmp")


def _temp_prefix(name: str) -> str:
    """``.name.``, or for a name too long to take it, a cut of the name and a hash of it."""
    prefix = f".{name}."
    if len(os.fsencode(prefix)) + _TEMP_SUFFIX_BYTES <= _NAME_MAX:
        return prefix
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:8]
    room = _NAME_MAX - _TEMP_SUFFIX_BYTES - len(f"..~{digest}")
    cut = os.fsencode(name)[:room].decode("utf-8", "ignore")
    return f".{cut}~{digest}."


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
        os.chmod(path, DIRECTORY_MODE)


def _refuse_unsafe_directory(dir_fd: int, directory: Path) -> None:
    """Raise if any user could swap the file under us (world-writable without sticky bit)."""
    mode = os.fstat(dir_fd).st_mode
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        raise UnsafeDirectoryError(
            errno.EPERM,
            "refusing to write into a world-writable directory without the sticky bit",
            str(directory),
        )


def _unlink_quietly(name: str, dir_fd: int) -> None:
    """Remove a temporary file, ignoring that it may already be gone."""
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=dir_fd)
