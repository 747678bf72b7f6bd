"""The Prometheus textfile: parsed by prometheus_client, equal to the JSON report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import healthfile
from healthfile._cli import main
from healthfile._judge import parse_timestamp
from helpers import Samples, ServiceFactory, needs_fifos, needs_posix_modes, wait_until

DEADLINE = 30.0  # generous: slow CI machines, coverage

pytestmark = pytest.mark.usefixtures("clean_environment")


def read_app_samples(path: Path) -> tuple[set[str], Samples]:
    """Parse a textfile with prometheus_client's own parser: the ``app`` label values seen,
    and (name, labels but app) -> value."""
    apps: set[str] = set()
    samples: Samples = {}
    for family in text_string_to_metric_families(path.read_text(encoding="utf-8")):
        assert family.type == "gauge", family
        for sample in family.samples:
            labels = dict(sample.labels)
            apps.add(labels.pop("app"))  # every metric carries it
            key = (sample.name, tuple(sorted(labels.items())))
            assert key not in samples, f"{key} appears twice"
            samples[key] = sample.value
    return apps, samples


def read_samples(path: Path) -> Samples:
    """The textfile's samples without their ``app`` label, which is one value throughout."""
    apps, samples = read_app_samples(path)
    assert len(apps) == 1, apps
    return samples


def expected_samples(document: dict[str, Any]) -> Samples:
    """What the textfile must hold for a health-file JSON document."""
    status = document["status"]
    timestamp = parse_timestamp(document["timestamp"])
    assert timestamp is not None
    expected: Samples = {("healthfile_up", ()): 1.0 if status == "online" else 0.0}
    for name in ("starting", "online", "degraded", "stopped"):
        expected[("healthfile_status", (("status", name),))] = 1.0 if status == name else 0.0
    groups: dict[str, float] = {}
    for name, result in document["checks"].items():
        label = (("check", name),)
        critical = (("check", name), ("critical", "true" if result["critical"] else "false"))
        expected[("healthfile_check_up", critical)] = 1.0 if result["status"] == "pass" else 0.0
        for group in result["groups"]:
            ok = groups.get(group, 1.0) and result["status"] != "fail"
            groups[group] = 1.0 if ok else 0.0
        expected[("healthfile_check_duration_seconds", label)] = result["duration_ms"] / 1000
        expected[("healthfile_check_consecutive_failures", label)] = float(
            result["consecutive_failures"]
        )
    for group, value in groups.items():
        expected[("healthfile_group_up", (("group", group),))] = value
    expected[("healthfile_report_timestamp_seconds", ())] = float(timestamp)
    info = (("api_version", document["api_version"]), ("app_version", document["app_version"]))
    expected[("healthfile_info", info)] = 1.0
    return expected


def read_document(path: Path) -> dict[str, Any]:
    """The health file's JSON object, read the way a monitor reads it."""
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def assert_textfile_matches(textfile: Path, health_file: Path) -> None:
    """Every sample of the textfile equals the value the JSON report implies, and no more."""
    document = read_document(health_file)
    apps, samples = read_app_samples(textfile)
    assert apps == {document["app_name"]}
    expected = expected_samples(document)
    assert set(samples) == set(expected)
    for key, value in expected.items():
        if key[0] == "healthfile_report_timestamp_seconds":
            # The JSON keeps whole seconds; the textfile keeps the fraction too.
            assert value <= samples[key] < value + 1, key
        elif key[0] == "healthfile_check_duration_seconds":
            # The JSON rounds duration_ms to 3 decimals.
            assert samples[key] == pytest.approx(value, abs=1e-6), key
        else:
            assert samples[key] == value, key


def failing() -> bool:
    """A check that always fails."""
    return False


