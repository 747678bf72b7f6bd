"""The ``healthfile`` command line: option checking in-process, ``healthfile run`` for real."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from healthfile import _run
from healthfile._cli import main
from healthfile._entry import main as entry_main
from helpers import (
    child_environment,
    generous,
    is_online,
    one_line,
    parse_samples,
    read_report,
    wait_for_report,
    wait_until,
)

# Generous: the suite also runs on slow, busy CI machines and under coverage.
DEADLINE = 30.0

pytestmark = pytest.mark.usefixtures("clean_environment")


# --- in-process: main([...]) --------------------------------------------------------------


def invoke(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Call main(argv) in-process; return its exit status, stdout and stderr."""
    try:
        status: object = main(argv)
    except SystemExit as exc:
        status = 0 if exc.code is None else exc.code
    out, err = capsys.readouterr()
    assert isinstance(status, int), f"exit status {status!r} is not an int"
    return status, out, err


def test_help_exits_zero_and_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    """`healthfile --help` prints usage on stdout and exits 0."""
    status, out, err = invoke(["--help"], capsys)
    assert status == 0
    assert "usage: healthfile" in out
    assert "run" in out
    assert err == ""


def test_run_help_names_every_environment_variable(capsys: pytest.CaptureFixture[str]) -> None:
    """`healthfile run --help` exits 0 and names the HEALTHFILE_* variable of every option."""
    status, out, _ = invoke(["run", "--help"], capsys)
    assert status == 0
    flat = " ".join(out.split())  # argparse wraps lines wherever it likes
    for name in (
        "DATABASE",
        "HEALTH_FILE",
        "INTERVAL",
        "CHECK_TIMEOUT",
        "PYPROJECT",
        "APP_VERSION",
        "START_PERIOD",
        "VERBOSE",
    ):
        assert f"HEALTHFILE_{name}" in flat


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`healthfile --version` prints "healthfile <version>" (the installed metadata) and exits 0."""
    status, out, err = invoke(["--version"], capsys)
    assert (status, out, err) == (0, f"healthfile {importlib.metadata.version('healthfile')}\n", "")
    with pytest.raises(SystemExit) as exited:  # the console script's own entry agrees
        entry_main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == out


def test_run_help_uses_the_metavars_of_check_and_names_exit_codes_and_verbosity(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`run --help` shows SECONDS/PATH/TEXT as `check --help` does, its exit codes, -v and -vv."""
    _, out, _ = invoke(["run", "--help"], capsys)
    for usage in ("--interval SECONDS", "--health-file PATH", "--database PATH", "--app-name TEXT"):
        assert usage in out
    assert not re.search(r"--[a-z-]+ [A-Z_]*(INTERVAL|HEALTH_FILE|DATABASE)\b", out)
    for code in ("0 ", "1 ", "2 ", "130 "):
        assert re.search(rf"^{code}\s*\S", out, re.MULTILINE), code
    assert "-vv" in out
    _, check_help, _ = invoke(["check", "--help"], capsys)
    assert "--max-age SECONDS" in check_help
    assert "--health-file PATH" in check_help
    assert "exit status" in check_help


@pytest.mark.parametrize(
    ("value", "verbose", "notify"),
    [
        ("1", 1, True),
        ("0", 0, False),
        ("true", 1, True),
        ("TRUE", 1, True),
        ("yes", 1, True),
        ("on", 1, True),
        ("false", 0, False),
        ("no", 0, False),
        ("off", 0, False),
        ("", 0, False),
    ],
)
def test_verbose_and_notify_systemd_read_switches_alike(
    value: str,
    verbose: int,
    notify: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    started_with: list[dict[str, Any]],
) -> None:
    """HEALTHFILE_VERBOSE and HEALTHFILE_NOTIFY_SYSTEMD take the same words and numbers."""
    monkeypatch.setenv("HEALTHFILE_VERBOSE", value)
    monkeypatch.setenv("HEALTHFILE_NOTIFY_SYSTEMD", value)
    status, _, err = invoke(["run"], capsys)
    assert status == 0, err
    [options] = started_with
    assert options["verbose"] == verbose
    assert options["notify_systemd"] is notify


