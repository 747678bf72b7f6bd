"""A hostile user's attacks on healthfile's promises: each must fail safe."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import healthfile
from healthfile import CheckResult, check
from healthfile._judge import MAX_FILE_BYTES, judge, render, run_check
from healthfile._limits import SHORTENED
from healthfile._redact import MAX_REDACT_CHARS, clean_output, redact
from helpers import ServiceFactory, read_report

pytestmark = pytest.mark.reliability


def _hostile(size: int) -> str:
    """Text of about ``size`` characters made to make a backtracking redaction pattern crawl."""
    parts = [
        "a" * (size // 6),  # one long word run
        " ",
        "password=" * (size // 60),
        " ",
        "x://" * (size // 40),
        " ",
        '"' * (size // 60),
        " ",
        "ab://u:" + "p" * (size // 12),  # a URL whose password never meets an @
        " ",
        "token='" + "q" * (size // 12),  # a quote never closed
        " ",
        "Bb1" * (size // 30),
    ]
    return "".join(parts)


def _best_time(call: Callable[[], object], repeat: int = 3) -> float:
    """The shortest of ``repeat`` timings of ``call`` (the least disturbed by a busy machine)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def test_redaction_of_1_mb_of_hostile_text_is_linear() -> None:
    """Redacting 1 MB of hostile text costs about ten times 100 kB of it, not a hundred times."""
    large, small = _hostile(1_000_000), _hostile(100_000)

    ratio = _best_time(lambda: redact(large, limit=len(large))) / (
        10 * _best_time(lambda: redact(small, limit=len(small)))
    )

    assert ratio < 4, f"1 MB took {ratio:.1f} times ten 100 kB runs: not linear"


def test_redaction_of_any_text_is_bounded() -> None:
    """1 MB of hostile text is cut before it is redacted: it costs what its first part costs."""
    huge = _hostile(1_000_000)
    bound = huge[:MAX_REDACT_CHARS]  # the same text: only the cut tells the two apart

    ratio = _best_time(lambda: redact(huge), repeat=7) / _best_time(
        lambda: redact(bound, limit=len(bound)), repeat=7
    )

    assert ratio < 5
    assert len(redact(huge)) <= MAX_REDACT_CHARS + 1


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("connect postgresql://alice:hunter2hunter2@db/app", "hunter2"),
        ("connect postgresql://alice:hunter2@hunter2@db/app", "hunter2"),
        ("retry with password=hunter2hunter2hunter2", "hunter2"),
        ('config {"password": "hunter2 hunter2 hunter2"}', "hunter2"),
        ("token='hunter2 and more hunter2'", "hunter2"),
    ],
)
def test_a_secret_cut_in_half_by_the_bound_never_shows(text: str, secret: str) -> None:
    """Wherever the bound cuts a secret, no part of it (its first 3 characters) shows."""
    for limit in range(len(text) - 20, len(text) + 1):
        redacted = redact(text, limit=limit)
        assert secret[:3] not in redacted, (limit, redacted)


def test_an_output_cut_mid_secret_shows_no_part_of_it() -> None:
    """A check output whose secret straddles the redaction bound shows none of it."""
    text = "x " * 500 + "postgresql://u:" + "hunter2" * 100 + "@db"

    cleaned = clean_output(text)

    assert cleaned is not None
    assert "hunt" not in cleaned


def _passing() -> None:
    """A check function that passes."""


def _failing_with(output: str) -> Callable[[], CheckResult]:
    """A check function that fails with ``output``."""

    def run() -> CheckResult:
        return CheckResult("fail", output)

    return run


def _size(path: Path) -> int:
    """The file's size in bytes."""
    return path.stat().st_size


def _text(path: Path) -> str:
    """The file's text."""
    return path.read_text(encoding="utf-8")


def _write(path: Path, text: str) -> None:
    """Replace the file's text."""
    path.write_text(text, encoding="utf-8")


def _probe(path: Path, *options: str) -> subprocess.CompletedProcess[bytes]:
    """Run `healthfile check` on ``path`` in a real process."""
    return subprocess.run(
        [sys.executable, "-m", "healthfile", "check", "--health-file", str(path), *options],
        capture_output=True,
        timeout=30,
        check=False,
    )


def _refused_run(cwd: Path, *options: str) -> bytes:
    """Run `healthfile run` with ``options`` in ``cwd``; assert it exits 2 with one line on
    stderr and nothing on stdout; return that line."""
    done = subprocess.run(
        [sys.executable, "-m", "healthfile", "run", *options],
        capture_output=True,
        timeout=30,
        check=False,
        cwd=cwd,
    )
    assert done.returncode == 2
    assert done.stdout == b""
    assert done.stderr.count(b"\n") == 1
    return done.stderr


