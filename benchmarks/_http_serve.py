"""A server for figure 9, run as a process of its own: the built-in server, or uvicorn,
serving ``healthfile.asgi_app`` on one health file, on asyncio's loop or uvloop. Prints the
port once it listens, then serves until its stdin closes.

    python _http_serve.py builtin|uvicorn asyncio|uvloop HEALTH_FILE
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

import healthfile


async def _until_stdin_closes() -> None:
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def builtin(health_file: str) -> None:
    """The built-in server (what ``AsyncHealthService(http=...)`` runs)."""
    from healthfile._server import HTTPServer

    server = HTTPServer(healthfile.asgi_app(health_file), "127.0.0.1", 0)
    await server.start()
    print(server.address[1], flush=True)
    try:
        await _until_stdin_closes()
    finally:
        server.close()
        await server.wait_closed()


async def uvicorn_server(health_file: str) -> None:
    """uvicorn with its h11 protocol (httptools is not installed), no access log."""
    import uvicorn

    config = uvicorn.Config(
        healthfile.asgi_app(health_file),
        host="127.0.0.1",
        port=0,  # uvicorn binds (a socket made here would lack TCP_NODELAY: proto 0)
        http="h11",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    print(server.servers[0].sockets[0].getsockname()[1], flush=True)
    await _until_stdin_closes()
    server.should_exit = True
    await task


def main() -> None:
    kind, loop, path = sys.argv[1:]
    serve: Callable[[str], Awaitable[None]] = builtin if kind == "builtin" else uvicorn_server
    if loop == "uvloop":
        import uvloop

        uvloop.run(serve(path))
    else:
        asyncio.run(serve(path))


if __name__ == "__main__":
    main()
