"""Reading a TOML file with bounds: the pyproject that gives app_version, the sidecar's config.

Neither file is trusted to be small, regular or sane: a FIFO, /dev/zero, a file of a
thousand dotted keys or nested brackets is refused with the reason, before tomllib runs.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised by the 3.10 CI session
    import tomli as tomllib

__all__ = ["MAX_NESTING", "MAX_PYPROJECT_BYTES", "TOMLFileError", "read_toml"]

# A TOML file larger than this is not a project file or a config worth parsing.
MAX_PYPROJECT_BYTES = 1 << 20
# A dotted key or table header this deep is not a project file; tomllib would take time
# quadratic in its depth (minutes for 100 KB of `a.a.a...`).
MAX_KEY_DEPTH = 64
# Arrays and inline tables nested this deep are not a project file either; tomllib would
# recurse towards the interpreter's limit, where any finalizer run by the garbage collector
# on that deep stack fails too.
MAX_NESTING = 64
_ALL_BUT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")


class TOMLFileError(ValueError):
    """A TOML file that cannot be had; the message names the file and says why.

    ``unreadable`` is true when the file could not be opened or read (a missing file is
    news to nobody where the file is optional).
    """

    def __init__(self, message: str, *, unreadable: bool = False) -> None:
        super().__init__(message)
        self.unreadable = unreadable


def read_toml(path: Path) -> dict[str, Any]:
    """Parse the TOML file at ``path``.

    :raises TOMLFileError: for a file that cannot be read, is not a regular file, is larger
        than 1 MiB, has absurdly deep keys or nesting, or is not valid UTF-8 TOML.
    """
    try:
        # O_NONBLOCK: a FIFO at the path must not hang; it is refused below. (Windows has
        # neither it nor FIFOs on disk, and needs O_BINARY for a byte-exact read.)
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise TOMLFileError(f"cannot read {path}: {exc.strerror or exc}", unreadable=True) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise TOMLFileError(f"{path} is not a regular file")
    with os.fdopen(fd, "rb") as file:
        try:
            raw = file.read(MAX_PYPROJECT_BYTES + 1)
        except OSError as exc:
            raise TOMLFileError(
                f"cannot read {path}: {exc.strerror or exc}", unreadable=True
            ) from None
    if len(raw) > MAX_PYPROJECT_BYTES:
        raise TOMLFileError(f"{path} is larger than {MAX_PYPROJECT_BYTES} bytes")
    if _has_absurdly_deep_key(raw):
        # tomllib takes time quadratic in the depth of a dotted key or table header.
        raise TOMLFileError(f"{path} has absurdly deep dotted keys")
    if _has_absurd_nesting(raw):
        raise TOMLFileError(f"{path} has absurdly deep nested arrays or tables")
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as exc:
        raise TOMLFileError(f"{path} is not valid TOML: {exc}") from None


def _has_absurdly_deep_key(raw: bytes) -> bool:
    """Tell whether a key or table header on some line is MAX_KEY_DEPTH levels deep."""
    for line in raw.splitlines():
        if line.count(b".") < MAX_KEY_DEPTH:
            continue
        stripped = line.lstrip()
        key = stripped if stripped.startswith(b"[") else stripped.split(b"=", 1)[0]
        if not stripped.startswith(b"#") and key.count(b".") >= MAX_KEY_DEPTH:
            return True
    return False


def _has_absurd_nesting(raw: bytes) -> bool:
    """Tell whether brackets or braces open MAX_NESTING levels deep (strings not told apart)."""
    brackets = raw.translate(None, _ALL_BUT_BRACKETS)
    if len(brackets) < MAX_NESTING:
        return False
    depth = 0
    for byte in brackets:
        if byte in b"[{":
            depth += 1
            if depth >= MAX_NESTING:
                return True
        elif depth:
            depth -= 1
    return False