@pytest.mark.asyncio
async def test_a_thousand_passing_checks_make_a_file_the_probe_accepts(
    make_service: ServiceFactory, health_file: Path
) -> None:
    """1000 passing checks (the benchmark's count) make a file `healthfile check` calls online."""
    checks = [check(f"check-{n:04d}", _passing) for n in range(1000)]
    service = make_service(checks=checks, check_timeout=30.0)

    await service.start()

    assert _size(health_file) <= MAX_FILE_BYTES
    done = _probe(health_file)
    assert done.returncode == 0, done.stdout


@pytest.mark.asyncio
@pytest.mark.parametrize("count", [160, 1000])
async def test_many_failing_checks_with_long_outputs_are_shortened_to_fit(
    make_service: ServiceFactory, health_file: Path, count: int
) -> None:
    """Failing checks with 256-character outputs make a file the probe judges, shortened to fit."""
    output = "OperationalError: " + "é" * 238
    checks = [check(f"check-{n:04d}", _failing_with(output)) for n in range(count)]
    service = make_service(checks=checks, check_timeout=30.0)

    await service.start()

    assert _size(health_file) <= MAX_FILE_BYTES
    assert judge(health_file).verdict == "degraded"
    done = _probe(health_file, "--nagios")
    assert done.returncode == 2, done.stdout
    written = read_report(health_file)
    assert written is not None
    assert service.last_report is not None
    assert written == service.last_report.as_dict()  # last_report is what was written
    outputs = [result["output"] for name, result in written["checks"].items() if name != "database"]
    if count == 1000:
        assert all(text.endswith(SHORTENED) for text in outputs)
        assert all(text.startswith("OperationalError") for text in outputs)
    else:
        assert outputs == [output] * count


def test_a_check_list_that_cannot_fit_is_refused_at_construction(tmp_path: Path) -> None:
    """Checks whose report cannot fit even with every output shortened raise ValueError."""
    checks = [check(f"{'n' * 56}-{n:05d}", _passing) for n in range(2000)]

    with pytest.raises(ValueError, match="cannot fit in the health file"):
        healthfile.AsyncHealthService(tmp_path / "app.db", checks=checks)


def _report(timestamp: float, **fields: Any) -> dict[str, Any]:
    """A contract-v1 online report dated ``timestamp`` (Unix seconds)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp + 35))
    report: dict[str, Any] = {
        "status": "online",
        "database": "connected",
        "timestamp": stamp,
        "app_version": "1.0",
        "api_version": "v1",
        "interval_seconds": 30.0,
        "expires_at": expires,
        "sequence": 1,
        "started_at": stamp,
        "pid": 1,
        "checks": {},
    }
    report.update(fields)
    return report


@pytest.mark.parametrize("ahead", [3600, 61])
def test_a_report_from_the_future_is_a_clock_problem_not_health(tmp_path: Path, ahead: int) -> None:
    """A report dated beyond the 60 s tolerance in the future is `clock`: exit 1, Nagios UNKNOWN."""
    now = time.time()
    path = tmp_path / "health.json"
    path.write_text(json.dumps(_report(now + ahead)), encoding="utf-8")

    verdict = judge(path, now=now)

    assert verdict.verdict == "clock"
    assert "in the future" in verdict.reason
    assert verdict.exit_code() == 1
    assert verdict.exit_code(allow_degraded=True) == 1
    assert verdict.exit_code(nagios=True) == 3
    assert render(verdict, nagios=True).startswith("HEALTHFILE UNKNOWN - clock:")


def test_a_report_a_little_ahead_is_fresh_and_max_age_bounds_the_absolute_age(
    tmp_path: Path,
) -> None:
    """Within the tolerance a report ahead is judged; --max-age also bounds how far ahead."""
    now = time.time()
    path = tmp_path / "health.json"
    path.write_text(json.dumps(_report(now + 30)), encoding="utf-8")

    assert judge(path, now=now).verdict == "online"
    assert judge(path, now=now, max_age=120).verdict == "online"
    assert judge(path, now=now, max_age=10).verdict == "clock"


def test_the_dead_writer_with_a_fast_clock_is_not_online_in_a_real_probe(tmp_path: Path) -> None:
    """The issue's case: a file written an hour fast, its writer gone, fails the real probe."""
    path = tmp_path / "health.json"
    path.write_text(json.dumps(_report(time.time() + 3600)), encoding="utf-8")

    plain, nagios, bounded = (
        _probe(path),
        _probe(path, "--nagios"),
        _probe(path, "--max-age", "120"),
    )

    assert plain.returncode == 1
    assert nagios.returncode == 3
    assert bounded.returncode == 1
    assert plain.stdout.startswith(b"clock: ")


