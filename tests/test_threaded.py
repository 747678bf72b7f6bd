"""HealthCheckService: the thread facade of the original design, over AsyncHealthService."""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import healthfile
from healthfile import CheckResult, HealthCheckService, HealthReport
from helpers import (
    child_environment,
    generous,
    is_online,
    loop_factory,
    read_report,
    wait_for_report,
    wait_until,
)

# Generous: the suite also runs on slow, busy CI machines and under coverage.
DEADLINE = 30.0
THREAD_NAME = "HealthCheckThread"

Facade = Callable[..., HealthCheckService]


@pytest.fixture
def make_facade(
    database: Path, health_file: Path, tmp_path: Path, test_loop: str
) -> Iterator[Facade]:
    """Build facades with test defaults; every one is stopped, its thread gone, at the end."""
    made: list[HealthCheckService] = []

    def factory(*args: Any, **options: Any) -> HealthCheckService:
        options.setdefault("health_file", health_file)
        options.setdefault("database", database)
        options.setdefault("pyproject", tmp_path / "missing-pyproject.toml")
        if test_loop != "asyncio":  # pytest --loop=uvloop: the facade runs on it too
            options.setdefault("loop_factory", loop_factory(test_loop))
        facade = HealthCheckService(*args, **options)
        made.append(facade)
        return facade

    yield factory
    for facade in made:
        facade.stop(timeout=DEADLINE)
        assert not facade.is_running


