"""``asgi_app()``: the probe's verdict over HTTP, for load balancers, httpGet probes and people.

An ASGI 3 application with no dependency. Every answer is the judge's, the very code
``healthfile check`` runs, on the file on disk: HTTP and the probe never disagree, and every
worker of a multi-worker server answers the same truth. The file is read in a daemon thread
of the application's own, bounded in time (a file on a hung network mount answers 503, it
never holds the event loop or a request for long).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import math
import os
import time
import weakref
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from . import _page
from ._judge import UNREADABLE, Verdict, judge, render, split_check_names
from ._limits import MAX_SECONDS, MIN_SECONDS
from ._options import absolute, validate_seconds
from ._threads import WorkerThread

__all__ = ["DEFAULT_READ_TIMEOUT", "HealthApp", "asgi_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Below a Kubernetes probe's default timeoutSeconds (1 s), so that a hung read is answered
# with a 503 that says why rather than a client-side timeout; far above a real read (< 1 ms;
# on Windows up to 0.25 s of retries while the writer renames).
DEFAULT_READ_TIMEOUT = 0.9

_VERDICT_ROUTES = {"/livez": ("live",), "/readyz": None, "/healthz": None}
_PAGE_ROUTES = ("", "/")
_PARAMETERS = ("group", "only", "ignore", "allow_degraded", "max_age")
_MAX_PARAMETERS = 32
_TRUE = ("true", "1", "yes", "on", "")
_FALSE = ("false", "0", "no", "off")
_JSON = b"application/json"
_HTML = b"text/html; charset=utf-8"
# The status page loads nothing and runs nothing: only its own inline style.
_PAGE_POLICY = b"default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"


class _BadRequest(Exception):
    """A query parameter that cannot be used (the message names it)."""


class _Query:
    """The probe's flags, as a request's query parameters give them."""

    __slots__ = ("allow_degraded", "groups", "ignore", "max_age", "only")

    def __init__(self) -> None:
        self.groups: tuple[str, ...] | None = None
        self.only: tuple[str, ...] | None = None
        self.ignore: tuple[str, ...] | None = None
        self.allow_degraded = False
        self.max_age: float | None = None


class HealthApp:
    """The ASGI application :func:`asgi_app` returns (see there)."""

    def __init__(self, health_file: str | os.PathLike[str], read_timeout: float) -> None:
        self._health_file = os.fspath(absolute(health_file))
        self._read_timeout = validate_seconds("read_timeout", read_timeout)
        self._reader: WorkerThread | None = None
        # When the read in the reader thread began (monotonic), None while it is idle.
        self._busy_since: float | None = None
        # The last read a request gave up waiting for, and when it was asked for (monotonic).
        self._overdue: tuple[concurrent.futures.Future[Verdict], float] | None = None

    def __repr__(self) -> str:
        return f"<healthfile ASGI app health_file={self._health_file!r}>"

    @property
    def health_file(self) -> str:
        """The health file this application answers from, absolute."""
        return self._health_file

    def close(self) -> None:
        """Let the reader thread end (a later request starts a new one)."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.shutdown(wait=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await receive()  # websocket.connect
            # Closing before accepting makes the server answer 403.
            await send({"type": "websocket.close", "code": 1008, "reason": "HTTP only"})
        else:
            raise ValueError(f"healthfile's ASGI app does not handle {kind!r} scopes")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """Complete startup and shutdown; nothing to set up (the reader starts on demand)."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, send: Send) -> None:
        """Answer one request: the status page, a verdict, or why not."""
        path, prefix = _route_path(scope)
        head = scope["method"] == "HEAD"
        if path not in _PAGE_ROUTES and path not in _VERDICT_ROUTES:
            paths = ", ".join(prefix + route for route in ("/", *_VERDICT_ROUTES))
            await _error(send, 404, f"no such path: {scope['path']} (the paths are {paths})", head)
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _error(
                send, 405, f"method {scope['method']} not allowed: use GET or HEAD", head=False
            )
            return
        try:
            query = _parse_query(scope.get("query_string", b""), path)
        except _BadRequest as exc:
            await _error(send, 400, str(exc), head)
            return
        if path in _PAGE_ROUTES:
            verdict = await self._read(lambda: judge(self._health_file))
            # Links relative to the page's address hold behind a proxy that strips a prefix.
            tail = scope["path"].rpartition("/")[2]
            base = f"{tail}/" if tail else ""
            page = _page.render_page(verdict, now=time.time(), base=base)
            status = 200 if verdict.exit_code() == 0 else 503
            extra = [(b"content-security-policy", _PAGE_POLICY)]
            await _respond(send, status, page.encode("utf-8"), _HTML, head, extra)
            return
        groups = _VERDICT_ROUTES[path] if query.groups is None else query.groups

        verdict = await self._read(
            lambda: judge(
                self._health_file,
                max_age=query.max_age,
                only=query.only,
                ignore=query.ignore,
                groups=groups,
            )
        )
        code = verdict.exit_code(allow_degraded=query.allow_degraded)
        line = render(verdict, allow_degraded=query.allow_degraded, as_json=True)
        await _respond(send, 200 if code == 0 else 503, (line + "\n").encode("utf-8"), _JSON, head)

    async def _read(self, judged: Callable[[], Verdict]) -> Verdict:
        """Run the judge in the reader thread, for at most ``read_timeout`` seconds."""
        now = time.monotonic()
        busy, overdue = self._busy_since, self._overdue
        if overdue is not None and not overdue[0].done():
            # A request gave up on a read that still hangs: queue nothing more behind it.
            return self._timed_out(now - overdue[1])
        if busy is not None and now - busy > self._read_timeout:
            return self._timed_out(now - busy)  # hung past the bound, its request gone
        reader = self._reader
        if reader is None:
            reader = self._reader = WorkerThread("healthfile-http")
            # An app dropped without close() lets its reader end too.
            weakref.finalize(self, reader.shutdown, False)
        submitted = reader.submit(self._timed, judged)
        future = asyncio.wrap_future(submitted)
        done, _ = await asyncio.wait({future}, timeout=self._read_timeout)
        if not done:
            # Known hung from now on, whatever the clock says of when the thread began it.
            self._overdue = (submitted, now)
            return self._timed_out(self._read_timeout)
        return future.result()

    def _timed(self, judged: Callable[[], Verdict]) -> Verdict:
        """Call ``judged`` in the reader thread, marking the thread busy meanwhile."""
        self._busy_since = time.monotonic()
        try:
            return judged()
        finally:
            self._busy_since = None

    def _timed_out(self, seconds: float) -> Verdict:
        """The verdict on a read that has not returned after ``seconds``."""
        return Verdict(
            UNREADABLE,
            f"unreadable: {self._health_file}: no answer from the file system for "
            f"{math.floor(seconds * 10) / 10:g} s",
            health_file=self._health_file,
        )


def asgi_app(
    health_file: str | os.PathLike[str] | None = None,
    *,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
) -> HealthApp:
    """An ASGI 3 application answering health probes from the health file, as ``healthfile
    check`` judges it.

    ``GET``/``HEAD`` ``/livez`` (the verdict of ``--group live``), ``/readyz`` and
    ``/healthz`` (the default verdict): 200 where the probe would exit 0, else 503, the body
    the probe's ``--json`` line; query parameters ``group``, ``only``, ``ignore`` (comma-
    separated names), ``allow_degraded`` (``true``/``false``/``1``/``0``) and ``max_age``
    (seconds) mirror the probe's flags. ``GET /`` is a status page for a person. Another
    method is 405, another path 404, a bad query parameter 400; every answer carries
    ``Cache-Control: no-store``. Mount it anywhere (``Mount("/health", app=...)``): the
    paths are taken relative to ``root_path``.

    :param health_file: the file to answer from; ``None``: ``HEALTHFILE_HEALTH_FILE``, else
        ``data/health.json``. Made absolute now: a later ``os.chdir()`` changes nothing.
    :param read_timeout: seconds a read of the file may take before the answer is 503
        ``unreadable`` (a file on a hung network mount).
    :raises ValueError: for an empty ``HEALTHFILE_HEALTH_FILE`` or a ``read_timeout`` out of
        range.
    :raises TypeError: for a ``read_timeout`` that is not a number.
    """
    if health_file is None:
        health_file = os.environ.get("HEALTHFILE_HEALTH_FILE", "data/health.json")
        if not health_file.strip():
            raise ValueError("HEALTHFILE_HEALTH_FILE: expected a non-empty value")
    return HealthApp(health_file, read_timeout)


def _route_path(scope: Scope) -> tuple[str, str]:
    """The request's path below the application's mount point, and that mount point."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "") or ""
    # Servers and frameworks (Starlette's Mount, uvicorn --root-path) keep the mount point
    # in path and name it in root_path; older ones strip it from path.
    if root and (path == root or path.startswith(root + "/")):
        return path[len(root) :], root
    return path, root