@pytest.mark.parametrize(
    "name",
    ["", " ", "a\nb", "tab\there", "bell\x07", "x" * 65, "nul\x00", "del\x7f"],
)
def test_bad_check_names_are_refused_at_construction(name: str) -> None:
    """Empty, overlong or unprintable check names raise ValueError when the check is made."""
    with pytest.raises(ValueError, match="check"):
        check(name, _passing)


class _NamedCheck:
    """A hand-written check whose name is whatever the test gives it."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def run(self) -> CheckResult:
        """Fail, naming nothing."""
        return CheckResult("fail", "down")


def test_a_custom_check_with_a_bad_name_is_refused_by_the_service(tmp_path: Path) -> None:
    """A Check object (not made by check()) is held to the same name rules by the service."""
    with pytest.raises(ValueError, match="printable"):
        healthfile.AsyncHealthService(tmp_path / "app.db", checks=[_NamedCheck("a\nb")])
    with pytest.raises(ValueError, match="at most 64"):
        healthfile.AsyncHealthService(tmp_path / "app.db", checks=[_NamedCheck("y" * 65)])


def test_names_that_read_alike_once_redacted_are_refused_as_duplicates(tmp_path: Path) -> None:
    """Two names that differ only in a secret would collide once redacted: refused."""
    checks = [_NamedCheck("password=one"), _NamedCheck("password=two")]

    with pytest.raises(ValueError, match="unique"):
        healthfile.AsyncHealthService(tmp_path / "app.db", checks=checks)


@pytest.mark.asyncio
async def test_a_secret_in_a_check_name_reaches_no_file_label_log_or_perfdata(
    make_service: ServiceFactory,
    health_file: Path,
    tmp_path: Path,
    healthfile_logs: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A name holding a DSN is redacted in the file, the Prometheus file, the logs and perfdata."""
    pytest.importorskip("prometheus_client")
    prometheus = tmp_path / "out" / "app.prom"
    service = make_service(
        checks=[_NamedCheck("pg://u:hunter2@db"), _NamedCheck("token=hunter2")],
        prometheus_file=prometheus,
    )

    await service.start()
    await service.stop()

    assert "hunter2" not in _text(health_file)
    assert "pg://u:***@db" in _text(health_file)
    assert "hunter2" not in _text(prometheus)
    assert "hunter2" not in healthfile_logs.text
    capsys.readouterr()
    _write(
        health_file,
        json.dumps(
            _report(
                time.time(),
                status="degraded",
                checks={
                    "token=hunter2": {
                        "status": "fail",
                        "output": None,
                        "duration_ms": 1.0,
                        "consecutive_failures": 1,
                        "last_success": None,
                    }
                },
            )
        ),
    )
    assert run_check(health_file, nagios=True) == 2
    assert "hunter2" not in capsys.readouterr().out


@pytest.mark.parametrize("encoding", ["ascii", "latin-1", "utf-16", "cp1252"])
@pytest.mark.parametrize("mode", [(), ("--nagios",), ("--json",)])
def test_the_line_is_under_4_kib_in_bytes_whatever_stdouts_encoding(
    tmp_path: Path, encoding: str, mode: tuple[str, ...]
) -> None:
    """The one line stays under 4096 bytes as written, in any stdout encoding."""
    result = {
        "status": "fail",
        "output": "OperationalError: " + "…€é" * 79,
        "duration_ms": 1.0,
        "consecutive_failures": 1,
        "last_success": None,
    }
    checks = {f"chéck-€-{n:03d}": result for n in range(60)}
    path = tmp_path / "health.json"
    path.write_text(
        json.dumps(_report(time.time(), status="degraded", checks=checks)), encoding="utf-8"
    )
    environment = dict(os.environ, PYTHONIOENCODING=encoding)

    done = subprocess.run(
        [sys.executable, "-m", "healthfile", "check", "--health-file", str(path), *mode],
        capture_output=True,
        timeout=30,
        check=False,
        env=environment,
    )

    assert done.stderr == b""
    assert len(done.stdout) < 4096, len(done.stdout)
    assert done.stdout.decode(encoding).count("\n") == 1


