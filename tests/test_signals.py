"""Stop signals: ``cancel_on_signals`` in-process and in the README's example, ``healthfile run``.

Real signals throughout. The fallback for loops without ``add_signal_handler`` (every
Windows loop) is reached by a loop whose ``add_signal_handler`` raises NotImplementedError.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import healthfile
from healthfile._signals import REPEAT_FORCES_AFTER, STOP_SIGNALS
from helpers import child_environment, is_online, make_database, read_report, wait_for_report
from test_cli import RunningCli

README = Path(__file__).resolve().parent.parent / "README.md"
DEADLINE = 30.0  # generous: slow CI machines, coverage
HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None

LOOPS = [
    pytest.param("asyncio", id="asyncio"),
    pytest.param(
        "uvloop",
        id="uvloop",
        marks=pytest.mark.skipif(not HAS_UVLOOP, reason="uvloop is not installed here"),
    ),
]
# Another process can send SIGTERM or SIGINT only where there are POSIX signals (SIGKILL is
# one of them); on Windows os.kill terminates the process instead.
posix_signals = pytest.mark.skipif(
    not hasattr(signal, "SIGKILL"),
    reason="no POSIX signals between processes here: os.kill terminates instead",
)
PATHS = [
    pytest.param("add_signal_handler", id="loop-handler"),
    pytest.param("refuse", id="fallback"),
]


def readme_example() -> str:
    """The Python example of the README's "In your application" section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## In your application", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```", section, re.DOTALL | re.MULTILINE)
    assert blocks, "no python example in the README's 'In your application'"
    example: str = blocks[0]
    assert "cancel_on_signals()" in example
    assert "asyncio.run(main())" in example
    # The launcher's run_my_app says when the app runs; the README defines its own.
    own = re.search(r"^async def run_my_app\(\).*?(?=^\S)", example, re.DOTALL | re.MULTILINE)
    assert own is not None, "the README's example defines run_my_app"
    return example.replace(own.group(0), "")


# The launcher runs one program on a chosen loop, optionally a loop whose add_signal_handler
# raises NotImplementedError as on Windows, and reports on stderr whether the signal
# handlers are the same after the program as before it.
#   argv: LOOP PATH GATE PROGRAM [ARGS...]
#   LOOP: asyncio | uvloop | default   PATH: add_signal_handler | refuse
#   GATE: a file; while it exists, every os.fsync waits (or "-")
#   PROGRAM: readme (ARGS: the example's file) | readme-slow (the same, its first cycle
#            takes 2 s) | outside | run (ARGS: healthfile's argv)
LAUNCHER = r"""
import asyncio
import os
import signal
import sys
import time

loop_kind, path, gate, program, *args = sys.argv[1:]

if loop_kind != "default":
    if loop_kind == "uvloop":
        import uvloop

        base = uvloop.Loop
    else:
        base = asyncio.SelectorEventLoop

    class Loop(base):
        if path == "refuse":

            def add_signal_handler(self, *args):
                raise NotImplementedError("no add_signal_handler, as on Windows")

    class Policy(asyncio.DefaultEventLoopPolicy):
        def new_event_loop(self):
            return Loop()

    asyncio.set_event_loop_policy(Policy())

if gate != "-":
    real_fsync = os.fsync

    def fsync(fd):
        while os.path.exists(gate):
            time.sleep(0.01)
        real_fsync(fd)

    os.fsync = fsync


def handlers():
    return {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}


async def run_my_app():
    print("app running", file=sys.stderr, flush=True)
    await asyncio.Event().wait()


async def outside():
    import healthfile

    with healthfile.cancel_on_signals():
        await asyncio.sleep(0)
    print("outside the block", file=sys.stderr, flush=True)
    await asyncio.Event().wait()


async def slow_first_check():
    print("first check running", file=sys.stderr, flush=True)
    await asyncio.sleep(2)
    return True


before = handlers()
status = 0
if program == "readme-slow":
    # The README's example as written, its service with a 2 s check: start() takes 2 s.
    import healthfile

    class SlowStart(healthfile.AsyncHealthService):
        def __init__(self, *args, **options):
            slow = healthfile.check("slow", slow_first_check, timeout=10)
            super().__init__(*args, checks=[slow], **options)

    healthfile.AsyncHealthService = SlowStart
    program = "readme"
if program == "readme":
    with open(args[0], encoding="utf-8") as file:
        exec(compile(file.read(), "README example", "exec"), {"run_my_app": run_my_app})
elif program == "outside":
    asyncio.run(outside())
else:
    from healthfile._cli import main

    status = main(args)
after = handlers()
print("handlers restored" if after == before else f"handlers changed: {before} {after}",
      file=sys.stderr, flush=True)
sys.exit(status)
"""


