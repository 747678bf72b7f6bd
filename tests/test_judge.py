"""``healthfile check``: every verdict, both exit conventions, files that are not health files."""

from __future__ import annotations

import calendar
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from healthfile._cli import main
from healthfile._judge import MAX_FILE_BYTES, judge, parse_timestamp, render
from helpers import ServiceFactory, needs_nonblocking_fifos, one_line, stamp

LINE_LIMIT = 4096  # what Docker and Consul keep of a probe's output

pytestmark = pytest.mark.usefixtures("clean_environment")


def check_result(
    status: str = "pass", output: str | None = None, duration_ms: float = 1.25
) -> dict[str, Any]:
    """One check's entry in the health file."""
    return {
        "status": status,
        "output": output,
        "duration_ms": duration_ms,
        "consecutive_failures": 0 if status == "pass" else 1,
        "last_success": None if status != "pass" else stamp(time.time()),
    }


def report(
    status: str = "online",
    *,
    age: float = 2.0,
    expires_in: float = 60.0,
    checks: dict[str, dict[str, Any]] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A contract-v1 health report made ``age`` seconds ago, expiring ``expires_in`` from now."""
    now = time.time()
    data: dict[str, Any] = {
        "status": status,
        "database": "connected",
        "timestamp": stamp(now - age),
        "app_version": "1.2.3",
        "api_version": "v1",
        "interval_seconds": 30.0,
        "expires_at": stamp(math.ceil(now + expires_in)),
        "sequence": 7,
        "started_at": stamp(now - 600),
        "pid": 4242,
        "checks": {"database": check_result()} if checks is None else checks,
    }
    data.update(overrides)
    return data


WriteFile = Callable[..., Path]


@pytest.fixture
def write(tmp_path: Path) -> WriteFile:
    """Write a health file (a dict as 2-space JSON, or raw text/bytes) and return its path."""

    def writer(content: dict[str, Any] | str | bytes, name: str = "health.json") -> Path:
        path = tmp_path / name
        if isinstance(content, dict):
            text = json.dumps(content, indent=2, ensure_ascii=False)
            path.write_text(text + "\n", encoding="utf-8")
        elif isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
        return path

    return writer


def check(path: Path | str, capsys: pytest.CaptureFixture[str], *options: str) -> tuple[int, str]:
    """Run ``healthfile check`` in-process; return its exit status and its one output line."""
    try:
        status: object = main(["check", "--health-file", str(path), *options])
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    assert isinstance(status, int)
    assert err == ""
    return status, probe_line(out)


def probe_line(out: str) -> str:
    """Assert ``out`` is exactly one line, under 4 KiB, without a traceback; return it."""
    assert len(out.encode("utf-8")) < LINE_LIMIT
    return one_line(out)


def degraded_with(status: str) -> dict[str, Any]:
    """A degraded report whose disk check reads ``status``."""
    return report(
        "degraded",
        checks={"database": check_result(), "disk": check_result(status, "3% free")},
    )


# (name, file content or None for a missing file, verdict, default exit,
#  default exit with --allow-degraded, Nagios state, Nagios exit)
VERDICTS: list[tuple[str, Callable[[], dict[str, Any] | str | None], str, int, int, str, int]] = [
    ("online", lambda: report("online"), "online", 0, 0, "OK", 0),
    ("starting", lambda: report("starting"), "starting", 0, 0, "WARNING", 1),
    # Written by a writer before criticality: degraded is degraded, whatever its checks say.
    ("degraded-warn", lambda: degraded_with("warn"), "degraded", 1, 0, "CRITICAL", 2),
    ("degraded-fail", lambda: degraded_with("fail"), "degraded", 1, 0, "CRITICAL", 2),
    ("stopped", lambda: report("stopped"), "stopped", 1, 1, "CRITICAL", 2),
    ("stale", lambda: report("online", age=100, expires_in=-40), "stale", 1, 1, "CRITICAL", 2),
    (
        "stale-degraded",
        lambda: report("degraded", age=100, expires_in=-40),
        "stale",
        1,
        1,
        "CRITICAL",
        2,
    ),
    ("missing", lambda: None, "missing", 1, 1, "UNKNOWN", 3),
    ("garbage", lambda: "this is not JSON\n", "invalid", 1, 1, "UNKNOWN", 3),
    ("foreign", lambda: '{"status": "ok"}\n', "invalid", 1, 1, "UNKNOWN", 3),
]


@pytest.mark.parametrize(
    ("content", "verdict", "code", "code_allowing_degraded"),
    [pytest.param(c, v, d, a, id=n) for n, c, v, d, a, _, _ in VERDICTS],
)
def test_default_convention_exit_codes(
    write: WriteFile,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: Callable[[], dict[str, Any] | str | None],
    verdict: str,
    code: int,
    code_allowing_degraded: int,
) -> None:
    """Docker/Kubernetes: 0 online or starting, else 1; --allow-degraded passes degraded."""
    made = content()
    path = tmp_path / "absent.json" if made is None else write(made)
    status, line = check(path, capsys)
    assert status == code
    assert line.startswith(("not a health file", verdict))
    status, _ = check(path, capsys, "--allow-degraded")
    assert status == code_allowing_degraded


@pytest.mark.parametrize(
    ("content", "state", "code"),
    [pytest.param(c, s, x, id=n) for n, c, _, _, _, s, x in VERDICTS],
)
def test_nagios_convention_states_and_exit_codes(
    write: WriteFile,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    content: Callable[[], dict[str, Any] | str | None],
    state: str,
    code: int,
) -> None:
    """--nagios: OK 0 online; WARNING 1 starting or warnings only; CRITICAL 2; UNKNOWN 3."""
    made = content()
    path = tmp_path / "absent.json" if made is None else write(made)
    frozen = time.time()  # both runs see the same second, so their ages read alike
    monkeypatch.setattr(time, "time", lambda: frozen)
    status, line = check(path, capsys, "--nagios")
    assert status == code
    assert line.startswith(f"HEALTHFILE {state} - ")
    # --allow-degraded belongs to the default convention only.
    assert check(path, capsys, "--nagios", "--allow-degraded") == (status, line)


@pytest.mark.parametrize(
    ("content", "verdict", "code"),
    [pytest.param(c, v, d, id=n) for n, c, v, d, _, _, _ in VERDICTS],
)
def test_json_prints_the_verdict_as_one_object(
    write: WriteFile,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: Callable[[], dict[str, Any] | str | None],
    verdict: str,
    code: int,
) -> None:
    """--json prints one object: verdict, status, exit_code, age_seconds, reason, health_file."""
    made = content()
    path = tmp_path / "absent.json" if made is None else write(made)
    status, line = check(path, capsys, "--json")
    document = json.loads(line)
    assert set(document) == {
        "verdict",
        "status",
        "exit_code",
        "age_seconds",
        "reason",
        "health_file",
    }
    assert document["verdict"] == verdict
    assert document["exit_code"] == status == code
    assert document["health_file"] == str(path)
    assert document["reason"]
    if isinstance(made, dict):
        assert document["status"] == made["status"]
        assert isinstance(document["age_seconds"], int)
        assert 0 <= document["age_seconds"] <= 200
    else:
        assert document["status"] is None
        assert document["age_seconds"] is None


def test_json_with_nagios_reports_the_nagios_exit_code(
    write: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json --nagios prints JSON and exits with the Nagios code (starting: 1)."""
    status, line = check(write(report("starting")), capsys, "--json", "--nagios")
    assert status == 1
    assert json.loads(line)["exit_code"] == 1


def test_online_line_names_status_database_version_and_age(
    write: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """A healthy file's line says online, the database state, the app version and the age."""
    status, line = check(write(report("online", age=5)), capsys)
    assert status == 0
    assert re.fullmatch(
        r"online: database connected, app_version 1\.2\.3, updated [4-9] s ago", line
    ), line


def test_degraded_line_lists_the_checks_that_do_not_pass(
    write: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """A degraded verdict names each check that is not passing, with its output."""
    data = report(
        "degraded",
        database="disconnected",
        checks={
            "database": check_result("fail", "OperationalError: unable to open database file"),
            "disk": check_result("warn", "3% free"),
            "cache": check_result("pass"),
        },
    )
    status, line = check(write(data), capsys, "--nagios")
    assert status == 2
    assert "database disconnected" in line
    assert "database fail: OperationalError: unable to open database file" in line
    assert "disk warn: 3% free" in line
    assert "cache" not in line.split(" | ")[0]


def test_stale_once_now_is_past_expires_at(write: WriteFile) -> None:
    """The file is fresh up to its expires_at second and stale right after it."""
    data = report("online")
    path = write(data)
    expires = parse_timestamp(data["expires_at"])
    assert expires is not None
    assert judge(path, now=expires).verdict == "online"
    late = judge(path, now=expires + 0.5)
    assert late.verdict == "stale"
    assert late.status == "online"
    assert f"expired 0 s ago at {data['expires_at']}" in late.reason


def test_stale_by_max_age_before_expires_at(
    write: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """--max-age makes an old report stale although its expires_at is still ahead."""
    path = write(report("online", age=100, expires_in=3600))
    assert check(path, capsys)[0] == 0
    status, line = check(path, capsys, "--max-age", "60")
    assert status == 1
    assert "older than --max-age 60 s" in line
    status, line = check(path, capsys, "--max-age", "60", "--nagios")
    assert (status, line[:21]) == (2, "HEALTHFILE CRITICAL -")
    assert check(path, capsys, "--max-age", "3600")[0] == 0


def test_stale_overrides_allow_degraded(
    write: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """--allow-degraded never passes a degraded report that has gone stale."""
    path = write(report("degraded", age=100, expires_in=-40))
    assert check(path, capsys, "--allow-degraded")[0] == 1


def test_stopped_is_reported_as_stopped_even_when_expired(
    write: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stopped service's file reads stopped, not just stale, however old it is."""
    status, line = check(write(report("stopped", age=900, expires_in=-800)), capsys)
    assert status == 1
    assert line.startswith("stopped: the service wrote its final report 9")


def test_a_timestamp_in_the_future_is_said_so(write: WriteFile) -> None:
    """A report from a clock ahead of ours reads 'in the future' and is judged on expires_at."""
    verdict = judge(write(report("online", age=-30, expires_in=90)))
    assert verdict.verdict == "online"
    assert verdict.age is not None
    assert verdict.age < 0
    assert "s in the future" in verdict.reason


def test_missing_file_and_missing_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file or directory that does not exist is 'missing', exit 1 or UNKNOWN 3."""
    for path in (tmp_path / "health.json", tmp_path / "no" / "such" / "health.json"):
        status, line = check(path, capsys)
        assert (status, line) == (1, f"missing: no health file at {path}")
        status, line = check(path, capsys, "--nagios")
        assert (status, line) == (3, f"HEALTHFILE UNKNOWN - missing: no health file at {path}")


def test_dangling_symlink_is_missing(tmp_path: Path) -> None:
    """A symlink to nothing is a missing file."""
    link = tmp_path / "health.json"
    link.symlink_to(tmp_path / "gone.json")
    assert judge(link).verdict == "missing"


@needs_nonblocking_fifos
def test_directory_fifo_and_path_through_a_file_are_unreadable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A directory, a FIFO (never waited on) or a path through a regular file is unreadable."""
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    plain = tmp_path / "plain"
    plain.write_text("x")
    cases = {
        tmp_path: "is a directory",
        fifo: "is not a regular file",
        plain / "health.json": "Not a directory",
    }
    for path, problem in cases.items():
        status, line = check(path, capsys, "--nagios")
        assert status == 3
        assert line.startswith(f"HEALTHFILE UNKNOWN - unreadable: {path}")
        assert line.endswith(problem)


def test_permission_denied_is_unreadable(tmp_path: Path) -> None:
    """A file the probe may not read is 'unreadable: Permission denied', exit 1 (also as root)."""
    path = tmp_path / "health.json"
    path.write_text(json.dumps(report()))
    path.chmod(0)
    command = [sys.executable, "-m", "healthfile", "check", "--health-file", str(path)]
    if os.geteuid() == 0:
        # Root reads anything; without CAP_DAC_OVERRIDE it obeys the mode like anyone else.
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root and setpriv (util-linux) is not installed")
        command = [
            setpriv,
            "--bounding-set=-dac_override,-dac_read_search",
            "--inh-caps=-dac_override,-dac_read_search",
            *command,
        ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done
    assert done.stdout == f"unreadable: {path}: Permission denied\n"
    assert done.stderr == ""


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        pytest.param(b"", "is empty", id="empty"),
        pytest.param(b"  \n\n", "is empty", id="blank"),
        pytest.param(b"garbage \x00\x01", "invalid JSON at line 1 column 1", id="garbage"),
        pytest.param(b"\xff\xfe{}", "is not UTF-8 text", id="not-utf8"),
        pytest.param(b"[1, 2]", "the JSON is an array, not an object", id="array"),
        pytest.param(b'"online"', "the JSON is a string, not an object", id="string"),
        pytest.param(b"null", "the JSON is null, not an object", id="null"),
        pytest.param(b"{}", "missing keys: status, database, timestamp", id="empty-object"),
    ],
)
def test_files_that_are_not_health_files(
    write: WriteFile, capsys: pytest.CaptureFixture[str], content: bytes, problem: str
) -> None:
    """Empty, blank, garbage, non-UTF-8 and non-object files get a clear one-line verdict."""
    path = write(content)
    status, line = check(path, capsys)
    assert status == 1
    assert line.startswith(f"not a health file: {path}")
    assert problem in line
    assert check(path, capsys, "--nagios")[0] == 3


def test_truncated_file_is_said_to_be_truncated(
    write: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """A health file cut short (as a non-atomic writer leaves it) reads 'truncated JSON'."""
    text = json.dumps(report(), indent=2)
    for cut in (1, len(text) // 3, len(text) - 1):
        path = write(text[:cut])
        status, line = check(path, capsys, "--nagios")
        assert status == 3
        assert "truncated JSON" in line, line


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        pytest.param({"status": "ok"}, 'status is "ok", not one of', id="status-unknown"),
        pytest.param({"status": 1}, "status is 1, not one of", id="status-number"),
        pytest.param({"database": "up"}, 'database is "up"', id="database-unknown"),
        pytest.param(
            {"timestamp": "2024-05-01 12:00:00"},
            'timestamp is "2024-05-01 12:00:00"',
            id="ts-space",
        ),
        pytest.param({"timestamp": "2024-05-01T12:00:00+00:00"}, "not a UTC time", id="ts-offset"),
        pytest.param({"expires_at": 1714560000}, "expires_at is 1714560000", id="expires-number"),
        pytest.param({"started_at": "2024-02-30T00:00:00Z"}, "started_at", id="feb-30"),
        pytest.param({"api_version": "v2"}, 'api_version is "v2", not "v1"', id="api-v2"),
        pytest.param({"app_version": ""}, 'app_version is ""', id="version-empty"),
        pytest.param({"interval_seconds": "30"}, "interval_seconds is a string", id="interval-str"),
        pytest.param(
            {"interval_seconds": 0}, "interval_seconds is 0, out of range", id="interval-0"
        ),
        pytest.param({"sequence": True}, "sequence is a boolean", id="sequence-bool"),
        pytest.param({"pid": 1.5}, "pid is a number, not an integer", id="pid-float"),
        pytest.param({"pid": {}}, "pid is an object, not an integer", id="pid-object"),
        pytest.param({"sequence": 0}, "sequence is 0, below 1", id="sequence-0"),
        pytest.param({"status": ["online"]}, "status is an array, not one of", id="status-array"),
        pytest.param({"checks": []}, "checks is an array, not an object", id="checks-array"),
        pytest.param({"checks": {"db": "pass"}}, 'check "db" is a string', id="check-string"),
        pytest.param(
            {"checks": {"db": {"status": "pass"}}}, 'check "db" lacks keys: output', id="check-keys"
        ),
        pytest.param(
            {"checks": {"db": check_result("ok")}}, 'check "db": status is "ok"', id="check-status"
        ),
        pytest.param(
            {"checks": {"db": check_result(duration_ms=-1)}}, "duration_ms is -1", id="negative-ms"
        ),
        pytest.param(
            {"checks": {"db": {**check_result(), "output": 3}}},
            "output is a number",
            id="output-num",
        ),
        pytest.param({"checks": {"": check_result()}}, "a check has an empty name", id="no-name"),
    ],
)
def test_foreign_json_is_not_the_contract(
    write: WriteFile, capsys: pytest.CaptureFixture[str], change: dict[str, Any], problem: str
) -> None:
    """Valid JSON with a wrong type, a missing key or an unknown value is not a health file."""
    path = write(report(**change))
    status, line = check(path, capsys, "--nagios")
    assert status == 3
    assert line.startswith(f"HEALTHFILE UNKNOWN - not a health file: {path}: "), line
    assert problem in line, line
    assert check(path, capsys)[0] == 1


def test_missing_key_is_named(write: WriteFile, capsys: pytest.CaptureFixture[str]) -> None:
    """A report without expires_at names the missing key."""
    data = report()
    del data["expires_at"]
    status, line = check(write(data), capsys)
    assert status == 1
    assert line.endswith(": missing keys: expires_at")


def test_non_finite_numbers_are_not_the_contract(
    write: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """NaN and Infinity, which Python's json accepts, are out of range."""
    text = json.dumps(report(interval_seconds=float("nan")))
    assert "NaN" in text
    status, line = check(write(text), capsys)
    assert status == 1
    assert "interval_seconds is NaN, out of range" in line


def test_unknown_extra_keys_are_tolerated(write: WriteFile) -> None:
    """A report with a key the contract does not name is still judged (forward compatible)."""
    assert judge(write(report("online", region="eu-1"))).verdict == "online"


def test_files_with_and_without_app_name_are_both_v1(write: WriteFile) -> None:
    """app_name was added to v1: files written before it and files with it are both judged."""
    assert "app_name" not in report()
    assert judge(write(report("online"))).verdict == "online"
    assert judge(write(report("online", app_name="billing"))).verdict == "online"


@pytest.mark.parametrize("value", ["", "  ", 3, None])
def test_app_name_that_is_not_a_name_is_not_the_contract(
    write: WriteFile, value: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """When present, app_name must be a non-empty string, as the schema says."""
    status, line = check(write(report("online", app_name=value)), capsys)
    assert status == 1
    assert line.startswith("not a health file: ")
    assert "app_name is " in line


def test_huge_file_is_judged_without_reading_it(tmp_path: Path) -> None:
    """A 10 GiB (sparse) file is 'larger than 65536 bytes' at once: it is never read whole."""
    path = tmp_path / "health.json"
    with path.open("wb") as handle:
        handle.truncate(10 * 1024**3)
    verdict = judge(path)
    assert verdict.verdict == "invalid"
    assert verdict.reason == (
        f"not a health file: {path} is larger than {MAX_FILE_BYTES} bytes ({10 * 1024**3} bytes)"
    )


def test_file_whose_size_lies_is_still_read_only_up_to_the_bound() -> None:
    """A /proc file (size 0, endless content) is cut at 64 KiB and judged too large."""
    path = Path("/proc/kallsyms")
    if not path.is_file():
        pytest.skip("no /proc/kallsyms here")
    assert path.stat().st_size == 0
    verdict = judge(path)
    assert verdict.reason == f"not a health file: {path} is larger than {MAX_FILE_BYTES} bytes"


def test_read_error_after_open_is_unreadable() -> None:
    """A read that fails with EIO (/proc/self/mem at offset 0) is 'unreadable', not a crash."""
    path = Path("/proc/self/mem")
    if not path.is_file():
        pytest.skip("no /proc/self/mem here")
    verdict = judge(path)
    assert verdict.verdict == "unreadable"
    assert verdict.reason == f"unreadable: {path}: Input/output error"
    assert repr(verdict) == "<Verdict unreadable status=None age=None>"


def test_file_just_over_the_limit_is_too_large(write: WriteFile) -> None:
    """A file one byte over 64 KiB is too large; one at 64 KiB is read."""
    base = json.dumps(report())
    padding = MAX_FILE_BYTES - len(base)
    assert judge(write(base + " " * padding)).verdict == "online"
    assert "is larger than" in judge(write(base + " " * (padding + 1))).reason


@pytest.mark.parametrize("opening", ["[", '{"a": '])
def test_deeply_nested_json_is_a_clear_verdict(
    write: WriteFile, capsys: pytest.CaptureFixture[str], opening: str
) -> None:
    """JSON nested deeper than the parser can go is 'nested too deeply', not a RecursionError."""
    depth = (MAX_FILE_BYTES - 10) // len(opening)
    path = write(opening * depth)
    status, line = check(path, capsys, "--nagios")
    assert status == 3
    assert line == f"HEALTHFILE UNKNOWN - not a health file: {path} holds JSON nested too deeply"


def test_overlong_integer_is_not_a_health_file(
    write: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 10,000-digit integer (over Python's int parsing limit) is a verdict, not a traceback."""
    text = json.dumps(report()).replace('"pid": 4242', '"pid": ' + "9" * 10_000)
    status, line = check(write(text), capsys)
    assert status == 1
    assert line.startswith("not a health file: ")


def many_failing_checks(count: int, output: str) -> dict[str, Any]:
    """A degraded report with ``count`` failing checks, each with ``output``."""
    checks = {f"check-{n:03d}": check_result("fail", output) for n in range(count)}
    return report("degraded", checks=checks)


@pytest.mark.parametrize("mode", [(), ("--nagios",), ("--json",)])
def test_output_is_one_line_under_4_kib_however_many_checks_fail(
    write: WriteFile, capsys: pytest.CaptureFixture[str], mode: tuple[str, ...]
) -> None:
    """60 failing checks with 250-character outputs still print one line under 4 KiB."""
    output = "OperationalError: " + "é" * 230 + "\nsecond line\ttab"
    data = many_failing_checks(60, output)
    path = write(data)
    assert path.stat().st_size < MAX_FILE_BYTES
    status, line = check(path, capsys, *mode)  # probe_line() asserts the line and its size
    assert status in (1, 2)
    if mode == ("--json",):
        assert json.loads(line)["reason"].endswith("…")
    elif mode == ("--nagios",):
        summary, perfdata = line.split(" | ")
        assert summary.endswith("…")
        assert perfdata.startswith("age=")
        assert "check-000_duration=1.25ms" in perfdata
    else:
        assert line.endswith("…")


def test_check_output_newlines_and_pipes_never_break_the_line(
    write: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """Newlines in an output become spaces; a '|' cannot start Nagios perfdata early."""
    data = degraded_with("fail")
    data["checks"]["disk"]["output"] = "first\nsecond\r\nthird | fourth\u2028fifth"
    status, line = check(write(data), capsys, "--nagios")
    assert status == 2
    assert line.count("|") == 1
    summary, perfdata = line.split(" | ")
    assert "first second  third / fourth fifth" in summary
    assert perfdata == "age=2s database_duration=1.25ms disk_duration=1.25ms"


def test_nagios_perfdata_labels_are_quoted(
    write: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """Check names with spaces, quotes or '=' become valid perfdata labels."""
    checks = {
        "database": check_result(duration_ms=0.5),
        "disk space": check_result(duration_ms=12),
        "it's": check_result(duration_ms=0.0004),
        "a=b|c": check_result(duration_ms=3.25),
    }
    status, line = check(write(report("online", age=3, checks=checks)), capsys, "--nagios")
    assert status == 0
    perfdata = line.split(" | ", 1)[1]
    assert perfdata == (
        "age=3s database_duration=0.5ms 'disk space_duration'=12ms "
        "'it''s_duration'=0ms a_b_c_duration=3.25ms"
    )
    # Each item parses as the Nagios plugin guidelines define perfdata.
    item = re.compile(r"('(?:[^'=]|'')+'|[^'= ]+)=-?[0-9.]+(s|ms)")
    assert re.fullmatch(rf"{item.pattern}( {item.pattern})*", perfdata), perfdata


def test_secrets_in_check_outputs_are_redacted_in_every_format(
    write: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """A password in a check's output (from a file another writer made) is printed as ***."""
    data = degraded_with("fail")
    data["checks"]["disk"]["output"] = (
        "cannot connect to postgres://app:hunter2@db:5432/app; password=hunter2 token: s3cr3t"
    )
    for mode in ((), ("--nagios",), ("--json",)):
        _, line = check(write(data), capsys, *mode)
        assert "hunter2" not in line
        assert "s3cr3t" not in line
        assert "postgres://app:***@db" in line
        assert "password=***" in line


def test_a_missing_relative_health_file_is_shown_absolute_too_in_one_short_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """ "missing" names the relative path as given and the absolute one it was read at."""
    deep = tmp_path
    while len(str(deep)) < 4000:  # a working directory about 4000 characters deep
        deep /= "d" * min(200, 4000 - len(str(deep)))
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert main(["check", "--health-file", "data/health.json"]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"missing: no health file at data/health.json ({tmp_path}")
    assert out.count("\n") == 1
    assert len(out.encode()) < 4096  # cut to the line's bound, as every verdict line is
    assert main(["check", "--health-file", str(tmp_path / "absent.json")]) == 1
    assert capsys.readouterr().out == f"missing: no health file at {tmp_path / 'absent.json'}\n"


def test_health_file_from_environment_and_default(
    write: WriteFile,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without --health-file, HEALTHFILE_HEALTH_FILE is judged, else data/health.json."""
    monkeypatch.chdir(tmp_path)
    status = main(["check"])
    assert status == 1
    absolute = tmp_path / "data" / "health.json"
    assert capsys.readouterr().out == f"missing: no health file at data/health.json ({absolute})\n"
    (tmp_path / "data").mkdir()
    write(report("online"), "data/health.json")
    assert main(["check"]) == 0
    stopped = write(report("stopped"), "elsewhere.json")
    monkeypatch.setenv("HEALTHFILE_HEALTH_FILE", str(stopped))
    assert main(["check"]) == 1
    assert main(["check", "--health-file", "data/health.json"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize(
    ("argv", "environ"),
    [
        (["--max-age", "soon"], {}),
        (["--max-age", "-5"], {}),
        (["--max-age", "0"], {}),
        (["--max-age", "nan"], {}),
        (["--health-file", " "], {}),
        ([], {"HEALTHFILE_HEALTH_FILE": ""}),
        (["--unknown"], {}),
    ],
)
def test_bad_options_exit_2_or_nagios_unknown(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    environ: dict[str, str],
) -> None:
    """A bad option exits 2 with one line on stderr; with --nagios it is UNKNOWN (3) on stdout."""
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as raised:
        main(["check", *argv])
    assert raised.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert re.match(r"healthfile( check)?: error: ", err), err
    assert err.count("\n") == 1
    with pytest.raises(SystemExit) as raised:
        main(["check", "--nagios", *argv])
    assert raised.value.code == 3
    out, err = capsys.readouterr()
    assert re.match(r"HEALTHFILE UNKNOWN - healthfile( check)?: error: ", out), out
    assert out.count("\n") == 1
    assert err == ""


@pytest.mark.asyncio
async def test_live_file_of_a_running_service_is_online_then_stopped(
    make_service: ServiceFactory, health_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The file a real service keeps is online (exit 0, OK) while it runs and stopped after."""
    service = make_service()
    await service.start()
    status, line = check(health_file, capsys, "--nagios")
    assert status == 0
    assert line.startswith("HEALTHFILE OK - online: database connected, app_version unknown")
    assert re.search(r" \| age=-?[0-9]+s database_duration=[0-9.]+ms$", line), line
    assert check(health_file, capsys)[0] == 0
    await service.stop()
    status, line = check(health_file, capsys, "--nagios")
    assert status == 2
    assert line.startswith("HEALTHFILE CRITICAL - stopped: ")


def test_console_script_judges_a_file(write: WriteFile) -> None:
    """The installed `healthfile check` script prints the verdict and exits with its code."""
    script = shutil.which("healthfile", path=str(Path(sys.executable).parent))
    assert script is not None
    path = write(degraded_with("warn"))
    done = subprocess.run(
        [script, "check", "--nagios", "--health-file", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout.startswith("HEALTHFILE CRITICAL - degraded: ")
    assert done.stderr == ""


def test_stdout_that_cannot_encode_the_line_gets_it_escaped(write: WriteFile) -> None:
    """With an ASCII-only stdout, non-ASCII output is escaped instead of a traceback."""
    data = degraded_with("fail")
    data["checks"]["disk"]["output"] = "plus que 3 % d\u2019espace libre"
    done = subprocess.run(
        [sys.executable, "-m", "healthfile", "check", "--health-file", str(write(data))],
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": "ascii"},
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr == b""
    assert done.stdout.endswith(b"disk fail: plus que 3 % d\\u2019espace libre\n")


def test_render_fits_every_verdict_in_the_byte_budget(write: WriteFile) -> None:
    """Multibyte text is cut on a character boundary, never mid-character."""
    data = many_failing_checks(60, "€" * 250)
    verdict = judge(write(data))
    every: list[dict[str, Any]] = [{}, {"nagios": True}, {"as_json": True}]
    for options in every:
        line = render(verdict, **options)
        encoded = line.encode("utf-8")
        assert len(encoded) < 4000
        assert encoded.decode("utf-8") == line


@given(
    st.datetimes(
        min_value=datetime(1, 1, 1),  # naive on purpose: read as UTC below
        max_value=datetime(9999, 12, 31, 23, 59, 59),
    )
)
def test_parse_timestamp_agrees_with_calendar_timegm(moment: datetime) -> None:
    """The probe's own timestamp arithmetic equals calendar.timegm for every valid time."""
    text = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if len(text) != 20:  # years below 1000 print with fewer digits on some platforms
        text = f"{moment.year:04d}" + text[text.index("-") :]
    assert parse_timestamp(text) == calendar.timegm(moment.replace(tzinfo=timezone.utc).timetuple())


@pytest.mark.parametrize(
    "text",
    [
        "2024-02-30T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-00-01T00:00:00Z",
        "2024-04-31T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T23:60:00Z",
        "2024-01-01T23:59:60Z",
        "2024-01-01T00:00:00z",
        "2024-01-01 00:00:00Z",
        "2024-1-01T00:00:00Z",
        "\uff12\uff10\uff12\uff14-01-01T00:00:00Z",  # fullwidth digits
        "+024-01-01T00:00:00Z",
        "2024-01-01T00:00:00.5Z",
        "",
        None,
        1704067200,
    ],
)
def test_parse_timestamp_rejects_what_is_not_the_contract_format(text: object) -> None:
    """Impossible dates, other formats, non-ASCII digits and non-strings are not timestamps."""
    assert parse_timestamp(text) is None


def test_parse_timestamp_handles_leap_days() -> None:
    """29 February exists in 2024 and 2000, not in 2100."""
    assert parse_timestamp("2024-02-29T12:00:00Z") == 1709208000
    assert parse_timestamp("2000-02-29T00:00:00Z") == 951782400
    assert parse_timestamp("2100-02-29T00:00:00Z") is None


# --- --only / --ignore: liveness and readiness from one file -------------------------------

# A worker whose database is gone but whose event loop and heartbeat are fine; the heartbeat
# merely late in the "late" variant.
LIVE_CHECKS = {
    "database": check_result("fail", "OperationalError: unable to open database file"),
    "event_loop": check_result(),
    "heartbeat": check_result(),
}
LATE_CHECKS = {**LIVE_CHECKS, "heartbeat": check_result("warn", "last beat 1.4 s ago")}
HUNG_CHECKS = {**LIVE_CHECKS, "heartbeat": check_result("fail", "last beat 9.0 s ago")}

# (file status, checks, options, verdict, exit code, with --allow-degraded, Nagios state)
SELECTIONS = [
    ("degraded", LIVE_CHECKS, ["--only", "event_loop,heartbeat"], "online", 0, 0, "OK"),
    ("degraded", LIVE_CHECKS, ["--ignore", "database"], "online", 0, 0, "OK"),
    ("degraded", LIVE_CHECKS, ["--only", "database"], "degraded", 1, 0, "CRITICAL"),
    ("degraded", LIVE_CHECKS, ["--ignore", "heartbeat"], "degraded", 1, 0, "CRITICAL"),
    ("degraded", LATE_CHECKS, ["--only", "event_loop,heartbeat"], "online", 0, 0, "WARNING"),
    ("degraded", HUNG_CHECKS, ["--only", "event_loop,heartbeat"], "degraded", 1, 0, "CRITICAL"),
    ("degraded", HUNG_CHECKS, ["--ignore", "database"], "degraded", 1, 0, "CRITICAL"),
    ("starting", LIVE_CHECKS, ["--only", "database"], "starting", 0, 0, "WARNING"),
    ("starting", LIVE_CHECKS, ["--only", "event_loop"], "online", 0, 0, "OK"),
    ("online", {}, ["--ignore", "cache"], "unknown_check", 1, 1, "UNKNOWN"),
    ("degraded", LIVE_CHECKS, ["--only", "event_loop,evnt_loop"], "unknown_check", 1, 1, "UNKNOWN"),
    ("degraded", LIVE_CHECKS, ["--ignore", "database,cache"], "unknown_check", 1, 1, "UNKNOWN"),
    ("stopped", LIVE_CHECKS, ["--only", "event_loop"], "stopped", 1, 1, "CRITICAL"),
    ("stopped", LIVE_CHECKS, ["--only", "no_such_check"], "stopped", 1, 1, "CRITICAL"),
]


@pytest.mark.parametrize(
    ("status", "checks", "options", "verdict", "code", "allowing", "state"), SELECTIONS
)
def test_only_and_ignore_judge_the_status_from_the_named_checks(
    write: WriteFile,
    capsys: pytest.CaptureFixture[str],
    status: str,
    checks: dict[str, dict[str, Any]],
    options: list[str],
    verdict: str,
    code: int,
    allowing: int,
    state: str,
) -> None:
    """The status comes from the judged checks alone: online if none fails (a warning is
    Nagios' WARNING), starting while the file says starting, else degraded; a named check
    the file lacks is unknown_check."""
    path = write(report(status, checks=checks))
    named = {options[0][2:]: split(options[1])}
    assert judge(path, only=named.get("only"), ignore=named.get("ignore")).verdict == verdict
    exit_status, line = check(path, capsys, *options)
    assert (exit_status, line.split(":")[0].replace(" ", "_")) == (code, verdict)
    assert check(path, capsys, *options, "--allow-degraded")[0] == allowing
    exit_status, line = check(path, capsys, *options, "--nagios")
    assert line.startswith(f"HEALTHFILE {state} - ")
    assert exit_status == ("OK", "WARNING", "CRITICAL", "UNKNOWN").index(state)
    exit_status, line = check(path, capsys, *options, "--json")
    assert json.loads(line)["verdict"] == verdict
    assert json.loads(line)["status"] == status


def split(text: str) -> tuple[str, ...]:
    """An --only/--ignore value as judge() takes it."""
    return tuple(text.split(","))


def test_stale_still_counts_under_only(
    write: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file past its expires_at is stale whichever checks are judged (a wedged app)."""
    path = write(report("online", expires_in=-10, checks=LIVE_CHECKS))
    assert check(path, capsys, "--only", "event_loop")[0] == 1
    status, line = check(path, capsys, "--only", "event_loop", "--nagios")
    assert (status, line.startswith("HEALTHFILE CRITICAL - stale: ")) == (2, True)
    status, line = check(path, capsys, "--only", "event_loop", "--max-age", "1")
    assert (status, line.startswith("stale: ")) == (1, True)


def test_contract_still_counts_for_checks_not_judged(
    write: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """A broken entry of a check left out of the judgement still makes the file invalid."""
    broken = {**LIVE_CHECKS, "database": {"status": "fine"}}
    status, line = check(write(report("degraded", checks=broken)), capsys, "--only", "event_loop")
    assert status == 1
    assert line.startswith("not a health file: ")


def test_selected_line_says_what_was_judged_and_what_the_file_says(
    write: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """The line names the judged checks, the file's own status when it differs, and only the
    judged checks' problems; perfdata holds only the judged checks."""
    path = write(report("degraded", checks=LATE_CHECKS))
    _, line = check(path, capsys, "--only", "event_loop")
    assert line.endswith(" (only event_loop; the file says degraded)"), line
    assert "OperationalError" not in line
    _, line = check(path, capsys, "--ignore", "database", "--nagios")
    assert (
        "(ignoring database; the file says degraded); heartbeat warn: last beat 1.4 s ago |" in line
    )
    assert "OperationalError" not in line
    assert line.endswith("event_loop_duration=1.25ms heartbeat_duration=1.25ms"), line


def test_unknown_check_names_what_the_file_holds(
    write: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelt --only never passes silently: the line names it and the checks there are."""
    path = write(report("online", checks=LIVE_CHECKS))
    status, line = check(path, capsys, "--only", "heartbeat,evnt_loop")
    assert status == 1
    assert line == (
        "unknown check: --only names evnt_loop, which the file does not hold "
        "(it holds database, event_loop, heartbeat; status online)"
    )


def test_names_are_split_on_commas_and_merged_when_repeated(
    write: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """Blanks around names and empty items are ignored; repeated options add up."""
    path = write(report("degraded", checks=HUNG_CHECKS))
    assert check(path, capsys, "--only", " event_loop , ")[0] == 0
    assert check(path, capsys, "--only", "event_loop", "--only", "heartbeat")[0] == 1
    assert check(path, capsys, "--ignore", "database", "--ignore", "heartbeat")[0] == 0


@pytest.mark.parametrize(
    "options",
    [
        ["--only", "event_loop", "--ignore", "database"],
        ["--only", ""],
        ["--only", " , "],
        ["--ignore"],
    ],
)
def test_bad_selection_exits_2_or_nagios_unknown(
    write: WriteFile, capsys: pytest.CaptureFixture[str], options: list[str]
) -> None:
    """--only with --ignore, or a value naming no check, is a usage error: 2, or UNKNOWN (3)."""
    path = str(write(report("online", checks=LIVE_CHECKS)))
    with pytest.raises(SystemExit) as exit_:
        main(["check", "--health-file", path, *options])
    out, err = capsys.readouterr()
    assert (exit_.value.code, out) == (2, "")
    assert err.startswith("healthfile check: error: "), err
    assert err.count("\n") == 1, err
    with pytest.raises(SystemExit) as exit_:
        main(["check", "--health-file", path, "--nagios", *options])
    out, err = capsys.readouterr()
    assert exit_.value.code == 3
    assert out.startswith("HEALTHFILE UNKNOWN - "), out
    assert out.count("\n") == 1, out


def test_judge_refuses_only_and_ignore_together(write: WriteFile) -> None:
    """The library call says so too, rather than picking one."""
    with pytest.raises(ValueError, match="--only and --ignore"):
        judge(write(report()), only=("a",), ignore=("b",))
