"""A program without asyncio (a desktop app, a script) that keeps its health file.

    python examples/desktop_app.py --database data/app.db --health-file data/health.json

HealthCheckService runs the checks on its own event loop in a daemon thread named
HealthCheckThread, so the program's main loop (here a plain loop until Ctrl-C or SIGTERM; in
a GUI, the toolkit's mainloop) never waits for a check. ``stop()`` writes the final
"stopped" report before it returns: call it when the window closes. For a real window
(tkinter, CustomTkinter) see examples/tk_app.py.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Sequence

from healthfile import HealthCheckService


def main(argv: Sequence[str] | None = None) -> int:
    """Run the app until Ctrl-C or SIGTERM, keeping the health file meanwhile."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="data/app.db")
    parser.add_argument("--health-file", default="data/health.json")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between checks")
    args = parser.parse_args(argv)

    service = HealthCheckService(
        check_interval=args.interval, health_file=args.health_file, database=args.database
    )
    quit_requested = threading.Event()
    # Ctrl-C and SIGTERM ask the main loop to end, rather than raise KeyboardInterrupt at
    # whatever line the main thread is on (inside threading's own code, it can break a lock).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda signum, frame: quit_requested.set())
    service.start()  # returns at once; the first report follows in the background
    print("running; Ctrl-C quits", flush=True)
    try:
        while not quit_requested.wait(0.2):
            pass  # the application's own work, or its GUI toolkit's mainloop
    finally:
        service.stop()  # the final "stopped" report is on disk when this returns
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
