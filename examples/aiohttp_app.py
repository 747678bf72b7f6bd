"""An aiohttp application that keeps its health file while it serves.

    pip install . aiohttp    # in a clone of healthfile
    python examples/aiohttp_app.py

A ``cleanup_ctx`` generator starts the health service on the application's event loop at
startup (the first report is on disk before the first request) and stops it at cleanup,
which writes the final "stopped" report.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

import healthfile

HEALTH = web.AppKey("health", healthfile.AsyncHealthService)


def health_service(
    database: str | os.PathLike[str] = "data/app.db",
    health_file: str | os.PathLike[str] = "data/health.json",
    **options: Any,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context running an AsyncHealthService for the application's lifetime."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        async with healthfile.AsyncHealthService(
            database, health_file=health_file, **options
        ) as service:
            app[HEALTH] = service
            yield

    return context


async def health(request: web.Request) -> web.Response:
    """The last report, as in the file; 503 unless online or starting."""
    report = request.app[HEALTH].last_report
    if report is None:
        return web.json_response({"status": "unknown"}, status=503)
    healthy = report.status in ("online", "starting")
    return web.json_response(report.as_dict(), status=200 if healthy else 503)


def create_app(**options: Any) -> web.Application:
    """The application; ``options`` go to :func:`health_service`."""
    app = web.Application()
    app.cleanup_ctx.append(health_service(**options))
    app.router.add_get("/health", health)
    return app


if __name__ == "__main__":
    web.run_app(create_app(), host="127.0.0.1", port=8080)
