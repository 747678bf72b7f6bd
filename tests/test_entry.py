"""The console script's fast path for `healthfile check` (src/healthfile/_entry.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _pytest.capture import CaptureResult

from healthfile import _cli, _entry

ONLINE = {
    "status": "online",
    "database": "connected",
    "timestamp": "2026-01-01T00:00:00Z",
    "app_version": "1.0.0",
    "api_version": "v1",
    "interval_seconds": 30.0,
    "expires_at": "2999-01-01T00:00:00Z",
    "sequence": 1,
    "started_at": "2026-01-01T00:00:00Z",
    "pid": 1,
    "checks": {},
}


@pytest.fixture
def health_file(tmp_path: Path) -> Path:
    """A valid, fresh, online health file."""
    path = tmp_path / "health.json"
    path.write_text(json.dumps(ONLINE), encoding="utf-8")
    return path


ARGUMENT_LISTS = [
    [],
    ["--nagios"],
    ["--json"],
    ["--allow-degraded", "--nagios"],
    ["--max-age", "60"],
    ["--max-age=0.5"],
    ["--max-age", "0"],
    ["--max-age", "nan"],
    ["--max-age", "abc"],
    ["--max-age"],
    ["--max", "60"],
    ["--unknown"],
    ["--nagios", "--max-age", "-1"],
    ["--health-file", ""],
    ["extra"],
]


def on_both_paths(
    arguments: list[str], capsys: pytest.CaptureFixture[str]
) -> list[tuple[int, CaptureResult[str]]]:
    """``healthfile check ARGUMENTS`` through the fast path, then through argparse: each one's
    exit status and what it printed."""
    outcomes = []
    for main in (_entry.main, _cli.main):
        try:
            status = main(["check", *arguments])
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else 1
        outcomes.append((status, capsys.readouterr()))
    return outcomes


@pytest.mark.parametrize("arguments", ARGUMENT_LISTS, ids=" ".join)
def test_fast_path_answers_exactly_as_the_full_parser(
    arguments: list[str],
    health_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever the command line, the console script prints and exits as argparse's path does."""
    monkeypatch.setenv("HEALTHFILE_HEALTH_FILE", str(health_file))
    frozen = time.time()  # both paths see the same second, so their ages read alike
    monkeypatch.setattr(time, "time", lambda: frozen)
    outcomes = on_both_paths(arguments, capsys)
    assert outcomes[0] == outcomes[1]


def check_entry(status: str, output: str | None) -> dict[str, object]:
    """One check's entry in a health file."""
    return {
        "status": status,
        "output": output,
        "duration_ms": 1.5,
        "consecutive_failures": 0 if status == "pass" else 2,
        "last_success": None,
    }


DEGRADED = {
    **ONLINE,
    "status": "degraded",
    "database": "disconnected",
    "checks": {
        "database": check_entry("fail", "OperationalError: unable to open database file"),
        "event_loop": check_entry("pass", None),
        "heartbeat": check_entry("warn", "last beat 1.5 s ago"),
    },
}

SELECTION_LISTS = [
    ["--only", "event_loop"],
    ["--only=event_loop,heartbeat"],
    ["--only", "event_loop", "--only", "heartbeat", "--nagios"],
    ["--only", " event_loop , ,event_loop"],
    ["--only", "event_loop", "--json"],
    ["--only", "event_loop,heartbeat", "--nagios"],
    ["--only", "heartbeat", "--allow-degraded"],
    ["--only", "no_such_check", "--nagios"],
    ["--ignore", "database"],
    ["--ignore=database,heartbeat", "--nagios"],
    ["--ignore", "cache"],
    ["--only", "event_loop", "--ignore", "database"],
    ["--only", "event_loop", "--ignore", "database", "--nagios"],
    ["--only", ""],
    ["--only", ","],
    ["--only"],
    ["--only", "--nagios"],
    ["--ignore", ",", "--nagios"],
    ["--group", "live"],
    ["--group=live", "--nagios"],
    ["--group", "live", "--group", "ready", "--json"],
    ["--group", "redy", "--nagios"],
    ["--group", "live", "--ignore", "heartbeat"],
    ["--group", "live", "--only", "heartbeat"],
    ["--group", ""],
    ["--group"],
]