def test_verbose_from_the_environment_is_a_count_like_vv(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    started_with: list[dict[str, Any]],
) -> None:
    """HEALTHFILE_VERBOSE=2 is -vv; HEALTHFILE_NOTIFY_SYSTEMD, a switch, takes no 2."""
    monkeypatch.setenv("HEALTHFILE_VERBOSE", "2")
    assert invoke(["run"], capsys)[0] == 0
    assert started_with[-1]["verbose"] == 2
    monkeypatch.setenv("HEALTHFILE_NOTIFY_SYSTEMD", "2")
    status, _, err = invoke(["run"], capsys)
    assert status == 2
    assert "HEALTHFILE_NOTIFY_SYSTEMD: expected 1, 0, true" in one_line(err)


@pytest.mark.parametrize(
    ("variable", "numbers"),
    [("HEALTHFILE_VERBOSE", "0, 1, 2"), ("HEALTHFILE_NOTIFY_SYSTEMD", "1, 0")],
)
def test_a_switch_that_is_no_word_or_number_is_refused_alike(
    variable: str,
    numbers: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    started_with: list[dict[str, Any]],
) -> None:
    """A word like maybe in either switch variable exits 2 with one line of one form."""
    monkeypatch.setenv(variable, "maybe")
    status, _, err = invoke(["run"], capsys)
    assert status == 2
    assert one_line(err) == (
        f"healthfile run: error: {variable}: expected {numbers}, true, false, yes, no, on or "
        "off, not 'maybe'"
    )
    assert started_with == []


def test_no_command_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """`healthfile` without a command exits 2 with a one-line message on stderr."""
    status, out, err = invoke([], capsys)
    assert status == 2
    assert out == ""
    assert "healthfile" in one_line(err)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--interval", "0"),
        ("--interval", "-1"),
        ("--interval", "abc"),
        ("--interval", "nan"),
        ("--interval", "inf"),
        ("--interval", "1e12"),
        ("--interval", ""),
        ("--check-timeout", "0"),
        ("--check-timeout", "-3"),
        ("--check-timeout", "x"),
        ("--start-period", "-1"),
        ("--start-period", "x"),
        ("--database", ""),
        ("--health-file", ""),
        ("--pyproject", ""),
        ("--app-version", ""),
        ("--app-version", "   "),
        ("--app-name", ""),
        ("--app-name", "   "),
    ],
)
def test_bad_option_value_exits_2_with_one_line(
    option: str,
    value: str,
    capsys: pytest.CaptureFixture[str],
    started_with: list[dict[str, Any]],
) -> None:
    """A bad value on the command line exits 2 with one line naming the option, no traceback."""
    status, out, err = invoke(["run", option, value], capsys)
    assert status == 2
    assert out == ""
    assert option in one_line(err)
    assert started_with == []


def test_bad_option_value_attached_with_equals_exits_2(
    capsys: pytest.CaptureFixture[str], started_with: list[dict[str, Any]]
) -> None:
    """`--interval=-1` is refused like `--interval -1`."""
    status, _, err = invoke(["run", "--interval=-1"], capsys)
    assert status == 2
    assert "--interval" in one_line(err)
    assert started_with == []


def test_health_file_that_is_a_directory_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], started_with: list[dict[str, Any]]
) -> None:
    """--health-file naming an existing directory exits 2 with one line."""
    status, _, err = invoke(["run", "--health-file", str(tmp_path)], capsys)
    assert status == 2
    assert "--health-file" in one_line(err)
    assert started_with == []


def test_health_file_that_is_a_device_exits_2(
    capsys: pytest.CaptureFixture[str], started_with: list[dict[str, Any]]
) -> None:
    """--health-file naming a device (/dev/null) exits 2 with one line."""
    status, _, err = invoke(["run", "--health-file", os.devnull], capsys)
    assert status == 2
    assert "--health-file" in one_line(err)
    assert started_with == []


def test_unknown_option_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], started_with: list[dict[str, Any]]
) -> None:
    """An unknown option exits 2 with one line naming it."""
    status, _, err = invoke(["run", "--no-such-option"], capsys)
    assert status == 2
    assert "--no-such-option" in one_line(err)
    assert started_with == []


