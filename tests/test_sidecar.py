"""The sidecar for real: `healthfile run --config examples/sidecar.toml` next to a shell worker,
and a stop signal while a command check hangs."""

from __future__ import annotations

import http.server
import os
import signal
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import (
    child_environment,
    generous,
    process_ended,
    read_report,
    require_program,
    wait_for_report,
    wait_until,
)
from test_cli import RunningCli, console_script

pytestmark = pytest.mark.usefixtures("clean_environment")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


class _Healthz(http.server.BaseHTTPRequestHandler):
    """The app's health endpoint: 200 on /healthz."""

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test's output quiet."""


class _Accept(socketserver.BaseRequestHandler):
    """A database's port: accepts, and closes when the client does."""

    def handle(self) -> None:
        self.request.recv(1)


@pytest.fixture
def app_ports() -> Iterator[bool]:
    """Serve the example's app on 127.0.0.1:8080 and its database's port 5432 when both are
    free; yields whether they are (if not, what the checks say of them is not asserted)."""
    servers: list[socketserver.TCPServer] = []
    try:
        servers.append(http.server.ThreadingHTTPServer(("127.0.0.1", 8080), _Healthz))
        servers.append(socketserver.ThreadingTCPServer(("127.0.0.1", 5432), _Accept))
    except OSError:
        pass
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    try:
        yield len(servers) == 2
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """examples/worker.sh running in tmp_path, stopped (if still running) after the test."""
    process = subprocess.Popen(
        ["/bin/sh", str(EXAMPLES / "worker.sh")], cwd=tmp_path, env=child_environment()
    )
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[list[RunningCli]]:
    """`healthfile run` processes started by a test; every one is killed and reaped."""
    started: list[RunningCli] = []
    yield started
    for running in started:
        running.close()


def start(sidecar: list[RunningCli], cwd: Path, *args: str) -> RunningCli:
    """Start `healthfile run ARGS` in ``cwd``."""
    running = RunningCli([*console_script(), "run", *args], cwd=cwd, env=child_environment())
    sidecar.append(running)
    return running


@pytest.mark.skipif(not os.path.exists("/bin/sh"), reason="needs /bin/sh (POSIX)")
def test_the_sidecar_example_keeps_a_shell_workers_health(
    tmp_path: Path,
    app_ports: bool,
    worker: subprocess.Popen[bytes],
    sidecar: list[RunningCli],
) -> None:
    """examples/sidecar.toml runs as written: its checks report, a stopped worker turns the
    file degraded, and SIGTERM leaves it stopped."""
    require_program("/usr/lib/nagios/plugins/check_disk", package="monitoring-plugins-basic")
    health = tmp_path / "data" / "health.json"
    heartbeat = tmp_path / "data" / "worker.heartbeat"
    wait_until(heartbeat.exists, "the worker's first heartbeat")
    running = start(
        sidecar, tmp_path, "--config", str(EXAMPLES / "sidecar.toml"), "--interval", "0.2"
    )

    report = wait_for_report(
        health,
        lambda r: r["checks"].get("worker", {}).get("status") == "pass",
        "the worker's heartbeat passing",
        alive=running.assert_alive,
    )
    assert list(report["checks"]) == ["database", "web", "worker", "disk"]
    assert report["app_name"] == "shop"
    assert report["checks"]["worker"]["groups"] == ["live"]
    assert report["checks"]["disk"]["output"].startswith("DISK ")
    assert report["checks"]["disk"]["critical"] is False
    if app_ports:
        report = wait_for_report(health, lambda r: r["status"] == "online", "online")
        assert report["database"] == "connected"
        assert report["checks"]["web"]["output"].startswith("HTTP 200 in ")

    worker.kill()  # the worker's loop stops turning; a minute passes
    worker.wait()
    a_while_ago = time.time() - 120
    os.utime(heartbeat, (a_while_ago, a_while_ago))
    report = wait_for_report(
        health, lambda r: r["checks"]["worker"]["status"] == "fail", "the worker failing"
    )
    assert report["status"] == "degraded"
    assert report["checks"]["worker"]["output"].endswith("ago, more than max_age 60 s")

    assert running.signal_and_wait(signal.SIGTERM) == 0
    final = read_report(health)
    assert final is not None
    assert final["status"] == "stopped"


