"""Helpers the HTTP tests share: health files of every kind, an in-process ASGI call, and a
small HTTP/1.1 client over real sockets (h11 reads the answers)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11

from healthfile._asgi import HealthApp
from healthfile._judge import judge, render
from helpers import stamp
from test_judge import check_result, report

# Kinds of file every HTTP answer is compared on with the probe's (the list, and
# starting and a clock problem besides).
KINDS = (
    "online",
    "warn-only",
    "degraded",
    "starting",
    "stale",
    "stopped",
    "clock",
    "missing",
    "not-the-contract",
)


def entry(status: str = "pass", output: str | None = None, **extra: Any) -> dict[str, Any]:
    """One check's entry with ``critical`` and ``groups`` (default: critical, no group)."""
    result = check_result(status, output)
    result.update({"critical": True, "groups": []})
    result.update(extra)
    return result


def kind_of_file(kind: str) -> dict[str, Any] | str | None:
    """The content of a health file of ``kind`` (None: no file at all)."""
    live = entry("pass", "lag 0.3 ms", groups=["live"])
    if kind == "online":
        return report(checks={"database": entry(), "event_loop": live})
    if kind == "warn-only":
        disk = entry("warn", "9% free", critical=False, groups=["storage"])
        return report(checks={"database": entry(), "event_loop": live, "disk": disk})
    if kind == "degraded":
        database = entry("fail", "unable to open database file")
        return report(
            "degraded", database="disconnected", checks={"database": database, "event_loop": live}
        )
    if kind == "starting":
        return report("starting", checks={"database": entry("fail", "not yet")})
    if kind == "stale":
        return report(age=120, expires_in=-60, checks={"database": entry(), "event_loop": live})
    if kind == "stopped":
        return report("stopped", age=30, checks={"database": entry()})
    if kind == "clock":
        return report(age=-610, expires_in=900, checks={"database": entry()})
    if kind == "missing":
        return None
    if kind == "not-the-contract":
        return '{"status": "online", "note": "written by something else"}\n'
    raise ValueError(kind)


def write_kind(directory: Path, kind: str) -> Path:
    """Write a health file of ``kind`` in ``directory`` (or none, for missing); its path."""
    path = directory / f"{kind}.json"
    content = kind_of_file(kind)
    if isinstance(content, dict):
        path.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    return path


def with_changes(data: dict[str, Any], *changes: tuple[float, str, str | None, str]) -> None:
    """Add ``changes`` to a report: (seconds ago, status, previous, why), newest first."""
    now = time.time()
    data["changes"] = [
        {"at": stamp(now - ago), "status": status, "previous": previous, "why": why}
        for ago, status, previous, why in changes
    ]


def probe_body(path: Path | str, **options: Any) -> bytes:
    """What ``healthfile check --json`` prints for the file with ``options`` (the judge's
    keywords, and allow_degraded), as bytes."""
    allow_degraded = options.pop("allow_degraded", False)
    verdict = judge(path, **options)
    return (render(verdict, allow_degraded=allow_degraded, as_json=True) + "\n").encode()


async def as_probe_says(
    path: Path | str, fetch: Callable[[], Awaitable[Answer]], **options: Any
) -> Answer:
    """Fetch an answer while the file and its judgement hold still; assert the body is it.

    The file and its judgement are taken before and after the fetch, again until both
    agree: the age in the body is in whole seconds, and a live writer may replace the file
    meanwhile (with a report judged alike but a second younger), so an answer between two
    different moments could be either of them, or neither.
    """
    for _ in range(20):
        before = file_bytes(path), probe_body(path, **options)
        answer = await fetch()
        after = file_bytes(path), probe_body(path, **options)
        if before == after:
            break
    assert before == after, "the file and its judgement never held still"
    assert answer.body == before[1], (answer.body, before[1])
    return answer


def file_bytes(path: Path | str) -> bytes | None:
    """The file's bytes, or None where there are none to read (missing, a directory)."""
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


@dataclass
class Answer:
    """An HTTP answer: status, headers (names lowercased; repeated ones joined) and body."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)

    @property
    def text(self) -> str:
        """The body as UTF-8 text."""
        return self.body.decode("utf-8")


def header_dict(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Headers as a dict of lowercase names."""
    result: dict[str, str] = {}
    for name, value in headers:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        result[key] = f"{result[key]}, {text}" if key in result else text
    return result


async def call_app(
    app: HealthApp,
    path: str,
    *,
    method: str = "GET",
    query: bytes = b"",
    root_path: str = "",
) -> Answer:
    """Call the ASGI application in-process as a server would; return its answer."""
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        messages.append(dict(message))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": root_path,
        "headers": [],
    }
    await app(scope, receive, send)
    assert [message["type"] for message in messages] == [
        "http.response.start",
        "http.response.body",
    ]
    return Answer(
        messages[0]["status"],
        header_dict(messages[0]["headers"]),
        messages[1].get("body", b""),
    )


def request_bytes(path: str, method: str = "GET") -> bytes:
    """The bytes of one HTTP/1.1 request, as h11 frames it."""
    connection = h11.Connection(h11.CLIENT)
    request = h11.Request(method=method, target=path, headers=[("host", "test")])
    return connection.send(request) + connection.send(h11.EndOfMessage())


class Client:
    """One HTTP/1.1 connection over a real socket; h11 frames requests and reads answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT)

    @classmethod
    async def connect(cls, host: str, port: int) -> Client:
        """Open a connection to ``host:port``."""
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def request(
        self, path: str, method: str = "GET", headers: Iterable[tuple[str, str]] = ()
    ) -> Answer:
        """Send one request and read its answer."""
        await self.send(path, method, headers)
        return await self.answer()

    async def send(
        self, path: str, method: str = "GET", headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Send one request (its answer is read by :meth:`answer`)."""
        request = h11.Request(method=method, target=path, headers=[("host", "test"), *headers])
        self.writer.write(self.h11.send(request) + self.h11.send(h11.EndOfMessage()))
        await self.writer.drain()

    async def answer(self) -> Answer:
        """Read one answer; then get ready for the next request on this connection."""
        answer: Answer | None = None
        body = bytearray()
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(await self.reader.read(65536))
                continue
            if isinstance(event, h11.Response):
                answer = Answer(event.status_code, header_dict(event.headers))
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert answer is not None
                answer.body = bytes(body)
                if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
                    self.h11.start_next_cycle()
                return answer
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("closed before an answer")

    async def pipeline(self, paths: list[str]) -> list[Answer]:
        """Send a request for each path in one write, then read the answers in turn."""
        self.writer.write(b"".join(request_bytes(path) for path in paths))
        await self.writer.drain()
        answers = []
        for path in paths:
            self.h11.send(h11.Request(method="GET", target=path, headers=[("host", "test")]))
            self.h11.send(h11.EndOfMessage())
            answers.append(await self.answer())
        return answers

    async def rest(self, timeout: float) -> bytes | None:
        """Everything the server sends until it closes (or resets) the connection, or None
        if it is still open after ``timeout`` seconds."""
        received = bytearray()

        async def drain() -> None:
            try:
                while data := await self.reader.read(65536):
                    received.extend(data)
            except ConnectionError:
                pass

        task = asyncio.ensure_future(drain())
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            task.cancel()
            await asyncio.wait({task})
            return None
        return bytes(received)

    async def close(self) -> None:
        """Close our end."""
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
