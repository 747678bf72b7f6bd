"""A foreign platform for a whole interpreter: the POSIX-only capabilities Windows lacks, hidden.

Put this directory on PYTHONPATH (``nox -s foreign`` does) and every interpreter started with
it, subprocesses included, runs healthfile's fallbacks instead of its POSIX paths:

- ``os.supports_dir_fd`` is empty and a ``dir_fd`` argument raises NotImplementedError;
- ``os.open`` of a directory fails with PermissionError (EACCES);
- ``os.stat``/``os.lstat``/``os.fstat`` report every writable directory as mode 0o40777;
- ``os.fchmod``, ``os.killpg``, ``os.setsid`` (no process groups to kill: a command
  check kills its program alone), ``os.O_NONBLOCK``, ``os.statvfs``, ``socket.AF_UNIX`` and
  ``socket.SOCK_CLOEXEC`` are gone (``shutil.disk_usage`` and ``socket.socketpair`` keep
  working, as Windows has its own);
- every event loop's ``add_signal_handler``/``remove_signal_handler`` raises
  NotImplementedError (asyncio's, and uvloop's), patched when the loop module is imported
  so that an interpreter that never imports asyncio (``healthfile check``) still does not.

``HEALTHFILE_FOREIGN=1`` is set for the tests to see. Linux still does what it does below
these calls (FIFOs, symlinks, signals, ``/proc``): tests that need a capability hidden here
skip by that capability.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import stat
import sys
from collections.abc import Callable
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

os.environ["HEALTHFILE_FOREIGN"] = "1"

_real_open = os.open
_real_stat = os.stat
_real_lstat = os.lstat
_real_fstat = os.fstat
_real_statvfs = os.statvfs
_AF_UNIX = socket.AF_UNIX
_real_socketpair = socket.socketpair
_DIR_FD_KEYWORDS = ("dir_fd", "src_dir_fd", "dst_dir_fd")


def _no_dir_fd(name: str, kwargs: dict[str, Any]) -> None:
    """Raise as CPython does on Windows when a dir_fd is passed."""
    if any(kwargs.get(keyword) is not None for keyword in _DIR_FD_KEYWORDS):
        raise NotImplementedError(f"{name}: dir_fd unavailable on this platform")


def _windows_mode(result: os.stat_result) -> os.stat_result:
    """Report a directory as Windows does: 0o40777, or 0o40555 when read-only."""
    if not stat.S_ISDIR(result.st_mode):
        return result
    mode = stat.S_IFDIR | (0o777 if result.st_mode & stat.S_IWUSR else 0o555)
    reduced = result.__reduce__()
    assert isinstance(reduced, tuple)
    fields, extra = reduced[1]
    return os.stat_result((mode, *fields[1:]), extra)


def _open(path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
    """os.open that cannot open a directory, nor take a dir_fd."""
    _no_dir_fd("open", kwargs)
    try:
        is_directory = stat.S_ISDIR(_real_stat(path).st_mode)
    except (OSError, ValueError):
        is_directory = False
    if is_directory:
        raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
    return _real_open(path, flags, mode)


def _stat(path: Any, **kwargs: Any) -> os.stat_result:
    """os.stat without dir_fd, directories at 0o40777."""
    _no_dir_fd("stat", kwargs)
    return _windows_mode(_real_stat(path, **kwargs))


def _lstat(path: Any, **kwargs: Any) -> os.stat_result:
    """os.lstat without dir_fd, directories at 0o40777."""
    _no_dir_fd("lstat", kwargs)
    return _windows_mode(_real_lstat(path, **kwargs))


def _fstat(fd: int) -> os.stat_result:
    """os.fstat, directories at 0o40777."""
    return _windows_mode(_real_fstat(fd))


def _wrap_dir_fd(name: str) -> None:
    """Make os.<name> refuse a dir_fd argument."""
    real: Callable[..., Any] = getattr(os, name)

    def call(*args: Any, **kwargs: Any) -> Any:
        _no_dir_fd(name, kwargs)
        return real(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    _replace_in_sets(real, call)
    setattr(os, name, call)


def _replace_in_sets(real: Callable[..., Any], stand_in: Callable[..., Any]) -> None:
    """Let a stand-in keep what the capability sets say of the call it replaces."""
    for capabilities in (os.supports_fd, os.supports_follow_symlinks, os.supports_effective_ids):
        if real in capabilities:
            capabilities.add(stand_in)


def _disk_usage(path: Any) -> Any:
    """shutil.disk_usage without os.statvfs (Windows asks GetDiskFreeSpaceExW instead)."""
    usage = _real_statvfs(path)
    total = usage.f_blocks * usage.f_frsize
    free = usage.f_bavail * usage.f_frsize
    used = (usage.f_blocks - usage.f_bfree) * usage.f_frsize
    return shutil._ntuple_diskusage(total, used, free)


def _socketpair(family: Any = None, *args: Any, **kwargs: Any) -> Any:
    """socket.socketpair as Windows has it: working, whatever AF_UNIX's absence says."""
    return _real_socketpair(_AF_UNIX if family is None else family, *args, **kwargs)


