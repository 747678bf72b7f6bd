"""examples/tk_app.py, a real tkinter window on a real X display (Xvfb), driven from outside.

The app runs as its own process with ``--trace``, which prints each label's text, read back
from the widget, whenever it changes; the test clicks the real buttons with xdotool, reads the
health file as a monitor does, takes screenshots with ImageMagick's ``import``, and closes the
window with the ``WM_DELETE_WINDOW`` message a window manager sends for the close button.
Without Xvfb, xdotool, ImageMagick or tkinter these tests skip, unless
HEALTHFILE_REQUIRE_INTEGRATION=1 (set by .ci/run), when they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import make_database, read_report, require_program, wait_for_report
from x11 import DEADLINE, find_window, request_close, x_run, xvfb_display

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tk_app.py"
TITLE = "Example app status"
DOCS_IMAGE = Path(__file__).resolve().parents[2] / "docs" / "images" / "tk_app.png"


@pytest.fixture(scope="module")
def x_display() -> Iterator[str]:
    """A private X display, with ImageMagick's import for the screenshots."""
    require_program("import", package="imagemagick")
    with xvfb_display() as display:
        yield display


class TracedApp:
    """The example's process, and the lines its ``--trace`` printed so far."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        """Collect stdout lines as they come."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_line(self, predicate: Callable[[str], bool], what: str, since: int = 0) -> str:
        """The first line from index ``since`` on that satisfies ``predicate``; waits for it."""
        deadline = time.monotonic() + DEADLINE
        with self._changed:
            while True:
                for line in self.lines[since:]:
                    if predicate(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (
                    self.process.poll() is not None and not self._reader.is_alive()
                ):
                    pytest.fail(f"the window never showed {what}; its trace: {self.lines[-30:]}")
                self._changed.wait(min(remaining, 0.5))

    def label(self, key: str, text: str, since: int = 0) -> str:
        """Wait until the label ``key`` shows a text containing ``text``."""
        prefix = f"label {key}: "
        return self.wait_line(
            lambda line: line.startswith(prefix) and text in line, f"{key} {text!r}", since
        )

    def button(self, key: str) -> tuple[int, int]:
        """Where the button ``key`` is on the screen now (its latest traced position).

        Read once the window has shown two more reports: the app traces a move when Tk is
        idle, and a poll that shows a report runs after every layout pending before it, so
        a move under way as this is called is in the trace by then.
        """
        self.wait_line(lambda line: line.startswith(f"button {key}: "), f"the {key} button")
        since = len(self.lines)
        for _ in range(2):
            self.wait_line(lambda line: line.startswith("report "), "a report", since)
            with self._changed:
                since = (
                    next(
                        index
                        for index in range(since, len(self.lines))
                        if self.lines[index].startswith("report ")
                    )
                    + 1
                )
        with self._changed:
            line = [line for line in self.lines if line.startswith(f"button {key}: ")][-1]
        x, y = line.split(": ")[1].split()
        return int(x), int(y)


def click(display: str, position: tuple[int, int]) -> None:
    """Press and release the left mouse button at a screen position (XTEST, as a user does)."""
    x, y = position
    x_run(display, "xdotool", "mousemove", "--sync", str(x), str(y), "click", "1")


def screenshot(display: str, window: str, path: Path) -> Path:
    """Save a PNG of the window."""
    x_run(display, "import", "-window", window, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return path


def heartbeat_is(status: str) -> Callable[[dict[str, Any]], bool]:
    """The report's heartbeat check reads ``status``."""
    return lambda report: report["checks"]["heartbeat"]["status"] == status


def test_tk_window_is_a_status_panel_in_plain_words_and_stops_the_service_when_closed(
    x_display: str, tmp_path: Path
) -> None:
    """The window says what works in plain words; after a freeze it shows a fresh check at
    once, never the reports made while it was frozen; a lost database reads "can't reach it
    since HH:MM" with the change listed; "Check now" leaves no stale note; closing the
    window writes ``stopped`` and the process exits 0."""
    database = make_database(tmp_path / "app.db")
    away = tmp_path / "app.db.away"
    health_file = tmp_path / "out" / "health.json"
    process = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLE),
            "--database",
            str(database),
            "--health-file",
            str(health_file),
            "--interval",
            "0.25",
            "--trace",
        ],
        cwd=tmp_path,
        env={**os.environ, "DISPLAY": x_display, "PYTHONIOENCODING": "utf-8"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    app = TracedApp(process)
    try:
        app.label("status", "Everything is working")
        app.label("check database", "Database: connected")
        app.label("check heartbeat", "This window: responding")
        app.label("updated", "Last checked at ")
        app.label("changes", "Started")
        window = str(find_window(x_display, "--name", f"^{TITLE}$"))

        # "Check now": a cycle run from a worker thread, picked up by the poll; its note goes.
        since = len(app.lines)
        click(x_display, app.button("check-now"))
        app.label("check-now", "Checking…", since)
        app.wait_line(lambda line: line == "label check-now: ", "the note cleared", since)

        # A frozen Tk thread: healthfile's thread goes on, and the heartbeat tells.
        click(x_display, app.button("freeze"))
        app.wait_line(lambda line: line == "freezing", "the freeze starting")
        wait_for_report(health_file, heartbeat_is("warn"), "the heartbeat warning")
        wait_for_report(health_file, heartbeat_is("fail"), "the heartbeat failing")
        thawed = app.lines.index(app.wait_line(lambda line: line == "thawed", "the thaw"))
        shown = app.wait_line(lambda line: line.startswith("report "), "a fresh check", thawed)
        assert shown.endswith(" online"), shown
        between = app.lines[thawed : app.lines.index(shown, thawed)]
        assert not [line for line in between if line.startswith("label ")], between

        # The database goes away: the window says what is wrong, since when, and lists it.
        since = len(app.lines)
        database.rename(away)
        app.label("status", "Something is not working", since)
        reason = app.label("check database", "Database: can't reach it since ", since)
        assert re.fullmatch(
            r"label check database: Database: can't reach it since \d\d:\d\d", reason
        )
        app.label("changes", "Not working: can't reach the database", since)
        assert [line for line in app.lines if line.startswith("label check-now: ")][-1] == (
            "label check-now: "
        )
        # It comes back: working again, the outage still in the recent changes.
        since = len(app.lines)
        away.rename(database)
        app.label("status", "Everything is working", since)
        changes = app.label("changes", "Working again", since)
        newest, *older = changes.removeprefix("label changes: ").split(" | ")
        assert newest.endswith("  Working again"), changes
        assert any(line.endswith("  Not working: can't reach the database") for line in older)
        for jargon in ("OperationalError", "report ", "heartbeat", str(tmp_path)):
            said = [
                line
                for line in app.lines
                if line.startswith("label ") and jargon in line.partition(": ")[2]
            ]
            assert not said, jargon
        png = screenshot(x_display, window, tmp_path / "tk_app.png")
        if os.environ.get("HEALTHFILE_UPDATE_SCREENSHOT") == "1":
            shutil.copyfile(png, DOCS_IMAGE)

        # The window's close button.
        request_close(x_display, int(window))
        try:
            returncode = process.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail("the app did not exit after WM_DELETE_WINDOW")
        assert returncode == 0, process.stderr.read() if process.stderr else ""
        app.wait_line(lambda line: line == "closed", "its end")
        report = read_report(health_file)
        assert report is not None
        assert report["status"] == "stopped"
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(DEADLINE)
        stderr = process.stderr.read() if process.stderr else ""
        if process.stdout is not None:
            process.stdout.close()
        if process.stderr is not None:
            process.stderr.close()
    assert "Traceback" not in stderr, stderr


def test_readme_and_the_desktop_page_show_a_screenshot_of_the_window() -> None:
    """docs/images/tk_app.png, the window as the user gets it, exists; the README and the
    desktop apps part of docs/api.md show it."""
    assert DOCS_IMAGE.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    root = Path(__file__).resolve().parents[2]
    assert "](docs/images/tk_app.png)" in (root / "README.md").read_text(encoding="utf-8")
    api = (root / "docs" / "api.md").read_text(encoding="utf-8")
    assert "](images/tk_app.png)" in api.split("## Desktop apps", 1)[1]