@pytest.mark.asyncio
async def test_textfile_values_equal_the_json_report_of_the_same_cycle(
    make_service: ServiceFactory, health_file: Path, tmp_path: Path
) -> None:
    """After each cycle the textfile, parsed, holds exactly the values of the JSON report."""
    textfile = tmp_path / "textfile" / "app.prom"
    service = make_service(
        prometheus_file=textfile,
        app_version="2.5.0",
        checks=[
            healthfile.check("cache", failing, critical=False, groups=("ready",)),
            healthfile.check("queue", lambda: True, groups=("ready", "live")),
        ],
    )
    await service.start()
    assert_textfile_matches(textfile, health_file)
    for _ in range(2):
        report = await service.check_now()
        document = read_document(health_file)
        assert document["sequence"] == report.sequence  # both files are of this cycle
        assert_textfile_matches(textfile, health_file)
    samples = read_samples(textfile)
    assert samples[("healthfile_status", (("status", "online"),))] == 1.0  # cache: not critical
    assert samples[("healthfile_group_up", (("group", "ready"),))] == 0.0
    assert samples[("healthfile_group_up", (("group", "live"),))] == 1.0
    assert samples[("healthfile_check_consecutive_failures", (("check", "cache"),))] == 3.0
    assert samples[("healthfile_check_up", (("check", "database"), ("critical", "true")))] == 1.0
    await service.stop()
    assert_textfile_matches(textfile, health_file)
    assert read_samples(textfile)[("healthfile_status", (("status", "stopped"),))] == 1.0


