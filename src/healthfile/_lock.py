"""One writer per file: an advisory lock on a sidecar file next to the health file.

The health file itself is replaced at every write, so it cannot carry a lock: the lock lives
on ``.<name>.lock`` in the same directory, and holds the holder's pid for the others to log.
The lock is the operating system's: ``fcntl.flock`` where ``fcntl`` exists, else
``msvcrt.locking`` where ``msvcrt`` exists; either is released by the kernel when the
holding process dies, however it dies. Where neither exists, one writer per file is not
enforced: that is logged once and the service writes anyway.

Every call here may block on the file system: call them off the event loop.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import logging
import os
import stat
import threading
import weakref
from pathlib import Path
from typing import Any

from ._writer import _make_directories, sidecar_prefix

__all__ = ["WriterLock", "lock_path"]

logger = logging.getLogger("healthfile")


def _optional_module(name: str) -> Any:
    """The named OS module, or None where this platform has none."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


# Typed Any: each exists on some platforms only, and the tests hide them to take the others'
# paths.
_fcntl: Any = _optional_module("fcntl")
_msvcrt: Any = _optional_module("msvcrt")

# Read-only: locking needs no write access, and a file open for writing would keep its
# file system from being remounted read-only. The pid is written through a second, brief open.
_OPEN_FLAGS = (
    os.O_RDONLY
    | os.O_CREAT
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO planted at the lock's name must not block open()
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
# msvcrt locks are mandatory byte ranges: lock one byte well past the pid, so that the
# others can still read it.
_MSVCRT_OFFSET = 1 << 16
# The pid is written over the same bytes every time, never truncated first, so that a
# reader never sees an empty file in between.
_PID_WIDTH = 20

_READ_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
_WRITE_FLAGS = (
    os.O_WRONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
# Lock files removed under a taker's feet, in a row, before it gives up for this cycle.
_ATTEMPTS = 5

_warned_unenforced = False

# A child forked while a lock is held shares the lock's open file (flock belongs to it), and
# would hold the lock past the parent's death: every lock's file is closed in the child. The
# guard keeps a fork out of the moment between opening a lock file and recording it.
_fork_guard = threading.Lock()
_fork_guarded = False
_locks: weakref.WeakSet[WriterLock] = weakref.WeakSet()
# How long a fork waits for a lock attempt under way in another thread (one non-blocking
# open and flock: microseconds, unless the file system hangs).
_FORK_WAIT = 1.0


def lock_path(target: Path) -> Path:
    """The sidecar lock file of ``target``: ``.<name>.lock`` in the same directory (the name
    cut and hashed where it is too long to take the suffix)."""
    return target.with_name(sidecar_prefix(target.name, len("lock")) + "lock")


class WriterLock:
    """A non-blocking, inter-process lock that says which process may write ``target``.

    Two ``WriterLock`` objects exclude each other even in one process (``flock`` locks
    belong to the open file, not to the process).
    """

    def __init__(self, target: Path) -> None:
        self.path = lock_path(target)
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"<WriterLock path={str(self.path)!r} {'held' if self.held else 'free'}>"

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    @property
    def enforced(self) -> bool:
        """False where this platform offers no lock: anyone may write then."""
        return _fcntl is not None or _msvcrt is not None

    def acquire(self) -> bool:
        """Try once, without waiting, to take the lock; True when this object may write.

        True too where no lock is available (logged once per process).
        :raises OSError: when the lock file cannot be opened or locked for another reason
            than another holder.
        """
        if self._fd is not None:
            return True
        if not self.enforced:
            _warn_unenforced()
            return True
        with _fork_guard:
            fd = self._take()
            if fd is None:
                return False
            self._fd = fd
            _locks.add(self)
        with contextlib.suppress(OSError):  # the pid is for the others' logs only
            self._write_pid()
        return True

    def confirm(self) -> bool:
        """True while this object holds the lock on the file that is at the lock's path.

        A lock file removed (a clean-up job, the directory removed and made again) or
        replaced since it was locked protects nothing: the next taker creates a new file and
        locks that. Then, and in a child forked from the holder, the lock is let go here
        (its file closed, the path left alone) and False returned: call :meth:`acquire`
        again. True where no lock is enforced.
        """
        fd = self._fd
        if fd is None:
            return not self.enforced
        if _fcntl is None:
            return True  # msvcrt locks a byte of the file at the path; it cannot be removed
        try:
            current = self._is_current(fd)
        except OSError:
            current = False
        if not current:
            with _fork_guard:
                self._fd = None
                os.close(fd)
        return current

    def _take(self) -> int | None:
        """Open and lock the file at the lock's path; its descriptor, or None if held."""
        for _ in range(_ATTEMPTS):
            fd = self._open()
            try:
                locked = _try_lock(fd)
                current = locked and self._is_current(fd)
            except BaseException:
                os.close(fd)
                raise
            if current:
                return fd
            os.close(fd)
            if not locked:
                return None
            # Locked a file its holder removed as it released it: try the one now there.
        return None

    def release(self) -> None:
        """Release the lock if held, removing the lock file first where it is flock's.

        Removed while still locked, so that a taker who opened it a moment before finds, once
        it has locked it, that it is no longer the file at the path, and tries again.
        """
        with _fork_guard:  # a child forked meanwhile must not keep the file open
            fd, self._fd = self._fd, None
            if fd is not None:
                self._let_go(fd)

    def _let_go(self, fd: int) -> None:
        """Remove the lock file if it is still ours (flock), unlock (msvcrt), close ``fd``."""
        try:
            if _fcntl is not None:
                with contextlib.suppress(OSError):
                    if self._is_current(fd):
                        os.unlink(self.path)
            elif _msvcrt is not None:
                with contextlib.suppress(OSError):
                    os.lseek(fd, _MSVCRT_OFFSET, os.SEEK_SET)
                    _msvcrt.locking(fd, _msvcrt.LK_UNLCK, 1)
        finally:
            os.close(fd)  # releases an flock too

    def holder(self) -> int | None:
        """The pid the holder wrote into the lock file, or None when it cannot be read.

        Opened without waiting and read only when it is a regular file: a FIFO planted at
        the lock's name must not block.
        """
        try:
            fd = os.open(self.path, _READ_FLAGS)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            text = os.read(fd, _PID_WIDTH + 1)
            pid = int(text.split()[0])
        except (OSError, ValueError, IndexError):
            return None
        finally:
            os.close(fd)
        return pid if pid > 0 else None

    def _is_current(self, fd: int) -> bool:
        """True when ``fd`` is still the file at the lock's path (not removed nor replaced)."""
        try:
            there = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)

    def _open(self) -> int:
        """Open the lock file read-only, creating it (and its directory) when missing."""
        try:
            fd = os.open(self.path, _OPEN_FLAGS, 0o644)
        except FileNotFoundError:
            _make_directories(self.path.parent)
            fd = os.open(self.path, _OPEN_FLAGS, 0o644)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise IsADirectoryError(
                    errno.EEXIST, "the lock file is not a regular file", str(self.path)
                )
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _write_pid(self) -> None:
        """Write this process's pid at the start of the lock file, over the same bytes."""
        data = f"{os.getpid()}\n".encode().ljust(_PID_WIDTH, b" ")
        fd = os.open(self.path, _WRITE_FLAGS)
        try:
            if not self._is_current(fd):
                return  # replaced since it was locked: not ours to write
            os.write(fd, data)
            if os.fstat(fd).st_size > len(data):
                os.ftruncate(fd, len(data))
        finally:
            os.close(fd)


def _try_lock(fd: int) -> bool:
    """Lock ``fd`` without waiting; False when another open file holds the lock."""
    if _fcntl is not None:
        try:
            _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    os.lseek(fd, _MSVCRT_OFFSET, os.SEEK_SET)
    try:
        _msvcrt.locking(fd, _msvcrt.LK_NBLCK, 1)
    except OSError as exc:
        if exc.errno in (errno.EACCES, getattr(errno, "EDEADLOCK", errno.EDEADLK)):
            return False
        raise
    return True


def _before_fork() -> None:
    """Keep a lock attempt of another thread from being split by the fork (bounded wait)."""
    global _fork_guarded
    _fork_guarded = _fork_guard.acquire(timeout=_FORK_WAIT)


def _after_fork_in_parent() -> None:
    """Let lock attempts go on."""
    global _fork_guarded
    if _fork_guarded:
        _fork_guarded = False
        _fork_guard.release()


def _after_fork_in_child() -> None:
    """Close every lock's file in the child: the lock stays the parent's alone."""
    global _fork_guarded
    for lock in list(_locks):
        fd, lock._fd = lock._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)  # never unlocked: that would release the parent's lock too
    _locks.clear()
    if _fork_guarded:
        _fork_guarded = False
        _fork_guard.release()


if hasattr(os, "register_at_fork"):  # where fork() exists
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )


def _warn_unenforced() -> None:
    """Say once per process that one writer per file cannot be enforced here."""
    global _warned_unenforced
    if not _warned_unenforced:
        _warned_unenforced = True
        logger.warning(
            "this platform offers no file lock (neither fcntl nor msvcrt): one writer per "
            "health file is not enforced; two processes on one file will both write it"
        )
