"""Every file in examples/ does what it says: its command lines run against real health files."""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient as AiohttpClient
from aiohttp.test_utils import TestServer
from starlette.testclient import TestClient

from helpers import (
    Samples,
    make_database,
    needs_unix_sockets,
    parse_samples,
    read_report,
    report_on_disk,
    require_program,
    wait_until,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BIN = Path(sys.executable).parent
DEADLINE = 30.0  # generous: slow CI machines, coverage


# --- helpers ------------------------------------------------------------------------------


def environment(**extra: str) -> dict[str, str]:
    """This environment without HEALTHFILE_* and NOTIFY_SOCKET, the venv's bin first on PATH."""
    environ = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("HEALTHFILE_") and name != "NOTIFY_SOCKET"
    }
    environ["PATH"] = f"{BIN}{os.pathsep}{environ.get('PATH', '')}"
    environ.update(extra)
    return environ


def local(argv: list[str]) -> list[str]:
    """The command with its `healthfile` (by name or at an install path) from this venv."""
    assert Path(argv[0]).name == "healthfile", argv
    return [str(BIN / "healthfile"), *argv[1:]]


def take_away(database: Path) -> None:
    """Make the database disappear (renamed), as a lost volume would."""
    database.rename(database.with_suffix(".gone"))


def wait_for_status(path: Path, status: str) -> None:
    """Wait until the health file says ``status``."""
    wait_until(
        lambda: (read_report(path) or {}).get("status") == status,
        f"{path} to say {status}",
        every=0.05,
    )


class Process:
    """A subprocess that is always ended when the test ends."""

    def __init__(self, argv: list[str], **options: Any) -> None:
        self.popen = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **options
        )

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, str]:
        """Send ``signum``; return the exit status and everything the process printed."""
        self.popen.send_signal(signum)
        output, _ = self.popen.communicate(timeout=DEADLINE)
        return self.popen.returncode, output

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.communicate()


@pytest.fixture
def processes() -> Iterator[Callable[..., Process]]:
    """Start subprocesses that are killed, if still running, when the test ends."""
    started: list[Process] = []

    def start(argv: list[str], **options: Any) -> Process:
        process = Process(argv, **options)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


def run(argv: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
    """Run a probe to completion."""
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=DEADLINE, check=False, **options
    )


