"""CommandCheck against real programs: shell scripts, Debian's check_* plugins, process groups."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from healthfile import CheckResult, CommandCheck
from healthfile._command import MAX_OUTPUT_BYTES, _Collector, judge_exit
from healthfile._report import CheckStatus
from helpers import (
    ServiceFactory,
    generous,
    open_fds,
    process_ended,
    process_state,
    require_program,
    run_once,
    wait_until_async,
)

pytestmark = pytest.mark.usefixtures("clean_environment")

PLUGINS = "/usr/lib/nagios/plugins"
SH = "/bin/sh"
needs_sh = pytest.mark.skipif(not os.path.exists(SH), reason="needs /bin/sh (POSIX)")
needs_proc = pytest.mark.skipif(
    not os.path.isdir("/proc/self"), reason="needs /proc to see processes (Linux)"
)
needs_process_groups = pytest.mark.skipif(
    not hasattr(os, "killpg"), reason="needs process groups (os.killpg; not Windows)"
)


def plugin(name: str) -> str:
    """The path of a monitoring-plugins check_* program, else skip (or fail in CI)."""
    return require_program(name, f"{PLUGINS}/{name}", package="monitoring-plugins-basic")


async def run(check: CommandCheck) -> CheckResult:
    """One run of ``check``, bounded."""
    result: CheckResult = await run_once(check)
    return result


def script(tmp_path: Path, body: str, name: str = "check.sh") -> list[str]:
    """argv running a shell script written to ``tmp_path``."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return [SH, str(path)]


def pids_in(path: Path) -> list[int]:
    """The process ids a script wrote to ``path``, one a line."""
    return [int(line) for line in path.read_text().split()]


@pytest_asyncio.fixture
async def listener() -> AsyncIterator[int]:
    """A real TCP listener on 127.0.0.1; yields its port."""
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


# --- the exit status and the output -------------------------------------------------------


@needs_sh
@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("code", "status"), [(0, "pass"), (1, "warn"), (2, "fail"), (3, "fail"), (127, "fail")]
)
async def test_exit_status_is_judged_as_nagios_does(
    tmp_path: Path, code: int, status: CheckStatus
) -> None:
    """Exit 0 passes, 1 warns, 2 and above fail; the first line is the output."""
    argv = script(tmp_path, f"echo 'said {code}'\necho 'second line'\nexit {code}\n")

    assert await run(CommandCheck(argv)) == CheckResult(status, f"said {code}")


@needs_sh
@pytest.mark.asyncio
async def test_no_output_says_the_exit_status(tmp_path: Path) -> None:
    """A program that prints nothing is described by its exit status."""
    assert await run(CommandCheck(script(tmp_path, "exit 2\n"))) == CheckResult(
        "fail", "exit status 2"
    )


@needs_sh
@pytest.mark.asyncio
async def test_output_is_the_first_line_before_performance_data(tmp_path: Path) -> None:
    """Blank lines are skipped, and the text after a `|` (Nagios perfdata) is not shown."""
    argv = script(tmp_path, "echo\necho '   '\necho 'OK - all good | load=0.5;1;2'\necho x\n")

    assert await run(CommandCheck(argv)) == CheckResult("pass", "OK - all good")


@needs_sh
@pytest.mark.asyncio
async def test_stderr_counts_as_output(tmp_path: Path) -> None:
    """What the program writes to stderr is output too (merged, in order)."""
    argv = script(tmp_path, "echo 'CRITICAL - disk gone' >&2\nexit 2\n")

    assert await run(CommandCheck(argv)) == CheckResult("fail", "CRITICAL - disk gone")


@needs_sh
@pytest.mark.asyncio
async def test_output_is_redacted_and_bounded(tmp_path: Path) -> None:
    """A password in the output is hidden, and the output is cut to 256 characters."""
    argv = script(
        tmp_path,
        "echo \"cannot reach postgres://app:hunter2@db/app $(printf 'x%.0s' $(seq 999))\"\n",
    )

    result = await run(CommandCheck(argv))

    assert result.output is not None
    assert result.output.startswith("cannot reach postgres://app:***@db/app xxx")
    assert len(result.output) == 256
    assert "hunter2" not in result.output


@needs_sh
@pytest.mark.asyncio
async def test_bytes_that_are_not_utf8_are_replaced(tmp_path: Path) -> None:
    """Output that is not UTF-8 is shown with replacement characters, never an error."""
    argv = script(tmp_path, "printf 'bad \\377 byte\\n'\n")

    assert await run(CommandCheck(argv)) == CheckResult(
        "pass", "bad \N{REPLACEMENT CHARACTER} byte"
    )


