"""A Starlette (or FastAPI) application that keeps its health file while it serves.

    pip install . starlette uvicorn    # in a clone of healthfile
    uvicorn examples.starlette_app:app

The lifespan starts the health service on the server's own event loop before the first
request is served (the first report is on disk by then) and stops it at shutdown, which
writes the final "stopped" report. :func:`healthfile.asgi_app` is mounted at ``/health``:
``/health/livez``, ``/health/readyz``, ``/health/healthz`` answer what ``healthfile check``
answers, and ``/health/`` is a status page. FastAPI takes the same lifespan and mount:
``api = FastAPI(lifespan=lifespan)``, ``api.mount("/health", healthfile.asgi_app(...))``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount

import healthfile

# Who writes the health file (its app_name, the Prometheus label app) and which version.
# Without them healthfile reads [project].name and .version of the pyproject.toml in the
# working directory, which is the app's own only when the server starts in the app's project.
APP_NAME = "starlette-example"
APP_VERSION = "1.0.0"


def create_app(
    database: str | os.PathLike[str] = "data/app.db",
    health_file: str | os.PathLike[str] = "data/health.json",
    **options: Any,
) -> Starlette:
    """The application; ``options`` go to :class:`healthfile.AsyncHealthService`."""
    options.setdefault("app_name", APP_NAME)
    options.setdefault("app_version", APP_VERSION)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with healthfile.AsyncHealthService(
            database, health_file=health_file, **options
        ) as service:
            app.state.health = service
            yield

    probes = healthfile.asgi_app(health_file)
    return Starlette(routes=[Mount("/health", app=probes)], lifespan=lifespan)


app = create_app()
