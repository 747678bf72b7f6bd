"""The health model end to end: criticality, groups, recent changes and the shared environment.

Real services on real SQLite files write the file; the real probe (``healthfile check``,
in-process through the console script's entry point, and once as a process) judges it.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import healthfile
from healthfile import CheckResult, HeartbeatCheck, LoopLagCheck, check
from healthfile._entry import main as probe_main
from helpers import ServiceFactory, read_report

pytestmark = pytest.mark.usefixtures("clean_environment")


def probe(capsys: pytest.CaptureFixture[str], health_file: Path, *options: str) -> tuple[int, str]:
    """Run ``healthfile check`` on the file; return its exit status and its line."""
    capsys.readouterr()
    code = probe_main(["check", "--health-file", str(health_file), *options])
    return code, capsys.readouterr().out.strip()


def scripted(name: str, *results: CheckResult, **options: Any) -> healthfile.FunctionCheck:
    """A check that returns ``results`` one per run, the last one from then on."""
    left = list(results)

    async def run() -> CheckResult:
        return left.pop(0) if len(left) > 1 else left[0]

    return check(name, run, **options)


@pytest.mark.asyncio
async def test_a_damped_failure_leaves_online_and_the_probe_passes_with_a_nagios_warning(
    make_service: ServiceFactory, health_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failure below failure_threshold reads warn: online, exit 0, Nagios WARNING."""
    flaky = scripted("cache", CheckResult("fail", "connection refused"), failure_threshold=3)
    service = make_service(checks=[flaky])
    await service.start()

    assert service.last_report is not None
    assert service.last_report.checks["cache"].status == "warn"
    assert service.last_report.status == "online"
    assert probe(capsys, health_file)[0] == 0
    code, line = probe(capsys, health_file, "--nagios")
    assert (code, line.split(" - ")[0]) == (1, "HEALTHFILE WARNING")
    assert "cache warn: connection refused" in line


