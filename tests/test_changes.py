"""The recent changes read back from a file being replaced: only what is one is carried."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from healthfile._changes import MAX_CHANGES, MAX_WHY_CHARS, ChangeLog, why_changed
from healthfile._limits import MAX_FILE_BYTES
from helpers import NONBLOCKING_FIFOS

GOOD = {"at": "2026-12-07T18:00:00Z", "status": "online", "previous": "degraded", "why": "db pass"}


def written(path: Path, **fields: Any) -> Path:
    """A contract-v1 file of the app 'shop' with ``fields`` over its defaults."""
    data = {"api_version": "v1", "app_name": "shop", "status": "online", "changes": [GOOD]}
    data.update(fields)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_every_entry_that_is_not_a_change_is_left_out(tmp_path: Path) -> None:
    """Entries with a bad type, status, previous, time or why are dropped; the rest kept,
    their whys redacted and cut."""
    bad: list[Any] = [
        "a string",
        {**GOOD, "status": "fine"},
        {**GOOD, "previous": "fine"},
        {**GOOD, "at": 17},
        {**GOOD, "why": None},
        {**GOOD, "at": "yesterday"},
    ]
    long = {**GOOD, "why": "password=hunter2 " + "x" * 500}
    log = ChangeLog()

    assert log.carry_over(written(tmp_path / "h.json", changes=[*bad, GOOD, long]), "shop")

    assert len(log.changes) == 2
    assert log.changes[0].why == "db pass"
    assert "hunter2" not in log.changes[1].why
    assert len(log.changes[1].why) == MAX_WHY_CHARS
    assert log.changes[0].at == datetime(2026, 12, 7, 18, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "fields",
    [
        {"changes": {"not": "a list"}},
        {"app_name": "billing"},
        {"api_version": "v2"},
        {"status": "fine"},
    ],
)
def test_a_file_of_another_kind_is_not_carried_over(tmp_path: Path, fields: Any) -> None:
    """Another app's file, another contract, a bad status or changes: nothing is carried."""
    log = ChangeLog()
    assert not log.carry_over(written(tmp_path / "h.json", **fields), "shop")
    assert log.changes == ()


def test_files_that_cannot_be_read_as_a_report_are_not_carried_over(tmp_path: Path) -> None:
    """Missing, a directory, too large, not JSON, not an object, a FIFO: nothing carried."""
    log = ChangeLog()
    (tmp_path / "dir").mkdir()
    (tmp_path / "big").write_bytes(b" " * (MAX_FILE_BYTES + 1))
    (tmp_path / "text").write_text("{not json", encoding="utf-8")
    (tmp_path / "list").write_text("[1, 2]", encoding="utf-8")
    names = ["absent", "dir", "big", "text", "list"]
    if NONBLOCKING_FIFOS:  # without O_NONBLOCK, opening a FIFO waits for a writer
        os.mkfifo(tmp_path / "fifo")
        names.append("fifo")
    for name in names:
        assert not log.carry_over(tmp_path / name, "shop"), name


def test_the_log_keeps_the_last_ten_changes_newest_first() -> None:
    """Only a new status is a change; the eleventh pushes out the oldest."""
    log = ChangeLog()
    moment = datetime(2026, 12, 7, tzinfo=timezone.utc)
    for index in range(15):
        log.record("online" if index % 2 else "degraded", moment, lambda: "why")
        log.record("online" if index % 2 else "degraded", moment, lambda: "not again")
    assert len(log.changes) == MAX_CHANGES
    assert [change.status for change in log.changes[:2]] == ["degraded", "online"]
    assert all(change.why == "why" for change in log.changes)


def test_why_names_the_checks_that_changed() -> None:
    """The first report names its failing checks; later ones the checks that changed."""
    assert why_changed(None, {"db": ("pass", None)}, "online") == "the service started"
    assert why_changed(None, {"db": ("fail", "gone")}, "degraded") == "db fail: gone"
    assert why_changed({"db": ("pass", None)}, {"db": ("pass", None)}, "online") == (
        "no check changed"
    )
    assert why_changed({"db": ("fail", "x")}, {"db": ("pass", None)}, "online") == "db pass"
    assert why_changed({"db": ("pass", None)}, {}, "stopped") == "the service stopped"