@needs_sh
@pytest.mark.asyncio
async def test_a_flood_of_output_is_read_through_and_only_its_start_kept(tmp_path: Path) -> None:
    """20 MB of output neither blocks the program (the pipe is drained) nor is kept."""
    argv = script(tmp_path, "echo 'first'\nhead -c 20000000 /dev/zero\necho\nexit 1\n")

    assert await run(CommandCheck(argv)) == CheckResult("warn", "first")


def test_the_collector_keeps_only_the_first_64_kib() -> None:
    """Of any amount of output, the first 64 KiB are kept and the rest dropped as it comes."""
    loop = asyncio.new_event_loop()
    try:
        collector = _Collector(loop)
        for _ in range(100):
            collector.pipe_data_received(1, b"y" * 10000)
    finally:
        loop.close()

    assert bytes(collector.kept) == b"y" * MAX_OUTPUT_BYTES


@needs_sh
@pytest.mark.asyncio
async def test_a_program_killed_by_a_signal_fails_naming_it(tmp_path: Path) -> None:
    """A program killed by a signal fails, naming the signal."""
    argv = script(tmp_path, "echo 'about to die'\nkill -KILL $$\n")

    assert await run(CommandCheck(argv)) == CheckResult("fail", "killed by SIGKILL: about to die")


@pytest.mark.asyncio
async def test_a_missing_program_fails_saying_so() -> None:
    """A program that does not exist fails with a clear output."""
    result = await run(CommandCheck(["no-such-check-program", "-w", "1"]))

    assert result == CheckResult("fail", "no such program: no-such-check-program")


@pytest.mark.asyncio
async def test_a_program_that_cannot_be_run_fails_saying_so(tmp_path: Path) -> None:
    """A file without permission to execute fails with a clear output."""
    path = tmp_path / "check_not_executable"
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o644)
    if os.access(path, os.X_OK):
        pytest.skip("this user may execute any file (root on a file system without modes)")

    result = await run(CommandCheck([str(path)]))

    assert result == CheckResult("fail", f"cannot run {path}: permission denied")


@needs_sh
@pytest.mark.asyncio
async def test_a_program_the_system_cannot_start_fails_in_its_words(tmp_path: Path) -> None:
    """A program the OS refuses to start for another reason (here a name longer than any
    file name may be) fails with the OS's reason, said once."""
    path = str(tmp_path / ("check_" + "x" * 300))

    result = await run(CommandCheck([path]))

    assert result == CheckResult("fail", f"cannot run {path}: {os.strerror(errno.ENAMETOOLONG)}")


def test_a_signal_without_a_name_is_said_by_its_number() -> None:
    """A process ended by a signal number the platform has no name for is still named."""
    unnamed = next(n for n in range(200, 1000) if n not in set(signal.Signals))

    assert judge_exit(-unnamed, b"") == CheckResult("fail", f"killed by signal {unnamed}")
    assert judge_exit(-unnamed, b"last words\n") == CheckResult(
        "fail", f"killed by signal {unnamed}: last words"
    )


@pytest.mark.asyncio
async def test_no_shell_interprets_the_arguments(tmp_path: Path) -> None:
    """argv goes to the program as it is: no shell expands `$(...)` or `;`."""
    marker = tmp_path / "touched"
    argv = [sys.executable, "-c", "import sys; print(sys.argv[1])", f"$(touch {marker}); x"]

    result = await run(CommandCheck(argv))

    assert result == CheckResult("pass", f"$(touch {marker}); x")
    assert not marker.exists()


# --- real check_* plugins (Debian's monitoring-plugins-basic) ----------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("code", "status", "word"),
    [(0, "pass", "OK"), (1, "warn", "WARNING"), (2, "fail", "CRITICAL"), (3, "fail", "UNKNOWN")],
)
async def test_check_dummy_states(code: int, status: CheckStatus, word: str) -> None:
    """check_dummy's OK, WARNING, CRITICAL and UNKNOWN read pass, warn, fail, fail."""
    result = await run(CommandCheck([plugin("check_dummy"), str(code), "from the plugin"]))

    assert result == CheckResult(status, f"{word}: from the plugin")


@pytest.mark.asyncio
async def test_check_tcp_on_a_listening_port_passes_without_its_perfdata(listener: int) -> None:
    """check_tcp against a real listener passes; its perfdata is cut from the output."""
    result = await run(CommandCheck([plugin("check_tcp"), "-H", "127.0.0.1", "-p", str(listener)]))

    assert result.status == "pass"
    assert result.output is not None
    assert result.output.startswith("TCP OK - ")
    assert f"port {listener}" in result.output
    assert "|" not in result.output