def load_example(name: str) -> ModuleType:
    """Import examples/<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- Docker -------------------------------------------------------------------------------


def dockerfile_instructions() -> dict[str, str]:
    """Each instruction of examples/Dockerfile (the last of a kind) and its arguments."""
    text = (EXAMPLES / "Dockerfile").read_text().replace("\\\n", " ")
    instructions = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, arguments = line.strip().partition(" ")
            instructions[keyword.upper()] = arguments.strip()
    return instructions


def test_dockerfile_healthcheck_judges_the_running_cmd(
    tmp_path: Path, processes: Callable[..., Process]
) -> None:
    """The HEALTHCHECK command passes the file CMD keeps, and fails once `docker stop` ran."""
    instructions = dockerfile_instructions()
    options, _, probe = instructions["HEALTHCHECK"].partition(" CMD ")
    assert probe == "healthfile check"
    assert re.search(r"--timeout=\d+s", options)
    command = json.loads(instructions["CMD"])  # exec form
    workdir = tmp_path / instructions["WORKDIR"].lstrip("/")
    make_database(workdir / "data" / "app.db")
    health_file = workdir / "data" / "health.json"  # the default path, relative to WORKDIR

    service = processes(local(command), cwd=workdir, env=environment())
    wait_for_status(health_file, "online")
    # Docker runs a shell-form HEALTHCHECK as /bin/sh -c in the WORKDIR.
    healthy = run(["/bin/sh", "-c", probe], cwd=workdir, env=environment())
    assert healthy.returncode == 0, healthy
    assert healthy.stdout.startswith("online: database connected")
    assert healthy.stdout.count("\n") == 1

    assert service.stop(signal.SIGTERM)[0] == 0  # docker stop
    unhealthy = run(["/bin/sh", "-c", probe], cwd=workdir, env=environment())
    assert unhealthy.returncode == 1
    assert unhealthy.stdout.startswith("stopped: ")


# --- Kubernetes ---------------------------------------------------------------------------


def kubernetes_container() -> dict[str, Any]:
    """The one container of the Deployment in examples/kubernetes.yaml."""
    documents = list(yaml.safe_load_all((EXAMPLES / "kubernetes.yaml").read_text()))
    [deployment] = [d for d in documents if d and d.get("kind") == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    mounted = {mount["name"] for mount in container["volumeMounts"]}
    assert mounted <= {volume["name"] for volume in volumes}
    result: dict[str, Any] = container
    return result


def test_kubernetes_probes_are_healthfile_check_exec_probes() -> None:
    """Every probe runs `healthfile check` within a timeout; liveness (and startup) judge
    the group live, readiness everything; none allows degraded."""
    container = kubernetes_container()
    probes = {kind: container[kind] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    for probe in probes.values():
        assert probe["exec"]["command"][:2] == ["healthfile", "check"]
        assert probe["timeoutSeconds"] >= 1
        assert "--allow-degraded" not in probe["exec"]["command"]
    live = ["healthfile", "check", "--group", "live"]
    assert probes["livenessProbe"]["exec"]["command"] == live
    assert probes["startupProbe"]["exec"]["command"] == live
    assert probes["readinessProbe"]["exec"]["command"] == ["healthfile", "check"]


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="the worker is made stuck by SIGUSR1")
def test_kubernetes_probes_follow_the_worker_through_degraded_stuck_and_stopped(
    tmp_path: Path, processes: Callable[..., Process]
) -> None:
    """Online: all probes pass. Database lost: liveness passes, readiness fails. Worker stuck
    (its heartbeat fails): both fail. Stopped by SIGTERM: both fail, exit status 0."""
    container = kubernetes_container()
    root = tmp_path / "container"
    mounts = {mount["mountPath"]: root / mount["name"] for mount in container["volumeMounts"]}
    for directory in mounts.values():
        directory.mkdir(parents=True)

    def inside(value: str) -> str:
        for mount_path, directory in mounts.items():
            if value.startswith(mount_path):
                return str(directory) + value[len(mount_path) :]
        return value

    env = environment(**{item["name"]: inside(item["value"]) for item in container["env"]})
    env["HEALTHFILE_INTERVAL"] = "0.5"  # faster cycles for the test
    workdir = root / container["workingDir"].lstrip("/")
    database = make_database(workdir / env["HEALTHFILE_DATABASE"])
    health_file = Path(env["HEALTHFILE_HEALTH_FILE"])
    assert health_file.parent in mounts.values()  # the emptyDir, shared with the probes

    def probe(kind: str) -> int:
        done = run(local(container[kind]["exec"]["command"]), cwd=workdir, env=env)
        assert done.stdout.count("\n") == 1, done
        return done.returncode

    python, script = container["command"]
    assert (python, script) == ("python", "/app/worker.py")
    worker = processes([sys.executable, str(EXAMPLES / "worker.py")], cwd=workdir, env=env)
    wait_for_status(health_file, "online")
    checks = report_on_disk(health_file)["checks"]
    assert {name: check["groups"] for name, check in checks.items()} == {
        "database": [],
        "event_loop": ["live"],
        "heartbeat": ["live"],
    }
    assert [probe(k) for k in ("startupProbe", "livenessProbe", "readinessProbe")] == [0, 0, 0]

    take_away(database)
    wait_for_status(health_file, "degraded")
    assert (probe("livenessProbe"), probe("readinessProbe")) == (0, 1)

    worker.popen.send_signal(signal.SIGUSR1)  # the current job hangs
    wait_until(
        lambda: report_on_disk(health_file)["checks"]["heartbeat"]["status"] == "fail",
        "the heartbeat to fail",
        every=0.05,
    )
    assert (probe("livenessProbe"), probe("readinessProbe")) == (1, 1)

    status, output = worker.stop(signal.SIGTERM)
    assert (status, "Traceback" in output) == (0, False), output
    assert report_on_disk(health_file)["status"] == "stopped"
    assert (probe("livenessProbe"), probe("readinessProbe")) == (1, 1)


# --- Nagios -------------------------------------------------------------------------------


def nagios_objects(kind: str) -> list[dict[str, str]]:
    """The `define <kind> { ... }` objects of examples/nagios.cfg."""
    text = (EXAMPLES / "nagios.cfg").read_text()
    objects = []
    for body in re.findall(rf"^define\s+{kind}\s*\{{(.*?)^\}}", text, re.DOTALL | re.MULTILINE):
        fields = {}
        for line in body.splitlines():
            if line.strip() and not line.strip().startswith("#"):
                key, value = line.strip().split(None, 1)
                fields[key] = value.strip()
        objects.append(fields)
    return objects


@pytest.fixture
def nagios_check(tmp_path: Path) -> Callable[[], subprocess.CompletedProcess[str]]:
    """Run the service's check_command as Nagios would, its file mapped into tmp_path."""
    [service] = nagios_objects("service")
    name, *arguments = service["check_command"].split("!")
    [command] = [c for c in nagios_objects("command") if c["command_name"] == name]
    arguments[0] = str(tmp_path / "srv" / Path(arguments[0]).relative_to("/srv"))
    line = command["command_line"]
    for number, value in enumerate(arguments, start=1):
        line = line.replace(f"${'ARG'}{number}$", value)
    assert "$" not in line
    argv = local(shlex.split(line))
    return lambda: run(argv, env=environment())