@pytest.mark.skipif(not os.path.exists("/bin/sh"), reason="needs /bin/sh (POSIX)")
@pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs process groups (not Windows)")
def test_sigterm_while_a_command_check_hangs_stops_at_once_and_kills_it(
    tmp_path: Path, sidecar: list[RunningCli]
) -> None:
    """A stop signal while a command check hangs stops the sidecar at once, and the command
    and what it started are killed: nothing is left behind."""
    pidfile = tmp_path / "pids"
    config = tmp_path / "sidecar.toml"
    config.write_text(
        'database = "app.db"\nhealth_file = "health.json"\n'
        "[[check]]\n"
        'type = "command"\n'
        "timeout = 300\n"
        f'argv = ["/bin/sh", "-c", "sleep 300 & echo $$ $! > {pidfile}; sleep 300"]\n'
    )
    running = start(sidecar, tmp_path, "--config", str(config))
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), "the command to start")
    pids = [int(pid) for pid in pidfile.read_text().split()]

    started = time.monotonic()
    assert running.signal_and_wait(signal.SIGTERM) == 0
    assert time.monotonic() - started < generous(5)

    wait_until(lambda: all(map(process_ended, pids)), f"processes {pids} to be killed")
    report = read_report(tmp_path / "health.json")
    assert report is not None
    assert report["status"] == "stopped"


def test_the_compose_example_runs_the_sidecar_with_the_example_config() -> None:
    """examples/compose.yaml runs `healthfile run --config` on sidecar.toml beside the app,
    sharing its network and a volume, with an init, and Docker judges it by the probe."""
    compose = yaml.safe_load((EXAMPLES / "compose.yaml").read_text())
    app, health = compose["services"]["app"], compose["services"]["health"]

    assert health["command"] == ["healthfile", "run", "--config", "/etc/healthfile/sidecar.toml"]
    assert "./sidecar.toml:/etc/healthfile/sidecar.toml:ro" in health["volumes"]
    assert health["network_mode"] == "service:app"
    assert health["init"] is True
    assert health["healthcheck"]["test"][:3] == ["CMD", "healthfile", "check"]
    shared = {volume.split(":")[0] for volume in app["volumes"]}
    assert shared & {volume.split(":")[0] for volume in health["volumes"]} == {"health"}
    # The sidecar's relative paths land in the shared volume: data/ under the working dir.
    assert health["working_dir"] == app["working_dir"] == "/srv"
    assert "health:/srv/data" in health["volumes"]


def test_the_sidecar_example_is_a_valid_config_by_its_schema() -> None:
    """examples/sidecar.toml passes the JSON Schema shipped for editors."""
    import json

    import jsonschema

    from healthfile._config import SCHEMA_FILE
    from healthfile._toml import read_toml

    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.validate(read_toml(EXAMPLES / "sidecar.toml"), schema)


@pytest.mark.slow
def test_the_shell_worker_touches_its_heartbeat_again_and_again(
    worker: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    """examples/worker.sh touches data/worker.heartbeat every turn of its loop."""
    heartbeat = tmp_path / "data" / "worker.heartbeat"
    wait_until(heartbeat.exists, "the first heartbeat")
    first = heartbeat.stat().st_mtime_ns
    os.utime(heartbeat, (0, 0))

    wait_until(lambda: heartbeat.stat().st_mtime_ns >= first, "the next heartbeat", timeout=15)


def _blocks(page: str, language: str) -> list[str]:
    """The fenced blocks of ``language`` in docs/``page``."""
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    return [block.split("```", 1)[0] for block in text.split(f"```{language}\n")[1:]]


def test_the_recipes_config_is_the_example_file(tmp_path: Path) -> None:
    """The config shown in the sidecar recipe and in docs/cli.md is examples/sidecar.toml's
    (its checks, and the options it shows)."""
    from healthfile._toml import read_toml

    example = read_toml(EXAMPLES / "sidecar.toml")
    for page in ("recipes.md", "cli.md"):
        [block] = [b for b in _blocks(page, "toml") if "[[check]]" in b]
        shown = tmp_path / f"{page}.toml"
        shown.write_text(block, encoding="utf-8")
        document = read_toml(shown)
        assert document.pop("check") == example["check"], page
        assert document.items() <= example.items(), page


def test_the_recipes_compose_file_is_the_example_file() -> None:
    """The Compose file shown in the recipe says what examples/compose.yaml says."""
    [block] = [b for b in _blocks("recipes.md", "yaml") if "services:" in b]
    shown = yaml.safe_load(block)["services"]["health"]
    example = yaml.safe_load((EXAMPLES / "compose.yaml").read_text())["services"]["health"]

    for key in ("command", "init", "network_mode", "working_dir", "volumes"):
        assert shown[key] == example[key], key
    assert shown["healthcheck"]["test"] == example["healthcheck"]["test"]


def test_the_recipes_shell_loop_is_the_example_script() -> None:
    """The shell loop shown in the recipe is examples/worker.sh's."""
    [block] = [b for b in _blocks("recipes.md", "sh") if "heartbeat" in b]
    assert block.strip() in (EXAMPLES / "worker.sh").read_text()
