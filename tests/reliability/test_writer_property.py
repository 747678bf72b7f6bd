"""A property of AtomicWriter: any sequence of writes, failures and cancellations stays whole."""

from __future__ import annotations

import asyncio
import errno
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

import healthfile._writer
from healthfile import AtomicWriter
from helpers import DIRECTORY_FSYNC, loop_factory

pytestmark = pytest.mark.reliability

writer_os: ModuleType = vars(healthfile._writer)["os"]
real_open = os.open
real_close = os.close
real_write = os.write
real_fsync = os.fsync
real_replace = os.replace

# The writer's temporary files: `.health.json.<16 hex digits>.tmp`.
TEMP_NAME = re.compile(r"\.health\.json\.[0-9a-f]{16}\.tmp\Z")
# A bound, not a synchronisation: the rules release every gate explicitly.
GATE_BOUND = 30.0

PAYLOADS = st.one_of(
    st.binary(max_size=2048),
    st.sampled_from([b"", b"{}\n", b"x" * 9000]),
)


class Gate:
    """Holds the writer's thread inside one fsync until the rule releases it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, at: str) -> None:
        self.at = at  # "temp": the temporary file's fsync, before the rename; "dir": after it
        self.loop = loop
        self.entered = asyncio.Event()
        self.release = threading.Event()

    def hold(self) -> None:
        self.loop.call_soon_threadsafe(self.entered.set)
        if not self.release.wait(GATE_BOUND):
            raise AssertionError("the rule never released the gate")


class Faults:
    """The writer's own os calls, failing or held on demand; its temporary files recorded."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.temp_fds: set[int] = set()
        self.fail: tuple[str, int] | None = None  # (function, errno), for the next call only
        self.gate: Gate | None = None
        monkeypatch.setattr(writer_os, "open", self._open)
        monkeypatch.setattr(writer_os, "close", self._close)
        monkeypatch.setattr(writer_os, "write", self._write)
        monkeypatch.setattr(writer_os, "fsync", self._fsync)
        monkeypatch.setattr(writer_os, "replace", self._replace)

    def _maybe_fail(self, function: str) -> None:
        if self.fail is not None and self.fail[0] == function:
            error = self.fail[1]
            self.fail = None
            raise OSError(error, os.strerror(error))

    def _open(self, path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        fd = real_open(path, flags, mode, **kwargs)
        if TEMP_NAME.match(os.path.basename(os.fsdecode(path))):  # by name or full path
            self.temp_fds.add(fd)
        return fd

    def _close(self, fd: int) -> None:
        self.temp_fds.discard(fd)
        real_close(fd)

    def _write(self, fd: int, data: Any) -> int:
        if fd in self.temp_fds:
            self._maybe_fail("write")
        return real_write(fd, data)

    def _fsync(self, fd: int) -> None:
        temp = fd in self.temp_fds
        gate = self.gate
        if gate is not None and gate.at == ("temp" if temp else "dir"):
            self.gate = None
            gate.hold()
        if temp:
            self._maybe_fail("fsync")
        real_fsync(fd)

    def _replace(self, src: Any, dst: Any, **kwargs: Any) -> None:
        if TEMP_NAME.match(os.path.basename(os.fsdecode(src))):
            self._maybe_fail("replace")
        real_replace(src, dst, **kwargs)


def writer_machine(
    root: Path, faults: Faults, new_loop: Callable[[], asyncio.AbstractEventLoop]
) -> type[RuleBasedStateMachine]:
    """The state machine: a model (the bytes last written for sure) against the real file."""

    class WriterMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.directory = Path(tempfile.mkdtemp(dir=root))
            self.target = self.directory / "health.json"
            self.writer = AtomicWriter(self.target)
            self.loop = new_loop()
            self.expected: bytes | None = None  # None: nothing written yet

        def teardown(self) -> None:
            faults.fail = None
            faults.gate = None
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
            self.loop.close()
            shutil.rmtree(self.directory)

        def run(self, awaitable: Any) -> Any:
            return self.loop.run_until_complete(awaitable)

        def current(self) -> bytes | None:
            try:
                return self.target.read_bytes()
            except FileNotFoundError:
                return None

        @rule(data=PAYLOADS)
        def write(self, data: bytes) -> None:
            self.run(self.writer.replace(data))
            self.expected = data

        @rule(data=PAYLOADS)
        def write_in_this_thread(self, data: bytes) -> None:
            self.writer.replace_sync(data)
            self.expected = data

        @rule(
            data=PAYLOADS,
            function=st.sampled_from(["write", "fsync", "replace"]),
            error=st.sampled_from([errno.EIO, errno.ENOSPC, errno.EROFS]),
        )
        def failing_write(self, data: bytes, function: str, error: int) -> None:
            if function == "write" and not data:
                return  # an empty file needs no write: nothing to fail
            faults.fail = (function, error)
            with pytest.raises(OSError, match=os.strerror(error)) as raised:
                self.run(self.writer.replace(data))
            assert raised.value.errno == error
            assert faults.fail is None, "the fault was never reached"

        # Where directories cannot be opened (Windows) there is no directory fsync to hold.
        @rule(data=PAYLOADS, at=st.sampled_from(["temp", "dir"] if DIRECTORY_FSYNC else ["temp"]))
        def write_cancelled_mid_way(self, data: bytes, at: str) -> None:
            """Cancel while the thread is held in the temp file's fsync or the directory's."""
            gate = Gate(self.loop, at)
            faults.gate = gate

            async def scenario() -> asyncio.Future[None]:
                task = asyncio.ensure_future(self.writer.replace(data))
                await asyncio.wait_for(gate.entered.wait(), GATE_BOUND)
                task.cancel()
                # Runs after the task has seen the cancel: the thread resumes only then.
                asyncio.get_running_loop().call_soon(gate.release.set)
                await asyncio.wait({task})
                return task

            task = self.run(scenario())
            assert task.cancelled()
            if at == "dir":
                # Cancelled after its rename: the write stands (see AtomicWriter.replace).
                self.expected = data

        @rule(data=PAYLOADS, turns=st.integers(min_value=0, max_value=4))
        def write_cancelled_at_any_moment(self, data: bytes, turns: int) -> None:
            """Cancel after a few turns of the loop: the write lands whole, or not at all."""
            before = self.current()

            async def scenario() -> asyncio.Future[None]:
                task = asyncio.ensure_future(self.writer.replace(data))
                for _ in range(turns):
                    await asyncio.sleep(0)
                task.cancel()
                await asyncio.wait({task})
                return task

            task = self.run(scenario())
            after = self.current()
            if task.cancelled():
                assert after in (before, data)
                self.expected = after
            else:
                self.expected = data

        @invariant()
        def target_is_the_last_write_and_nothing_else_is_left(self) -> None:
            assert self.current() == self.expected
            expected_names = [] if self.expected is None else ["health.json"]
            assert sorted(os.listdir(self.directory)) == expected_names
            assert faults.temp_fds == set(), "a temporary file is still open"

    return WriterMachine


def test_any_sequence_of_writes_failures_and_cancels_leaves_the_last_good_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, test_loop: str
) -> None:
    """The target always equals the last write that succeeded (or stood), and no temp file."""
    faults = Faults(monkeypatch)
    # Each machine runs its writes on a fresh loop of the kind the suite runs on (--loop).
    machine = writer_machine(tmp_path, faults, loop_factory(test_loop))
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=100,
            stateful_step_count=20,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
