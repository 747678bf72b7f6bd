"""A desktop app with a real window (tkinter) that shows its own health, kept by healthfile.

    python examples/tk_app.py --database data/app.db --health-file data/health.json

The pattern, for any GUI toolkit with a main loop:

- ``HealthCheckService`` runs the checks in its own daemon thread; the window never waits
  for a check.
- The window polls ``service.last_report`` from its own main loop (``root.after``) and
  updates its labels there. Nothing calls Tk from another thread: Tk is not thread-safe, and
  ``on_change`` runs in a thread of healthfile's, so it must never touch a widget.
- A ``HeartbeatCheck`` is fed from the main loop too (``root.after``): when the window
  freezes, the beats stop and the health file says so (warn after 1 s, fail after 5 s),
  although healthfile's own thread is fine. "Freeze UI for 8 s" shows it.
- "Check now" runs ``service.check_now()`` in a worker thread, so that the window stays
  responsive; the poll picks up its result from a queue.
- Closing the window (``WM_DELETE_WINDOW``) calls ``service.stop()``, which writes the final
  "stopped" report, then destroys the window.

CustomTkinter works the same: ``customtkinter.CTk`` is a ``tk.Tk`` (``after``, ``protocol``,
``mainloop`` are Tk's own), and ``CTkLabel``/``CTkButton`` take ``configure(text=...)`` and
``command=`` as below.

Options also come from the environment (HEALTHFILE_DATABASE, HEALTHFILE_HEALTH_FILE,
HEALTHFILE_INTERVAL). ``--trace`` prints every label's new text on stdout when it changes
(and where the buttons are), for tests and debugging.
"""

from __future__ import annotations

import argparse
import os
import queue
import threading
import time
import tkinter as tk
from collections.abc import Sequence

from healthfile import HealthCheckService, HealthReport, HeartbeatCheck

BEAT_MS = 200  # how often the main loop beats: well inside the heartbeat's warn_after
POLL_MS = 200  # how often the window reads service.last_report
FREEZE_SECONDS = 8.0
COLOURS = {"online": "#1e7b34", "degraded": "#b3261e", "starting": "#8a6d00", "stopped": "#555"}


class HealthWindow:
    """The app's window: a status line, one line per check, and two buttons."""

    def __init__(
        self, root: tk.Tk, service: HealthCheckService, heartbeat: HeartbeatCheck, *, trace: bool
    ) -> None:
        self.root = root
        self.service = service
        self.heartbeat = heartbeat
        self.trace = trace
        self.shown: HealthReport | None = None
        self.check_results: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.labels: dict[str, tk.Label] = {}

        root.title("healthfile demo")
        root.geometry("+0+0")
        root.minsize(520, 0)
        self.status = self._label("status", "Status: starting…", bold=True)
        self.checks = tk.Frame(root)
        self.checks.pack(fill="x", padx=12)
        self.updated = self._label("updated", "no report yet")
        buttons = tk.Frame(root)
        buttons.pack(fill="x", padx=12, pady=8)
        self.check_button = tk.Button(buttons, text="Check now", command=self.check_now)
        self.check_button.pack(side="left")
        self.freeze_button = tk.Button(
            buttons, text=f"Freeze UI for {FREEZE_SECONDS:g} s", command=self.freeze
        )
        self.freeze_button.pack(side="left", padx=8)
        self.check_note = self._label("check-now", "")
        self.traced_buttons: dict[str, tuple[int, int]] = {}
        self.buttons_trace_pending = False
        if trace:
            for widget in (buttons, self.check_button, self.freeze_button):
                widget.bind("<Configure>", self.trace_buttons, add="+")

        root.protocol("WM_DELETE_WINDOW", self.close)
        self.beat()  # the main loop is alive now: the first cycle must not say otherwise
        root.after(0, self.poll)

    def _label(self, key: str, text: str, *, bold: bool = False) -> tk.Label:
        """Make one full-width label, known to the trace as ``key``."""
        label = tk.Label(self.root, anchor="w", justify="left", wraplength=500)
        if bold:
            label.configure(font=("TkDefaultFont", 16, "bold"))
        label.pack(fill="x", padx=12, pady=2)
        self.labels[key] = label
        self.set_text(key, text)
        return label

    def set_text(self, key: str, text: str, colour: str | None = None) -> None:
        """Change one label's text (and colour); trace it when it changed."""
        label = self.labels[key]
        if label.cget("text") == text:
            return
        label.configure(text=text)
        if colour is not None:
            label.configure(fg=colour)
        if self.trace:
            print(f"label {key}: {label.cget('text')}", flush=True)

    def beat(self) -> None:
        """Tell the heartbeat the main loop is alive, and come back in BEAT_MS."""
        self.heartbeat.beat()
        self.root.after(BEAT_MS, self.beat)

    def poll(self) -> None:
        """Show the service's latest report and any check-now result; come back in POLL_MS."""
        report = self.service.last_report
        if report is not None and report is not self.shown:
            self.show(report)
        while True:
            try:
                note = self.check_results.get_nowait()
            except queue.Empty:
                break
            self.set_text("check-now", note)
            self.check_button.configure(state="normal")
        self.root.after(POLL_MS, self.poll)

    def show(self, report: HealthReport) -> None:
        """Render one report: the status, then a line per check."""
        self.shown = report
        colour = COLOURS.get(report.status, "#000")
        self.set_text("status", f"Status: {report.status}", colour)
        for name, result in report.checks.items():
            key = f"check {name}"
            if key not in self.labels:
                label = tk.Label(self.checks, anchor="w", justify="left", wraplength=480)
                label.pack(fill="x")
                self.labels[key] = label
            text = f"{name}: {result.status}"
            if result.output:
                text += f" — {result.output}"
            self.set_text(
                key, text, {"pass": "#1e7b34", "warn": "#8a6d00"}.get(result.status, "#b3261e")
            )
        stamp = report.timestamp.astimezone().strftime("%H:%M:%S")
        self.set_text("updated", f"report {report.sequence} at {stamp}, database {report.database}")

    def check_now(self) -> None:
        """Run a cycle now in a worker thread; the poll shows its outcome."""
        self.check_button.configure(state="disabled")

        def work() -> None:
            try:
                report = self.service.check_now(timeout=10)
            except Exception as exc:  # shown in the window, not raised in a thread
                self.check_results.put(f"check now failed: {exc}")
            else:
                self.check_results.put(f"checked now: report {report.sequence}, {report.status}")

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
