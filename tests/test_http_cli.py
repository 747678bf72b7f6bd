"""``healthfile run --http`` (HEALTHFILE_HTTP): the option, its errors, and a real run
answering over HTTP what ``healthfile check`` answers."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from healthfile import _server
from helpers import child_environment, generous, is_online, one_line, wait_for_report
from httphelpers import file_bytes
from test_cli import RunningCli, console_script, invoke, service_options

pytestmark = pytest.mark.usefixtures("clean_environment")


@pytest.fixture
def run_cli(tmp_path: Path) -> Iterator[Any]:
    """Start `healthfile run` subprocesses in tmp_path; every one is killed and reaped."""
    started: list[RunningCli] = []

    def factory(*args: str) -> RunningCli:
        running = RunningCli(
            [*console_script(), "run", *args], cwd=tmp_path, env=child_environment()
        )
        started.append(running)
        return running

    yield factory
    for running in started:
        running.close()


def test_http_is_passed_to_the_service(
    capsys: pytest.CaptureFixture[str], started_with: list[dict[str, Any]]
) -> None:
    """--http HOST:PORT reaches the service as http; without it, http is None."""
    assert invoke(["run", "--http", "[::1]:8081"], capsys)[0] == 0
    assert invoke(["run"], capsys)[0] == 0

    assert [options["http"] for options in started_with] == ["[::1]:8081", None]


def test_http_is_read_from_healthfile_http(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    started_with: list[dict[str, Any]],
) -> None:
    """HEALTHFILE_HTTP gives --http; the command line wins over it."""
    monkeypatch.setenv("HEALTHFILE_HTTP", "127.0.0.1:9000")
    invoke(["run"], capsys)
    invoke(["run", "--http", "127.0.0.1:9001"], capsys)

    assert [options["http"] for options in started_with] == ["127.0.0.1:9000", "127.0.0.1:9001"]


@pytest.mark.parametrize("value", ["8081", "localhost", "::1:8081", "host:99999", " "])
def test_a_bad_http_option_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], started_with: list[dict[str, Any]], value: str
) -> None:
    """A bad --http value: one line on stderr naming --http and HOST:PORT, exit 2."""
    status, out, err = invoke(["run", "--http", value], capsys)

    assert status == 2
    assert out == ""
    line = one_line(err)
    assert "argument --http: expected HOST:PORT" in line
    assert started_with == []


def test_a_bad_healthfile_http_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    started_with: list[dict[str, Any]],
) -> None:
    """A bad HEALTHFILE_HTTP: one line naming the variable, exit 2."""
    monkeypatch.setenv("HEALTHFILE_HTTP", "everywhere")

    status, _, err = invoke(["run"], capsys)

    assert status == 2
    assert one_line(err).startswith("healthfile run: error: HEALTHFILE_HTTP: expected HOST:PORT")
    assert started_with == []


def test_http_without_h11_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    started_with: list[dict[str, Any]],
) -> None:
    """--http without the http extra installed: one line naming healthfile[http], exit 2."""
    monkeypatch.setattr(_server, "h11", None)

    status, _, err = invoke(["run", "--http", "127.0.0.1:8081"], capsys)

    assert status == 2
    assert "(the extra healthfile[http]): pip install h11" in one_line(err)
    assert started_with == []


def test_run_help_names_http_and_its_variable(capsys: pytest.CaptureFixture[str]) -> None:
    """`healthfile run --help` documents --http and HEALTHFILE_HTTP."""
    _, out, _ = invoke(["run", "--help"], capsys)

    flat = " ".join(out.split())
    assert "--http HOST:PORT" in flat
    assert "[env: HEALTHFILE_HTTP]" in flat
    assert "healthfile[http]" in flat


def test_a_port_in_use_is_one_line_and_exit_2(database: Path, health_file: Path) -> None:
    """`healthfile run --http` on a port in use exits 2 with one line naming the address,
    before writing any report."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        completed = subprocess.run(
            [
                *console_script(),
                "run",
                *service_options(database, health_file, "--http", f"127.0.0.1:{port}"),
            ],
            capture_output=True,
            text=True,
            timeout=generous(60),
            env=child_environment(),
            check=False,
        )
    finally:
        holder.close()

    assert completed.returncode == 2
    errors = [line for line in completed.stderr.splitlines() if " INFO " not in line]
    assert [line.lower() for line in errors] == [
        f"healthfile run: error: cannot serve http on 127.0.0.1:{port}: "
        f"{os.strerror(errno.EADDRINUSE).lower()}"
    ]
    assert "Traceback" not in completed.stderr
    assert not health_file.exists()


def fetch(url: str) -> tuple[int, bytes]:
    """GET ``url`` with the standard library's client; return the status and the body."""
    try:
        with urllib.request.urlopen(url, timeout=generous(10)) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def probe(health_file: Path, *flags: str) -> tuple[int, bytes]:
    """Run `healthfile check --json` on the file; return its exit status and its output."""
    completed = subprocess.run(
        [*console_script(), "check", "--json", "--health-file", str(health_file), *flags],
        capture_output=True,
        timeout=generous(60),
        env=child_environment(),
        check=False,
    )
    return completed.returncode, completed.stdout


def test_run_http_answers_what_check_answers(
    database: Path, health_file: Path, run_cli: Any
) -> None:
    """A real `healthfile run --http 127.0.0.1:0` serves what `healthfile check --json`
    prints, 200 for exit 0 and 503 for exit 1, until SIGTERM; then the port is closed."""
    # A report every 5 s, not every 0.2 s: the file must hold still across two probes.
    options = service_options(database, health_file, "--http", "127.0.0.1:0", "--interval", "5")
    running = run_cli(*options)
    running.wait_for_stderr("serving HTTP on http://127.0.0.1:")
    match = re.search(r"serving HTTP on http://127\.0\.0\.1:(\d+)/", running.stderr)
    assert match is not None
    base = f"http://127.0.0.1:{match.group(1)}"
    assert (
        wait_for_report(health_file, is_online, alive=running.assert_alive)["interval_seconds"] == 5
    )

    for path, flags in (("/readyz", ()), ("/livez", ("--group", "live"))):
        # Compared while the file and its age hold still: a new report (judged alike, but
        # a second younger) or a new second between the probe before and the one after
        # makes another try.
        for _ in range(20):
            before = file_bytes(health_file), probe(health_file, *flags)
            status, body = fetch(base + path)
            after = file_bytes(health_file), probe(health_file, *flags)
            if before == after:
                break
        assert before == after
        assert (0 if status == 200 else 1, body) == before[1]
    assert json.loads(fetch(base + "/readyz")[1])["verdict"] == "online"

    assert running.signal_and_wait(signal.SIGTERM) == 0
    with pytest.raises(urllib.error.URLError):
        fetch(base + "/readyz")
