"""CommandCheck: run a program, judge its exit status as Nagios does (every check_* plugin).

The program runs without a shell, in a session (a process group) of its own where the
platform has one, so that at the timeout the whole group, grandchildren included, is
killed, and then reaped. Its output is read as it comes: the first 64 KiB are kept, the
rest is read and dropped, never buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._options import CheckOptions, CommonOptions
from ._report import CheckResult, first_line, os_reason

if TYPE_CHECKING:
    from ._options import Unpack

__all__ = ["MAX_OUTPUT_BYTES", "CommandCheck"]

# The output kept: the first line of it becomes the check's output.
MAX_OUTPUT_BYTES = 64 * 1024
# How long the output may go on once the program has exited or been killed: a process that
# left the group (its own setsid) may hold the pipe open; it is not waited for longer.
_PIPE_GRACE = 1.0

# Where there are sessions and process groups (POSIX), the program leads a group of its own
# and the group is killed; elsewhere (Windows) the program alone is killed.
_killpg = getattr(os, "killpg", None)
_SIGKILL: int | None = getattr(signal, "SIGKILL", None)
if hasattr(os, "setsid") and _killpg is not None:
    _GROUP: dict[str, Any] = {"start_new_session": True}
elif hasattr(subprocess, "CREATE_NEW_PROCESS_GROUP"):
    # Not a kill of the tree: it keeps a Ctrl-C meant for healthfile away from the program.
    _GROUP = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
else:  # pragma: no cover - a platform with neither
    _GROUP = {}


class _Collector(asyncio.SubprocessProtocol):
    """Keep the first MAX_OUTPUT_BYTES of the output; tell when the program exits and ends."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.kept = bytearray()
        self.exited: asyncio.Future[None] = loop.create_future()
        self.ended: asyncio.Future[None] = loop.create_future()  # exited and its output closed

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        """Keep what fits in the bound; drop the rest."""
        room = MAX_OUTPUT_BYTES - len(self.kept)
        if room > 0:
            self.kept += data[:room] if isinstance(data, bytes) else data[:room].encode()

    def process_exited(self) -> None:
        """Tell that the program has exited (and been reaped)."""
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        """Tell that the program has exited and its output is closed."""
        self.process_exited()
        if not self.ended.done():
            self.ended.set_result(None)


def judge_exit(returncode: int, output: bytes) -> CheckResult:
    """Judge an exit status as Nagios does: 0 pass, 1 warn, 2 and above fail.

    The output is the first line of ``output`` up to a ``|``, which starts Nagios'
    performance data.
    """
    line = first_line(output).split("|", 1)[0].strip()
    if returncode < 0:  # POSIX: killed by a signal
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return CheckResult("fail", f"killed by {name}" + (f": {line}" if line else ""))
    text = line or f"exit status {returncode}"
    if returncode == 0:
        return CheckResult("pass", text)
    return CheckResult("warn" if returncode == 1 else "fail", text)


class CommandCheck(CheckOptions):
    """Run ``argv`` (no shell) and judge its exit status: 0 pass, 1 warn, 2 and above fail.

    This is the Nagios plugin convention, so every ``check_*`` plugin of monitoring-plugins
    works as it is (3, UNKNOWN, fails). The first line of the output (stdout and stderr
    together), up to a ``|`` that starts performance data, is the check's output, redacted
    and cut to 256 characters. At the timeout (or on ``stop()``) the program's whole process
    group is killed (``SIGKILL``) and reaped: nothing of it is left running, nor a zombie.
    What is left of the group when the program exits is killed too. On Windows, which has
    no process groups to kill, the program alone is killed (``TerminateProcess``).

    :param argv: the program and its arguments, e.g. ``["check_tcp", "-H", "db", "-p",
        "5432"]``. The program is looked up on ``PATH`` as a shell would.
    """

    def __init__(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        name: str = "command",
        **options: Unpack[CommonOptions],
    ) -> None:
        if isinstance(argv, (str, bytes)) or not isinstance(argv, Sequence):
            raise TypeError(
                "argv must be a list of the program and its arguments such as "
                f"['check_tcp', '-p', '80'] (no shell), not {argv!r}"
            )
        if not all(isinstance(arg, (str, os.PathLike)) for arg in argv):
            raise TypeError(f"argv must be a list of strings, not {argv!r}")
        args = [os.fspath(arg) for arg in argv]
        if not args or not args[0] or any("\0" in arg for arg in args):
            raise ValueError(f"argv must name a program, and hold no NUL character: {argv!r}")
        super().__init__(name=name, **options)
        self.argv = tuple(args)

    def __repr__(self) -> str:
        return f"<CommandCheck {self.name!r} argv={list(self.argv)!r}>"

    async def run(self) -> CheckResult:
        """Run the program once; kill and reap its process group if cancelled (the timeout)."""
        loop = asyncio.get_running_loop()
        collector = _Collector(loop)
        starting = asyncio.ensure_future(
            loop.subprocess_exec(
                lambda: collector,
                *self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                **_GROUP,
            )
        )
        try:
            # asyncio.wait, not await: cancelled while the program starts, asyncio would kill
            # the program alone and leave what it has started so far running.
            await asyncio.wait({starting})
        except asyncio.CancelledError:
            await asyncio.wait({starting})  # a start takes milliseconds: let it end
            if not starting.cancelled() and starting.exception() is None:
                started, _ = starting.result()
                try:
                    await _end_group(started, collector)
                finally:
                    started.close()
            raise
        try:
            transport, _ = starting.result()
        except FileNotFoundError:
            return CheckResult("fail", f"no such program: {self.argv[0]}")
        except PermissionError:
            return CheckResult("fail", f"cannot run {self.argv[0]}: permission denied")
        except OSError as exc:
            return CheckResult("fail", f"cannot run {self.argv[0]}: {os_reason(exc)}")
        try:
            # asyncio.wait, not await: a cancellation must not cancel the futures themselves.
            await asyncio.wait({collector.exited})
            _kill_group(transport)  # what the program left of its group: nothing outlives it
            await asyncio.wait({collector.ended}, timeout=_PIPE_GRACE)
        except asyncio.CancelledError:
            await _end_group(transport, collector)
            raise
        finally:
            transport.close()  # releases the pipe, even one an escaped process holds
        returncode = transport.get_returncode()
        assert returncode is not None  # it exited
        return judge_exit(returncode, bytes(collector.kept))


async def _end_group(transport: asyncio.SubprocessTransport, collector: _Collector) -> None:
    """The timeout or stop(): kill the whole group, and reap it (a moment at most)."""
    _kill_group(transport)
    await asyncio.wait({collector.exited}, timeout=_PIPE_GRACE)


def _kill_group(transport: asyncio.SubprocessTransport) -> None:
    """Kill the program's process group (POSIX), or the program alone; gone already is fine."""
    if "start_new_session" in _GROUP and _killpg is not None and _SIGKILL is not None:
        # The program leads its own session: its pid is the group's id. Once it has exited
        # and been reaped, the id stays reserved while any process of the group is alive.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            _killpg(transport.get_pid(), _SIGKILL)
    elif transport.get_returncode() is None:
        with contextlib.suppress(ProcessLookupError):
            transport.kill()
