"""Security: modes under any umask, symlinks and planted temp files, unsafe dirs, secrets."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import healthfile._publish
import healthfile._writer
from healthfile import check
from helpers import ServiceFactory, names, needs_posix_modes

pytestmark = pytest.mark.reliability


SECRET = "hunter2"
LEAKY_MESSAGE = f"cannot reach postgresql://u:{SECRET}@h/db with password={SECRET}"
VICTIM_BYTES = b"precious: never to be overwritten\n"


def text_of(path: Path) -> str:
    return path.read_text()


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


# --- modes --------------------------------------------------------------------------------


@needs_posix_modes
@pytest.mark.asyncio
@pytest.mark.parametrize("process_umask", [0o022, 0o027, 0o077], ids=oct)
@pytest.mark.parametrize("file_mode", [None, 0o640], ids=["default", "0o640"])
async def test_health_and_prometheus_files_get_the_configured_mode_under_any_umask(
    make_service: ServiceFactory,
    tmp_path: Path,
    umask: Callable[[int], object],
    process_umask: int,
    file_mode: int | None,
) -> None:
    """Under umask 022, 027 and 077 both files have exactly 0644 (or file_mode), every cycle."""
    umask(process_umask)
    options: dict[str, Any] = {"prometheus_file": tmp_path / "prom" / "app.prom"}
    if file_mode is not None:
        options["file_mode"] = file_mode
    expected = 0o644 if file_mode is None else file_mode
    service = make_service(health_file=tmp_path / "out" / "health.json", **options)
    await service.start()
    for _ in range(3):
        await service.check_now()
        assert mode_of(tmp_path / "out" / "health.json") == expected
        assert mode_of(tmp_path / "prom" / "app.prom") == expected
    await service.stop()
    assert mode_of(tmp_path / "out" / "health.json") == expected


@pytest.fixture
def public_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory every user can traverse (pytest's own tmp_path is 0700, root's)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("reading as another user needs root (CI runs as root)")
    pwd = pytest.importorskip("pwd", reason="reading as another user needs POSIX users (pwd)")
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("there is no user 'nobody' to read as")
    # Requested before make_service, so removed after the service's final write.
    directory = Path("/tmp") / f"healthfile-public-{os.getpid()}-{tmp_path.name}"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def read_as_nobody(path: Path) -> subprocess.CompletedProcess[str]:
    """Read ``path`` with cat(1) running as the unprivileged user 'nobody', like a monitor."""
    import pwd  # POSIX only: the fixture that leads here skips without it

    nobody = pwd.getpwnam("nobody")
    return subprocess.run(
        ["cat", str(path)],
        user=nobody.pw_uid,
        group=nobody.pw_gid,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@needs_posix_modes
@pytest.mark.asyncio
@pytest.mark.parametrize("process_umask", [0o022, 0o077], ids=oct)
async def test_monitor_running_as_another_user_can_read_the_file_whatever_the_umask(
    public_dir: Path,
    make_service: ServiceFactory,
    umask: Callable[[int], object],
    process_umask: int,
) -> None:
    """The point of 0644: another user can read the file, in the data/ the service created."""
    umask(process_umask)
    health_file = public_dir / "data" / "health.json"
    service = make_service(health_file=health_file)
    await service.start()

    monitor = read_as_nobody(health_file)
    await service.stop()

    assert mode_of(health_file) == 0o644
    assert monitor.returncode == 0, (
        f"user nobody cannot read the health file: {monitor.stderr.strip().splitlines()[-1:]}; "
        f"the directory the service created has mode {mode_of(health_file.parent):#o}"
    )
    assert json.loads(monitor.stdout)["status"] == "online"


# --- symlinks and planted temporary files --------------------------------------------------


@pytest.mark.asyncio
async def test_symlink_planted_at_the_target_every_cycle_is_replaced_never_followed(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    """A symlink at the health or Prometheus file, planted again before each cycle, is replaced."""
    victim = tmp_path / "victim"
    victim.write_bytes(VICTIM_BYTES)
    victim_mode = mode_of(victim)
    health_file = tmp_path / "out" / "health.json"
    prometheus_file = tmp_path / "out" / "app.prom"
    health_file.parent.mkdir()
    service = make_service(health_file=health_file, prometheus_file=prometheus_file)
    for target in (health_file, prometheus_file):
        target.symlink_to(victim)
    await service.start()
    for _ in range(3):
        for target in (health_file, prometheus_file):
            assert not target.is_symlink()
            target.unlink()
            target.symlink_to(victim)
        await service.check_now()

    assert victim.read_bytes() == VICTIM_BYTES
    assert mode_of(victim) == victim_mode
    assert not health_file.is_symlink()
    assert json.loads(health_file.read_bytes())["sequence"] == 4
    assert not prometheus_file.is_symlink()
    assert names(health_file.parent) == {"health.json", "app.prom"}


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["symlink", "file"])
async def test_files_planted_at_predictable_temp_names_cannot_redirect_the_write(
    make_service: ServiceFactory, tmp_path: Path, kind: str
) -> None:
    """Symlinks or files at `.health.json.tmp` and pattern-like names are never written through."""
    victim = tmp_path / "victim"
    victim.write_bytes(VICTIM_BYTES)
    health_file = tmp_path / "out" / "health.json"
    service = make_service(health_file=health_file)
    await service.start()
    planted = [
        ".health.json.tmp",
        "health.json.tmp",
        ".health.json.0000000000000000.tmp",
        ".health.json.ffffffffffffffff.tmp",
        f".health.json.{os.getpid():016x}.tmp",
    ]
    for name in planted:
        path = health_file.parent / name
        if kind == "symlink":
            path.symlink_to(victim)
        else:
            path.write_bytes(VICTIM_BYTES)

    for _ in range(5):
        report = await service.check_now()

    assert victim.read_bytes() == VICTIM_BYTES
    assert json.loads(health_file.read_bytes())["sequence"] == report.sequence
    assert not health_file.is_symlink()
    for name in planted:
        path = health_file.parent / name
        if kind == "symlink":
            assert path.is_symlink()
        else:
            assert path.read_bytes() == VICTIM_BYTES
    assert names(health_file.parent) == {"health.json", *planted}

    # The next start sweeps what looks like a killed writer's leftover: the planted names of
    # the writer's own pattern go (a symlink is unlinked, not followed), the others stay.
    await service.stop()
    await service.start()
    assert victim.read_bytes() == VICTIM_BYTES
    assert names(health_file.parent) == {"health.json", ".health.json.tmp", "health.json.tmp"}


class FixedOnce:
    """Stands in for the writer's `secrets`: the first token is a fixed one, then random ones."""

    def __init__(self, fixed: str) -> None:
        self.fixed = fixed
        self.calls = 0

    def token_hex(self, nbytes: int | None = None) -> str:
        self.calls += 1
        if self.calls == 1:
            return self.fixed
        return os.urandom(nbytes or 8).hex()


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["symlink", "file"])
async def test_temp_name_taken_by_an_attacker_is_never_opened_another_is_used(
    make_service: ServiceFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    """O_EXCL: a guessed temp name already taken is skipped for a fresh one, never followed."""
    victim = tmp_path / "victim"
    victim.write_bytes(VICTIM_BYTES)
    health_file = tmp_path / "out" / "health.json"
    service = make_service(health_file=health_file)
    await service.start()
    fixed = "0123456789abcdef"
    taken = health_file.parent / f".health.json.{fixed}.tmp"
    if kind == "symlink":
        taken.symlink_to(victim)
    else:
        taken.write_bytes(VICTIM_BYTES)
    fake = FixedOnce(fixed)
    monkeypatch.setattr(healthfile._writer, "secrets", fake)

    report = await service.check_now()

    assert fake.calls >= 2, "the writer did not ask for another name"
    assert json.loads(health_file.read_bytes())["sequence"] == report.sequence
    assert victim.read_bytes() == VICTIM_BYTES
    if kind == "symlink":
        assert taken.is_symlink()
    else:
        assert taken.read_bytes() == VICTIM_BYTES
    assert names(health_file.parent) == {"health.json", taken.name}


# --- an unsafe directory ------------------------------------------------------------------


@needs_posix_modes
@pytest.mark.asyncio
async def test_world_writable_directory_without_sticky_bit_is_refused_and_logged_once(
    make_service: ServiceFactory,
    tmp_path: Path,
    healthfile_logs: pytest.LogCaptureFixture,
) -> None:
    """0777 without the sticky bit: nothing written, one clear error, running; fixed, it writes."""
    directory = tmp_path / "shared"
    directory.mkdir()
    os.chmod(directory, 0o777)
    health_file = directory / "health.json"
    service = make_service(health_file=health_file)

    await service.start()
    for _ in range(3):
        await service.check_now()
        assert service.running

    assert names(directory) == set()
    errors = [r.getMessage() for r in healthfile_logs.records if "cannot write" in r.getMessage()]
    assert len(errors) == 1, errors
    assert "UnsafeDirectoryError" in errors[0]
    assert "world-writable" in errors[0]
    assert "sticky" in errors[0]

    os.chmod(directory, 0o755)
    report = await service.check_now()

    assert json.loads(health_file.read_bytes())["sequence"] == report.sequence


# --- secrets ------------------------------------------------------------------------------


def leaky_check() -> Any:
    """A check that fails by raising an exception whose message holds a password."""

    def connect() -> bool:
        raise ConnectionError(LEAKY_MESSAGE)

    return check("upstream", connect)


def all_log_text(logs: pytest.LogCaptureFixture) -> str:
    """Every captured record as a handler would format it, tracebacks included."""
    return logs.text + "\n".join(r.getMessage() for r in logs.records)


def judge_command(health_file: Path, *options: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHFILE_")}
    return subprocess.run(
        [sys.executable, "-m", "healthfile", "check", "--health-file", str(health_file), *options],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


@pytest.mark.asyncio
async def test_secret_in_a_failing_check_reaches_no_file_log_or_probe_output(
    make_service: ServiceFactory,
    tmp_path: Path,
    healthfile_logs: pytest.LogCaptureFixture,
) -> None:
    """A password in an exception is in neither health file, Prometheus file, logs, nor check."""
    health_file = tmp_path / "out" / "health.json"
    prometheus_file = tmp_path / "out" / "app.prom"
    service = make_service(
        health_file=health_file, prometheus_file=prometheus_file, checks=[leaky_check()]
    )
    await service.start()
    await service.check_now()
    degraded = health_file.read_text()
    await service.stop()

    output = json.loads(degraded)["checks"]["upstream"]["output"]
    assert "ConnectionError" in output
    assert "***" in output
    for surface in (degraded, health_file.read_text(), prometheus_file.read_text()):
        assert SECRET not in surface
    assert "upstream" in all_log_text(healthfile_logs)
    assert SECRET not in all_log_text(healthfile_logs)

    health_file.write_text(degraded)
    for options in ((), ("--nagios",), ("--json",)):
        judged = judge_command(health_file, *options)
        assert judged.stdout.strip(), judged.stderr
        assert SECRET not in judged.stdout + judged.stderr


@pytest.mark.asyncio
async def test_secret_in_the_traceback_of_a_crashing_cycle_is_not_logged(
    make_service: ServiceFactory,
    tmp_path: Path,
    healthfile_logs: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cycle that crashes (the Prometheus renderer raising a password) is logged redacted."""
    crashes: list[int] = []

    def crashing_renderer(report: object) -> bytes:
        crashes.append(1)
        raise RuntimeError(LEAKY_MESSAGE)

    service = make_service(interval=0.02, prometheus_file=tmp_path / "app.prom")
    await service.start()
    monkeypatch.setattr(healthfile._publish, "render_textfile", crashing_renderer)
    while len(crashes) < 3:
        await asyncio.sleep(0.01)
    assert service.running

    text = all_log_text(healthfile_logs)
    assert "health check cycle failed" in text
    assert "Traceback" in text
    assert SECRET not in text


def test_check_command_redacts_a_secret_that_a_foreign_writer_left_in_the_file(
    tmp_path: Path,
) -> None:
    """`healthfile check` never prints a secret, even one a file written by others holds."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # from the future: a clock verdict
    report = {
        "status": "degraded",
        "database": "disconnected",
        "timestamp": now,
        "app_version": "1.0",
        "api_version": "v1",
        "interval_seconds": 30,
        "expires_at": "2099-01-01T00:01:00Z",
        "sequence": 1,
        "started_at": now,
        "pid": 1,
        "checks": {
            "database": {
                "status": "fail",
                "output": LEAKY_MESSAGE,
                "duration_ms": 1.0,
                "consecutive_failures": 1,
                "last_success": None,
            }
        },
    }
    health_file = tmp_path / "health.json"
    health_file.write_text(json.dumps(report))

    for options in ((), ("--nagios",), ("--json",)):
        judged = judge_command(health_file, *options)
        assert "database" in judged.stdout, judged.stderr
        assert SECRET not in judged.stdout + judged.stderr
