"""One truth: on every kind of file, HTTP answers what `healthfile check --json` answers, from
the built-in server, asgi_app under uvicorn, mounted in Starlette and in FastAPI, and
through the aiohttp adapter of examples/aiohttp_app.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvicorn
from aiohttp import web
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Mount

from healthfile._asgi import asgi_app
from healthfile._server import HTTPServer
from helpers import child_environment, generous
from httphelpers import KINDS, write_kind
from test_examples import load_example

pytestmark = pytest.mark.usefixtures("clean_environment")

# (path and query, the same question as `healthfile check` flags)
QUESTIONS: list[tuple[str, tuple[str, ...]]] = [
    ("/readyz", ()),
    ("/healthz", ()),
    ("/livez", ("--group", "live")),
    ("/readyz?allow_degraded=true", ("--allow-degraded",)),
    ("/readyz?ignore=database", ("--ignore", "database")),
    ("/readyz?group=live", ("--group", "live")),
    ("/readyz?max_age=60", ("--max-age", "60")),
]


def probe_command() -> list[str]:
    """The installed `healthfile` console script, next to this Python."""
    script = shutil.which("healthfile", path=os.path.dirname(sys.executable))
    assert script is not None, "the healthfile console script is not installed"
    return [script]


async def probe(path: Path, flags: tuple[str, ...]) -> tuple[int, bytes]:
    """Run `healthfile check --json` in a subprocess; its exit status and its stdout."""
    process = await asyncio.create_subprocess_exec(
        *probe_command(),
        "check",
        "--json",
        "--health-file",
        str(path),
        *flags,
        stdout=asyncio.subprocess.PIPE,
        env=child_environment(PYTHONIOENCODING="utf-8"),
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out


def listening_socket() -> socket.socket:
    """A socket bound to a free port of 127.0.0.1."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def uvicorn_serving(app: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn (lifespan on) on a free port; yield its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="on", log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    try:
        while not server.started:
            assert not task.done(), task
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def builtin_serving(path: Path) -> AsyncIterator[str]:
    """Serve the file with the built-in server; yield its base URL."""
    server = HTTPServer(asgi_app(path), "127.0.0.1", 0)
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.address[1]}"
    finally:
        server.close()
        server.app.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def aiohttp_serving(files: dict[str, Path]) -> AsyncIterator[str]:
    """Serve every file through the example's aiohttp adapter, each under /<kind>/."""
    example = load_example("aiohttp_app")
    app = web.Application()
    for kind, path in files.items():
        app.router.add_route(
            "*", f"/{kind}/{{path:.*}}", example.asgi_handler(asgi_app(path), f"/{kind}")
        )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = listening_socket()
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await runner.cleanup()


async def disagreements(tmp_path: Path, questions: list[tuple[str, tuple[str, ...]]]) -> list[str]:
    """Ask every server each question on every kind of file; list where one's answer is
    not the probe's (the status 200 for exit 0, else 503, and the body its output)."""
    files = {kind: write_kind(tmp_path, kind) for kind in KINDS}
    bases: dict[str, Callable[[str], str]] = {}
    async with contextlib.AsyncExitStack() as stack:
        builtin = {
            kind: await stack.enter_async_context(builtin_serving(path))
            for kind, path in files.items()
        }
        bases["built-in server"] = builtin.__getitem__
        # uvicorn installs its signal handlers per server and puts back the previous ones
        # when it ends: the exit stack ends them in the reverse order, as they nest.
        plain = {
            kind: await stack.enter_async_context(uvicorn_serving(asgi_app(path)))
            for kind, path in files.items()
        }
        bases["uvicorn"] = plain.__getitem__
        mounts = [Mount(f"/{kind}", app=asgi_app(path)) for kind, path in files.items()]
        starlette = await stack.enter_async_context(uvicorn_serving(Starlette(routes=mounts)))
        bases["Starlette Mount"] = lambda kind: f"{starlette}/{kind}"
        api = FastAPI()
        for kind, path in files.items():
            api.mount(f"/{kind}", asgi_app(path))
        fastapi = await stack.enter_async_context(uvicorn_serving(api))
        bases["FastAPI mount"] = lambda kind: f"{fastapi}/{kind}"
        adapter = await stack.enter_async_context(aiohttp_serving(files))
        bases["aiohttp adapter"] = lambda kind: f"{adapter}/{kind}"
        session = await stack.enter_async_context(aiohttp.ClientSession())
        limit = asyncio.Semaphore(2)

        async def ask(kind: str, question: str, flags: tuple[str, ...]) -> list[str]:
            async with limit:
                before = await probe(files[kind], flags)
                answers = {}
                for name, base in bases.items():
                    async with session.get(base(kind) + question) as response:
                        answers[name] = (response.status, await response.read())
                after = before
                if any(
                    (0 if status == 200 else 1, body) != before for status, body in answers.values()
                ):
                    # A second may have passed (the age is in whole seconds): ask again.
                    after = await probe(files[kind], flags)
            return [
                f"{kind} {question} via {name}: {answer} but the probe said {before}"
                for name, (status, body) in answers.items()
                if (answer := (0 if status == 200 else 1, body)) not in (before, after)
                or status not in (200, 503)
            ]

        results = await asyncio.wait_for(
            asyncio.gather(
                *(ask(kind, question, flags) for kind in KINDS for question, flags in questions)
            ),
            generous(120),
        )
    assert len(bases) == 5
    return [line for lines in results for line in lines]


@pytest.mark.asyncio
async def test_every_server_answers_what_the_probe_answers(tmp_path: Path) -> None:
    """On every kind of file, /readyz, /healthz and /livez over the built-in server, uvicorn,
    Starlette, FastAPI and aiohttp answer exactly what `healthfile check --json` answers."""
    assert await disagreements(tmp_path, QUESTIONS[:3]) == []


@pytest.mark.asyncio
@pytest.mark.slow
async def test_every_query_parameter_answers_what_the_flag_answers(tmp_path: Path) -> None:
    """Each query parameter on every kind of file and every server answers what the
    probe's flag answers."""
    assert await disagreements(tmp_path, QUESTIONS[3:]) == []
