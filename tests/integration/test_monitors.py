"""The real monitors read a live health file: node_exporter, check_file_age and jq.

A live `healthfile run` keeps the files; the monitors are the real programs from Debian's
packages (prometheus-node-exporter, monitoring-plugins-basic, jq). Where a program is
missing these tests skip, unless HEALTHFILE_REQUIRE_INTEGRATION=1 (set by .ci/run), when
they fail: in CI they must run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import generous, make_database, parse_samples, require_program, wait_until

DEADLINE = 30.0  # generous: slow CI machines, coverage
CHECK_FILE_AGE = "/usr/lib/nagios/plugins/check_file_age"


@dataclass
class LiveService:
    """A `healthfile run` process and the files it keeps."""

    health_file: Path
    textfile_dir: Path
    process: subprocess.Popen[bytes]

    def report(self) -> dict[str, object]:
        """The health file's current JSON object."""
        document: dict[str, object] = json.loads(self.health_file.read_bytes())
        return document


@pytest.fixture
def live_service(tmp_path: Path) -> Iterator[LiveService]:
    """`healthfile run` writing health.json and a node_exporter textfile every second."""
    database = make_database(tmp_path / "app.db")
    health_file = tmp_path / "data" / "health.json"
    textfile_dir = tmp_path / "textfile"
    environ = {name: value for name, value in os.environ.items() if not name.startswith("HEALTH")}
    command = [sys.executable, "-m", "healthfile", "run", "--database", str(database)]
    process = subprocess.Popen(
        [
            *command,
            *("--health-file", str(health_file), "--interval", "1", "--app-version", "3.1.4"),
            *("--prometheus-file", str(textfile_dir / "healthfile.prom")),
        ],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    live = LiveService(health_file, textfile_dir, process)
    try:
        wait_until(
            lambda: (textfile_dir / "healthfile.prom").exists(), "the first report", every=0.05
        )
        yield live
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=DEADLINE)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def scrape(url: str) -> str | None:
    """The body at ``url``, or None while nothing answers there."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body: bytes = response.read()
            return body.decode("utf-8")
    except (urllib.error.URLError, ConnectionError):
        return None


def scrape_node_exporter(textfile_dir: Path, log_path: Path, ready: Callable[[str], bool]) -> str:
    """Run the real node_exporter's textfile collector over ``textfile_dir`` and return the
    first scrape for which ``ready`` holds; node_exporter's log goes to ``log_path``."""
    exporter = require_program(
        "prometheus-node-exporter", "node_exporter", package="prometheus-node-exporter"
    )
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                exporter,
                "--collector.disable-defaults",
                "--collector.textfile",
                f"--collector.textfile.directory={textfile_dir}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        body: list[str] = []

        def scraped() -> bool:
            if process.poll() is not None:
                pytest.fail(f"node_exporter exited:\n{log_path.read_text(errors='replace')}")
            text = scrape(url)
            if text is None or not ready(text):
                return False
            body.append(text)
            return True

        wait_until(scraped, f"node_exporter on {url}", every=0.05)
    finally:
        process.terminate()
        try:
            process.wait(timeout=DEADLINE)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    return body[-1]


def test_node_exporter_serves_the_healthfile_metrics(
    live_service: LiveService, tmp_path: Path
) -> None:
    """node_exporter's textfile collector serves healthfile_* with node_textfile_scrape_error 0."""
    body = scrape_node_exporter(
        live_service.textfile_dir,
        tmp_path / "node_exporter.log",
        lambda text: "healthfile_up" in text,
    )
    samples = parse_samples(body)
    app = ("app", str(live_service.report()["app_name"]))
    assert samples[("node_textfile_scrape_error", ())] == 0
    assert samples[("healthfile_up", (app,))] == 1
    assert samples[("healthfile_status", (app, ("status", "online")))] == 1
    assert samples[("healthfile_check_up", (app, ("check", "database"), ("critical", "true")))] == 1
    info = (("api_version", "v1"), app, ("app_version", "3.1.4"))
    assert samples[("healthfile_info", info)] == 1
    stamp = samples[("healthfile_report_timestamp_seconds", (app,))]
    assert 0 <= time.time() - stamp < generous(DEADLINE)
    # The atomic writer's temporary files never show up as a second textfile.
    mtimes = [key for key in samples if key[0] == "node_textfile_mtime_seconds"]
    assert [dict(labels)["file"] for _, labels in mtimes] == [
        str(live_service.textfile_dir / "healthfile.prom")
    ]