def test_unknown_command_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown command exits 2 with one line."""
    status, _, err = invoke(["frobnicate"], capsys)
    assert status == 2
    assert "frobnicate" in one_line(err)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HEALTHFILE_INTERVAL", "0"),
        ("HEALTHFILE_INTERVAL", "-1"),
        ("HEALTHFILE_INTERVAL", "abc"),
        ("HEALTHFILE_INTERVAL", "nan"),
        ("HEALTHFILE_INTERVAL", "inf"),
        ("HEALTHFILE_INTERVAL", "1e12"),
        ("HEALTHFILE_CHECK_TIMEOUT", "0"),
        ("HEALTHFILE_CHECK_TIMEOUT", "-3"),
        ("HEALTHFILE_CHECK_TIMEOUT", "x"),
        ("HEALTHFILE_START_PERIOD", "-1"),
        ("HEALTHFILE_START_PERIOD", "x"),
        ("HEALTHFILE_DATABASE", ""),
        ("HEALTHFILE_HEALTH_FILE", os.devnull),
        ("HEALTHFILE_VERBOSE", "abc"),
        ("HEALTHFILE_VERBOSE", "-1"),
    ],
)
def test_bad_environment_value_exits_2_naming_the_variable(
    variable: str,
    value: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    started_with: list[dict[str, Any]],
) -> None:
    """A bad HEALTHFILE_* value exits 2 with one line naming the variable, no traceback."""
    monkeypatch.setenv(variable, value)
    status, out, err = invoke(["run"], capsys)
    assert status == 2
    assert out == ""
    assert variable in one_line(err)
    assert started_with == []


def test_health_file_variable_naming_a_directory_exits_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    started_with: list[dict[str, Any]],
) -> None:
    """HEALTHFILE_HEALTH_FILE naming an existing directory exits 2 with one line naming it."""
    monkeypatch.setenv("HEALTHFILE_HEALTH_FILE", str(tmp_path))
    status, _, err = invoke(["run"], capsys)
    assert status == 2
    assert "HEALTHFILE_HEALTH_FILE" in one_line(err)
    assert started_with == []


@pytest.mark.parametrize(
    ("argv", "environment", "expected"),
    [
        (
            ["--health-file", "data/app.db"],
            {},
            "--database data/app.db (the default) and --health-file data/app.db are the same",
        ),
        (
            ["--database", "a.db"],
            {"HEALTHFILE_HEALTH_FILE": "a.db"},
            "--database a.db and HEALTHFILE_HEALTH_FILE=a.db are the same",
        ),
        (
            ["--prometheus-file", "data/health.json"],
            {},
            "--health-file data/health.json (the default) and --prometheus-file "
            "data/health.json are the same",
        ),
    ],
)
def test_one_file_twice_is_named_as_the_user_gave_it(
    argv: list[str],
    environment: dict[str, str],
    expected: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    started_with: list[dict[str, Any]],
) -> None:
    """Two options naming one file exit 2 naming each as typed: a flag, a variable, a default."""
    monkeypatch.chdir(tmp_path)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    status, _, err = invoke(["run", *argv], capsys)
    assert status == 2
    assert one_line(err).startswith(f"healthfile run: error: {expected} file")
    assert "health_file" not in err
    assert started_with == []


def test_defaults_are_those_of_the_original_design(
    capsys: pytest.CaptureFixture[str], started_with: list[dict[str, Any]]
) -> None:
    """Without options or variables, run uses data/app.db, data/health.json, 30 s and 3 s."""
    status, _, _ = invoke(["run"], capsys)
    assert status == 0
    [options] = started_with
    assert options["database"] == "data/app.db"
    assert options["health_file"] == "data/health.json"
    assert options["interval"] == 30.0
    assert options["check_timeout"] == 3.0
    assert options["start_period"] == 0.0
    assert options["app_version"] is None
    assert options["app_name"] is None


def test_options_are_read_from_environment_variables(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    started_with: list[dict[str, Any]],
) -> None:
    """Every option left off the command line is taken from its HEALTHFILE_* variable."""
    monkeypatch.setenv("HEALTHFILE_DATABASE", "env.db")
    monkeypatch.setenv("HEALTHFILE_HEALTH_FILE", str(tmp_path / "env.json"))
    monkeypatch.setenv("HEALTHFILE_INTERVAL", "7")
    monkeypatch.setenv("HEALTHFILE_CHECK_TIMEOUT", "2.5")
    monkeypatch.setenv("HEALTHFILE_START_PERIOD", "4")
    monkeypatch.setenv("HEALTHFILE_APP_VERSION", "9.9.9")
    monkeypatch.setenv("HEALTHFILE_APP_NAME", "billing")
    monkeypatch.setenv("HEALTHFILE_PYPROJECT", "other.toml")
    monkeypatch.setenv("HEALTHFILE_VERBOSE", "2")
    status, _, _ = invoke(["run"], capsys)
    assert status == 0
    [options] = started_with
    assert options["database"] == "env.db"
    assert options["health_file"] == str(tmp_path / "env.json")
    assert options["interval"] == 7.0
    assert options["check_timeout"] == 2.5
    assert options["start_period"] == 4.0
    assert options["app_version"] == "9.9.9"
    assert options["app_name"] == "billing"
    assert options["pyproject"] == "other.toml"
    assert options["verbose"] == 2


def test_command_line_wins_over_environment(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    started_with: list[dict[str, Any]],
) -> None:
    """An option on the command line wins over its variable, even over a bad one."""
    monkeypatch.setenv("HEALTHFILE_INTERVAL", "abc")
    monkeypatch.setenv("HEALTHFILE_APP_VERSION", "1.0.0")
    monkeypatch.setenv("HEALTHFILE_APP_NAME", "from-env")
    monkeypatch.setenv("HEALTHFILE_HEALTH_FILE", str(tmp_path))  # a directory: refused if read
    monkeypatch.setenv("HEALTHFILE_VERBOSE", "abc")
    argv = ["run", "--interval", "0.5", "--app-version", "2.0.0", "--health-file", "cli.json"]
    status, _, err = invoke([*argv, "-v", "--app-name", "from-cli"], capsys)
    assert status == 0, err
    [options] = started_with
    assert options["interval"] == 0.5
    assert options["app_version"] == "2.0.0"
    assert options["app_name"] == "from-cli"
    assert options["health_file"] == "cli.json"
    assert options["verbose"] == 1


def test_bad_command_line_value_is_reported_over_a_good_variable(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    started_with: list[dict[str, Any]],
) -> None:
    """A bad --interval is refused even when HEALTHFILE_INTERVAL holds a good value."""
    monkeypatch.setenv("HEALTHFILE_INTERVAL", "5")
    status, _, err = invoke(["run", "--interval", "0"], capsys)
    assert status == 2
    line = one_line(err)
    assert "--interval" in line
    assert "HEALTHFILE_INTERVAL" not in line
    assert started_with == []


# --- subprocess: `healthfile run` for real ------------------------------------------------


def console_script() -> list[str]:
    """The installed `healthfile` console script, next to this Python."""
    script = shutil.which("healthfile", path=os.path.dirname(sys.executable))
    assert script is not None, "the healthfile console script is not installed"
    return [script]


def python_m() -> list[str]:
    """`python -m healthfile` with this Python."""
    return [sys.executable, "-m", "healthfile"]


LAUNCHERS = [
    pytest.param(console_script, id="console-script"),
    pytest.param(python_m, id="python-m"),
]


class RunningCli:
    """A `healthfile run` subprocess whose stderr is collected line by line as it comes."""

    def __init__(self, argv: list[str], *, cwd: Path, env: dict[str, str], **popen: Any) -> None:
        self.process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **popen,
        )
        self._lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._arrived = threading.Condition()
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._readers = [
            threading.Thread(target=self._pump, args=(self.process.stdout, "stdout"), daemon=True),
            threading.Thread(target=self._pump, args=(self.process.stderr, "stderr"), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _pump(self, stream: IO[str], key: str) -> None:
        for line in stream:
            with self._arrived:
                self._lines[key].append(line)
                self._arrived.notify_all()

    @property
    def stderr(self) -> str:
        """Everything the process wrote to stderr so far."""
        with self._arrived:
            return "".join(self._lines["stderr"])

    def wait_for_stderr(self, text: str, timeout: float = DEADLINE) -> None:
        """Wait until a line containing ``text`` is on stderr; fail if the process exits."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while not any(text in line for line in self._lines["stderr"]):
                if self.process.poll() is not None:
                    pytest.fail(f"process exited ({self.process.returncode}):\n{self.stderr}")
                if time.monotonic() > deadline:
                    pytest.fail(f"no {text!r} on stderr within {timeout} s:\n{self.stderr}")
                self._arrived.wait(0.05)

    def assert_alive(self) -> None:
        """Fail the test, with its stderr, if the process has exited."""
        if self.process.poll() is not None:
            pytest.fail(f"process exited ({self.process.returncode}):\n{self.stderr}")

    def signal_and_wait(self, signum: int, timeout: float = DEADLINE) -> int:
        """Send ``signum``, wait for the process to exit, and return its exit status."""
        self.process.send_signal(signum)
        status = self.process.wait(timeout)
        self._join_readers()
        return status

    def _join_readers(self) -> None:
        for reader in self._readers:
            reader.join(DEADLINE)

    def close(self) -> None:
        """Kill the process if it still runs, reap it, and close its pipes."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._join_readers()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


Launch = Callable[..., RunningCli]


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    """Start `healthfile run` subprocesses in tmp_path; every one is killed and reaped."""
    started: list[RunningCli] = []

    def factory(
        command: list[str],
        *args: str,
        cwd: Path = tmp_path,
        env: dict[str, str] | None = None,
    ) -> RunningCli:
        running = RunningCli(
            [*command, "run", *args], cwd=cwd, env=child_environment() if env is None else env
        )
        started.append(running)
        return running

    yield factory
    for running in started:
        running.close()


def service_options(database: Path, health_file: Path, *more: str) -> list[str]:
    """Options for `healthfile run` on ``database`` and ``health_file``, a cycle every 0.2 s."""
    return [
        "--database",
        str(database),
        "--health-file",
        str(health_file),
        "--interval",
        "0.2",
        *more,
    ]


@pytest.mark.parametrize("command", LAUNCHERS)
def test_run_stops_on_sigterm_with_exit_0_and_stopped_file(
    command: Callable[[], list[str]], database: Path, health_file: Path, launch: Launch
) -> None:
    """`healthfile run` keeps the file online, and on SIGTERM writes stopped and exits 0."""
    running = launch(command(), *service_options(database, health_file))
    online = wait_for_report(health_file, is_online, alive=running.assert_alive)
    assert online["database"] == "connected"
    assert online["interval_seconds"] == 0.2
    assert online["pid"] == running.process.pid

    assert running.signal_and_wait(signal.SIGTERM) == 0
    final = read_report(health_file)
    assert final is not None
    assert final["status"] == "stopped"
    assert final["sequence"] > online["sequence"]
    assert f"stopped; {health_file} says so" in running.stderr  # read back, then said
    assert "Traceback" not in running.stderr


def test_run_stops_on_sigint_with_exit_0_and_stopped_file(
    database: Path, health_file: Path, launch: Launch
) -> None:
    """On SIGINT (Ctrl-C) `healthfile run` writes stopped and exits 0, without a traceback."""
    running = launch(console_script(), *service_options(database, health_file))
    wait_for_report(health_file, is_online, alive=running.assert_alive)

    assert running.signal_and_wait(signal.SIGINT) == 0
    final = read_report(health_file)
    assert final is not None
    assert final["status"] == "stopped"
    assert "Traceback" not in running.stderr
    assert "KeyboardInterrupt" not in running.stderr


def test_run_that_cannot_write_its_file_exits_1_and_never_claims_it(
    database: Path, tmp_path: Path, launch: Launch
) -> None:
    """An unwritable health file: `healthfile run` logs why, and on SIGTERM exits 1, no claim."""
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the health file's directory should be")
    health_file = blocked / "health.json"
    running = launch(console_script(), *service_options(database, health_file))
    running.wait_for_stderr(f"cannot write {health_file}")

    status = running.signal_and_wait(signal.SIGTERM)

    assert status == 1, running.stderr
    assert "the final report is not on disk" in running.stderr
    assert "says so" not in running.stderr
    assert "Traceback" not in running.stderr


def test_run_standing_by_exits_0_and_names_the_process_that_keeps_the_file(
    database: Path, health_file: Path, launch: Launch
) -> None:
    """A second `healthfile run` on one file stands by; stopped, it names the writer, exits 0."""
    writer = launch(console_script(), *service_options(database, health_file))
    wait_for_report(health_file, is_online, alive=writer.assert_alive)
    standby = launch(console_script(), *service_options(database, health_file))
    standby.wait_for_stderr("stands by")

    assert standby.signal_and_wait(signal.SIGTERM) == 0, standby.stderr
    assert f"is kept by another process (pid {writer.process.pid}, status online)" in (
        standby.stderr
    )
    assert "says so" not in standby.stderr
    writer.assert_alive()
    assert writer.signal_and_wait(signal.SIGTERM) == 0


REPOSITORY = Path(__file__).resolve().parent.parent


def test_sidecars_sharing_a_textfile_directory_get_distinct_app_labels(
    database: Path, tmp_path: Path, launch: Launch
) -> None:
    """Three `healthfile run` into one textfile directory label each app by its file's name."""
    pytest.importorskip("prometheus_client")
    textfiles = tmp_path / "textfile"
    names = ["billing", "search", "mailer"]
    sidecars = [
        launch(
            console_script(),
            *service_options(database, tmp_path / name / "health.json"),
            "--prometheus-file",
            str(textfiles / f"{name}.prom"),
        )
        for name in names
    ]
    for name, sidecar in zip(names, sidecars, strict=True):
        report = wait_for_report(
            tmp_path / name / "health.json", is_online, alive=sidecar.assert_alive
        )
        assert (report["app_name"], report["app_version"]) == (name, "unknown")
    # Each textfile is written just after its health file.
    wait_until(lambda: len(list(textfiles.glob("*.prom"))) == len(names), "three textfiles")
    apps = {
        labels["app"]
        for path in textfiles.glob("*.prom")
        for (metric, pairs) in parse_samples(path.read_text(encoding="utf-8"))
        for labels in [dict(pairs)]
        if metric == "healthfile_up"
    }
    assert apps == set(names)
    for sidecar in sidecars:
        assert sidecar.signal_and_wait(signal.SIGTERM) == 0