def _uri_is_bytes_safe() -> bool:
    """Tell whether sqlite_readonly_uri takes a path that is not UTF-8 (fixed on its own)."""
    from healthfile._sqlite import sqlite_readonly_uri

    try:
        sqlite_readonly_uri("/tmp/\udcff.db")
    except UnicodeError:
        return False
    return True


@pytest.mark.parametrize(
    ("database", "health", "prometheus"),
    [
        ("data/app.db", "./data/app.db", None),
        ("data/app.db", "data/../data/app.db", None),
        ("data/app.db", "data/health.json", "data/health.json"),
        ("data/app.db", "data/health.json", "data/app.db"),
    ],
)
def test_the_same_file_twice_is_refused_at_construction(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    database: str,
    health: str,
    prometheus: str | None,
) -> None:
    """Any two of database / health file / Prometheus file naming one path raise ValueError."""
    monkeypatch.chdir(tmp_path)

    with pytest.raises(ValueError, match="are the same file"):
        healthfile.AsyncHealthService(database, health_file=health, prometheus_file=prometheus)


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_a_link_to_the_database_is_refused_as_the_health_file(
    tmp_path: Path, database: Path, link: str
) -> None:
    """A symlink or hard link to the database, given as the health file, raises ValueError."""
    alias = tmp_path / "alias.json"
    if link == "symlink":
        alias.symlink_to(database)
    else:
        os.link(database, alias)

    same = re.escape(
        f" and health_file='{alias}' are the same file "
        f"('{database}' and '{alias}', two names of one file)"
    )
    with pytest.raises(ValueError, match=f"^database='{re.escape(str(database))}'{same}"):
        healthfile.AsyncHealthService(database, health_file=alias)
    with pytest.raises(ValueError, match=f"^database=<SQLiteCheck .*>{same}"):
        healthfile.AsyncHealthService(healthfile.SQLiteCheck(database), health_file=alias)


def test_healthfile_run_refuses_the_database_as_health_file_and_keeps_it(
    tmp_path: Path, database: Path
) -> None:
    """`healthfile run` with the database as --health-file exits 2 with one line; the data stays."""
    before = database.read_bytes()

    stderr = _refused_run(
        tmp_path, "--database", "app.db", "--health-file", "./app.db", "--interval", "0.1"
    )

    assert stderr.startswith(
        b"healthfile run: error: --database app.db and --health-file ./app.db are the same file"
    )
    assert database.read_bytes() == before


@pytest.mark.asyncio
async def test_paths_are_resolved_once_so_chdir_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After os.chdir() the service writes the same file, the database stays connected, and
    stop() writes stopped there."""
    from helpers import make_database

    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    make_database(home / "data" / "app.db")
    elsewhere.mkdir()
    monkeypatch.chdir(home)
    disk = healthfile.DiskSpaceCheck("data", min_free_bytes=0)
    service = healthfile.AsyncHealthService(
        "data/app.db", health_file="data/health.json", pyproject="pyproject.toml", checks=[disk]
    )
    await service.start()
    try:
        monkeypatch.chdir(elsewhere)
        report = await service.check_now()
        assert report.database == "connected"
        assert report.checks["disk"].status == "pass"
    finally:
        await service.stop()

    written = read_report(home / "data" / "health.json")
    assert written is not None
    assert written["status"] == "stopped"
    assert written["sequence"] == 3
    assert not _exists(elsewhere / "data")


def _exists(path: Path) -> bool:
    """Whether anything is at ``path``."""
    return path.exists()


@pytest.mark.asyncio
async def test_a_health_file_name_of_250_characters_is_written(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    """A legal 250-character file name gets shorter temporary and lock names: every write
    lands, under the one-writer lock."""
    target = tmp_path / "out" / ("h" * 245 + ".json")
    service = make_service(health_file=target)

    await service.start()
    assert service.writing  # the lock file was made, not given up on
    assert [name for name in _names(target.parent) if name.endswith(".lock")] != []
    await service.check_now()
    await service.stop()

    written = read_report(target)
    assert written is not None
    assert written["status"] == "stopped"
    assert [name for name in _names(target.parent) if not name.endswith(".lock")] == [target.name]


def _names(directory: Path) -> list[str]:
    """The names in ``directory``."""
    return sorted(os.listdir(directory))


@pytest.mark.asyncio
@pytest.mark.xfail(
    not _uri_is_bytes_safe(),
    reason="sqlite_readonly_uri is made bytes-safe in its own change",
    raises=UnicodeEncodeError,
    strict=True,
)
async def test_a_database_path_that_is_not_utf8_works_end_to_end(
    tmp_path: Path, health_file: Path
) -> None:
    """A database whose name is not UTF-8 is probed, and its failure output is UTF-8 JSON."""
    from helpers import make_database

    raw = os.fsencode(tmp_path) + b"/caf\xe9.db"
    database = Path(os.fsdecode(raw))
    make_database(database)
    service = healthfile.AsyncHealthService(
        database, health_file=health_file, pyproject=None, app_version="1"
    )
    async with service:
        assert (await service.check_now()).database == "connected"
        os.unlink(raw)
        report = await service.check_now()
    assert report.database == "disconnected"
    data = _bytes(health_file)
    data.decode("utf-8")  # strict: the file is UTF-8
    output = json.loads(data)["checks"]["database"]["output"]
    assert "caf\\xe9.db" in output


def _bytes(path: Path) -> bytes:
    """The file's bytes."""
    return path.read_bytes()


