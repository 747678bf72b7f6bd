"""``healthfile run``: the service in the foreground until SIGINT, SIGTERM or SIGBREAK."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from typing import Any

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
    except ValueError as exc:  # every option is checked already; this is a second line of defence
        logger.error("%s", exc)
        return 2
    try:
        asyncio.run(_serve(service))
    except KeyboardInterrupt:  # a second Ctrl-C while stopping: stop is not waited for again
        return 130
    except OSError as exc:  # start() could not bind --http's address: no report was written
        sys.stderr.write(f"healthfile run: error: {exc.strerror or exc}\n")
        return 2
    return 0


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
            "writing %s every %g s (database check: %s)",
            service.health_file,
            service.interval,
            service.checks[0],
        )
        await serve_until(service, stop_requested)
    logger.info("stopped; %s says so", service.health_file)