def test_nagios_command_judges_a_live_file_ok_then_critical(
    tmp_path: Path,
    nagios_check: Callable[[], subprocess.CompletedProcess[str]],
    processes: Callable[..., Process],
) -> None:
    """The check_command: UNKNOWN without a file, OK with perfdata while live, CRITICAL after."""
    missing = nagios_check()
    assert missing.returncode == 3
    assert missing.stdout.startswith("HEALTHFILE UNKNOWN - missing: ")

    app = tmp_path / "srv" / "myapp"
    database = make_database(app / "data" / "app.db")
    service = processes(
        local(["healthfile", "run", "--database", str(database), "--interval", "0.5"]),
        cwd=app,
        env=environment(),
    )
    wait_for_status(app / "data" / "health.json", "online")
    live = nagios_check()
    assert live.returncode == 0, live
    assert re.fullmatch(
        r"HEALTHFILE OK - online: database connected, app_version \S+, updated -?\d+ s ago"
        r" \| age=-?\d+s database_duration=[\d.]+ms\n",
        live.stdout,
    ), live.stdout

    assert service.stop()[0] == 0
    stopped = nagios_check()
    assert stopped.returncode == 2
    assert stopped.stdout.startswith("HEALTHFILE CRITICAL - stopped: ")


# --- Consul and Nomad script checks -------------------------------------------------------


def consul_state(code: int) -> str:
    """How Consul (and Nomad, which registers its checks there) reads a script's exit status."""
    return {0: "passing", 1: "warning"}.get(code, "critical")