def test_run_reads_no_pyproject_unless_given_and_never_calls_itself_healthfile(
    database: Path, tmp_path: Path, launch: Launch
) -> None:
    """In healthfile's own checkout, `run` names the database it watches, not healthfile."""
    shutil.copyfile(REPOSITORY / "pyproject.toml", tmp_path / "pyproject.toml")
    health_file = tmp_path / "data" / "health.json"
    running = launch(console_script(), *service_options(database, health_file))
    report = wait_for_report(health_file, is_online, alive=running.assert_alive)
    assert (report["app_name"], report["app_version"]) == (database.stem, "unknown")
    assert f"app_name {database.stem}, app_version unknown" in running.stderr
    assert running.signal_and_wait(signal.SIGTERM) == 0

    running = launch(
        console_script(),
        *service_options(database, health_file, "--pyproject", "pyproject.toml"),
    )
    report = wait_for_report(health_file, is_online, alive=running.assert_alive)
    assert report["app_name"] == database.stem  # healthfile's own project is not the app's
    assert running.signal_and_wait(signal.SIGTERM) == 0


def run_identity(tmp_path: Path, **given: str | None) -> tuple[str, str]:
    """The (app_name, app_version) `healthfile run` reports for these options."""
    options: dict[str, Any] = {
        "database": str(tmp_path / "orders.db"),
        "prometheus_file": None,
        "pyproject": None,
        "app_name": None,
        "app_version": None,
        **given,
    }
    return _run._identity(options)


