"""One writer per file: the sidecar lock, and services that stand by while another writes."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from healthfile import _lock
from healthfile._lock import WriterLock, lock_path
from helpers import ServiceFactory, generous, needs_flock, needs_nonblocking_fifos, read_report


@pytest.fixture
def target(tmp_path: Path) -> Path:
    """A health file path whose directory does not exist yet."""
    return tmp_path / "out" / "health.json"


def test_two_locks_on_one_file_exclude_each_other_and_name_the_holder(target: Path) -> None:
    """A second lock on one file fails while the first holds it, reads its pid, then takes it."""
    first, second = WriterLock(target), WriterLock(target)
    assert lock_path(target) == target.parent / ".health.json.lock"
    assert first.acquire()
    assert first.held
    assert not second.acquire()
    assert not second.held
    assert second.holder() == os.getpid()
    first.release()
    assert not lock_path(target).exists()  # a clean stop leaves no lock file behind
    assert second.acquire()
    assert not first.acquire()
    second.release()
    second.release()  # idempotent


def test_a_lock_file_left_by_a_killed_holder_is_taken_over(target: Path) -> None:
    """A lock file nobody holds (its holder died) is simply locked by the next taker."""
    target.parent.mkdir()
    lock_path(target).write_bytes(b"999999999\n")
    lock = WriterLock(target)
    assert lock.acquire()
    assert lock.holder() == os.getpid()
    lock.release()


def test_a_symlink_at_the_lock_name_is_never_followed(target: Path, tmp_path: Path) -> None:
    """A symlink planted at the lock's name is refused (OSError), its target untouched."""
    target.parent.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    lock_path(target).symlink_to(victim)
    with pytest.raises(OSError):  # noqa: PT011 - ELOOP: what matters is that it refuses
        WriterLock(target).acquire()
    assert victim.read_bytes() == b"precious"


