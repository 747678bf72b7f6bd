"""An aiohttp application that keeps its health file while it serves, and answers probes.

    pip install . aiohttp    # in a clone of healthfile
    python examples/aiohttp_app.py

A ``cleanup_ctx`` generator starts the health service on the application's event loop at
startup (the first report is on disk before the first request) and stops it at cleanup,
which writes the final "stopped" report. ``/health/livez``, ``/health/readyz``,
``/health/healthz`` and the status page ``/health/`` are :func:`healthfile.asgi_app`,
served through :func:`asgi_handler`, a small adapter from aiohttp to an ASGI application.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

import healthfile

HEALTH = web.AppKey("health", healthfile.AsyncHealthService)

ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]


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


def asgi_handler(
    app: ASGIApp, root_path: str = ""
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp handler that answers with an ASGI application mounted at ``root_path``.

    For applications that answer in one piece, as :func:`healthfile.asgi_app` does.
    """

    async def handler(request: web.Request) -> web.Response:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": f"{request.version.major}.{request.version.minor}",
            "method": request.method,
            "scheme": request.scheme,
            "path": request.path,
            "raw_path": request.raw_path.partition("?")[0].encode("latin-1"),
            "query_string": request.rel_url.raw_query_string.encode("latin-1"),
            "root_path": root_path,
            "headers": [(name.lower(), value) for name, value in request.raw_headers],
        }
        body = await request.read()
        start: MutableMapping[str, Any] = {}
        chunks: list[bytes] = []

        async def receive() -> MutableMapping[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await app(scope, receive, send)
        # Content-Length passes as the application set it: for HEAD, that of GET's body.
        headers = CIMultiDict(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in start["headers"]
        )
        return web.Response(status=start["status"], body=b"".join(chunks), headers=headers)

    return handler


def create_app(
    health_file: str | os.PathLike[str] = "data/health.json", **options: Any
) -> web.Application:
    """The application; ``options`` go to :func:`health_service`."""
    app = web.Application()
    app.cleanup_ctx.append(health_service(health_file=health_file, **options))
    probes = asgi_handler(healthfile.asgi_app(health_file), root_path="/health")
    app.router.add_route("*", "/health", probes)
    app.router.add_route("*", "/health/{path:.*}", probes)
    return app


if __name__ == "__main__":
    web.run_app(create_app(), host="127.0.0.1", port=8080)
