"""``healthfile run``: the service in the foreground until SIGINT, SIGTERM or SIGBREAK."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from pathlib import Path
from typing import Any

from ._limits import MAX_FILE_BYTES
from ._service import AsyncHealthService, serve_until
from ._signals import handle_signals, insists

__all__ = ["run_service"]

logger = logging.getLogger("healthfile")


def run_service(options: dict[str, Any]) -> int:
    """Run the service with resolved command-line options; return the exit status."""
    verbose = options.pop("verbose")
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if verbose < 2:
        logging.getLogger("aiosqlite").setLevel(logging.INFO)
    try:
        service = AsyncHealthService(options.pop("database"), **options)
    except (TypeError, ValueError) as exc:  # every option is checked already: a second line
        logger.error("%s", exc)
        return 2
    try:
        asyncio.run(_serve(service))
    except KeyboardInterrupt:  # a second Ctrl-C while stopping: stop is not waited for again
        return 130
    return _final_status(service)


def _final_status(service: AsyncHealthService) -> int:
    """Say what the health file holds now that the service has stopped; 1 when not ``stopped``.

    The file is read back: only a file that holds this service's final report is said to say
    ``stopped``; one another process keeps (this one stood by, or took over since) is named.
    """
    error = service.last_write_error
    if error is not None:
        logger.error(
            "stopped, but the final report is not on disk (%s does not say stopped): %s",
            service.health_file,
            error,
        )
        return 1
    report = service.last_report
    on_disk = _read_back(service.health_file)
    if report is not None and on_disk == report.as_dict():
        logger.info("stopped; %s says so", service.health_file)
    elif isinstance(on_disk, dict):
        logger.info(
            "stopped; %s is kept by another process (pid %s, status %s)",
            service.health_file,
            on_disk.get("pid"),
            on_disk.get("status"),
        )
    else:
        logger.info("stopped; this process did not write %s", service.health_file)
    return 0


def _read_back(path: Path) -> object:
    """The JSON value in ``path``, or None when it cannot be read (at most the probe's limit)."""
    try:
        with open(path, "rb") as file:
            return json.loads(file.read(MAX_FILE_BYTES + 1))
    except (OSError, ValueError):
        return None


async def _serve(service: AsyncHealthService) -> None:
    """Start the service, wait for a stop signal, stop it; an insistent second one stops waiting."""
    stop_requested = asyncio.Event()
    first = 0.0

    def on_signal(signum: signal.Signals) -> None:
        """Request the stop; on an insistent second signal, give up waiting for it."""
        nonlocal first
        if stop_requested.is_set():
            if insists(signum, first):
                raise KeyboardInterrupt
            return
        logger.info("received %s, stopping", signum.name)
        first = time.monotonic()
        stop_requested.set()

    with handle_signals(on_signal):
        logger.info(
            "checking every %g s for %s (database check: %s)",
            service.interval,
            service.health_file,
            service.checks[0],
        )
        await serve_until(service, stop_requested)
