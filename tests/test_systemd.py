"""systemd notify: real datagram sockets receive READY=1, WATCHDOG=1, STOPPING=1."""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from healthfile._cli import main
from healthfile._systemd import SystemdNotifier
from helpers import ServiceFactory, needs_unix_sockets, read_status

DEADLINE = 30.0  # generous: slow CI machines, coverage

pytestmark = pytest.mark.usefixtures("clean_environment")


class Listener:
    """A bound AF_UNIX datagram socket standing in for systemd's notify socket."""

    def __init__(self, address: str | bytes, notify_socket: str) -> None:
        self.notify_socket = notify_socket
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(address)
        self.socket.settimeout(DEADLINE)

    def receive(self) -> str:
        """The next message; fails the test after DEADLINE seconds."""
        try:
            return self.socket.recv(4096).decode()
        except TimeoutError:  # pragma: no cover - only when a message never comes
            pytest.fail("no message on the notify socket")

    def pending(self) -> list[str]:
        """Every message already queued, without waiting."""
        messages = []
        self.socket.setblocking(False)
        try:
            while True:
                messages.append(self.socket.recv(4096).decode())
        except BlockingIOError:
            return messages
        finally:
            self.socket.settimeout(DEADLINE)


@pytest.fixture
def path_listener(short_dir: Path) -> Iterator[Listener]:
    """A notify socket bound to a path, as systemd creates it."""
    path = short_dir / "notify"
    listener = Listener(str(path), str(path))
    yield listener
    listener.socket.close()


@pytest.fixture
def abstract_listener() -> Iterator[Listener]:
    """A notify socket in the Linux abstract namespace (NOTIFY_SOCKET=@name)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("abstract Unix sockets are Linux-only")
    name = f"healthfile-test-{secrets.token_hex(8)}"
    listener = Listener(b"\0" + name.encode(), "@" + name)
    yield listener
    listener.socket.close()


def read_bytes(path: Path) -> bytes:
    """The file's bytes (a monitor's plain read)."""
    return path.read_bytes()


async def run_and_collect(
    make_service: ServiceFactory, listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """Start a notifying service, run two extra cycles, stop it; return what the socket got."""
    monkeypatch.setenv("NOTIFY_SOCKET", listener.notify_socket)
    service = make_service(notify_systemd=True)
    await service.start()
    messages = listener.pending()
    assert messages[-1] == "READY=1"  # sent by the time start() returns
    await service.check_now()
    messages += listener.pending()
    await service.check_now()
    messages += listener.pending()
    await service.stop()
    messages += listener.pending()
    return messages


def assert_notify_sequence(messages: list[str]) -> None:
    """READY=1 with the first report, WATCHDOG=1 per later report, STOPPING=1 last."""
    assert messages == ["READY=1", "WATCHDOG=1", "WATCHDOG=1", "STOPPING=1"]


@needs_unix_sockets
@pytest.mark.asyncio
async def test_path_socket_receives_ready_watchdog_stopping_in_order(
    make_service: ServiceFactory, path_listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket bound to a path gets READY=1, a WATCHDOG=1 per report, then STOPPING=1."""
    assert_notify_sequence(await run_and_collect(make_service, path_listener, monkeypatch))