@pytest.mark.asyncio
async def test_check_tcp_on_a_closed_port_fails() -> None:
    """check_tcp on a port nothing listens on fails with its CRITICAL line."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    result = await run(CommandCheck([plugin("check_tcp"), "-H", "127.0.0.1", "-p", str(port)]))

    assert result.status == "fail"
    assert result.output is not None
    assert "Connection refused" in result.output


@pytest.mark.asyncio
async def test_check_file_age_on_a_touched_and_an_old_and_a_missing_file(tmp_path: Path) -> None:
    """check_file_age passes on a fresh file, fails on an old one and on a missing one."""
    program = plugin("check_file_age")
    fresh, old = tmp_path / "fresh", tmp_path / "old"
    fresh.touch()
    old.touch()
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))

    def check(path: Path) -> CommandCheck:
        return CommandCheck([program, "-f", str(path), "-w", "60", "-c", "120"])

    results = [await run(check(path)) for path in (fresh, old, tmp_path / "missing")]

    assert [result.status for result in results] == ["pass", "fail", "fail"]
    assert all(result.output and "FILE_AGE" in result.output for result in results)


# --- the timeout: the whole process group killed and reaped ----------------------------------

SPAWNS_A_GRANDCHILD = """\
sleep 300 &
echo $$ > "$1.tmp"
echo $! >> "$1.tmp"
mv "$1.tmp" "$1"
echo 'started'
sleep 300
"""


@needs_sh
@needs_proc
@pytest.mark.asyncio
async def test_at_the_timeout_the_child_and_the_grandchild_are_killed_and_reaped(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    """A timed-out command leaves no process behind: child reaped, grandchild killed too."""
    pidfile = tmp_path / "pids"
    argv = [*script(tmp_path, SPAWNS_A_GRANDCHILD), str(pidfile)]
    service = make_service(checks=[CommandCheck(argv, name="plugin", timeout=1.0)])

    await service.start()

    report = service.last_report
    assert report is not None
    assert report.checks["plugin"].output == "timed out after 1 s"
    child, grandchild = pids_in(pidfile)
    await wait_until_async(lambda: process_state(child) is None, "the child to be reaped")
    if hasattr(os, "killpg"):
        await wait_until_async(lambda: process_ended(grandchild), "the grandchild to be killed")
    else:  # no process groups: the grandchild outlives the check; end it here
        os.kill(grandchild, 9)


async def group_gone_after(task: asyncio.Task[CheckResult], pidfile: Path) -> None:
    """Await the cancelled ``task``; the child and grandchild in ``pidfile`` are then gone."""
    with pytest.raises(asyncio.CancelledError):
        await task
    child, grandchild = pids_in(pidfile)
    await wait_until_async(lambda: process_state(child) is None, "the child to be reaped")
    await wait_until_async(lambda: process_ended(grandchild), "the grandchild to be killed")


@needs_sh
@needs_proc
@needs_process_groups
@pytest.mark.asyncio
async def test_a_cancelled_run_kills_and_reaps_the_whole_group(tmp_path: Path) -> None:
    """Cancelling a run (stop(), or any caller) kills the whole group and reaps the child."""
    pidfile = tmp_path / "pids"
    check = CommandCheck([*script(tmp_path, SPAWNS_A_GRANDCHILD), str(pidfile)])
    task = asyncio.get_running_loop().create_task(check.run())
    await wait_until_async(pidfile.exists, "the script to start")

    task.cancel()
    await group_gone_after(task, pidfile)


@needs_sh
@needs_proc
@needs_process_groups
@pytest.mark.asyncio
async def test_a_run_cancelled_while_its_program_starts_kills_the_whole_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while the start is still under way (the process forked, its pipes not yet
    connected), the run lets the start end, then kills the whole group, not the program alone."""
    loop = asyncio.get_running_loop()
    real_exec = loop.subprocess_exec
    connecting = asyncio.Event()
    connected = asyncio.Event()
    pidfile = tmp_path / "pids"

    async def slow_start(*args: Any, **kwargs: Any) -> Any:
        started = await real_exec(*args, **kwargs)
        connecting.set()  # the program runs; the start has not returned yet
        await connected.wait()
        return started

    try:
        monkeypatch.setattr(loop, "subprocess_exec", slow_start)
    except AttributeError:  # uvloop's loop takes no attribute of its own
        pytest.skip("this loop's subprocess_exec cannot be wrapped")
    check = CommandCheck([*script(tmp_path, SPAWNS_A_GRANDCHILD), str(pidfile)])
    task = loop.create_task(check.run())
    await connecting.wait()
    await wait_until_async(pidfile.exists, "the script to start its grandchild")

    task.cancel()
    await asyncio.sleep(0)  # the cancellation arrives while the start is still under way
    connected.set()
    await group_gone_after(task, pidfile)