def test_run_identity_defaults_in_their_order(tmp_path: Path) -> None:
    """--app-name, else the pyproject's name, else the Prometheus file's, else the database's."""
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "shop"\nversion = "3.1"\n', encoding="utf-8")
    prometheus = str(tmp_path / "textfile" / "billing.prom")

    assert run_identity(tmp_path) == ("orders", "unknown")
    assert run_identity(tmp_path, prometheus_file=prometheus) == ("billing", "unknown")
    assert run_identity(tmp_path, pyproject=str(pyproject)) == ("shop", "3.1")
    assert run_identity(tmp_path, pyproject=str(pyproject), app_name="api", app_version="4") == (
        "api",
        "4",
    )
    assert run_identity(tmp_path, app_name="api") == ("api", "unknown")


def make_run_command() -> list[str]:
    """The `healthfile run` command line of the Makefile's run target, with this venv's bin."""
    recipe = (REPOSITORY / "Makefile").read_text(encoding="utf-8").split("\nrun:", 1)[1]
    recipe = recipe.split("\n\n", 1)[0].replace("\\\n", " ")
    [line] = [line for line in recipe.splitlines() if "healthfile run" in line]
    line = line.strip().lstrip("@").replace("$(BIN)", os.path.dirname(sys.executable))
    return shlex.split(line)