@pytest.fixture
def launcher(tmp_path: Path) -> Path:
    """The launcher script, written into tmp_path."""
    path = tmp_path / "launcher.py"
    path.write_text(LAUNCHER, encoding="utf-8")
    return path


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A working directory with the README's data/app.db (its relative paths land here)."""
    make_database(tmp_path / "work" / "data" / "app.db")
    return tmp_path / "work"


@pytest.fixture
def start(launcher: Path, workdir: Path) -> Iterator[Callable[..., RunningCli]]:
    """Start the launcher in ``workdir``; every process is killed and reaped at the end."""
    started: list[RunningCli] = []

    def factory(
        loop: str, path: str, program: str, *args: str, gate: str = "-", **popen: Any
    ) -> RunningCli:
        argv = [sys.executable, str(launcher), loop, path, gate, program, *args]
        running = RunningCli(argv, cwd=workdir, env=child_environment(), **popen)
        started.append(running)
        return running

    yield factory
    for running in started:
        running.close()


def start_readme_example(
    start: Callable[..., RunningCli], tmp_path: Path, loop: str, path: str, **popen: Any
) -> RunningCli:
    """Run the README's example and wait until its app runs inside the block."""
    example = tmp_path / "readme_example.py"
    example.write_text(readme_example(), encoding="utf-8")
    running = start(loop, path, "readme", str(example), **popen)
    running.wait_for_stderr("app running")
    return running


# --- the README's example, a real process -------------------------------------------------


@posix_signals
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("loop", LOOPS)
def test_readme_example_writes_stopped_and_exits_0_on_signal(
    loop: str,
    path: str,
    signum: signal.Signals,
    start: Callable[..., RunningCli],
    tmp_path: Path,
    workdir: Path,
) -> None:
    """A real SIGTERM or SIGINT to the README's example leaves "stopped" on disk and exit 0."""
    running = start_readme_example(start, tmp_path, loop, path)
    health_file = workdir / "data" / "health.json"
    online = read_report(health_file)
    assert online is not None
    assert online["status"] == "online"

    assert running.signal_and_wait(signum) == 0, running.stderr
    final = read_report(health_file)
    assert final is not None
    assert final["status"] == "stopped"
    assert final["pid"] == running.process.pid
    assert "handlers restored" in running.stderr
    assert "Traceback" not in running.stderr


@posix_signals
@pytest.mark.parametrize("loop", LOOPS)
def test_readme_example_signalled_during_start_writes_stopped_and_exits_0(
    loop: str, start: Callable[..., RunningCli], tmp_path: Path, workdir: Path
) -> None:
    """SIGTERM while the README's start() runs a 2 s first check ends it: stopped, exit 0."""
    example = tmp_path / "readme_example.py"
    example.write_text(readme_example(), encoding="utf-8")
    running = start(loop, "add_signal_handler", "readme-slow", str(example))
    running.wait_for_stderr("first check running")
    health_file = workdir / "data" / "health.json"
    assert read_report(health_file) is None  # start() has not returned

    assert running.signal_and_wait(signal.SIGTERM) == 0, running.stderr
    final = read_report(health_file)
    assert final is not None
    assert final["status"] == "stopped"
    assert final["pid"] == running.process.pid
    assert final["app_name"] != "unknown"
    assert "app running" not in running.stderr  # the app itself never started
    assert "handlers restored" in running.stderr
    assert "Traceback" not in running.stderr


