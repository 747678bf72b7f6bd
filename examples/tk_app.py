"""A desktop app with a real window (tkinter) that shows its own health, kept by healthfile.

    python examples/tk_app.py --database data/app.db --health-file data/health.json

The window is a status panel in plain words ("Everything is working", "Can't reach the
database since 14:02", the recent changes), written from the health reports. The pattern,
for any GUI toolkit with a main loop:

- ``HealthCheckService`` runs the checks in its own daemon thread; the window never waits
  for a check.
- The window polls ``service.last_report`` from its own main loop (``root.after``) and
  updates its labels there. Nothing calls Tk from another thread: Tk is not thread-safe, and
  ``on_change`` runs in a thread of healthfile's, so it must never touch a widget.
- A ``HeartbeatCheck`` is fed from the main loop too (``root.after``): when the window
  freezes, the beats stop and the health file says so (warn after 1 s, fail after 5 s),
  although healthfile's own thread is fine. "Freeze the window for 8 s" shows it.
- When the main loop runs again after such a gap, the window does not show the reports made
  while it was frozen (they say it is not responding, which is no longer true): it asks for
  a fresh check (``check_now()`` in a worker thread) and shows that.
- "Check now" runs ``service.check_now()`` in a worker thread too, so that the window stays
  responsive; the poll picks up its outcome from a queue.
- Closing the window (``WM_DELETE_WINDOW``) calls ``service.stop()``, which writes the final
  "stopped" report, then destroys the window.

CustomTkinter works the same: ``customtkinter.CTk`` is a ``tk.Tk`` (``after``, ``protocol``,
``mainloop`` are Tk's own), and ``CTkLabel``/``CTkButton`` take ``configure(text=...)`` and
``command=`` as below.

Options also come from the environment (HEALTHFILE_DATABASE, HEALTHFILE_HEALTH_FILE,
HEALTHFILE_INTERVAL). ``--trace`` prints every label's new text on stdout when it changes,
each report the window shows and where the buttons are, for tests and debugging.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import threading
import time
import tkinter as tk
from collections.abc import Sequence
from datetime import datetime

from healthfile import CheckResult, HealthCheckService, HealthReport, HeartbeatCheck

TITLE = "Example app status"
BEAT_MS = 200  # how often the main loop beats: well inside the heartbeat's warn_after
POLL_MS = 200  # how often the window reads service.last_report
GAP_SECONDS = 1.0  # a main loop this late was frozen: its reports are out of date
FREEZE_SECONDS = 8.0
SHOWN_CHANGES = 5
GREEN, AMBER, RED, GREY = "#1e7b34", "#8a6d00", "#b3261e", "#555"
HEADLINES = {
    "online": ("Everything is working", GREEN),
    "degraded": ("Something is not working", RED),
    "starting": ("Starting up…", AMBER),
    "stopped": ("Stopped", GREY),
}
# What each check is about, in the user's words: its label, and what pass, warn and fail
# mean. A check the window does not know is shown by its name.
CHECKS = {
    "database": (
        "Database",
        {"pass": "connected", "warn": "trouble reaching it", "fail": "can't reach it"},
    ),
    "heartbeat": (
        "This window",
        {"pass": "responding", "warn": "slow to respond", "fail": "not responding"},
    ),
}
TROUBLE = {
    "database": "can't reach the database",
    "heartbeat": "this window stopped responding",
}
WHY_PART = re.compile(r"^(?P<name>.+?) (?P<status>pass|warn|fail)(?:: .*)?$")


def clock(moment: datetime) -> str:
    """A time of day in the user's time zone: 14:02."""
    return moment.astimezone().strftime("%H:%M")


def check_line(name: str, result: CheckResult, since: datetime | None) -> str:
    """One check in plain words: "Database: can't reach it since 14:02"."""
    unknown = {"pass": "working", "warn": "warning", "fail": "failing"}
    label, words = CHECKS.get(name, (name, unknown))
    text = f"{label}: {words.get(result.status, result.status)}"
    if result.status != "pass" and since is not None:
        text += f" since {clock(since)}"
    return text


def change_line(at: datetime, status: str, previous: str | None, why: str) -> str:
    """One recent change in plain words: "14:02  Not working: can't reach the database"."""
    if status == "stopped":
        said = "Stopped"
    elif previous in (None, "stopped"):
        said = "Started" if status == "online" else f"Started: {HEADLINES[status][0].lower()}"
    elif status == "online":
        said = "Working again"
    elif status == "degraded":
        troubles = [
            TROUBLE.get(match["name"], f"{match['name']} failing")
            for part in why.split("; ")
            if (match := WHY_PART.match(part)) and match["status"] == "fail"
        ]
        said = "Not working" + (f": {', '.join(troubles)}" if troubles else "")
    else:
        said = HEADLINES.get(status, (status, ""))[0]
    return f"{clock(at)}  {said}"