def test_make_run_reports_the_demo_identity_not_healthfiles(tmp_path: Path) -> None:
    """`make run`'s command, in a checkout with healthfile's pyproject, reports the demo."""
    shutil.copyfile(REPOSITORY / "pyproject.toml", tmp_path / "pyproject.toml")
    subprocess.run(
        [sys.executable, str(REPOSITORY / "examples" / "demo_db.py"), "data/app.db"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=60,
    )
    command = make_run_command()
    assert command[1:3] == ["run", "--database"]
    running = RunningCli(command, cwd=tmp_path, env=child_environment())
    try:
        report = wait_for_report(
            tmp_path / "data" / "health.json", is_online, alive=running.assert_alive
        )
        assert (report["app_name"], report["app_version"]) == ("demo", "1.0.0")
        assert running.signal_and_wait(signal.SIGTERM) == 0
    finally:
        running.close()


def test_run_takes_its_options_from_environment_variables(
    database: Path, health_file: Path, launch: Launch
) -> None:
    """`healthfile run` with no options uses HEALTHFILE_* variables for all of them."""
    env = child_environment(
        HEALTHFILE_DATABASE=str(database),
        HEALTHFILE_HEALTH_FILE=str(health_file),
        HEALTHFILE_INTERVAL="0.2",
        HEALTHFILE_APP_VERSION="9.9.9",
        HEALTHFILE_APP_NAME="billing",
    )
    running = launch(console_script(), env=env)
    online = wait_for_report(health_file, is_online, alive=running.assert_alive)
    assert online["app_version"] == "9.9.9"
    assert online["app_name"] == "billing"
    assert online["interval_seconds"] == 0.2
    assert online["database"] == "connected"
    # A second cycle proves the 0.2 s interval is used, not the 30 s default.
    wait_for_report(health_file, lambda report: report["sequence"] >= 2, alive=running.assert_alive)

    assert running.signal_and_wait(signal.SIGTERM) == 0
    final = read_report(health_file)
    assert final is not None
    assert final["status"] == "stopped"
    assert final["app_version"] == "9.9.9"


def test_run_command_line_wins_over_environment(
    database: Path, tmp_path: Path, launch: Launch
) -> None:
    """`healthfile run` uses the command-line value where both it and a variable are given."""
    env_file = tmp_path / "env" / "health.json"
    cli_file = tmp_path / "cli" / "health.json"
    env = child_environment(
        HEALTHFILE_DATABASE=str(database),
        HEALTHFILE_HEALTH_FILE=str(env_file),
        HEALTHFILE_INTERVAL="abc",
        HEALTHFILE_APP_VERSION="1.0.0",
    )
    running = launch(
        console_script(),
        "--health-file",
        str(cli_file),
        "--interval",
        "0.2",
        "--app-version",
        "2.0.0",
        env=env,
    )
    online = wait_for_report(cli_file, is_online, alive=running.assert_alive)
    assert online["app_version"] == "2.0.0"
    assert online["interval_seconds"] == 0.2

    assert running.signal_and_wait(signal.SIGTERM) == 0
    assert not env_file.exists()


HEALTH_LINE = re.compile(r"healthfile: health (?P<change>.+?) \(database (?P<database>\w+)\)")


def replace_file(target: Path, data: bytes) -> None:
    """Put ``data`` at ``target`` in one rename, so a reader never sees half a database."""
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, target)