def test_node_exporter_serves_three_apps_from_one_textfile_directory(tmp_path: Path) -> None:
    """Three apps' .prom files in one directory: every app's series is served, node_exporter
    logs no "collected before" error, and node_textfile_scrape_error is 0."""
    textfile_dir = tmp_path / "textfile"
    apps = ("billing", "search", "mailer")
    environ = {name: value for name, value in os.environ.items() if not name.startswith("HEALTH")}
    processes = []
    try:
        for app in apps:
            database = make_database(tmp_path / f"{app}.db")
            processes.append(
                subprocess.Popen(
                    [
                        *(sys.executable, "-m", "healthfile", "run", "--database", str(database)),
                        *("--health-file", str(tmp_path / app / "health.json"), "--interval", "1"),
                        *("--app-name", app, "--app-version", "1.0"),
                        *("--prometheus-file", str(textfile_dir / f"{app}.prom")),
                    ],
                    env=environ,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for app in apps:
            wait_until(
                (textfile_dir / f"{app}.prom").exists, f"the first report of {app}", every=0.05
            )
        log_path = tmp_path / "node_exporter.log"

        def every_app_served(text: str) -> bool:
            return all(f'healthfile_up{{app="{app}"}}' in text for app in apps)

        samples = parse_samples(scrape_node_exporter(textfile_dir, log_path, every_app_served))
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=DEADLINE)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
    log = log_path.read_text(errors="replace")
    assert "collected before" not in log, log
    assert "level=error" not in log, log
    assert samples[("node_textfile_scrape_error", ())] == 0
    for app in apps:
        label = ("app", app)
        assert samples[("healthfile_up", (label,))] == 1, app
        assert samples[("healthfile_status", (label, ("status", "online")))] == 1, app
        assert (
            samples[("healthfile_check_up", (label, ("check", "database"), ("critical", "true")))]
            == 1
        ), app
        assert (
            samples[("healthfile_info", (("api_version", "v1"), label, ("app_version", "1.0")))]
            == 1
        )
        assert (("healthfile_report_timestamp_seconds", (label,))) in samples, app
    served_files = {
        dict(labels)["file"] for name, labels in samples if name == "node_textfile_mtime_seconds"
    }
    assert served_files == {str(textfile_dir / f"{app}.prom") for app in apps}


def test_check_file_age_judges_the_live_file_ok(live_service: LiveService) -> None:
    """The Nagios plugin check_file_age says OK for the live file with -w 60 -c 120."""
    plugin = require_program(CHECK_FILE_AGE, package="monitoring-plugins-basic")
    done = subprocess.run(
        [plugin, "-w", "60", "-c", "120", "-f", str(live_service.health_file)],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert done.returncode == 0, done
    assert done.stdout.startswith("FILE_AGE OK"), done.stdout


def test_check_file_age_judges_an_abandoned_file_critical(
    live_service: LiveService, tmp_path: Path
) -> None:
    """A copy of the file untouched for 10 minutes (a dead writer) is CRITICAL to check_file_age."""
    plugin = require_program(CHECK_FILE_AGE, package="monitoring-plugins-basic")
    abandoned = tmp_path / "abandoned.json"
    shutil.copyfile(live_service.health_file, abandoned)
    old = time.time() - 600
    os.utime(abandoned, (old, old))
    done = subprocess.run(
        [plugin, "-w", "60", "-c", "120", "-f", str(abandoned)],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert done.returncode == 2, done
    assert done.stdout.startswith("FILE_AGE CRITICAL"), done.stdout


def run_jq(jq: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run jq and return the finished process."""
    return subprocess.run(
        [jq, *arguments], capture_output=True, text=True, timeout=DEADLINE, check=False
    )


def test_jq_reads_the_timestamp_with_fromdateiso8601(live_service: LiveService) -> None:
    """`jq -e '(now - (.timestamp | fromdateiso8601)) < 60'` exits 0 for the live file."""
    jq = require_program("jq", package="jq")
    path = str(live_service.health_file)
    fresh = run_jq(jq, "-e", "(now - (.timestamp | fromdateiso8601)) < 60", path)
    assert (fresh.returncode, fresh.stdout) == (0, "true\n"), fresh
    not_expired = run_jq(jq, "-e", "(.expires_at | fromdateiso8601) > now", path)
    assert not_expired.returncode == 0, not_expired
    online = run_jq(jq, "-e", '.status == "online" and .database == "connected"', path)
    assert online.returncode == 0, online


def test_jq_computes_the_same_age_as_healthfile_check(live_service: LiveService) -> None:
    """The age jq computes from `timestamp` agrees with `healthfile check --json`."""
    jq = require_program("jq", package="jq")
    path = str(live_service.health_file)
    # Stop the writer so that both read the same report.
    live_service.process.send_signal(signal.SIGTERM)
    live_service.process.wait(timeout=DEADLINE)
    age = run_jq(jq, "now - (.timestamp | fromdateiso8601) | floor", path)
    assert age.returncode == 0, age
    judged = subprocess.run(
        [sys.executable, "-m", "healthfile", "check", "--json", "--health-file", path],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    verdict = json.loads(judged.stdout)
    assert verdict["verdict"] == "stopped"
    assert abs(int(age.stdout) - verdict["age_seconds"]) <= 2


def test_healthfile_check_passes_the_live_file_in_both_conventions(
    live_service: LiveService,
) -> None:
    """`healthfile check` in a separate process: exit 0 and HEALTHFILE OK for the live file."""
    path = str(live_service.health_file)
    base = [sys.executable, "-m", "healthfile", "check", "--health-file", path]
    plain = subprocess.run(base, capture_output=True, text=True, timeout=DEADLINE, check=False)
    assert plain.returncode == 0, plain
    nagios = subprocess.run(
        [*base, "--nagios"], capture_output=True, text=True, timeout=DEADLINE, check=False
    )
    assert nagios.returncode == 0, nagios
    assert nagios.stdout.startswith("HEALTHFILE OK - online: database connected")