@pytest.mark.xfail(
    not _uri_is_bytes_safe(),
    reason="sqlite_readonly_uri is made bytes-safe in its own change",
    strict=True,
)
def test_healthfile_run_takes_a_database_path_that_is_not_utf8(tmp_path: Path) -> None:
    """`healthfile run --database <non-UTF-8 name>` runs, reports connected, stops on SIGTERM."""
    import signal

    from helpers import make_database

    raw = os.fsencode(tmp_path) + b"/caf\xe9.db"
    make_database(Path(os.fsdecode(raw)))
    health = tmp_path / "health.json"
    command = [os.fsencode(sys.executable), b"-m", b"healthfile", b"run", b"--database", raw]
    process = subprocess.Popen(
        [*command, b"--health-file", os.fsencode(health), b"--interval", b"0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and process.poll() is None:
            if health.exists() and (report := read_report(health)) is not None:
                break
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    report = read_report(health)
    assert report is not None
    assert report["status"] == "stopped"
    assert report["database"] == "connected"
    stderr.decode("utf-8")  # the log lines are UTF-8 too


@pytest.mark.asyncio
async def test_the_probe_of_a_wal_database_changes_no_byte_of_it_sqlite_may_add_sidecars(
    tmp_path: Path,
) -> None:
    """As docs/contract.md says: a probe never writes the database, while SQLite itself may create
    the -wal and -shm files any reader of a WAL database needs (healthfile leaves them)."""
    import hashlib
    import sqlite3

    database = tmp_path / "app.db"
    connection = sqlite3.connect(database)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE items (id INTEGER PRIMARY KEY)")
        connection.commit()
    finally:
        connection.close()  # the last connection's clean close removes the sidecars
    assert _names(tmp_path) == ["app.db"]
    before = hashlib.sha256(_bytes(database)).hexdigest()

    result = await healthfile.SQLiteCheck(database).run()

    assert result.status == "pass"
    assert hashlib.sha256(_bytes(database)).hexdigest() == before
    assert set(_names(tmp_path)) <= {"app.db", "app.db-wal", "app.db-shm"}


@pytest.mark.parametrize("name", ["health.json", "h" * 250 + ".json"])
def test_a_database_or_prometheus_file_at_the_lock_files_path_is_refused(
    tmp_path: Path, name: str
) -> None:
    """The health file's lock file (``.<name>.lock``, or its cut and hashed form for a long
    name) as the database or the Prometheus file is refused at construction, naming both."""
    from healthfile._lock import lock_path

    health_file = tmp_path / name
    lock = lock_path(health_file)
    with pytest.raises(ValueError, match=r"database=.* and the lock file of health_file=.* same"):
        healthfile.AsyncHealthService(lock, health_file=health_file)
    with pytest.raises(ValueError, match=r"prometheus_file=.* and the lock file of health_file="):
        healthfile.AsyncHealthService(
            tmp_path / "app.db", health_file=health_file, prometheus_file=lock
        )


def test_healthfile_run_refuses_the_database_at_the_lock_files_path_and_keeps_it(
    tmp_path: Path, database: Path
) -> None:
    """`healthfile run` with the database at the lock file's path exits 2 with one line; not a
    byte of the database changes and it is not removed."""
    sidecar = tmp_path / ".health.json.lock"
    database.rename(sidecar)
    before = sidecar.read_bytes()

    stderr = _refused_run(
        tmp_path, "--database", sidecar.name, "--health-file", "health.json", "--interval", "0.1"
    )

    assert stderr.startswith(
        b"healthfile run: error: --database .health.json.lock and the lock file of "
        b"--health-file health.json are the same file"
    )
    assert sidecar.read_bytes() == before
    assert not (tmp_path / "health.json").exists()