def _parse_query(query_string: bytes, path: str) -> _Query:
    """The probe's flags from a query string; :class:`_BadRequest` for a bad one."""
    query = _Query()
    try:
        pairs = parse_qsl(
            query_string.decode("latin-1"),
            keep_blank_values=True,
            errors="strict",
            max_num_fields=_MAX_PARAMETERS,
        )
    except UnicodeDecodeError:
        raise _BadRequest("the query string is not UTF-8") from None
    except ValueError:
        raise _BadRequest(f"more than {_MAX_PARAMETERS} query parameters") from None
    seen: set[str] = set()
    for name, value in pairs:
        if name not in _PARAMETERS:
            raise _BadRequest(f"unknown query parameter {name!r} (known: {', '.join(_PARAMETERS)})")
        if path in _PAGE_ROUTES:
            raise _BadRequest(f"the status page takes no query parameters, not {name!r}")
        if name in ("allow_degraded", "max_age") and name in seen:
            raise _BadRequest(f"{name}: given more than once")
        seen.add(name)
        if name == "allow_degraded":
            query.allow_degraded = _flag(name, value)
        elif name == "max_age":
            query.max_age = _seconds(name, value)
        else:
            if name == "group" and path == "/livez":
                raise _BadRequest(
                    "group: /livez judges the group live; ask /readyz?group=NAME for another"
                )
            names = split_check_names(value)
            if not names:
                raise _BadRequest(f"{name}: expected names NAME[,NAME...], not {value!r}")
            attribute = "groups" if name == "group" else name
            given: tuple[str, ...] = getattr(query, attribute) or ()
            setattr(query, attribute, tuple(dict.fromkeys((*given, *names))))
    if query.only is not None and query.ignore is not None:
        raise _BadRequest("only and ignore cannot be used together")
    if query.only is not None and path == "/livez":
        raise _BadRequest("only: /livez judges the group live; ask /readyz?only=NAME instead")
    if query.only is not None and query.groups is not None:
        raise _BadRequest("only and group cannot be used together")
    return query


def _flag(name: str, value: str) -> bool:
    """A boolean query parameter: true/1/yes/on (or no value), false/0/no/off."""
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise _BadRequest(f"{name}: expected true or false (1 or 0), not {value!r}")


def _seconds(name: str, value: str) -> float:
    """A number of seconds, bounded as ``healthfile check --max-age`` bounds it."""
    try:
        seconds = float(value)
    except ValueError:
        raise _BadRequest(f"{name}: expected a number of seconds, not {value!r}") from None
    if not (math.isfinite(seconds) and MIN_SECONDS <= seconds <= MAX_SECONDS):
        raise _BadRequest(
            f"{name}: expected seconds >= {MIN_SECONDS:g} and <= {MAX_SECONDS}, not {value!r}"
        )
    return seconds


async def _error(send: Send, status: int, message: str, head: bool) -> None:
    """Answer with ``status`` and a one-line JSON error."""
    body = (json.dumps({"error": message}, ensure_ascii=False) + "\n").encode("utf-8")
    extra = [(b"allow", b"GET, HEAD")] if status == 405 else []
    await _respond(send, status, body, _JSON, head, extra)


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    head: bool,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Send a whole response; for HEAD its headers alone."""
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
        *(extra or ()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})
