"""healthfile: keep one small JSON health file that monitors outside the process can read.

Names are imported on first use, so that the ``healthfile check`` probe, which imports this
package, never pays for asyncio, aiosqlite or aiofiles.
"""

from __future__ import annotations

import importlib

# Not typing.TYPE_CHECKING: importing typing costs the probe command milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._asgi import asgi_app
    from ._checks import (
        Check,
        DiskSpaceCheck,
        FunctionCheck,
        LoopLagCheck,
        check,
    )
    from ._command import CommandCheck
    from ._file_age import FileAgeCheck
    from ._heartbeat import HeartbeatCheck
    from ._network import HTTPCheck, TCPCheck
    from ._report import CheckResult, HealthReport
    from ._service import AsyncHealthService
    from ._signals import cancel_on_signals
    from ._sqlite import SQLiteCheck
    from ._threaded import HealthCheckService
    from ._threads import CheckStillRunning
    from ._writer import AtomicWriter, UnsafeDirectoryError

__all__ = [
    "AsyncHealthService",
    "AtomicWriter",
    "Check",
    "CheckResult",
    "CheckStillRunning",
    "CommandCheck",
    "DiskSpaceCheck",
    "FileAgeCheck",
    "FunctionCheck",
    "HTTPCheck",
    "HealthCheckService",
    "HealthReport",
    "HeartbeatCheck",
    "LoopLagCheck",
    "SQLiteCheck",
    "TCPCheck",
    "UnsafeDirectoryError",
    "__version__",
    "asgi_app",
    "cancel_on_signals",
    "check",
]

_HOMES = {
    "AsyncHealthService": "._service",
    "AtomicWriter": "._writer",
    "Check": "._checks",
    "CheckResult": "._report",
    "CheckStillRunning": "._threads",
    "CommandCheck": "._command",
    "DiskSpaceCheck": "._checks",
    "FileAgeCheck": "._file_age",
    "FunctionCheck": "._checks",
    "HTTPCheck": "._network",
    "HealthCheckService": "._threaded",
    "HealthReport": "._report",
    "HeartbeatCheck": "._heartbeat",
    "LoopLagCheck": "._checks",
    "SQLiteCheck": "._sqlite",
    "TCPCheck": "._network",
    "UnsafeDirectoryError": "._writer",
    "asgi_app": "._asgi",
    "cancel_on_signals": "._signals",
    "check": "._checks",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("healthfile")
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'healthfile' has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