class HealthWindow:
    """The app's window: what works, what does not and since when, recent changes, buttons."""

    def __init__(
        self, root: tk.Tk, service: HealthCheckService, heartbeat: HeartbeatCheck, *, trace: bool
    ) -> None:
        self.root = root
        self.service = service
        self.heartbeat = heartbeat
        self.trace = trace
        self.shown: HealthReport | None = None
        self.failing_since: dict[str, datetime] = {}
        self.outcomes: queue.SimpleQueue[HealthReport | str] = queue.SimpleQueue()
        self.checking = False  # a check_now() in flight
        self.held = False  # frozen until now: show nothing older than the fresh check
        self.last_tick = time.monotonic()
        self.labels: dict[str, tk.Label] = {}

        root.title(TITLE)
        root.geometry("+0+0")
        root.minsize(460, 0)
        self.status = self._label("status", "Starting up…", bold=True)
        self.checks = tk.Frame(root)
        self.checks.pack(fill="x", padx=12)
        self.updated = self._label("updated", "Not checked yet")
        buttons = tk.Frame(root)
        buttons.pack(fill="x", padx=12, pady=8)
        self.check_button = tk.Button(buttons, text="Check now", command=self.check_now)
        self.check_button.pack(side="left")
        self.freeze_button = tk.Button(
            buttons, text=f"Freeze the window for {FREEZE_SECONDS:g} s", command=self.freeze
        )
        self.freeze_button.pack(side="left", padx=8)
        self.note = self._label("check-now", "")
        self._label("changes-title", "Recent changes", bold=True, size=11)
        self.changes = self._label("changes", "None yet")
        self.traced_buttons: dict[str, tuple[int, int]] = {}
        self.buttons_trace_pending = False
        if trace:
            for widget in (buttons, self.check_button, self.freeze_button):
                widget.bind("<Configure>", self.trace_buttons, add="+")

        root.protocol("WM_DELETE_WINDOW", self.close)
        self.beat()  # the main loop is alive now: the first cycle must not say otherwise
        root.after(0, self.poll)

    def _label(self, key: str, text: str, *, bold: bool = False, size: int = 16) -> tk.Label:
        """Make one full-width label, known to the trace as ``key``."""
        label = tk.Label(self.root, anchor="w", justify="left", wraplength=440)
        if bold:
            label.configure(font=("TkDefaultFont", size, "bold"))
        label.pack(fill="x", padx=12, pady=2)
        self.labels[key] = label
        self.set_text(key, text)
        return label

    def set_text(self, key: str, text: str, colour: str | None = None) -> None:
        """Change one label's text (and colour); trace it when it changed."""
        label = self.labels[key]
        if colour is not None:
            label.configure(fg=colour)
        if label.cget("text") == text:
            return
        label.configure(text=text)
        if self.trace:  # one line per label: a multi-line text's lines joined by " | "
            print(f"label {key}: {' | '.join(label.cget('text').splitlines())}", flush=True)

    def tick(self) -> None:
        """Note that the main loop runs; after a gap (a freeze), ask for a fresh check."""
        now = time.monotonic()
        if now - self.last_tick > GAP_SECONDS:
            if self.trace:
                print("thawed", flush=True)
            self.heartbeat.beat()  # before the check: the loop is alive again
            self.held = True
            self.run_check()
        self.last_tick = now

    def beat(self) -> None:
        """Tell the heartbeat the main loop is alive, and come back in BEAT_MS."""
        self.heartbeat.beat()
        self.tick()
        self.root.after(BEAT_MS, self.beat)

    def poll(self) -> None:
        """Show the outcome of a check now, or else the latest report; back in POLL_MS."""
        self.tick()
        while True:
            try:
                outcome = self.outcomes.get_nowait()
            except queue.Empty:
                break
            self.checking = self.held = False
            self.check_button.configure(state="normal")
            if isinstance(outcome, str):
                self.set_text("check-now", outcome, RED)
            else:
                self.set_text("check-now", "")
                self.show(outcome)
        if (report := self.newer_report()) is not None:
            if not self.checking:
                self.set_text("check-now", "")  # a failed check's note, now out of date
            self.show(report)
        self.root.after(POLL_MS, self.poll)

    def newer_report(self) -> HealthReport | None:
        """The service's latest report, when it is newer than the one shown and the window
        is not waiting for a fresh check (after a freeze)."""
        report = self.service.last_report
        if self.held or report is None or report is self.shown:
            return None
        if self.shown is not None and report.timestamp < self.shown.timestamp:
            return None
        return report

    def show(self, report: HealthReport) -> None:
        """Render one report: the headline, a line per check, when, and the recent changes."""
        self.shown = report
        if self.trace:
            print(f"report {report.sequence} {report.status}", flush=True)
        headline, colour = HEADLINES.get(report.status, (report.status, "#000"))
        self.set_text("status", headline, colour)
        for name, result in report.checks.items():
            if result.status == "pass":
                self.failing_since.pop(name, None)
            else:
                self.failing_since.setdefault(name, report.timestamp)
            key = f"check {name}"
            if key not in self.labels:
                label = tk.Label(self.checks, anchor="w", justify="left", wraplength=420)
                label.pack(fill="x")
                self.labels[key] = label
            self.set_text(
                key,
                check_line(name, result, self.failing_since.get(name)),
                {"pass": GREEN, "warn": AMBER}.get(result.status, RED),
            )
        self.set_text("updated", f"Last checked at {clock(report.timestamp)}", GREY)
        lines = [
            change_line(change.at, change.status, change.previous, change.why)
            for change in report.changes[:SHOWN_CHANGES]
        ]
        self.set_text("changes", "\n".join(lines) or "None yet")

    def check_now(self) -> None:
        """The "Check now" button: run a check in a worker thread; the poll shows it."""
        self.set_text("check-now", "Checking…", GREY)
        self.run_check()

    def run_check(self) -> None:
        """Run ``service.check_now()`` in a worker thread, unless one is in flight already."""
        if self.checking:
            return
        self.checking = True
        self.check_button.configure(state="disabled")

        def work() -> None:  # never touches Tk: the poll takes its outcome from the queue
            try:
                self.outcomes.put(self.service.check_now(timeout=10))
            except Exception as exc:  # shown in the window, not raised in a thread
                self.outcomes.put(f"Couldn't check just now ({type(exc).__name__})")

        threading.Thread(target=work, name="check-now", daemon=True).start()

    def freeze(self) -> None:
        """Block the main loop, as a long computation in a click handler would."""
        if self.trace:
            print("freezing", flush=True)
        time.sleep(FREEZE_SECONDS)

    def trace_buttons(self, event: object = None) -> None:
        """Trace where the buttons are, once the layout has settled (they move as check lines
        appear). A Configure of the frame comes before pack has placed the buttons in it, so
        the positions are read when Tk is idle, after every pending layout."""
        if not self.buttons_trace_pending:
            self.buttons_trace_pending = True
            self.root.after_idle(self._trace_button_positions)

    def _trace_button_positions(self) -> None:
        """Print each mapped button's centre on the screen, when it moved."""
        self.buttons_trace_pending = False
        for key, button in (("check-now", self.check_button), ("freeze", self.freeze_button)):
            if not button.winfo_ismapped():
                continue
            x = button.winfo_rootx() + button.winfo_width() // 2
            y = button.winfo_rooty() + button.winfo_height() // 2
            if self.traced_buttons.get(key) != (x, y):
                self.traced_buttons[key] = (x, y)
                print(f"button {key}: {x} {y}", flush=True)

    def close(self) -> None:
        """The window's close button: stop the service (final "stopped" report), then quit."""
        self.service.stop()
        self.root.destroy()


def main(argv: Sequence[str] | None = None) -> int:
    """Show the window until it is closed, keeping the health file meanwhile."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default=os.environ.get("HEALTHFILE_DATABASE", "data/app.db"))
    parser.add_argument(
        "--health-file", default=os.environ.get("HEALTHFILE_HEALTH_FILE", "data/health.json")
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=float(os.environ.get("HEALTHFILE_INTERVAL", "5")),
        help="seconds between checks",
    )
    parser.add_argument("--trace", action="store_true", help="print label changes on stdout")
    args = parser.parse_args(argv)

    heartbeat = HeartbeatCheck(warn_after=1.0, fail_after=5.0)
    service = HealthCheckService(
        check_interval=args.interval,
        health_file=args.health_file,
        database=args.database,
        checks=[heartbeat],
    )
    root = tk.Tk()
    HealthWindow(root, service, heartbeat, trace=args.trace)
    service.start()
    root.mainloop()
    service.stop()  # no-op after a close; stops the service if the loop ended otherwise
    if args.trace:
        print("closed", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