@contextmanager
def exclusively_locked(database: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``database``, so that no one can read it meanwhile."""
    connection = sqlite3.connect(database, isolation_level=None)
    try:
        connection.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        connection.rollback()
        connection.close()


def status_of(path: Path) -> str | None:
    """The status the health file says now, or None when there is no file."""
    report = read_report(path)
    return None if report is None else str(report["status"])


def service_threads() -> list[threading.Thread]:
    """The live threads named HealthCheckThread."""
    return [thread for thread in threading.enumerate() if thread.name == THREAD_NAME]


def test_defaults_are_those_of_the_original_design(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HealthCheckService() checks every 30 s and keeps data/health.json."""
    monkeypatch.chdir(tmp_path)
    facade = HealthCheckService()
    assert facade.service.interval == 30.0
    assert facade.service.health_file == Path(os.getcwd(), "data", "health.json")
    assert facade.service.check_timeout == 3.0
    assert not facade.is_running


def test_check_interval_is_the_first_positional_argument(tmp_path: Path) -> None:
    """HealthCheckService(5) checks every 5 s, as the original design's signature has it."""
    facade = HealthCheckService(5, tmp_path / "health.json")
    assert facade.service.interval == 5.0
    assert facade.service.health_file == tmp_path / "health.json"


def test_default_health_file_is_data_health_json_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With health_file=None the service writes data/health.json, creating data/."""
    monkeypatch.chdir(tmp_path)
    facade = HealthCheckService(health_file=None)
    facade.start()
    try:
        report = wait_for_report(tmp_path / "data" / "health.json", lambda report: True)
    finally:
        facade.stop()
    # The default database data/app.db is missing: read-only access never creates it.
    assert report["database"] == "disconnected"
    assert report["status"] == "degraded"
    assert not (tmp_path / "data" / "app.db").exists()
    assert status_of(tmp_path / "data" / "health.json") == "stopped"


@pytest.mark.parametrize(
    "options",
    [
        {"check_interval": 0},
        {"check_interval": -1},
        {"check_interval": math.nan},
        {"check_timeout": 0},
        {"check_timeout": -3},
        {"start_period": -1},
    ],
    ids=lambda options: "-".join(f"{key}={value}" for key, value in options.items()),
)
def test_bad_option_raises_value_error_in_the_callers_thread(
    options: dict[str, Any], tmp_path: Path
) -> None:
    """A bad option raises ValueError naming it as the caller wrote it, before any thread."""
    before = service_threads()
    with pytest.raises(ValueError, match=rf"^{next(iter(options))} must be"):
        HealthCheckService(health_file=tmp_path / "health.json", **options)
    assert service_threads() == before


def test_check_interval_of_the_wrong_type_is_a_type_error_naming_it(tmp_path: Path) -> None:
    """check_interval="5" raises TypeError naming check_interval, not the service's interval."""
    with pytest.raises(TypeError, match=r"^check_interval must be a number of seconds"):
        HealthCheckService("5", tmp_path / "health.json")  # type: ignore[arg-type]


def test_database_path_as_second_argument_says_which_argument_went_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HealthCheckService(5, "data/app.db") names health_file, the default database, database=."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="same file") as caught:
        HealthCheckService(5, "data/app.db")
    message = str(caught.value)
    assert message.startswith(
        "database='data/app.db' (the default) and health_file='data/app.db' "
        "(HealthCheckService's second argument) are the same file"
    )
    assert message.endswith("did you mean database='data/app.db'?")
    assert not (tmp_path / "data").exists()


def test_database_given_twice_is_named_without_a_guess(tmp_path: Path) -> None:
    """With database= given too, the message names both as written and guesses nothing."""
    database = str(tmp_path / "app.db")
    with pytest.raises(ValueError, match="same file") as caught:
        HealthCheckService(5, database, database=database)
    assert str(caught.value).startswith(
        f"database={database!r} and health_file={database!r} are the same file"
    )
    assert "did you mean" not in str(caught.value)


def test_running_is_is_running(make_facade: Facade) -> None:
    """The facade's running (AsyncHealthService's name) is its is_running, before and after."""
    facade = make_facade()
    assert facade.running is facade.is_running is False
    facade.start()
    assert facade.running is facade.is_running is True
    facade.stop(timeout=DEADLINE)
    assert facade.running is facade.is_running is False


def test_start_returns_before_the_first_report(
    make_facade: Facade, database: Path, health_file: Path
) -> None:
    """start() returns at once; the first report arrives later in the background."""
    facade = make_facade(check_timeout=DEADLINE)
    with exclusively_locked(database):  # the first cycle cannot finish while this holds
        facade.start()
        assert facade.is_running
        assert not health_file.exists()
    report = wait_for_report(health_file, lambda report: True)
    assert report["status"] == "online"
    assert report["database"] == "connected"
    assert report["sequence"] == 1


def test_thread_is_a_daemon_named_health_check_thread(make_facade: Facade) -> None:
    """start() runs the service in one daemon thread named HealthCheckThread."""
    facade = make_facade()
    facade.start()
    [thread] = service_threads()
    assert thread.daemon
    assert thread is not threading.current_thread()
    assert facade.is_running


def test_second_start_warns_and_starts_nothing_new(
    make_facade: Facade, health_file: Path, healthfile_logs: pytest.LogCaptureFixture
) -> None:
    """A second start() while running logs a warning and leaves the one thread running."""
    facade = make_facade()
    facade.start()
    wait_for_report(health_file, is_online)
    [thread] = service_threads()
    healthfile_logs.clear()

    facade.start()

    assert service_threads() == [thread]
    warnings = [record for record in healthfile_logs.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "already running" in warnings[0].getMessage()
    report = read_report(health_file)
    assert report is not None
    assert report["sequence"] == 1  # no second service ran a cycle of its own


def test_stop_writes_stopped_before_returning_and_ends_the_thread(
    make_facade: Facade, health_file: Path
) -> None:
    """stop() returns only after the final stopped report is on disk and the thread is gone."""
    facade = make_facade()
    facade.start()
    online = wait_for_report(health_file, is_online)
    [thread] = service_threads()

    facade.stop(timeout=DEADLINE)

    final = read_report(health_file)
    assert final is not None
    assert final["status"] == "stopped"
    assert final["sequence"] == online["sequence"] + 1
    assert not thread.is_alive()
    assert service_threads() == []
    assert not facade.is_running


def test_stop_with_default_timeout_ends_an_idle_service(
    make_facade: Facade, health_file: Path
) -> None:
    """stop() with its default 2 s timeout ends an idle service's thread."""
    facade = make_facade()
    facade.start()
    wait_for_report(health_file, is_online)
    facade.stop()
    assert not facade.is_running
    assert status_of(health_file) == "stopped"


def test_stop_before_start_is_a_no_op(make_facade: Facade, health_file: Path) -> None:
    """stop() on a facade never started returns and writes nothing."""
    facade = make_facade()
    facade.stop()
    facade.stop(timeout=0.1)
    assert not facade.is_running
    assert not health_file.exists()


def test_stop_twice_is_a_no_op(make_facade: Facade, health_file: Path) -> None:
    """A second stop() leaves the stopped report as it was."""
    facade = make_facade()
    facade.start()
    wait_for_report(health_file, is_online)
    facade.stop(timeout=DEADLINE)
    first = read_report(health_file)

    facade.stop(timeout=DEADLINE)

    assert read_report(health_file) == first
    assert not facade.is_running


def test_is_running_follows_start_and_stop(make_facade: Facade, health_file: Path) -> None:
    """is_running is False before start(), True after it, and False again after stop()."""
    facade = make_facade()
    assert not facade.is_running
    facade.start()
    assert facade.is_running
    wait_for_report(health_file, is_online)
    assert facade.is_running
    facade.stop(timeout=DEADLINE)
    assert not facade.is_running


def test_restart_after_stop_runs_again(make_facade: Facade, health_file: Path) -> None:
    """A stopped facade starts again: a new thread, new reports, and stopped again at the end."""
    facade = make_facade(check_interval=0.2)
    facade.start()
    wait_for_report(health_file, is_online)
    [first_thread] = service_threads()
    facade.stop(timeout=DEADLINE)
    stopped = read_report(health_file)
    assert stopped is not None
    assert stopped["status"] == "stopped"

    facade.start()
    assert facade.is_running
    online = wait_for_report(
        health_file, lambda report: is_online(report) and report["sequence"] > stopped["sequence"]
    )
    [second_thread] = service_threads()
    assert second_thread is not first_thread
    assert second_thread.daemon
    # Cycles continue on the 0.2 s interval after the restart.
    wait_for_report(health_file, lambda report: report["sequence"] >= online["sequence"] + 2)

    facade.stop(timeout=DEADLINE)
    assert status_of(health_file) == "stopped"
    assert not facade.is_running


def test_stop_right_after_start_ends_with_stopped(
    make_facade: Facade, database: Path, health_file: Path
) -> None:
    """stop() right after start(), with the first cycle hung on a locked database, ends stopped."""
    facade = make_facade(check_timeout=DEADLINE)
    with exclusively_locked(database):
        facade.start()
        facade.stop()  # the default 2 s: far less than the hung check's 30 s
        assert not facade.is_running
        assert service_threads() == []
        assert status_of(health_file) == "stopped"


def test_stop_during_the_first_cycle_ends_with_stopped(
    make_facade: Facade, database: Path, health_file: Path
) -> None:
    """stop() while the first cycle is in flight, hung on a locked database, ends stopped."""
    in_first_cycle = threading.Event()

    async def signal_cycle() -> CheckResult:
        in_first_cycle.set()
        return CheckResult("pass")

    facade = make_facade(
        check_timeout=DEADLINE, checks=[healthfile.check("in_cycle", signal_cycle)]
    )
    with exclusively_locked(database):
        facade.start()
        assert in_first_cycle.wait(DEADLINE), "the first cycle never began"
        assert not health_file.exists()
        facade.stop()  # the default 2 s: far less than the hung check's 30 s
        assert not facade.is_running
        assert service_threads() == []
        assert status_of(health_file) == "stopped"


def test_stop_from_the_services_own_loop_does_not_deadlock(
    make_facade: Facade, health_file: Path
) -> None:
    """stop() called by an async on_change, on the service's own thread, returns and stops it."""
    returned = threading.Event()
    callers: list[threading.Thread] = []

    async def stop_when_online(previous: HealthReport | None, current: HealthReport) -> None:
        if current.status == "online":
            callers.append(threading.current_thread())
            facade.stop()
            returned.set()

    facade = make_facade(on_change=stop_when_online)
    facade.start()

    assert returned.wait(DEADLINE), "stop() inside the service's loop did not return"
    assert [thread.name for thread in callers] == [THREAD_NAME]
    wait_until(lambda: not facade.is_running, "the service thread ends")
    assert status_of(health_file) == "stopped"


def test_stop_returns_promptly_when_on_change_also_calls_stop(
    make_facade: Facade, health_file: Path, healthfile_logs: pytest.LogCaptureFixture
) -> None:
    """stop() ends the thread even when an async on_change calls stop() on the stopped report."""
    calls: list[str] = []

    async def stop_unless_online(previous: HealthReport | None, current: HealthReport) -> None:
        if current.status != "online":
            calls.append(current.status)
            facade.stop()

    facade = make_facade(on_change=stop_unless_online)
    facade.start()
    wait_for_report(health_file, is_online)

    facade.stop(timeout=5.0)

    assert status_of(health_file) == "stopped"
    assert calls == ["stopped"]
    assert not facade.is_running, "stop() returned with the service thread still running"
    assert not [record for record in healthfile_logs.records if record.levelno >= logging.WARNING]


PROGRAM = textwrap.dedent(
    """
    import json
    import sqlite3
    import sys
    import threading
    import time
    from pathlib import Path

    import healthfile
    from healthfile import CheckResult, HealthCheckService

    health_file, database, ending = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    in_cycle = threading.Event()


    async def gate():
        in_cycle.set()
        return CheckResult("pass")


    def hang():
        time.sleep(3600)


    if ending.endswith("-while-hung"):
        # The first cycle hangs: the database is locked, and a sync check never returns.
        lock = sqlite3.connect(database, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        checks = [healthfile.check("gate", gate), healthfile.check("hang", hang)]
    else:
        checks = []
    service = HealthCheckService(
        check_interval=0.2,
        health_file=health_file,
        database=database,
        pyproject=None,
        check_timeout=3600,
        checks=checks,
    )
    service.start()
    if checks:
        if not in_cycle.wait(30):
            sys.exit("the first cycle never began")
    else:
        deadline = time.monotonic() + 30
        while True:
            try:
                if json.loads(health_file.read_text())["status"] == "online":
                    break
            except FileNotFoundError:
                pass
            if time.monotonic() > deadline:
                sys.exit("no online report")
            time.sleep(0.02)
    if ending.startswith("stop"):
        service.stop()
    print("running" if service.is_running else "not running", flush=True)
    """
)


@pytest.mark.parametrize(
    ("ending", "expected"),
    [
        pytest.param("stop", "stopped", id="stop"),
        # A forgotten daemon thread just ends with the program, leaving its last report.
        pytest.param("forget", "online", id="forget"),
        pytest.param("stop-while-hung", "stopped", id="stop-while-hung"),
        pytest.param("forget-while-hung", None, id="forget-while-hung"),
    ],
)
def test_program_without_asyncio_exits_promptly(
    ending: str, expected: str | None, database: Path, health_file: Path, tmp_path: Path
) -> None:
    """A plain script using the facade exits at its end, whether it calls stop() or forgets to."""
    script = tmp_path / "program.py"
    script.write_text(PROGRAM, encoding="utf-8")
    try:
        finished = subprocess.run(
            [sys.executable, str(script), str(health_file), str(database), ending],
            cwd=tmp_path,
            env=child_environment(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=2 * DEADLINE,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the program did not exit: {exc}")
    assert finished.returncode == 0, finished.stderr
    stopped = ending.startswith("stop")
    assert finished.stdout == ("not running\n" if stopped else "running\n")
    assert "Traceback" not in finished.stderr
    assert status_of(health_file) == expected


SIGTERM_PROGRAM = textwrap.dedent(
    """
    import json
    import os
    import random
    import signal
    import sys
    import threading
    import time
    from pathlib import Path

    from healthfile import HealthCheckService

    health_file, database, style, seed = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    rng = random.Random(seed)
    # The signal is raised at a random line of start() or of the healthfile code it calls,
    # counted by a trace function; past start()'s last line, at a random moment of the first
    # cycle. (Lines of the standard library are left out: an exception raised at some of
    # them, in Condition.wait for one, breaks threading itself.)
    target = rng.randrange(0, 60)
    START = HealthCheckService.start.__code__
    OURS = str(Path(START.co_filename).parent)
    service = HealthCheckService(
        check_interval=0.2, health_file=health_file, database=database, pyproject=None
    )
    handled = []
    started = []
    landed = []
    traced = {"lines": 0, "inside": False, "fired": False}


    def on_disk():
        try:
            return json.loads(health_file.read_text())["status"]
        except FileNotFoundError:
            return None


    def where(frame):
        # Where the signal interrupted the program: before, in or after start(). Until
        # start() has read the stop token, a stop() comes before start().
        while frame is not None:
            if frame.f_code is START:
                return "in" if frame.f_locals.get("token") is not None else "before"
            frame = frame.f_back
        return "after" if started else "before"


    def on_term(signum, frame):
        landed.append(where(frame))
        print(f"signal: {landed[0]}", flush=True)
        service.stop(timeout=10)
        handled.append(on_disk())
        if style == "exit":
            print(f"handler: {handled[0]}", flush=True)
            sys.exit(0)


    def tracer(frame, event, arg):
        if traced["fired"]:
            return None
        if frame.f_code is START:
            traced["inside"] = event != "return"
        if traced["inside"] and event == "line" and frame.f_code.co_filename.startswith(OURS):
            traced["lines"] += 1
            if traced["lines"] > target:
                traced["fired"] = True
                signal.raise_signal(signal.SIGTERM)
        return tracer


    signal.signal(signal.SIGTERM, on_term)
    sys.settrace(tracer)
    service.start()
    sys.settrace(None)
    started.append(True)
    if not traced["fired"]:
        time.sleep(rng.uniform(0, 0.05))
        signal.raise_signal(signal.SIGTERM)
    while not handled:
        time.sleep(0.005)
    if landed[0] == "before":
        service.stop()  # that stop() came before start(): the program's own stop() follows
    print(f"handler: {handled[0]}", flush=True)
    print(f"after: {on_disk()} running={service.is_running}", flush=True)
    """
)


@pytest.mark.parametrize("style", ["return", "exit"])
def test_sigterm_handler_calling_stop_during_start_never_hangs_and_leaves_stopped(
    style: str, tmp_path: Path, database: Path
) -> None:
    """30 processes whose SIGTERM handler calls stop() at random moments of start() all exit.

    The signal lands on a random line of start() (or of healthfile code it calls), else
    during the first cycle. Every process leaves ``stopped`` on disk, whether its handler
    returns or exits at once, also when it interrupted start() before its thread was let
    go; only a handler that exits before start() has begun (read the stop token) leaves no
    report, since nothing was started.
    """
    script = tmp_path / "program.py"
    script.write_text(SIGTERM_PROGRAM, encoding="utf-8")
    outcomes: list[tuple[str | None, str]] = []
    for batch in range(6):
        children = []
        for index in range(5):
            health_file = tmp_path / f"run-{batch}-{index}" / "health.json"
            child = subprocess.Popen(
                [
                    sys.executable,
                    str(script),
                    str(health_file),
                    str(database),
                    style,
                    health_file.parent.name,
                ],
                cwd=tmp_path,
                env=child_environment(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            children.append((child, health_file))
        try:
            for child, health_file in children:
                try:
                    out, err = child.communicate(timeout=DEADLINE)
                except subprocess.TimeoutExpired:
                    pytest.fail(
                        f"a process hung with stop() called from its SIGTERM handler ({style})"
                    )
                assert child.returncode == 0, err
                assert "Traceback" not in err, err
                outcomes.append((status_of(health_file), out))
        finally:
            for child, _ in children:  # none is left behind when one fails
                if child.poll() is None:
                    child.kill()
                child.communicate()
    landed = [out.splitlines()[0] for _, out in outcomes]
    assert landed.count("signal: in") >= 10, landed  # the test hits the window it is about
    for final, out in outcomes:
        if style == "return":
            assert final == "stopped", out
            assert out.endswith("after: stopped running=False\n"), out
            if "signal: after" in out:
                assert "handler: stopped" in out, out  # on disk when stop() returned
        elif "signal: before" in out:
            assert final is None, out  # nothing was started
        else:
            assert final == "stopped", out


def loop_factories() -> list[Any]:
    """asyncio's default loop, and uvloop where it is installed."""
    factories: list[Any] = [pytest.param(None, id="asyncio")]
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a test dependency off Windows
        return factories
    factories.append(pytest.param(uvloop.new_event_loop, id="uvloop"))
    return factories


@pytest.fixture
def slow_fsync(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Make every fsync take ``seconds`` longer: a slow disk."""
    real_fsync = os.fsync

    def install(seconds: float) -> None:
        def fsync(fd: int) -> None:
            time.sleep(seconds)
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)

    return install


def test_start_after_a_stop_that_timed_out_starts_once_the_old_thread_has_ended(
    make_facade: Facade,
    health_file: Path,
    slow_fsync: Callable[[float], None],
    healthfile_logs: pytest.LogCaptureFixture,
) -> None:
    """start() after a stop() that timed out on a slow disk runs the service again, later."""
    facade = make_facade(check_interval=0.2)
    facade.start()
    online = wait_for_report(health_file, is_online)
    slow_fsync(0.4)
    [old_thread] = service_threads()

    facade.stop(timeout=0.05)  # the stopped report needs two slow fsyncs
    assert old_thread.is_alive()
    assert "did not stop within" in healthfile_logs.text
    facade.start()

    assert "starts again once it has ended" in healthfile_logs.text
    assert facade.is_running
    wait_until(lambda: not old_thread.is_alive(), "the old thread ends")
    again = wait_for_report(
        health_file,
        lambda report: is_online(report) and report["sequence"] > online["sequence"] + 1,
    )
    assert facade.is_running
    assert [thread for thread in service_threads() if thread is not old_thread]
    facade.stop(timeout=DEADLINE)
    final = read_report(health_file)
    assert final is not None
    assert final["status"] == "stopped"
    assert final["sequence"] > again["sequence"]
    assert not facade.is_running


def test_stop_while_waiting_for_the_old_thread_leaves_nothing_running(
    make_facade: Facade, health_file: Path, slow_fsync: Callable[[float], None]
) -> None:
    """start() then stop() while a timed-out stop() still writes: stopped, nothing left running."""
    facade = make_facade()
    facade.start()
    wait_for_report(health_file, is_online)
    slow_fsync(0.3)
    facade.stop(timeout=0.01)
    facade.start()
    facade.stop(timeout=DEADLINE)
    assert not facade.is_running
    assert service_threads() == []
    assert status_of(health_file) == "stopped"


def test_start_from_many_threads_at_once_runs_one_service(
    make_facade: Facade, health_file: Path
) -> None:
    """start() called by 10 threads at once launches one HealthCheckThread."""
    facade = make_facade()
    barrier = threading.Barrier(10)

    def start() -> None:
        barrier.wait()
        facade.start()

    starters = [threading.Thread(target=start) for _ in range(10)]
    for thread in starters:
        thread.start()
    for thread in starters:
        thread.join(DEADLINE)
    assert facade.wait_ready(DEADLINE)
    assert len(service_threads()) == 1
    report = read_report(health_file)
    assert report is not None
    assert report["sequence"] == 1


def test_last_report_is_none_before_start_then_the_report_on_disk(
    make_facade: Facade, health_file: Path
) -> None:
    """last_report is None before the first report, then the report the file holds."""
    facade = make_facade()
    assert facade.last_report is None
    facade.start()
    assert facade.wait_ready(DEADLINE)
    report = facade.last_report
    assert report is not None
    assert report.as_dict() == read_report(health_file)
    facade.stop(timeout=DEADLINE)
    stopped = facade.last_report
    assert stopped is not None
    assert stopped.status == "stopped"


@pytest.mark.parametrize("loop_factory", loop_factories())
def test_check_now_runs_a_cycle_and_returns_its_report(
    make_facade: Facade, health_file: Path, loop_factory: Any
) -> None:
    """check_now() from the caller's thread runs one cycle, writes it, and returns it."""
    facade = make_facade(loop_factory=loop_factory)
    facade.start()
    assert facade.wait_ready(DEADLINE)
    first = facade.last_report
    assert first is not None

    report = facade.check_now(timeout=DEADLINE)

    assert report.sequence == first.sequence + 1
    assert report.status == "online"
    assert facade.last_report is report
    assert read_report(health_file) == report.as_dict()
    assert [thread.name for thread in service_threads()] == [THREAD_NAME]


def test_check_now_right_after_start_waits_for_the_first_cycle(
    make_facade: Facade, database: Path
) -> None:
    """check_now() while the service is still starting runs its cycle after the first one."""
    facade = make_facade(check_timeout=DEADLINE)
    with exclusively_locked(database):
        facade.start()
        result: list[HealthReport] = []
        caller = threading.Thread(target=lambda: result.append(facade.check_now(DEADLINE)))
        caller.start()
        time.sleep(0.1)  # the caller is waiting: the first cycle cannot end while locked
        assert not result
    caller.join(DEADLINE)
    [report] = result
    assert report.sequence == 2
    assert report.status == "online"


def test_check_now_when_not_running_raises_runtime_error(
    make_facade: Facade, health_file: Path
) -> None:
    """check_now() before start() and after stop() raises RuntimeError."""
    facade = make_facade()
    with pytest.raises(RuntimeError, match="not running"):
        facade.check_now()
    facade.start()
    assert facade.wait_ready(DEADLINE)
    facade.stop(timeout=DEADLINE)
    with pytest.raises(RuntimeError, match="not running"):
        facade.check_now(timeout=1.0)


def test_check_now_past_its_timeout_raises_timeout_error(make_facade: Facade) -> None:
    """check_now(timeout) raises TimeoutError when the cycle outlives it, well before the check."""
    release = threading.Event()
    blocking = [False]

    def gate() -> bool:
        if blocking[0]:
            release.wait(DEADLINE)
        return True

    facade = make_facade(check_timeout=DEADLINE, checks=[healthfile.check("gate", gate)])
    facade.start()
    assert facade.wait_ready(DEADLINE)
    blocking[0] = True
    began = time.monotonic()
    try:
        with pytest.raises(TimeoutError, match=r"did not finish within 0\.2 s"):
            facade.check_now(timeout=0.2)
        assert time.monotonic() - began < generous(DEADLINE / 2)
    finally:
        release.set()


def test_check_now_and_wait_ready_on_the_services_own_thread_raise(
    make_facade: Facade, health_file: Path
) -> None:
    """check_now() and wait_ready() from an async on_change (the service's thread) raise."""
    errors: list[str] = []
    done = threading.Event()

    async def on_change(previous: HealthReport | None, current: HealthReport) -> None:
        if previous is None:
            for method in (facade.check_now, facade.wait_ready):
                try:
                    method(1.0)
                except RuntimeError as exc:
                    errors.append(str(exc))
            done.set()

    facade = make_facade(on_change=on_change)
    facade.start()
    assert done.wait(DEADLINE)
    assert len(errors) == 2
    assert all("own thread" in error for error in errors)
    wait_for_report(health_file, is_online)


def test_wait_ready_before_start_is_false_at_once(make_facade: Facade) -> None:
    """wait_ready() on a facade never started returns False without waiting."""
    facade = make_facade()
    began = time.monotonic()
    assert facade.wait_ready(DEADLINE) is False
    assert time.monotonic() - began < generous(DEADLINE / 2)


def test_wait_ready_waits_for_the_first_report(
    make_facade: Facade, database: Path, health_file: Path
) -> None:
    """wait_ready() is False while the first cycle is blocked, True once its report is written."""
    facade = make_facade(check_timeout=DEADLINE)
    with exclusively_locked(database):
        facade.start()
        assert facade.wait_ready(0.2) is False
        assert not health_file.exists()
    assert facade.wait_ready(DEADLINE) is True
    assert status_of(health_file) == "online"


def test_wait_ready_after_a_failed_first_write_turns_true_when_a_write_succeeds(
    make_facade: Facade, health_file: Path
) -> None:
    """A first report that cannot be written is not ready; the first one written is."""
    health_file.mkdir(parents=True)  # a directory where the file should be: writes fail
    facade = make_facade(check_interval=0.1)
    facade.start()
    assert facade.wait_ready(0.5) is False
    health_file.rmdir()
    assert facade.wait_ready(DEADLINE) is True
    assert status_of(health_file) == "online"


def test_facade_tells_the_report_made_and_why_it_is_not_on_disk(
    make_facade: Facade, health_file: Path
) -> None:
    """The facade has the service's last_report, last_write_error and writing, from any thread."""
    health_file.mkdir(parents=True)  # a directory where the file should be: writes fail
    facade = make_facade(check_interval=0.1)
    facade.start()
    wait_until(lambda: facade.last_write_error is not None, "a write fails")
    assert facade.last_report is not None  # made, not written
    assert facade.writing
    assert facade.last_write_error == facade.service.last_write_error
    assert f"cannot write {health_file}" in (facade.last_write_error or "")
    health_file.rmdir()
    assert facade.wait_ready(DEADLINE) is True
    assert facade.last_write_error is None


def test_wait_ready_is_false_when_stopped_before_the_first_report(
    make_facade: Facade, database: Path
) -> None:
    """wait_ready() returns False, at once, for a service stopped before its first report."""
    facade = make_facade(check_timeout=DEADLINE)
    with exclusively_locked(database):
        facade.start()
        facade.stop()
    assert facade.wait_ready(DEADLINE) is False


@pytest.mark.parametrize("loop_factory", loop_factories())
def test_facade_methods_from_ten_threads_at_once(
    make_facade: Facade, health_file: Path, loop_factory: Any
) -> None:
    """10 threads calling check_now, last_report, wait_ready and stop at once: no hang, no error.

    Every check_now() that returns a report returns its own cycle's; the others raise
    RuntimeError because stop() came first; the file ends stopped.
    """
    facade = make_facade(check_interval=0.05, loop_factory=loop_factory)
    facade.start()
    barrier = threading.Barrier(10)
    reports: list[HealthReport] = []
    refused: list[str] = []
    failures: list[BaseException] = []

    def checker() -> None:
        barrier.wait()
        for _ in range(20):
            try:
                reports.append(facade.check_now(timeout=DEADLINE))
            except RuntimeError as exc:
                refused.append(str(exc))
                return

    def reader() -> None:
        barrier.wait()
        for _ in range(200):
            report = facade.last_report
            assert report is None or report.status in ("online", "stopped")

    def waiter() -> None:
        barrier.wait()
        assert facade.wait_ready(DEADLINE)

    def stopper() -> None:
        barrier.wait()
        time.sleep(0.2)
        facade.stop(timeout=DEADLINE)

    def guarded(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:
                failures.append(exc)

        return run

    roles = [checker] * 4 + [reader] * 2 + [waiter] * 2 + [stopper] * 2
    threads = [threading.Thread(target=guarded(role)) for role in roles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(2 * DEADLINE)
    assert not [thread for thread in threads if thread.is_alive()], "a caller hung"
    assert failures == []
    sequences = [report.sequence for report in reports]
    assert len(set(sequences)) == len(sequences)  # each call got its own cycle
    assert all("not running" in message or "stopped during" in message for message in refused)
    assert not facade.is_running
    assert status_of(health_file) == "stopped"


def test_interval_and_a_bad_loop_factory_are_refused() -> None:
    """interval= (the asyncio name) and a loop_factory that is not callable raise TypeError."""
    with pytest.raises(TypeError, match="check_interval="):
        HealthCheckService(interval=5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="loop_factory must be callable"):
        HealthCheckService(loop_factory=42)  # type: ignore[arg-type]


def test_repr_says_running_or_stopped(make_facade: Facade) -> None:
    """repr() shows whether the thread runs, and the service it runs."""
    facade = make_facade()
    assert repr(facade).startswith("<HealthCheckService stopped service=<AsyncHealthService")
    facade.start()
    assert repr(facade).startswith("<HealthCheckService running")


class FailingStart:
    """A check whose on_start() raises: the service cannot start."""

    name = "broken"

    def on_start(self) -> None:
        """Fail, as a check that cannot set itself up does."""
        raise RuntimeError("cannot set up")

    async def run(self) -> CheckResult:
        """Never reached."""
        return CheckResult("pass")  # pragma: no cover


def test_a_service_that_fails_to_start_is_logged_and_not_running(
    make_facade: Facade, healthfile_logs: pytest.LogCaptureFixture
) -> None:
    """A start() that fails in the thread is logged; check_now() and wait_ready() then refuse."""
    facade = make_facade(checks=[FailingStart()])
    facade.start()
    wait_until(lambda: not facade.is_running, "the failed thread ends")
    assert "health check thread failed" in healthfile_logs.text
    assert "cannot set up" in healthfile_logs.text
    with pytest.raises(RuntimeError, match="not running"):
        facade.check_now(timeout=DEADLINE)
    assert facade.wait_ready(DEADLINE) is False