@pytest.mark.asyncio
async def test_a_loop_lag_warning_leaves_online_and_the_probe_passes(
    make_service: ServiceFactory, health_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A loop that ran late past its warn bound warns: online, exit 0, Nagios WARNING."""
    service = make_service(checks=[LoopLagCheck(warn_after=0.05, fail_after=10.0)])
    await service.start()
    time.sleep(0.1)  # wedge the loop past the warn bound
    report = await service.check_now()

    assert (report.checks["event_loop"].status, report.status) == ("warn", "online")
    assert probe(capsys, health_file)[0] == 0
    assert probe(capsys, health_file, "--nagios")[0] == 1
    assert probe(capsys, health_file, "--group", "live")[0] == 0


@pytest.mark.asyncio
async def test_a_non_critical_failure_leaves_online(
    make_service: ServiceFactory, health_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A non-critical check at fail shows in checks, says so in the file, and leaves online."""
    cache = scripted("cache", CheckResult("fail", "down"), critical=False)
    service = make_service(checks=[cache])
    await service.start()

    data = read_report(health_file)
    assert data is not None
    assert data["status"] == "online"
    assert data["checks"]["cache"] == {**data["checks"]["cache"], "status": "fail"}
    assert (data["checks"]["cache"]["critical"], data["checks"]["database"]["critical"]) == (
        False,
        True,
    )
    assert probe(capsys, health_file)[0] == 0
    code, line = probe(capsys, health_file, "--nagios")
    assert code == 1
    assert "cache fail (not critical): down" in line
    # Selected, every check counts, critical or not.
    assert probe(capsys, health_file, "--only", "cache")[0] == 1


@pytest.mark.asyncio
async def test_a_critical_failure_degrades_and_the_probe_fails_nagios_critical(
    make_service: ServiceFactory, health_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A critical check at fail makes the file degraded: exit 1, Nagios CRITICAL (2)."""
    service = make_service(checks=[scripted("queue", CheckResult("fail", "broker gone"))])
    await service.start()

    assert service.last_report is not None
    assert service.last_report.status == "degraded"
    assert probe(capsys, health_file)[0] == 1
    code, line = probe(capsys, health_file, "--nagios")
    assert (code, line.split(" - ")[0]) == (2, "HEALTHFILE CRITICAL")


@pytest.mark.asyncio
async def test_group_live_passes_with_the_database_down_and_fails_with_a_stuck_heartbeat(
    make_service: ServiceFactory,
    database: Path,
    health_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--group live judges the live checks only: the database being down is readiness'."""
    heartbeat = HeartbeatCheck(warn_after=5.0, fail_after=10.0)
    heartbeat.beat()
    service = make_service(checks=[LoopLagCheck(), heartbeat])
    await service.start()
    database.rename(database.with_suffix(".away"))
    report = await service.check_now()

    assert (report.status, report.database) == ("degraded", "disconnected")
    assert report.checks["event_loop"].groups == ("live",)
    assert probe(capsys, health_file)[0] == 1
    code, line = probe(capsys, health_file, "--group", "live")
    assert code == 0, line
    assert "group live" in line

    stuck = HeartbeatCheck(warn_after=0.001, fail_after=0.002)
    stuck.beat()
    service2 = make_service(checks=[stuck], health_file=health_file.with_name("two.json"))
    time.sleep(0.01)
    await service2.start()
    assert probe(capsys, health_file.with_name("two.json"), "--group", "live")[0] == 1


@pytest.mark.asyncio
async def test_an_unknown_group_is_not_ok_but_live_without_live_checks_judges_the_writer(
    make_service: ServiceFactory, health_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--group redy (a typo) is UNKNOWN; --group live with no live check passes a fresh file,
    whatever its status, and fails a stopped one."""
    service = make_service(checks=[scripted("queue", CheckResult("fail", "down"))])
    await service.start()

    code, line = probe(capsys, health_file, "--group", "redy", "--nagios")
    assert code == 3
    assert line.startswith("HEALTHFILE UNKNOWN - unknown group: --group names redy")
    assert probe(capsys, health_file, "--group", "redy")[0] == 1
    code, line = probe(capsys, health_file, "--group", "live", "--nagios")
    assert code == 0, line
    assert "no check: the writer is alive" in line
    await service.stop()
    assert probe(capsys, health_file, "--group", "live")[0] == 1


def test_group_and_only_together_are_refused_with_one_line(
    health_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--only with --group is a usage error: exit 2 and one line naming both."""
    with pytest.raises(SystemExit) as raised:
        probe_main(["check", "--health-file", str(health_file), "--only", "a", "--group", "b"])
    assert raised.value.code == 2
    assert capsys.readouterr().err == (
        "healthfile check: error: --only and --group cannot be used together\n"
    )


@pytest.mark.parametrize("name", ["a,b", " padded", "padded ", "tab\there"])
@pytest.mark.parametrize("where", ["name", "group"])
def test_names_no_option_could_select_are_refused_at_construction(name: str, where: str) -> None:
    """A check or group name with a comma or blanks around it is refused: no --only,
    --ignore or --group could name it."""
    options: dict[str, Any] = {"name": name} if where == "name" else {"groups": (name,)}
    with pytest.raises(ValueError, match="name"):
        healthfile.FunctionCheck(fn=lambda: True, **{"name": "fine", **options})


@pytest.mark.parametrize(
    ("attribute", "value", "error"),
    [
        ("critical", "yes", TypeError),
        ("groups", "live", TypeError),
        ("groups", ("ok", ""), ValueError),
        ("timeout", float("nan"), ValueError),
    ],
)
def test_a_custom_checks_bad_attribute_is_refused_naming_it(
    attribute: str, value: object, error: type[Exception], database: Path
) -> None:
    """A custom check's critical/groups/timeout attributes are validated like arguments:
    TypeError for a wrong type, ValueError for a wrong value."""

    class Custom:
        name = "custom"

        async def run(self) -> CheckResult:
            return CheckResult("pass")

    custom = Custom()
    setattr(custom, attribute, value)
    with pytest.raises(error, match=f"check 'custom' {attribute}|group name"):
        healthfile.AsyncHealthService(database, checks=[custom])


@pytest.mark.asyncio
async def test_fifteen_flips_leave_ten_changes_newest_first_with_secrets_redacted(
    make_service: ServiceFactory, health_file: Path
) -> None:
    """The file keeps the last 10 status changes, newest first, with why redacted and cut."""
    failing = CheckResult("fail", "postgres://app:hunter2@db/app refused " + "x" * 300)
    results = [failing if index % 2 == 0 else CheckResult("pass") for index in range(15)]
    service = make_service(checks=[scripted("queue", CheckResult("pass"), *results)])
    await service.start()
    for _ in results:
        await service.check_now()

    data = read_report(health_file)
    assert data is not None
    changes = data["changes"]
    assert len(changes) == 10
    assert [change["status"] for change in changes] == ["degraded", "online"] * 5
    assert [change["previous"] for change in changes] == ["online", "degraded"] * 5
    newest = changes[0]["why"]
    assert newest.startswith("queue fail: postgres://app:***@db/app refused xxx")
    assert "hunter2" not in json.dumps(data)
    assert len(newest) <= 200
    assert changes[1]["why"] == "queue pass"
    assert all(change["at"] >= later["at"] for change, later in itertools.pairwise(changes))


@pytest.mark.asyncio
async def test_changes_survive_a_restart_of_the_same_app_and_not_of_another(
    make_service: ServiceFactory, database: Path, health_file: Path
) -> None:
    """A new writer of the same app_name carries the file's changes over; another app's,
    or a file that does not parse, starts an empty history."""
    first = make_service(app_name="shop")
    await first.start()
    await first.stop()
    second = make_service(app_name="shop")
    await second.start()
    data = read_report(health_file)
    assert data is not None
    assert [(c["status"], c["previous"]) for c in data["changes"]] == [
        ("online", "stopped"),
        ("stopped", "online"),
        ("online", None),
    ]
    await second.stop()

    other = make_service(app_name="billing")
    await other.start()
    data = read_report(health_file)
    assert data is not None
    assert [(c["status"], c["previous"]) for c in data["changes"]] == [("online", None)]
    await other.stop()

    health_file.write_text("{not json", encoding="utf-8")
    third = make_service(app_name="billing")
    await third.start()
    data = read_report(health_file)
    assert data is not None
    assert [(c["status"], c["previous"]) for c in data["changes"]] == [("online", None)]


def test_the_service_reads_the_environment_the_probe_reads(
    tmp_path: Path, database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HEALTHFILE_* fill what the caller does not pass; an argument wins over them."""
    monkeypatch.setenv("HEALTHFILE_HEALTH_FILE", str(tmp_path / "env.json"))
    monkeypatch.setenv("HEALTHFILE_DATABASE", str(database))
    monkeypatch.setenv("HEALTHFILE_INTERVAL", "7.5")
    monkeypatch.setenv("HEALTHFILE_CHECK_TIMEOUT", "1.5")
    monkeypatch.setenv("HEALTHFILE_PROMETHEUS_FILE", str(tmp_path / "app.prom"))
    service = healthfile.AsyncHealthService()
    assert service.health_file == tmp_path / "env.json"
    assert service.checks[0].path == database  # type: ignore[attr-defined]
    assert (service.interval, service.check_timeout) == (7.5, 1.5)
    assert service.prometheus_file == tmp_path / "app.prom"
    facade = healthfile.HealthCheckService()
    assert facade._service.health_file == tmp_path / "env.json"

    argued = healthfile.AsyncHealthService(
        tmp_path / "other.db", health_file=tmp_path / "arg.json", interval=2.0
    )
    assert argued.health_file == tmp_path / "arg.json"
    assert argued.checks[0].path == tmp_path / "other.db"  # type: ignore[attr-defined]
    assert argued.interval == 2.0


@pytest.mark.asyncio
async def test_app_name_and_version_come_from_the_environment(
    make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HEALTHFILE_APP_NAME and HEALTHFILE_APP_VERSION name the writer in the file."""
    monkeypatch.setenv("HEALTHFILE_APP_NAME", "shop")
    monkeypatch.setenv("HEALTHFILE_APP_VERSION", "4.2")
    service = make_service()
    await service.start()
    assert service.last_report is not None
    assert (service.last_report.app_name, service.last_report.app_version) == ("shop", "4.2")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HEALTHFILE_INTERVAL", "soon"),
        ("HEALTHFILE_INTERVAL", "0"),
        ("HEALTHFILE_CHECK_TIMEOUT", "nan"),
        ("HEALTHFILE_HEALTH_FILE", " "),
        ("HEALTHFILE_APP_NAME", ""),
    ],
)
def test_a_bad_environment_value_raises_naming_the_variable(
    variable: str, value: str, database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A variable that cannot be used raises ValueError whose message names it."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=f"^{variable}="):
        healthfile.AsyncHealthService(database)


def test_one_variable_points_the_writer_and_the_probe_at_the_same_file(
    tmp_path: Path, database: Path
) -> None:
    """With only HEALTHFILE_HEALTH_FILE set, an app's service writes where the probe reads."""
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HEALTHFILE_")},
        "HEALTHFILE_HEALTH_FILE": str(tmp_path / "shared" / "health.json"),
    }
    app = (
        "import asyncio, healthfile\n"
        "async def main():\n"
        f"    async with healthfile.AsyncHealthService({str(database)!r}, interval=30):\n"
        "        pass\n"
        "asyncio.run(main())\n"
    )
    subprocess.run([sys.executable, "-c", app], env=environment, check=True, timeout=60)
    done = subprocess.run(
        [sys.executable, "-m", "healthfile", "check"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.startswith("stopped: ")  # the app's own file, found by the probe