# The order the README warns against: the block inside the `async with`, entered only once
# start() has returned.
BLOCK_INSIDE = """
import asyncio
import healthfile


async def main() -> None:
    async with healthfile.AsyncHealthService("data/app.db") as service:
        with healthfile.cancel_on_signals():
            await run_my_app()


asyncio.run(main())
"""


@posix_signals
def test_block_inside_the_async_with_leaves_a_signal_during_start_to_the_default(
    start: Callable[..., RunningCli], tmp_path: Path, workdir: Path
) -> None:
    """With cancel_on_signals inside the `async with`, SIGTERM during start() kills: 143-style."""
    example = tmp_path / "inside.py"
    example.write_text(BLOCK_INSIDE, encoding="utf-8")
    running = start("asyncio", "add_signal_handler", "readme-slow", str(example))
    running.wait_for_stderr("first check running")

    assert running.signal_and_wait(signal.SIGTERM) == -signal.SIGTERM
    assert read_report(workdir / "data" / "health.json") is None


@posix_signals
@pytest.mark.parametrize("path", PATHS)
def test_signal_outside_the_block_keeps_the_default_behaviour(
    path: str, start: Callable[..., RunningCli]
) -> None:
    """After the block is left, SIGTERM does what it did before: it ends the process."""
    running = start("asyncio", path, "outside")
    running.wait_for_stderr("outside the block")

    assert running.signal_and_wait(signal.SIGTERM) == -signal.SIGTERM


@posix_signals
def test_second_signal_inside_the_block_raises_keyboard_interrupt(tmp_path: Path) -> None:
    """A signal repeated a second later, the block still unwinding, raises KeyboardInterrupt."""
    script = tmp_path / "slow_unwind.py"
    script.write_text(
        "import asyncio, sys\n"
        "import healthfile\n"
        "async def main():\n"
        "    with healthfile.cancel_on_signals():\n"
        "        try:\n"
        "            print('app running', file=sys.stderr, flush=True)\n"
        "            await asyncio.Event().wait()\n"
        "        finally:\n"
        "            print('unwinding', file=sys.stderr, flush=True)\n"
        "            await asyncio.shield(asyncio.Event().wait())\n"
        "asyncio.run(main())\n",
        encoding="utf-8",
    )
    running = RunningCli([sys.executable, str(script)], cwd=tmp_path, env=child_environment())
    try:
        running.wait_for_stderr("app running")
        running.process.send_signal(signal.SIGTERM)
        running.wait_for_stderr("unwinding")
        time.sleep(REPEAT_FORCES_AFTER)  # a repeat sooner than this is only logged
        status = running.signal_and_wait(signal.SIGTERM)
    finally:
        running.close()

    # An uncaught KeyboardInterrupt ends Python as SIGINT would.
    assert status in (-signal.SIGINT, 130), running.stderr
    assert "KeyboardInterrupt" in running.stderr


# --- `healthfile run` ---------------------------------------------------------------------


def run_options(workdir: Path) -> list[str]:
    """`healthfile run` on the work directory's database, a cycle every 0.2 s."""
    return [
        "run",
        "--database",
        str(workdir / "data" / "app.db"),
        "--health-file",
        str(workdir / "data" / "health.json"),
        "--interval",
        "0.2",
    ]


@posix_signals
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("path", PATHS)
def test_run_stops_cleanly_and_restores_the_handlers(
    path: str, signum: signal.Signals, start: Callable[..., RunningCli], workdir: Path
) -> None:
    """`healthfile run` stops with "stopped" and exit 0, and gives the old handlers back."""
    health_file = workdir / "data" / "health.json"
    running = start("asyncio", path, "run", *run_options(workdir))
    wait_for_report(health_file, is_online, alive=running.assert_alive)

    assert running.signal_and_wait(signum) == 0, running.stderr
    final = read_report(health_file)
    assert final is not None
    assert final["status"] == "stopped"
    assert f"received {signum.name}, stopping" in running.stderr
    assert "handlers restored" in running.stderr
    assert "Traceback" not in running.stderr