@needs_sh
@needs_proc
@needs_process_groups
@pytest.mark.asyncio
async def test_what_the_program_leaves_of_its_group_is_killed_when_it_exits(
    tmp_path: Path,
) -> None:
    """A background process the program left holding its output is killed when it exits:
    the check ends at once, not at the timeout."""
    pidfile = tmp_path / "pids"
    argv = script(tmp_path, 'sleep 300 &\necho $! > "$1"\necho "OK - left one"\n')

    started = time.monotonic()
    result = await run(CommandCheck([*argv, str(pidfile)]))

    assert result == CheckResult("pass", "OK - left one")
    assert time.monotonic() - started < generous(5)
    (grandchild,) = pids_in(pidfile)
    await wait_until_async(lambda: process_ended(grandchild), "the left process to be killed")


@needs_proc
@pytest.mark.asyncio
async def test_a_process_that_left_the_group_holding_the_output_is_not_waited_for(
    tmp_path: Path,
) -> None:
    """A process in a session of its own that keeps the output open delays the check by at
    most a second after the program exits."""
    pidfile = tmp_path / "pid"
    escape = textwrap.dedent(
        f"""
        import os, subprocess, sys
        child = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True
        )
        open({str(pidfile)!r}, "w").write(str(child.pid))
        print("OK - escaped")
        """
    )
    try:
        started = time.monotonic()
        result = await run(CommandCheck([sys.executable, "-c", escape]))
        took = time.monotonic() - started
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), 9)

    assert result == CheckResult("pass", "OK - escaped")
    assert took < generous(5)


@needs_sh
@needs_proc
@pytest.mark.asyncio
async def test_a_run_leaves_no_descriptor_and_no_zombie(tmp_path: Path) -> None:
    """After runs that pass, flood and time out, no pipe is left open and no child unreaped."""
    await run(CommandCheck([sys.executable, "-c", "pass"]))  # the loop's own child watching
    before = open_fds()
    pidfile = tmp_path / "pids"
    checks = [
        CommandCheck([*script(tmp_path, 'echo $$ > "$1"\n', "a.sh"), str(pidfile)]),
        CommandCheck(script(tmp_path, "head -c 1000000 /dev/zero\n", "b.sh")),
    ]
    for check in checks:
        await run(check)
    slow = CommandCheck(script(tmp_path, "sleep 300\n", "c.sh"))
    with pytest.raises(asyncio.TimeoutError):  # the builtin TimeoutError from 3.11 only
        await asyncio.wait_for(slow.run(), 0.2)

    (child,) = pids_in(pidfile)
    assert process_state(child) is None
    await wait_until_async(lambda: open_fds() == before, f"the pipes to be closed: {before}")


# --- construction --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        ("check_tcp -H db -p 5432", TypeError),
        (b"check_tcp", TypeError),
        ([42], TypeError),
        (None, TypeError),
        ([], ValueError),
        ([""], ValueError),
        (["check\0tcp"], ValueError),
    ],
)
def test_argv_must_be_a_list_of_strings(argv: Any, error: type[Exception]) -> None:
    """argv is a list of strings (else TypeError) naming a program (else ValueError)."""
    with pytest.raises(error, match="argv"):
        CommandCheck(argv)


def test_a_string_argv_is_refused_saying_no_shell() -> None:
    """The message for a string says why: there is no shell."""
    with pytest.raises(TypeError, match=r"no shell"):
        CommandCheck("check_tcp -H db")


def test_command_check_takes_the_common_options(tmp_path: Path) -> None:
    """CommandCheck takes the common options; argv may hold paths."""
    check = CommandCheck(
        [tmp_path / "check_app", "-v"],
        name="app",
        timeout=9,
        critical=False,
        groups=["live"],
        failure_threshold=2,
        success_threshold=2,
    )

    assert check.argv == (str(tmp_path / "check_app"), "-v")
    assert (check.name, check.timeout, check.critical, check.groups) == (
        "app",
        9.0,
        False,
        ("live",),
    )
    assert repr(check) == f"<CommandCheck 'app' argv={[str(tmp_path / 'check_app'), '-v']!r}>"