@pytest.mark.asyncio
async def test_every_metric_carries_the_app_label(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    """Every sample of the textfile has app="<app_name>", so apps can share one directory."""
    textfile = tmp_path / "app.prom"
    service = make_service(
        prometheus_file=textfile, app_name="billing", checks=[healthfile.check("queue", failing)]
    )
    await service.start()
    families = list(text_string_to_metric_families(textfile.read_text(encoding="utf-8")))
    assert len(families) == 7
    for family in families:
        assert family.samples, family
        for sample in family.samples:
            assert sample.labels["app"] == "billing", sample


@pytest.mark.asyncio
async def test_online_service_reports_up(
    make_service: ServiceFactory, health_file: Path, tmp_path: Path
) -> None:
    """A service whose checks all pass writes healthfile_up 1."""
    textfile = tmp_path / "app.prom"
    service = make_service(prometheus_file=textfile)
    await service.start()
    assert read_samples(textfile)[("healthfile_up", ())] == 1.0
    assert_textfile_matches(textfile, health_file)


@needs_posix_modes
@pytest.mark.asyncio
async def test_textfile_is_replaced_atomically_leaving_no_temporary_file(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    """The textfile is replaced by the atomic writer: mode 0644 and no temporary file left."""
    directory = tmp_path / "textfile"
    textfile = directory / "app.prom"
    service = make_service(prometheus_file=textfile)
    await service.start()
    # Held open, the first file's inode cannot be reused by a later temporary file.
    with textfile.open("rb") as first:
        for _ in range(3):
            await service.check_now()
        await service.stop()
        assert os.listdir(directory) == ["app.prom"]
        assert textfile.stat().st_mode & 0o777 == 0o644
        assert textfile.stat().st_ino != os.fstat(first.fileno()).st_ino  # renamed over


@pytest.mark.asyncio
async def test_stale_temporary_textfile_of_a_killed_writer_is_swept_at_start(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    """A temporary textfile a killed process left behind is removed when the service starts."""
    textfile = tmp_path / "app.prom"
    leftover = tmp_path / ".app.prom.0123456789abcdef.tmp"
    leftover.write_text("healthfile_up 1\n")
    service = make_service(prometheus_file=textfile)
    await service.start()
    assert not leftover.exists()
    assert sorted(os.listdir(tmp_path)) == ["app.db", "app.prom", "out"]


def test_construction_without_prometheus_client_raises_a_clear_import_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """prometheus_file without prometheus_client fails at construction, naming the extra."""
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(
        ImportError, match=r"\(the extra healthfile\[prometheus\]\): pip install prometheus_client$"
    ):
        healthfile.AsyncHealthService(
            tmp_path / "app.db",
            health_file=tmp_path / "health.json",
            prometheus_file=tmp_path / "app.prom",
        )


def test_construction_without_prometheus_file_needs_no_prometheus_client(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without prometheus_file, a missing prometheus_client is of no concern."""
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    service = healthfile.AsyncHealthService(tmp_path / "app.db", health_file=tmp_path / "h.json")
    assert service.prometheus_file is None


def test_run_passes_prometheus_file_from_option_or_environment(
    started_with: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--prometheus-file, else HEALTHFILE_PROMETHEUS_FILE, else None reaches the service."""
    assert main(["run"]) == 0
    monkeypatch.setenv("HEALTHFILE_PROMETHEUS_FILE", str(tmp_path / "env.prom"))
    assert main(["run"]) == 0
    (tmp_path / "cli.prom").write_text("")  # an existing file is replaced, as any file is
    assert main(["run", "--prometheus-file", str(tmp_path / "cli.prom")]) == 0
    assert [options["prometheus_file"] for options in started_with] == [
        None,
        str(tmp_path / "env.prom"),
        str(tmp_path / "cli.prom"),
    ]
    # The options are keyword arguments of AsyncHealthService.
    options = dict(started_with[-1])
    del options["verbose"]
    service = healthfile.AsyncHealthService(options.pop("database"), **options)
    assert service.prometheus_file == tmp_path / "cli.prom"


@pytest.mark.parametrize("via_environment", [False, True])
def test_run_prometheus_file_that_is_a_directory_exits_2(
    started_with: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    via_environment: bool,
) -> None:
    """A directory as --prometheus-file (or its variable) exits 2 with one line."""
    argv = ["run"]
    if via_environment:
        monkeypatch.setenv("HEALTHFILE_PROMETHEUS_FILE", str(tmp_path))
    else:
        argv += ["--prometheus-file", str(tmp_path)]
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "is a directory" in err
    assert ("HEALTHFILE_PROMETHEUS_FILE" in err) is via_environment
    assert started_with == []


@needs_fifos
def test_run_prometheus_file_that_is_a_fifo_exits_2(
    started_with: list[dict[str, Any]], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A FIFO as --prometheus-file is refused (exit 2): it is not a regular file."""
    fifo = tmp_path / "app.prom"
    os.mkfifo(fifo)
    with pytest.raises(SystemExit) as raised:
        main(["run", "--prometheus-file", str(fifo)])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "is not a regular file" in err
    assert started_with == []


def test_run_prometheus_file_without_prometheus_client_exits_2_with_one_line(
    started_with: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """`healthfile run --prometheus-file` without the extra says what to install, exit 2."""
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(SystemExit) as raised:
        main(["run", "--prometheus-file", str(tmp_path / "app.prom")])
    assert raised.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "healthfile run: error: --prometheus-file needs prometheus_client (the "
        "extra healthfile[prometheus]): pip install prometheus_client\n"
    )
    assert started_with == []


def test_healthfile_run_keeps_the_textfile_until_sigterm(database: Path, tmp_path: Path) -> None:
    """`healthfile run` with HEALTHFILE_PROMETHEUS_FILE keeps the textfile, stopped at SIGTERM."""
    health_file = tmp_path / "health.json"
    textfile = tmp_path / "textfile" / "app.prom"
    environ = {
        name: value for name, value in os.environ.items() if not name.startswith("HEALTHFILE_")
    }
    environ["HEALTHFILE_PROMETHEUS_FILE"] = str(textfile)
    options = ["--health-file", str(health_file), "--interval", "0.2", "--app-version", "7.0"]
    process = subprocess.Popen(
        [sys.executable, "-m", "healthfile", "run", "--database", str(database), *options],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(textfile.exists, "the textfile")
        wait_until(lambda: read_document(health_file)["sequence"] >= 3, "three cycles")
        samples = read_samples(textfile)
        assert samples[("healthfile_up", ())] == 1.0
        info = (("api_version", "v1"), ("app_version", "7.0"))
        assert samples[("healthfile_info", info)] == 1.0
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=DEADLINE) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert_textfile_matches(textfile, health_file)
    assert read_samples(textfile)[("healthfile_status", (("status", "stopped"),))] == 1.0