def test_run_logs_one_line_per_status_change_not_per_cycle(
    database: Path, health_file: Path, launch: Launch
) -> None:
    """The log of `healthfile run` has one "health" line per status change, none per cycle."""
    saved = database.read_bytes()
    running = launch(console_script(), *service_options(database, health_file))

    def cycles_after(report: dict[str, Any], count: int) -> Callable[[dict[str, Any]], bool]:
        return lambda later: later["sequence"] >= report["sequence"] + count

    online = wait_for_report(health_file, is_online, alive=running.assert_alive)
    online = wait_for_report(health_file, cycles_after(online, 4), alive=running.assert_alive)
    assert online["status"] == "online"

    database.unlink()
    degraded = wait_for_report(
        health_file, lambda report: report["status"] == "degraded", alive=running.assert_alive
    )
    assert degraded["database"] == "disconnected"
    degraded = wait_for_report(health_file, cycles_after(degraded, 3), alive=running.assert_alive)
    assert degraded["status"] == "degraded"

    replace_file(database, saved)
    online = wait_for_report(health_file, is_online, alive=running.assert_alive)
    online = wait_for_report(health_file, cycles_after(online, 3), alive=running.assert_alive)
    assert online["status"] == "online"

    assert running.signal_and_wait(signal.SIGTERM) == 0
    changes = [match["change"] for match in HEALTH_LINE.finditer(running.stderr)]
    assert changes == [
        "none -> online",
        "online -> degraded",
        "degraded -> online",
        "online -> stopped",
    ], running.stderr