def stopping_on_a_held_disk(
    start: Callable[..., RunningCli], path: str, workdir: Path, tmp_path: Path
) -> tuple[RunningCli, Path, Path]:
    """``healthfile run`` sent SIGTERM while every fsync waits on a gate file: its final write
    hangs until the gate is removed. Returns the process, the gate and the health file."""
    health_file = workdir / "data" / "health.json"
    gate = tmp_path / "fsync-gate"
    running = start("asyncio", path, "run", *run_options(workdir), gate=str(gate))
    wait_for_report(health_file, is_online, alive=running.assert_alive)
    gate.touch()  # from now on every fsync, the final report's included, waits
    running.process.send_signal(signal.SIGTERM)
    running.wait_for_stderr("received SIGTERM, stopping")
    return running, gate, health_file


@pytest.mark.skipif(
    not hasattr(signal, "pthread_sigmask"), reason="needs signal.pthread_sigmask (POSIX)"
)
def test_a_signal_caught_by_another_thread_wakes_an_idle_loop(tmp_path: Path) -> None:
    """A signal the kernel hands to another thread still reaches the callback at once."""
    script = tmp_path / "other_thread.py"
    script.write_text(
        "import asyncio, signal, sys, threading\n"
        "from healthfile._signals import handle_signals\n"
        "signal.signal(signal.SIGTERM, lambda *_: None)  # taken: the signal.signal route\n"
        "idle = threading.Event()\n"
        "threading.Thread(target=idle.wait, daemon=True).start()  # may take the signal\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # the main thread won't\n"
        "async def main():\n"
        "    got = asyncio.Event()\n"
        "    with handle_signals(lambda signum: got.set()):\n"
        "        print('ready', file=sys.stderr, flush=True)\n"
        "        await got.wait()  # nothing else on the loop: only a wake-up ends this\n"
        "    print('woken', file=sys.stderr, flush=True)\n"
        "asyncio.run(main())\n",
        encoding="utf-8",
    )
    running = RunningCli([sys.executable, str(script)], cwd=tmp_path, env=child_environment())
    try:
        running.wait_for_stderr("ready")
        running.process.send_signal(signal.SIGTERM)
        running.wait_for_stderr("woken", timeout=10.0)
        status = running.process.wait(DEADLINE)
    finally:
        running.close()

    assert status == 0, running.stderr


@posix_signals
@pytest.mark.parametrize("path", PATHS)
def test_run_exits_130_on_a_second_signal_while_stopping(
    path: str, start: Callable[..., RunningCli], workdir: Path, tmp_path: Path
) -> None:
    """A signal repeated a second after the first, while the final write hangs, exits 130."""
    running, gate, _ = stopping_on_a_held_disk(start, path, workdir, tmp_path)
    running.process.send_signal(signal.SIGINT)  # at once: the stop is still to be waited for
    running.wait_for_stderr("received SIGINT again: already stopping")
    time.sleep(REPEAT_FORCES_AFTER)  # the stop is stuck: insist
    running.process.send_signal(signal.SIGINT)
    running.wait_for_stderr("received SIGINT again: not waiting any longer")
    gate.unlink()  # the blocked writer thread may finish; the interpreter waits for it
    status = running.process.wait(DEADLINE)

    assert status == 130, running.stderr
    assert "Traceback" not in running.stderr


@posix_signals
@pytest.mark.parametrize("path", PATHS)
def test_run_lets_a_stop_finish_through_signals_repeated_at_once(
    path: str, start: Callable[..., RunningCli], workdir: Path, tmp_path: Path
) -> None:
    """Signals repeated at once while the final write waits are only logged: stopped, exit 0."""
    running, gate, health_file = stopping_on_a_held_disk(start, path, workdir, tmp_path)
    running.process.send_signal(signal.SIGINT)
    running.process.send_signal(signal.SIGTERM)
    running.wait_for_stderr("received SIGTERM again: already stopping")
    gate.unlink()  # the final write goes on
    status = running.process.wait(DEADLINE)

    assert status == 0, running.stderr
    final = read_report(health_file)
    assert final is not None
    assert final["status"] == "stopped"
    assert "not waiting any longer" not in running.stderr