def write_report(
    path: Path, status: str, checks: dict[str, str], *, expires_in: float = 60.0
) -> Path:
    """Write a health file as the service renders it: ``checks`` maps name to pass/warn/fail."""
    from healthfile import CheckResult, HealthReport

    now = datetime.now(timezone.utc)
    report = HealthReport(
        status=status,  # type: ignore[arg-type]  # the states under test, as strings
        database="connected" if checks.get("database", "pass") == "pass" else "disconnected",
        timestamp=now - timedelta(seconds=2),
        app_version="1.0.0",
        interval_seconds=10.0,
        expires_at=now + timedelta(seconds=expires_in),
        sequence=5,
        started_at=now - timedelta(seconds=60),
        pid=os.getpid(),
        checks={
            name: CheckResult(
                state,  # type: ignore[arg-type]  # pass, warn or fail, as strings
                None if state == "pass" else f"{name} is {state}",
                groups=("live",) if name in LIVE else (),
            )
            for name, state in checks.items()
        },
        app_name="myapp",
    )
    path.write_text(report.to_json(), encoding="utf-8")
    return path


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` at ``path`` (a file that is not a health file)."""
    path.write_text(text, encoding="utf-8")
    return path


WORKER_CHECKS = {"database": "pass", "event_loop": "pass", "heartbeat": "pass"}
LIVE = ("event_loop", "heartbeat")  # the worker's checks in the group live

# name, how to make the file (None: no file), Consul state of "ready" (every check) and of
# "alive" (--group live)
SCRIPT_CHECK_STATES: list[tuple[str, Callable[[Path], Path | None], str, str]] = [
    ("online", lambda p: write_report(p, "online", WORKER_CHECKS), "passing", "passing"),
    (
        "starting",
        lambda p: write_report(p, "starting", {**WORKER_CHECKS, "database": "fail"}),
        "warning",
        "passing",
    ),
    (
        "online-database-warns",
        lambda p: write_report(p, "online", {**WORKER_CHECKS, "database": "warn"}),
        "warning",
        "passing",
    ),
    (
        "degraded-database-fails",
        lambda p: write_report(p, "degraded", {**WORKER_CHECKS, "database": "fail"}),
        "critical",
        "passing",
    ),
    (
        "online-heartbeat-warns",
        lambda p: write_report(p, "online", {**WORKER_CHECKS, "heartbeat": "warn"}),
        "warning",
        "warning",
    ),
    (
        "degraded-heartbeat-fails",
        lambda p: write_report(p, "degraded", {**WORKER_CHECKS, "heartbeat": "fail"}),
        "critical",
        "critical",
    ),
    ("stopped", lambda p: write_report(p, "stopped", WORKER_CHECKS), "critical", "critical"),
    (
        "stale",
        lambda p: write_report(p, "online", WORKER_CHECKS, expires_in=-30),
        "critical",
        "critical",
    ),
    ("missing", lambda p: None, "critical", "critical"),
    (
        "invalid",
        lambda p: write_text(p, '{"status": "online"'),
        "critical",
        "critical",
    ),
    (
        # Without a live check, liveness judges the writer alone: fresh, so alive.
        "no-live-check",
        lambda p: write_report(p, "degraded", {"database": "fail"}),
        "critical",
        "passing",
    ),
]


def consul_check() -> dict[str, Any]:
    """The one script check of examples/consul.json."""
    document = json.loads((EXAMPLES / "consul.json").read_text())
    [check] = document["service"]["checks"]
    result: dict[str, Any] = check
    return result


def nomad_checks() -> dict[str, dict[str, Any]]:
    """The script checks of examples/nomad.hcl by name: command, args and check_restart."""
    text = (EXAMPLES / "nomad.hcl").read_text()
    checks = {}
    for body in re.findall(r"^\s*check \{\n(.*?)^        \}", text, re.DOTALL | re.MULTILINE):
        fields: dict[str, Any] = {}
        for key, value in re.findall(r"^\s*(\w+)\s*=\s*(.+)$", body, re.MULTILINE):
            fields[key] = json.loads(value)  # strings, lists, numbers and booleans as in JSON
        checks[fields["name"]] = fields
    return checks


def run_script_check(argv: list[str], health_file: Path) -> str:
    """Run a script check's command on ``health_file``; return the state Consul gives it."""
    done = run(local(argv), env=environment(HEALTHFILE_HEALTH_FILE=str(health_file)))
    assert done.stdout.count("\n") == 1, done
    assert len(done.stdout.encode()) < 4096  # all that Consul keeps of the output
    return consul_state(done.returncode)


def test_consul_and_nomad_checks_are_nagios_convention_script_checks() -> None:
    """Both recipes run `healthfile check --nagios`: Consul's 0/1/other maps onto it."""
    consul = consul_check()
    assert consul["args"][1:3] == ["check", "--nagios"]
    assert consul["timeout"]
    assert consul["interval"]
    nomad = nomad_checks()
    assert set(nomad) == {"ready", "alive"}
    for check in nomad.values():
        assert check["type"] == "script"
        assert [check["command"], *check["args"][:2]] == ["healthfile", "check", "--nagios"]
    assert nomad["ready"]["args"] == ["check", "--nagios"]
    assert nomad["alive"]["args"][2:] == ["--group", "live"]
    restart = re.search(r"check_restart \{(.*?)\}", (EXAMPLES / "nomad.hcl").read_text(), re.DOTALL)
    assert restart is not None
    assert "ignore_warnings = true" in restart[1]


@pytest.mark.parametrize(
    ("make", "ready", "alive"),
    [pytest.param(make, ready, alive, id=name) for name, make, ready, alive in SCRIPT_CHECK_STATES],
)
def test_consul_and_nomad_states_for_every_verdict(
    tmp_path: Path, make: Callable[[Path], Path | None], ready: str, alive: str
) -> None:
    """Every verdict reads right in Consul: passing only when healthy, warning for starting or
    mere warnings, critical for failing, stopped, stale, missing, invalid or unknown checks."""
    health_file = tmp_path / "health.json"
    make(health_file)
    consul = consul_check()["args"]
    consul[consul.index("--health-file") + 1] = str(health_file)
    assert run_script_check(consul, health_file) == ready
    nomad = nomad_checks()
    for name, expected in (("ready", ready), ("alive", alive)):
        check = nomad[name]
        assert run_script_check([check["command"], *check["args"]], health_file) == expected


def test_default_convention_would_misread_in_consul(tmp_path: Path) -> None:
    """Why --nagios: without it a stale file exits 1, which Consul reads as a mere warning."""
    health_file = write_report(tmp_path / "health.json", "online", WORKER_CHECKS, expires_in=-30)
    assert run_script_check(["healthfile", "check"], health_file) == "warning"
    assert run_script_check(["healthfile", "check", "--nagios"], health_file) == "critical"


# --- node_exporter: textfile and alert rules ----------------------------------------------


def alert_rules() -> dict[str, dict[str, Any]]:
    """The alerting rules of examples/node_exporter/healthfile.rules.yml by alert name."""
    document = yaml.safe_load((EXAMPLES / "node_exporter" / "healthfile.rules.yml").read_text())
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    return {rule["alert"]: rule for rule in rules}


def firing(expr: str, samples: Samples, now: float) -> list[dict[str, str]]:
    """The label sets for which ``expr`` fires on one scrape (the two shapes the rules use)."""
    stale = re.fullmatch(r"time\(\) - (\w+) > (\d+)", expr)
    equal = re.fullmatch(r"(\w+) == (\d+)", expr)
    assert stale or equal, f"unexpected expression {expr!r}"

    def fires(name: str, value: float) -> bool:
        if stale:
            return name == stale[1] and now - value > float(stale[2])
        assert equal
        return name == equal[1] and value == float(equal[2])

    return [dict(labels) for (name, labels), value in samples.items() if fires(name, value)]


def test_alert_rules_are_well_formed() -> None:
    """Each rule has an expression, a severity and a summary; staleness uses the timestamp."""
    rules = alert_rules()
    assert set(rules) == {"HealthfileStale", "HealthfileDown", "HealthfileCheckFailing"}
    for rule in rules.values():
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
    threshold = re.fullmatch(
        r"time\(\) - healthfile_report_timestamp_seconds > (\d+)", rules["HealthfileStale"]["expr"]
    )
    assert threshold is not None
    # At least two default cycles (30 s) plus the check timeout, so one late cycle never fires.
    assert int(threshold[1]) >= 2 * 30 + 3
    assert rules["HealthfileDown"]["expr"] == "healthfile_up == 0"


@pytest.mark.asyncio
async def test_alert_rules_fire_on_staleness_and_down_not_on_a_live_service(
    database: Path, tmp_path: Path
) -> None:
    """Against the real textfile: nothing fires while online; Down and CheckFailing when
    degraded; Stale once the report is older than the threshold."""
    import healthfile

    textfile = tmp_path / "textfile" / "app.prom"
    rules = alert_rules()
    async with healthfile.AsyncHealthService(
        database,
        health_file=tmp_path / "health.json",
        prometheus_file=textfile,
        pyproject=None,
        app_name="myapp",
    ) as service:
        samples = parse_samples(textfile.read_text())
        now = time.time()
        assert {name: firing(rule["expr"], samples, now) for name, rule in rules.items()} == {
            name: [] for name in rules
        }
        take_away(database)
        await service.check_now()
        samples = parse_samples(textfile.read_text())
        assert firing(rules["HealthfileDown"]["expr"], samples, now) != []
        assert firing(rules["HealthfileCheckFailing"]["expr"], samples, now) == [
            {"app": "myapp", "check": "database", "critical": "true"}
        ]
        assert firing(rules["HealthfileStale"]["expr"], samples, now) == []
        assert firing(rules["HealthfileStale"]["expr"], samples, now + 600) != []


def test_alert_rules_pass_promtool(tmp_path: Path) -> None:
    """promtool (from the prometheus package) accepts and unit-tests the rules."""
    promtool = require_program("promtool", package="prometheus")
    rules_file = EXAMPLES / "node_exporter" / "healthfile.rules.yml"
    checked = run([promtool, "check", "rules", str(rules_file)])
    assert checked.returncode == 0, checked
    description = alert_rules()["HealthfileStale"]["annotations"]["description"]
    stale_alert = {
        "exp_labels": {"app": "myapp", "instance": "host", "severity": "critical"},
        "exp_annotations": {
            "summary": "myapp on host: no health report for 3m 0s",
            "description": description,
        },
    }
    down_alert = {
        "exp_labels": {"app": "myapp", "instance": "host", "severity": "warning"},
        "exp_annotations": {"summary": "myapp on host: the application does not report online"},
    }
    tests = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                # A report made at time 0 and never renewed, by an app that is not online.
                "input_series": [
                    {
                        "series": "healthfile_report_timestamp_seconds"
                        '{app="myapp",instance="host"}',
                        "values": "0x10",
                    },
                    {"series": 'healthfile_up{app="myapp",instance="host"}', "values": "0x10"},
                ],
                "alert_rule_test": [
                    {"eval_time": "2m", "alertname": "HealthfileStale", "exp_alerts": []},
                    {
                        "eval_time": "3m",
                        "alertname": "HealthfileStale",
                        "exp_alerts": [stale_alert],
                    },
                    {"eval_time": "4m", "alertname": "HealthfileDown", "exp_alerts": []},
                    {"eval_time": "6m", "alertname": "HealthfileDown", "exp_alerts": [down_alert]},
                ],
            }
        ],
    }
    tests_file = tmp_path / "tests.yml"
    tests_file.write_text(yaml.safe_dump(tests))
    tested = run([promtool, "test", "rules", str(tests_file)])
    assert tested.returncode == 0, tested


def test_node_exporter_readme_shows_what_healthfile_writes() -> None:
    """The README's sample scrape is valid text format with exactly healthfile's metric names."""
    readme = (EXAMPLES / "node_exporter" / "README.md").read_text()
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", readme, re.DOTALL | re.MULTILINE)
    [scrape] = [text for language, text in blocks if not language and "healthfile_up" in text]
    names = {name for name, _ in parse_samples(scrape)}
    assert names == {
        "healthfile_up",
        "healthfile_status",
        "healthfile_check_up",
        "healthfile_check_duration_seconds",
        "healthfile_check_consecutive_failures",
        "healthfile_report_timestamp_seconds",
        "healthfile_info",
        "node_textfile_scrape_error",
    }
    assert "--collector.textfile.directory=" in readme
    assert "healthfile.rules.yml" in readme


# --- systemd ------------------------------------------------------------------------------


def systemd_unit() -> configparser.ConfigParser:
    """examples/healthfile.service, parsed."""
    unit = configparser.ConfigParser(interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    unit.read_string((EXAMPLES / "healthfile.service").read_text())
    return unit


def test_systemd_unit_is_type_notify_with_a_watchdog_longer_than_a_cycle() -> None:
    """Type=notify with a WatchdogSec= longer than one interval plus the check timeout."""
    service = systemd_unit()["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] in ("main", "all")
    argv = shlex.split(service["ExecStart"])
    assert argv[1:3] == ["run", "--notify-systemd"]
    interval = float(argv[argv.index("--interval") + 1])
    check_timeout = (
        float(argv[argv.index("--check-timeout") + 1]) if "--check-timeout" in argv else 3.0
    )
    assert float(service["WatchdogSec"]) > interval + check_timeout


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    """systemd-analyze verify (where systemd is installed) finds nothing wrong in the unit."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    unit = tmp_path / "myapp-health.service"
    text = (EXAMPLES / "healthfile.service").read_text()
    unit.write_text(text.replace("/usr/local/bin/healthfile", str(BIN / "healthfile")))
    verified = run([analyze, "verify", str(unit)])
    assert verified.returncode == 0, verified
    assert unit.name not in verified.stderr, verified.stderr


@needs_unix_sockets
def test_systemd_exec_start_notifies_ready_watchdog_and_stopping(
    tmp_path: Path, short_dir: Path, processes: Callable[..., Process]
) -> None:
    """ExecStart under NOTIFY_SOCKET: READY=1, WATCHDOG=1 per report, STOPPING=1 on SIGTERM."""
    service = systemd_unit()["Service"]
    argv = shlex.split(service["ExecStart"])
    places = {"/var/lib/myapp": tmp_path / "lib", "/run/myapp": tmp_path / "run"}
    for directory in places.values():
        directory.mkdir()  # systemd creates RuntimeDirectory=; the database's exists

    def mapped(value: str) -> str:
        for prefix, directory in places.items():
            if value.startswith(prefix + "/"):
                return str(directory) + value[len(prefix) :]
        return value

    argv = [mapped(value) for value in argv]
    make_database(Path(argv[argv.index("--database") + 1]))
    health_file = Path(argv[argv.index("--health-file") + 1])
    argv[argv.index("--interval") + 1] = "0.2"  # faster cycles for the test

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(short_dir / "notify"))
        notify.settimeout(DEADLINE)
        process = processes(local(argv), env=environment(NOTIFY_SOCKET=str(short_dir / "notify")))
        messages = [notify.recv(4096).decode()]
        while messages[-1] != "READY=1":
            messages.append(notify.recv(4096).decode())
        assert notify.recv(4096) == b"WATCHDOG=1"
        assert report_on_disk(health_file)["status"] == "online"
        status, output = process.stop(signal.SIGTERM)  # systemctl stop
        assert status == 0, output
        rest = []
        notify.setblocking(False)
        try:
            while True:
                rest.append(notify.recv(4096).decode())
        except BlockingIOError:
            pass
    assert set(messages[:-1]) <= {"WATCHDOG=1"}
    assert rest[-1] == "STOPPING=1"
    assert set(rest[:-1]) <= {"WATCHDOG=1"}
    assert report_on_disk(health_file)["status"] == "stopped"


# --- frameworks ---------------------------------------------------------------------------


def test_starlette_lifespan_runs_the_service(database: Path, tmp_path: Path) -> None:
    """Starlette's lifespan starts the service before serving and stops it at shutdown;
    the mounted asgi_app answers the probe's verdict at /health/readyz."""
    example = load_example("starlette_app")
    health_file = tmp_path / "health.json"
    app = example.create_app(database, health_file=health_file, pyproject=None)
    with TestClient(app) as client:
        assert report_on_disk(health_file)["status"] == "online"
        response = client.get("/health/readyz")
        assert response.status_code == 200
        assert response.json()["verdict"] == "online"
        assert response.json()["health_file"] == str(health_file)
        assert "<h1>Healthy</h1>" in client.get("/health/").text
    assert report_on_disk(health_file)["status"] == "stopped"


def test_starlette_example_names_itself_not_healthfile(
    database: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Served from healthfile's own checkout, the example reports its identity, not healthfile's."""
    monkeypatch.chdir(tmp_path)
    shutil.copyfile(Path(__file__).resolve().parent.parent / "pyproject.toml", "pyproject.toml")
    example = load_example("starlette_app")
    health_file = tmp_path / "health.json"
    with TestClient(example.create_app(database, health_file=health_file)):
        report = report_on_disk(health_file)
    assert (report["app_name"], report["app_version"]) == (example.APP_NAME, example.APP_VERSION)
    assert report["app_name"] != "healthfile"


def test_starlette_health_route_is_503_when_degraded(tmp_path: Path) -> None:
    """With its database missing the app still starts; /health/readyz answers 503 degraded
    while /health/livez, the writer alive, answers 200."""
    example = load_example("starlette_app")
    health_file = tmp_path / "health.json"
    app = example.create_app(tmp_path / "missing.db", health_file=health_file, pyproject=None)
    with TestClient(app) as client:
        response = client.get("/health/readyz")
        assert response.status_code == 503
        assert response.json()["verdict"] == "degraded"
        assert client.get("/health/livez").status_code == 200
    assert report_on_disk(health_file)["status"] == "stopped"


def test_starlette_module_level_app_does_no_io(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Importing the example (as uvicorn does) writes nothing until the lifespan starts."""
    monkeypatch.chdir(tmp_path)
    example = load_example("starlette_app")
    assert example.app is not None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.asyncio
async def test_aiohttp_cleanup_ctx_runs_the_service(database: Path, tmp_path: Path) -> None:
    """aiohttp's cleanup_ctx starts the service with the app and stops it at cleanup; the
    adapter serves asgi_app at /health/ (GET and HEAD alike)."""
    example = load_example("aiohttp_app")
    health_file = tmp_path / "health.json"
    app = example.create_app(database=database, health_file=health_file, pyproject=None)
    async with AiohttpClient(TestServer(app)) as client:
        assert report_on_disk(health_file)["status"] == "online"
        response = await client.get("/health/readyz")
        assert response.status == 200
        assert (await response.json())["verdict"] == "online"
        assert response.headers["Cache-Control"] == "no-store"
        head = await client.head("/health/readyz")
        assert head.status == 200
        assert await head.read() == b""
        assert head.headers["Content-Length"] == response.headers["Content-Length"]
        post = await client.post("/health/readyz")
        assert post.status == 405
        assert post.headers["Allow"] == "GET, HEAD"
        assert "<h1>Healthy</h1>" in await (await client.get("/health/")).text()
        assert app[example.HEALTH].running
    assert report_on_disk(health_file)["status"] == "stopped"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_desktop_app_keeps_the_file_and_stops_cleanly(
    database: Path, tmp_path: Path, processes: Callable[..., Process], signum: int
) -> None:
    """The thread-facade app writes online reports, and 'stopped' on Ctrl-C or SIGTERM."""
    health_file = tmp_path / "health.json"
    app = processes(
        [
            *(sys.executable, str(EXAMPLES / "desktop_app.py"), "--database", str(database)),
            *("--health-file", str(health_file), "--interval", "0.2"),
        ],
        env=environment(),
    )
    wait_until(
        lambda: (read_report(health_file) or {}).get("sequence", 0) >= 3,
        "three reports",
        every=0.05,
    )
    assert report_on_disk(health_file)["status"] == "online"
    status, output = app.stop(signum)
    assert status == 0, output
    assert output == "running; Ctrl-C quits\nstopped\n"
    assert report_on_disk(health_file)["status"] == "stopped"