def _no_signal_handlers(self: object, sig: int, *args: Any) -> Any:
    """What every Windows event loop does with add_signal_handler/remove_signal_handler."""
    raise NotImplementedError


def _patch_asyncio(module: ModuleType) -> None:
    """Take signal handlers away from asyncio's Unix loop."""
    loop = module._UnixSelectorEventLoop
    loop.add_signal_handler = _no_signal_handlers
    loop.remove_signal_handler = _no_signal_handlers


def _patch_uvloop(module: ModuleType) -> None:
    """Take signal handlers away from uvloop's loop (its Python subclass can be patched)."""
    module.Loop.add_signal_handler = _no_signal_handlers
    module.Loop.remove_signal_handler = _no_signal_handlers


class _PatchingLoader:
    """Run a module's own loader, then patch the module."""

    def __init__(self, loader: Any, patch: Callable[[ModuleType], None]) -> None:
        self._loader = loader
        self._patch = patch

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        """Let the real loader create the module."""
        module: ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        """Execute the module, then patch it."""
        self._loader.exec_module(module)
        self._patch(module)


class _PatchOnImport:
    """A meta path finder that patches some modules right after their first import."""

    def __init__(self, patches: dict[str, Callable[[ModuleType], None]]) -> None:
        self._patches = patches

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        """Find the module with the other finders; wrap its loader if it is to be patched."""
        patch = self._patches.get(name)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec: ModuleSpec | None = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader, patch)  # type: ignore[assignment]
                return spec
        return None


def _hide() -> None:
    """Hide every capability listed in the module docstring."""
    # shutil decided at import whether rmtree may use dir_fd calls: it may not any more.
    shutil._use_fd_functions = False  # type: ignore[attr-defined]
    shutil.disk_usage = _disk_usage
    socket.socketpair = _socketpair
    os.supports_dir_fd.clear()
    for name, stand_in in (("open", _open), ("stat", _stat), ("lstat", _lstat), ("fstat", _fstat)):
        _replace_in_sets(getattr(os, name), stand_in)
        setattr(os, name, stand_in)
    for name in ("mkdir", "rename", "replace", "unlink", "rmdir", "chmod", "utime", "link"):
        _wrap_dir_fd(name)
    for module, name in (
        (os, "fchmod"),
        (os, "killpg"),
        (os, "setsid"),
        (os, "O_NONBLOCK"),
        (os, "statvfs"),
        (socket, "AF_UNIX"),
        (socket, "SOCK_CLOEXEC"),
    ):
        if hasattr(module, name):
            delattr(module, name)
    patches: dict[str, Callable[[ModuleType], None]] = {
        "asyncio.unix_events": _patch_asyncio,
        "uvloop": _patch_uvloop,
    }
    for name, patch in patches.items():
        if name in sys.modules:
            patch(sys.modules[name])
    sys.meta_path.insert(0, _PatchOnImport(patches))


_hide()