@needs_unix_sockets
@pytest.mark.asyncio
async def test_abstract_socket_receives_the_same_messages(
    make_service: ServiceFactory, abstract_listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NOTIFY_SOCKET=@name reaches the abstract socket 'name' with the same messages."""
    assert_notify_sequence(await run_and_collect(make_service, abstract_listener, monkeypatch))


@needs_unix_sockets
@pytest.mark.asyncio
async def test_ready_waits_for_the_first_report_that_reaches_the_disk(
    make_service: ServiceFactory,
    path_listener: Listener,
    monkeypatch: pytest.MonkeyPatch,
    health_file: Path,
) -> None:
    """While writes fail nothing is sent; READY=1 comes with the first report on disk."""
    monkeypatch.setenv("NOTIFY_SOCKET", path_listener.notify_socket)
    os.makedirs(health_file)  # a directory at the target: every write fails
    service = make_service(notify_systemd=True)
    await service.start()
    await service.check_now()
    assert service.last_write_error is not None
    assert path_listener.pending() == []
    os.rmdir(health_file)
    report = await service.check_now()
    assert read_status(health_file) == report.status == "online"
    assert path_listener.pending() == ["READY=1"]
    await service.check_now()
    assert path_listener.pending() == ["WATCHDOG=1"]
    await service.stop()
    assert path_listener.pending() == ["STOPPING=1"]


@needs_unix_sockets
@pytest.mark.asyncio
async def test_no_watchdog_after_stopping(
    make_service: ServiceFactory,
    path_listener: Listener,
    monkeypatch: pytest.MonkeyPatch,
    health_file: Path,
) -> None:
    """The final 'stopped' report is written without a WATCHDOG=1 after STOPPING=1."""
    messages = await run_and_collect(make_service, path_listener, monkeypatch)
    assert messages[-1] == "STOPPING=1"
    assert read_status(health_file) == "stopped"


@needs_unix_sockets
@pytest.mark.asyncio
async def test_nothing_is_sent_when_notify_systemd_is_false(
    make_service: ServiceFactory, path_listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """notify_systemd=False (the default) sends nothing even when NOTIFY_SOCKET is set."""
    monkeypatch.setenv("NOTIFY_SOCKET", path_listener.notify_socket)
    service = make_service()
    await service.start()
    await service.check_now()
    await service.stop()
    assert path_listener.pending() == []


@pytest.mark.asyncio
async def test_unset_notify_socket_sends_nothing_and_logs_nothing(
    make_service: ServiceFactory, healthfile_logs: pytest.LogCaptureFixture
) -> None:
    """Without NOTIFY_SOCKET, notify_systemd=True is a quiet no-op (not run under systemd)."""
    service = make_service(notify_systemd=True)
    await service.start()
    await service.check_now()
    await service.stop()
    assert not [r for r in healthfile_logs.records if "systemd" in r.getMessage()]
    notifier = SystemdNotifier(environ={})
    assert not notifier.enabled
    assert notifier.notify("READY=1") is False
    assert repr(notifier) == "<SystemdNotifier address=None>"
    abstract = SystemdNotifier(environ={"NOTIFY_SOCKET": "@name"})
    assert repr(abstract) == "<SystemdNotifier address=b'\\x00name'>"


@needs_unix_sockets
@pytest.mark.asyncio
async def test_dead_socket_is_logged_once_and_the_service_keeps_running(
    make_service: ServiceFactory,
    short_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    healthfile_logs: pytest.LogCaptureFixture,
    health_file: Path,
) -> None:
    """A socket nobody listens on any more is one warning; cycles and the file go on."""
    dead = short_dir / "dead"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(dead))
    listener.close()  # the path stays; sends are refused
    monkeypatch.setenv("NOTIFY_SOCKET", str(dead))
    service = make_service(notify_systemd=True)
    await service.start()
    for _ in range(3):
        report = await service.check_now()
    assert service.running
    assert report.status == "online"
    assert json.loads(read_bytes(health_file))["sequence"] == report.sequence
    await service.stop()
    warnings = [r for r in healthfile_logs.records if "cannot notify systemd" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING


@pytest.mark.asyncio
async def test_missing_socket_path_is_logged_once(
    make_service: ServiceFactory,
    short_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    healthfile_logs: pytest.LogCaptureFixture,
) -> None:
    """NOTIFY_SOCKET naming a path that does not exist is one warning, never an error."""
    monkeypatch.setenv("NOTIFY_SOCKET", str(short_dir / "never-bound"))
    service = make_service(notify_systemd=True)
    await service.start()
    await service.check_now()
    await service.stop()
    warnings = [r for r in healthfile_logs.records if "cannot notify systemd" in r.getMessage()]
    assert len(warnings) == 1


@pytest.mark.parametrize(
    ("argv", "variable", "expected"),
    [
        ([], None, False),
        (["--notify-systemd"], None, True),
        ([], "1", True),
        ([], "true", True),
        ([], "TRUE", True),
        ([], "0", False),
        ([], "false", False),
        (["--notify-systemd"], "0", True),
    ],
)
def test_run_notify_systemd_from_flag_or_environment(
    started_with: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    variable: str | None,
    expected: bool,
) -> None:
    """--notify-systemd, else HEALTHFILE_NOTIFY_SYSTEMD (1/0/true/false), else off."""
    if variable is not None:
        monkeypatch.setenv("HEALTHFILE_NOTIFY_SYSTEMD", variable)
    assert main(["run", *argv]) == 0
    [options] = started_with
    assert options["notify_systemd"] is expected


@pytest.mark.parametrize("value", ["maybe", "2", "enable"])
def test_run_bad_notify_systemd_variable_exits_2_with_one_line(
    started_with: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    value: str,
) -> None:
    """A HEALTHFILE_NOTIFY_SYSTEMD that is not a boolean exits 2, naming the variable."""
    monkeypatch.setenv("HEALTHFILE_NOTIFY_SYSTEMD", value)
    with pytest.raises(SystemExit) as raised:
        main(["run"])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("healthfile run: error: HEALTHFILE_NOTIFY_SYSTEMD: expected 1, 0,")
    assert err.count("\n") == 1
    assert started_with == []


def test_notify_systemd_flag_takes_no_value(capsys: pytest.CaptureFixture[str]) -> None:
    """--notify-systemd=yes is a usage error (exit 2), not silently true."""
    with pytest.raises(SystemExit) as raised:
        main(["run", "--notify-systemd=yes"])
    assert raised.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


@needs_unix_sockets
def test_healthfile_run_notifies_ready_and_stopping(
    database: Path, path_listener: Listener, tmp_path: Path
) -> None:
    """`healthfile run --notify-systemd` under NOTIFY_SOCKET: READY=1, WATCHDOG=1s, STOPPING=1."""
    health_file = tmp_path / "health.json"
    environ = {
        name: value for name, value in os.environ.items() if not name.startswith("HEALTHFILE_")
    }
    environ["NOTIFY_SOCKET"] = path_listener.notify_socket
    options = ["--database", str(database), "--health-file", str(health_file), "--interval", "0.2"]
    process = subprocess.Popen(
        [sys.executable, "-m", "healthfile", "run", "--notify-systemd", *options],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        messages = [path_listener.receive()]
        while "READY=1" not in messages:
            messages.append(path_listener.receive())
        assert set(messages) <= {"WATCHDOG=1", "READY=1"}
        assert path_listener.receive() == "WATCHDOG=1"  # the next cycle
        assert read_status(health_file) == "online"
        process.send_signal(signal.SIGTERM)
        while (message := path_listener.receive()) != "STOPPING=1":
            assert message == "WATCHDOG=1"
        assert process.wait(timeout=DEADLINE) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert path_listener.pending() == []  # the process has exited: nothing after STOPPING=1
    assert read_status(health_file) == "stopped"