@pytest.mark.parametrize("arguments", SELECTION_LISTS, ids=" ".join)
def test_fast_path_judges_only_and_ignore_as_the_full_parser(
    arguments: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--only/--ignore/--group, valid or not, alone or together, answer alike on both paths."""
    path = tmp_path / "health.json"
    path.write_text(json.dumps(DEGRADED), encoding="utf-8")
    monkeypatch.setenv("HEALTHFILE_HEALTH_FILE", str(path))
    frozen = time.time()
    monkeypatch.setattr(time, "time", lambda: frozen)
    outcomes = on_both_paths(arguments, capsys)
    assert outcomes[0] == outcomes[1]


def test_fast_path_parses_only_and_ignore_itself() -> None:
    """A well-formed --only/--ignore stays on the fast path; both together go to argparse."""
    assert _entry._parse_check(["--only", "a,b", "--only=b, c"], {}) == (
        "data/health.json",
        None,
        {"allow_degraded": False, "nagios": False, "as_json": False, "only": ("a", "b", "c")},
    )
    parsed = _entry._parse_check(["--ignore", "cache"], {})
    assert parsed is not None
    assert parsed[2]["ignore"] == ("cache",)
    assert _entry._parse_check(["--only", "a", "--ignore", "b"], {}) is None
    parsed = _entry._parse_check(["--group", "live,ready", "--group", "live"], {})
    assert parsed is not None
    assert parsed[2]["groups"] == ("live", "ready")
    assert _entry._parse_check(["--only", "a", "--group", "b"], {}) is None


@pytest.mark.parametrize(
    "arguments", [[], ["--nagios"], ["--json"], ["--max-age", "120"]], ids=" ".join
)
def test_fast_path_judges_a_report_from_the_future_as_the_full_parser(
    arguments: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A report dated an hour ahead is a clock problem on both paths, in the same words."""
    frozen = time.time()
    ahead = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(frozen + 3600))
    path = tmp_path / "health.json"
    path.write_text(json.dumps({**ONLINE, "timestamp": ahead}), encoding="utf-8")
    monkeypatch.setenv("HEALTHFILE_HEALTH_FILE", str(path))
    monkeypatch.setattr(time, "time", lambda: frozen)
    outcomes = on_both_paths(arguments, capsys)
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == (3 if "--nagios" in arguments else 1)
    assert "clock" in outcomes[0][1].out


def test_fast_path_takes_the_file_from_the_option_over_the_environment(
    health_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--health-file wins over HEALTHFILE_HEALTH_FILE, as in the full parser."""
    monkeypatch.setenv("HEALTHFILE_HEALTH_FILE", str(tmp_path / "missing.json"))
    assert _entry._parse_check(["--health-file", str(health_file)], {}) == (
        str(health_file),
        None,
        {"allow_degraded": False, "nagios": False, "as_json": False},
    )
    assert _entry.main(["check", f"--health-file={health_file}"]) == 0


def test_well_formed_check_does_not_import_argparse(health_file: Path) -> None:
    """A well-formed probe command line never imports argparse (nor asyncio)."""
    script = (
        "import sys\n"
        "from healthfile._entry import main\n"
        f"code = main(['check', '--health-file', {str(health_file)!r}, '--nagios'])\n"
        "print(sorted(m for m in ('argparse', 'asyncio') if m in sys.modules))\n"
        "raise SystemExit(code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"
    assert result.stdout.startswith("HEALTHFILE OK")


def test_other_commands_go_to_the_full_parser(capsys: pytest.CaptureFixture[str]) -> None:
    """`run --help` and no command at all are answered by argparse."""
    with pytest.raises(SystemExit) as exit_:
        _entry.main(["run", "--help"])
    assert exit_.value.code == 0
    assert "HEALTHFILE_INTERVAL" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        _entry.main([])
    assert exit_.value.code == 2