@pytest.mark.skipif(
    not hasattr(signal, "CTRL_BREAK_EVENT"),
    reason="CTRL_BREAK_EVENT and CREATE_NEW_PROCESS_GROUP exist on Windows only",
)
@pytest.mark.parametrize("program", ["run", "readme"])
def test_ctrl_break_stops_with_stopped_and_exit_0(
    program: str, start: Callable[..., RunningCli], workdir: Path, tmp_path: Path
) -> None:
    """CTRL_BREAK_EVENT to a new process group (Windows) stops it with "stopped" and exit 0."""
    new_group = {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP")}  # noqa: B009
    health_file = workdir / "data" / "health.json"
    if program == "run":
        running = start("default", "-", "run", *run_options(workdir), **new_group)
        wait_for_report(health_file, is_online, alive=running.assert_alive)
    else:
        running = start_readme_example(start, tmp_path, "default", "-", **new_group)

    assert running.signal_and_wait(getattr(signal, "CTRL_BREAK_EVENT")) == 0, running.stderr  # noqa: B009
    final = read_report(health_file)
    assert final is not None
    assert final["status"] == "stopped"


# --- cancel_on_signals in-process ---------------------------------------------------------


def refuse_add_signal_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the running loop's add_signal_handler raise NotImplementedError, as on Windows."""

    def refuse(*args: object) -> None:
        raise NotImplementedError("no add_signal_handler, as on Windows")

    monkeypatch.setattr(asyncio.get_running_loop(), "add_signal_handler", refuse)


def current_handlers() -> dict[signal.Signals, Any]:
    """The Python-level handler of every stop signal."""
    return {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}


def own_handler(signum: int, frame: object) -> None:
    """A handler of the application's own, set before the block."""


@pytest.fixture
def sigterm_handled_by_the_application() -> Iterator[None]:
    """SIGTERM has a Python handler of the application's own during the test."""
    previous = signal.signal(signal.SIGTERM, own_handler)
    yield
    signal.signal(signal.SIGTERM, previous)


async def cancelled_by(signum: signal.Signals) -> healthfile.cancel_on_signals:
    """Enter the block, send ``signum`` to this process, wait in the block until cancelled."""
    with healthfile.cancel_on_signals() as block:
        signal.raise_signal(signum)
        await asyncio.sleep(DEADLINE)
        pytest.fail("the signal did not end the block")
    return block


@pytest.mark.asyncio
@pytest.mark.parametrize("refuse", [False, True], ids=["loop-handler", "fallback"])
async def test_signal_ends_the_block_and_the_code_after_it_runs(
    refuse: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM in the block cancels it quietly; the code after it runs, not cancelled."""
    if refuse:
        refuse_add_signal_handler(monkeypatch)
    block = await cancelled_by(signal.SIGTERM)

    assert block.received == signal.SIGTERM
    task = asyncio.current_task()
    assert task is not None
    if sys.version_info >= (3, 11):
        assert task.cancelling() == 0
    await asyncio.sleep(0)  # no cancellation is left pending


@pytest.mark.asyncio
@pytest.mark.parametrize("refuse", [False, True], ids=["loop-handler", "fallback"])
async def test_previous_handlers_are_back_after_the_block(
    refuse: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the block every stop signal has the handler it had before, on either path."""
    if refuse:
        refuse_add_signal_handler(monkeypatch)
    before = current_handlers()
    await cancelled_by(signal.SIGINT)

    assert current_handlers() == before


@pytest.mark.asyncio
@pytest.mark.parametrize("refuse", [False, True], ids=["loop-handler", "fallback"])
async def test_an_ignored_signal_is_ignored_again_after_the_block(
    refuse: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM set to SIG_IGN before the block is SIG_IGN again after it, on either path."""
    if refuse:
        refuse_add_signal_handler(monkeypatch)
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        block = await cancelled_by(signal.SIGTERM)
        assert block.received == signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.asyncio
@pytest.mark.usefixtures("sigterm_handled_by_the_application")
async def test_an_application_handler_is_replaced_in_the_block_and_put_back() -> None:
    """A handler the application set for SIGTERM is not called in the block, and is back after."""
    block = await cancelled_by(signal.SIGTERM)

    assert block.received == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is own_handler


@pytest.mark.asyncio
async def test_a_loop_signal_handler_set_before_the_block_still_works_after_it() -> None:
    """A handler set with loop.add_signal_handler before the block works again after it."""
    loop = asyncio.get_running_loop()
    received = asyncio.Event()
    try:
        loop.add_signal_handler(signal.SIGTERM, received.set)
    except NotImplementedError:
        pytest.skip("this loop has no add_signal_handler")
    try:
        await cancelled_by(signal.SIGTERM)
        received.clear()
        signal.raise_signal(signal.SIGTERM)
        await asyncio.wait_for(received.wait(), DEADLINE)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


@pytest.mark.asyncio
async def test_a_cancellation_not_caused_by_a_signal_propagates() -> None:
    """Cancelling the task inside the block from elsewhere is not swallowed by the block."""
    after_block = False
    entered = asyncio.Event()

    async def body() -> None:
        nonlocal after_block
        with healthfile.cancel_on_signals():
            entered.set()
            await asyncio.sleep(DEADLINE)
        after_block = True

    task = asyncio.ensure_future(body())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not after_block
    assert task.cancelled()


@pytest.mark.asyncio
@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10 tasks do not count cancellations")
async def test_a_signal_and_another_cancellation_together_propagate() -> None:
    """When the task is also cancelled by someone else, the block re-raises CancelledError."""
    after_block = False
    entered = asyncio.Event()

    async def body() -> None:
        nonlocal after_block
        with healthfile.cancel_on_signals():
            entered.set()
            await asyncio.sleep(DEADLINE)
        after_block = True

    task = asyncio.ensure_future(body())
    await entered.wait()
    signal.raise_signal(signal.SIGTERM)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not after_block


@pytest.mark.asyncio
@pytest.mark.parametrize("refuse", [False, True], ids=["loop-handler", "fallback"])
async def test_a_signal_caught_as_the_block_is_left_cancels_nothing(
    refuse: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signal that arrives as the block is left, before the loop runs its callback, is a no-op."""
    if refuse:
        refuse_add_signal_handler(monkeypatch)
    with healthfile.cancel_on_signals() as block:
        signal.raise_signal(signal.SIGINT)  # the callback is queued; the block ends first
    for _ in range(5):
        await asyncio.sleep(0)

    assert block.received is None


@pytest.mark.asyncio
async def test_entering_twice_raises_runtime_error() -> None:
    """The same cancel_on_signals object cannot be entered while it is entered."""
    block = healthfile.cancel_on_signals()
    with block, pytest.raises(RuntimeError, match="already been entered"), block:
        pass


def test_outside_a_task_raises_runtime_error() -> None:
    """cancel_on_signals outside a running task says so with RuntimeError."""
    with pytest.raises(RuntimeError, match="inside a task"), healthfile.cancel_on_signals():
        pass


def test_outside_the_main_thread_it_warns_and_runs_the_block(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """In another thread no signal can arrive: a warning says so and the block runs."""
    ran: list[bool] = []

    async def body() -> None:
        with healthfile.cancel_on_signals():
            await asyncio.sleep(0)
            ran.append(True)

    before = current_handlers()
    with caplog.at_level(logging.WARNING, logger="healthfile"):
        thread = threading.Thread(target=asyncio.run, args=(body(),))
        thread.start()
        thread.join(DEADLINE)

    assert ran == [True]
    assert "signals reach only the main thread" in caplog.text
    assert current_handlers() == before


@pytest.mark.asyncio
async def test_a_handler_set_outside_python_is_left_alone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A signal whose handler Python did not set (getsignal is None) is not taken over."""
    real_getsignal = signal.getsignal

    def getsignal(signum: int) -> Any:
        return None if signum == signal.SIGTERM else real_getsignal(signum)

    monkeypatch.setattr(signal, "getsignal", getsignal)
    with caplog.at_level(logging.WARNING, logger="healthfile"):
        with healthfile.cancel_on_signals():
            assert real_getsignal(signal.SIGTERM) == signal.SIG_DFL
        await asyncio.sleep(0)

    assert "not handling SIGTERM" in caplog.text


def test_repr_shows_state_and_signal() -> None:
    """The repr says whether the block is entered and which signal ended it."""
    assert repr(healthfile.cancel_on_signals()) == "<cancel_on_signals idle received=None>"
