"""``healthfile run``: the service in the foreground until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from ._service import AsyncHealthService, serve_until

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
    return 0


async def _serve(service: AsyncHealthService) -> None:
    """Start the service, wait for SIGINT or SIGTERM, stop it."""
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _on_signal, signum, stop_requested)
    logger.info(
        "writing %s every %g s (database check: %s)",
        service.health_file,
        service.interval,
        service.checks[0],
    )
    try:
        await serve_until(service, stop_requested)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    logger.info("stopped; %s says so", service.health_file)


def _on_signal(signum: int, stop_requested: asyncio.Event) -> None:
    logger.info("received %s, stopping", signal.Signals(signum).name)
    stop_requested.set()