@pytest.mark.reliability
def test_without_any_os_lock_every_service_writes_and_it_is_said_once(
    target: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Where neither fcntl nor msvcrt exists, every taker may write, and one warning says so."""
    monkeypatch.setattr(_lock, "_fcntl", None)
    monkeypatch.setattr(_lock, "_msvcrt", None)
    monkeypatch.setattr(_lock, "_warned_unenforced", False)
    first, second = WriterLock(target), WriterLock(target)
    with caplog.at_level(logging.WARNING, logger="healthfile"):
        assert first.acquire()
        assert second.acquire()
        assert WriterLock(target).acquire()
    warnings = [r for r in caplog.records if "not enforced" in r.getMessage()]
    assert len(warnings) == 1
    assert not first.enforced


class FakeMsvcrt:
    """Windows' byte-range locks as ``msvcrt.locking`` gives them, kept per open file."""

    LK_NBLCK = 2
    LK_UNLCK = 0

    def __init__(self) -> None:
        self.locked: dict[tuple[int, int, int], int] = {}  # (dev, inode, offset) -> fd

    def locking(self, fd: int, mode: int, nbytes: int) -> None:
        """Lock or unlock ``nbytes`` (1 here) at the current position of ``fd``."""
        assert nbytes == 1
        info = os.fstat(fd)
        key = (info.st_dev, info.st_ino, os.lseek(fd, 0, os.SEEK_CUR))
        if mode == self.LK_UNLCK:
            assert self.locked.pop(key) == fd
        elif self.locked.setdefault(key, fd) != fd:
            raise PermissionError(errno.EACCES, "Permission denied")


def test_where_only_msvcrt_exists_its_byte_lock_excludes_and_the_pid_stays_readable(
    target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With msvcrt alone, a byte lock past the pid excludes a second taker, who reads the pid."""
    fake = FakeMsvcrt()
    monkeypatch.setattr(_lock, "_fcntl", None)
    monkeypatch.setattr(_lock, "_msvcrt", fake)
    first, second = WriterLock(target), WriterLock(target)
    assert first.acquire()
    assert not second.acquire()
    assert second.holder() == os.getpid()
    assert [offset for _, _, offset in fake.locked] == [_lock._MSVCRT_OFFSET]
    first.release()
    assert fake.locked == {}
    assert second.acquire()
    second.release()


@pytest.mark.reliability
@pytest.mark.asyncio
async def test_a_second_service_on_one_file_stands_by_and_takes_over_after_stop(
    make_service: ServiceFactory, health_file: Path, healthfile_logs: pytest.LogCaptureFixture
) -> None:
    """A second service writes nothing, logs the writer's pid once, takes over after its stop."""
    writer = make_service(app_version="writer")
    standby = make_service(app_version="standby")
    await writer.start()
    await standby.start()  # returns after its first cycle, like any start()
    assert writer.writing
    assert not standby.writing
    assert standby.running
    for _ in range(3):
        own = await standby.check_now()
    assert standby.last_report is own  # its own view, not on disk
    on_disk = read_report(health_file)
    assert on_disk is not None
    assert on_disk["app_version"] == "writer"
    assert on_disk["sequence"] == 1
    standing = [r for r in healthfile_logs.records if "stands by" in r.getMessage()]
    assert len(standing) == 1
    assert f"pid {os.getpid()} writes {health_file}" in standing[0].getMessage()

    await writer.stop()
    stopped = read_report(health_file)
    assert stopped is not None
    assert (stopped["status"], stopped["app_version"]) == ("stopped", "writer")
    for _ in range(100):  # the writer's worker releases the lock a moment after stop()
        taken = await standby.check_now()
        if standby.writing:
            break
    assert standby.writing
    on_disk = read_report(health_file)
    assert on_disk is not None
    assert (on_disk["status"], on_disk["app_version"]) == ("online", "standby")
    assert on_disk["sequence"] == taken.sequence == 1  # its first report written
    assert any("took over writing" in r.getMessage() for r in healthfile_logs.records)

    third = make_service(app_version="third")
    await third.start()
    await third.stop()  # a standby's stop writes nothing
    on_disk = read_report(health_file)
    assert on_disk is not None
    assert (on_disk["status"], on_disk["app_version"]) == ("online", "standby")
    await standby.stop()
    on_disk = read_report(health_file)
    assert on_disk is not None
    assert (on_disk["status"], on_disk["app_version"]) == ("stopped", "standby")
    for _ in range(1000):
        if not lock_path(health_file).exists():
            break
        await asyncio.sleep(0.005)
    assert not lock_path(health_file).exists()  # removed as it is released, after stop()


@pytest.mark.asyncio
async def test_a_standby_never_writes_the_prometheus_file_either(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    """The health file's lock also guards the Prometheus file: a standby writes neither."""
    pytest.importorskip("prometheus_client")
    prometheus_file = tmp_path / "metrics" / "app.prom"
    writer = make_service(app_version="writer", prometheus_file=prometheus_file)
    standby = make_service(app_version="standby", prometheus_file=prometheus_file)
    await writer.start()
    await standby.start()
    for _ in range(3):
        await standby.check_now()
    await standby.stop()
    text = prometheus_file.read_text()
    assert 'app_version="writer"' in text
    assert 'app_version="standby"' not in text
    # The standby's stop wrote no stopped metrics (labels, if any, before the value).
    assert re.search(r"^healthfile_up(\{[^}]*\})? 1\.0$", text, re.MULTILINE)


@pytest.mark.reliability
@pytest.mark.asyncio
async def test_a_lock_file_that_cannot_be_opened_is_logged_once_and_the_file_still_written(
    make_service: ServiceFactory,
    health_file: Path,
    tmp_path: Path,
    healthfile_logs: pytest.LogCaptureFixture,
) -> None:
    """A symlink planted at the lock's name: one error log, the health file written anyway."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    os.makedirs(health_file.parent)
    lock_path(health_file).symlink_to(victim)
    service = make_service()
    await service.start()
    for _ in range(3):
        report = await service.check_now()
    assert service.writing
    on_disk = read_report(health_file)
    assert on_disk is not None
    assert on_disk["sequence"] == report.sequence
    errors = [r for r in healthfile_logs.records if r.getMessage().startswith("cannot lock")]
    assert len(errors) == 1
    assert errors[0].levelno == logging.ERROR
    await service.stop()
    assert victim.read_bytes() == b"precious"


@pytest.mark.reliability
@needs_flock
@pytest.mark.parametrize("how", ["removed", "replaced"])
def test_a_holder_notices_its_lock_file_was_removed_or_replaced(target: Path, how: str) -> None:
    """A lock whose file is no longer the one at the path is let go: only the new taker holds."""
    first, second = WriterLock(target), WriterLock(target)
    assert first.acquire()
    assert first.confirm()
    if how == "removed":
        lock_path(target).unlink()
    else:
        other = target.parent / "other"
        other.write_bytes(b"")
        os.replace(other, lock_path(target))
    assert second.acquire()  # the file at the path is a new one: nobody locks it
    assert not first.confirm()
    assert not first.held
    assert not first.acquire()  # the new file's lock is the second's
    assert second.confirm()
    first.release()  # harmless: it holds nothing
    assert lock_path(target).exists()
    second.release()
    assert not lock_path(target).exists()


@pytest.mark.reliability
@needs_flock
def test_a_child_forked_from_the_holder_neither_holds_nor_keeps_the_lock(target: Path) -> None:
    """A forked child does not hold the lock, and once the parent dies the lock is free."""
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    script = f"""\
import os, sys, time
from pathlib import Path
from healthfile._lock import WriterLock
target = Path({str(target)!r})
lock = WriterLock(target)
assert lock.acquire()
reader, writer = os.pipe()
child = os.fork()
if child == 0:
    os.close(1)  # the test reads the output to its end
    os.close(2)
    state = (lock.held, lock.confirm(), WriterLock(target).acquire())
    os.write(writer, " ".join(map(str, state)).encode())
    os.close(writer)
    time.sleep(60)
    os._exit(0)
os.close(writer)
print("child", os.read(reader, 100).decode(), flush=True)
print("parent", child, flush=True)
os._exit(0)  # dies holding the lock: the kernel closes its files, nothing is removed
"""
    process = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=generous(30)
    )
    lines = dict(line.split(" ", 1) for line in process.stdout.splitlines())
    child = int(lines["parent"])
    try:
        assert process.returncode == 0, process.stderr
        assert lines["child"] == "False False False"  # not held, and the parent's
        os.kill(child, 0)  # the child lives on
        assert lock_path(target).exists()  # left by the dead holder
        taker = WriterLock(target)
        assert taker.acquire()
        taker.release()
    finally:
        os.kill(child, signal.SIGKILL)


@pytest.mark.reliability
@needs_nonblocking_fifos
def test_reading_the_holders_pid_from_a_fifo_at_the_lock_name_never_blocks(target: Path) -> None:
    """holder() on a FIFO planted at the lock's name returns None at once instead of blocking."""
    target.parent.mkdir()
    os.mkfifo(lock_path(target))
    found: list[int | None] = []
    reader = threading.Thread(target=lambda: found.append(WriterLock(target).holder()))
    reader.start()
    reader.join(generous(5))
    if reader.is_alive():  # blocked: a writer end lets it go
        os.close(os.open(lock_path(target), os.O_WRONLY | os.O_NONBLOCK))
        reader.join()
        pytest.fail("holder() blocked on the FIFO")
    assert found == [None]


@pytest.mark.reliability
@needs_nonblocking_fifos
@pytest.mark.asyncio
async def test_a_fifo_swapped_in_at_the_lock_name_blocks_neither_cycles_nor_stop(
    make_service: ServiceFactory, health_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FIFO put at the lock's name just as a standby reads the holder's pid hangs nothing."""
    holder = WriterLock(health_file)
    assert holder.acquire()
    real_try_lock = _lock._try_lock
    fifo = health_file.parent / "fifo"
    os.mkfifo(fifo)

    def try_lock_then_swap(fd: int) -> bool:
        """Lock as usual; when refused, swap a FIFO in before the pid is read."""
        locked = real_try_lock(fd)
        if not locked and fifo.exists():
            os.replace(fifo, lock_path(health_file))
        return locked

    monkeypatch.setattr(_lock, "_try_lock", try_lock_then_swap)
    standby = make_service()
    await asyncio.wait_for(standby.start(), generous(10))
    assert stat.S_ISFIFO(os.lstat(lock_path(health_file)).st_mode)
    await asyncio.wait_for(standby.check_now(), generous(10))  # writes, the lock refused
    await asyncio.wait_for(standby.stop(), generous(10))
    holder.release()


@pytest.mark.asyncio
async def test_without_any_os_lock_a_service_writes_every_report_and_stops(
    make_service: ServiceFactory, health_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where no lock exists a service writes its reports and its stopped report, and says it
    writes (writing is True), start after start."""
    monkeypatch.setattr(_lock, "_fcntl", None)
    monkeypatch.setattr(_lock, "_msvcrt", None)
    monkeypatch.setattr(_lock, "_warned_unenforced", True)
    service = make_service()
    for _ in range(2):
        await service.start()
        assert service.writing
        report = await service.check_now()
        on_disk = read_report(health_file)
        assert on_disk is not None
        assert on_disk["sequence"] == report.sequence
        await service.stop()
        stopped = read_report(health_file)
        assert stopped is not None
        assert stopped["status"] == "stopped"