def test_run_stops_promptly_while_its_first_cycle_hangs(
    database: Path, health_file: Path, launch: Launch
) -> None:
    """SIGTERM during a first cycle hung on a locked database exits 0 at once with stopped."""
    check_timeout = 10.0
    lock = sqlite3.connect(database, isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        running = launch(
            console_script(),
            *service_options(database, health_file, "--check-timeout", f"{check_timeout:g}"),
        )
        # Logged once the signal handlers are in place, just before start().
        running.wait_for_stderr("checking every ")
        assert not health_file.exists(), "the first cycle finished on a locked database"

        signalled = time.monotonic()
        status = running.signal_and_wait(signal.SIGTERM, timeout=3 * check_timeout)
        took = time.monotonic() - signalled
    finally:
        lock.rollback()
        lock.close()

    assert status == 0, running.stderr
    # Waiting for the hung check would take about check_timeout; a prompt stop, a fraction.
    assert took < generous(check_timeout / 2), f"took {took:.1f} s to exit after SIGTERM"
    final = read_report(health_file)
    assert final is not None
    assert final["status"] == "stopped"
    assert "Traceback" not in running.stderr


def visible_names(directory: Path) -> list[str]:
    """The names in ``directory``, leaving out hidden ones (such as coverage data files)."""
    return [path.name for path in directory.iterdir() if not path.name.startswith(".")]


def test_run_defaults_to_data_health_json_in_the_working_directory(
    database: Path, tmp_path: Path, launch: Launch
) -> None:
    """`healthfile run --database app.db` in an empty directory creates data/health.json."""
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    shutil.copyfile(database, workdir / "app.db")
    running = launch(console_script(), "--database", "app.db", cwd=workdir)
    health_file = workdir / "data" / "health.json"

    online = wait_for_report(health_file, is_online, alive=running.assert_alive)
    assert online["database"] == "connected"
    assert online["interval_seconds"] == 30
    assert online["app_version"] == "unknown"  # no pyproject.toml in the working directory
    assert running.signal_and_wait(signal.SIGTERM) == 0
    assert sorted(visible_names(workdir)) == ["app.db", "data"]
    assert sorted(visible_names(workdir / "data")) == ["health.json"]
    final = read_report(health_file)
    assert final is not None
    assert final["status"] == "stopped"
