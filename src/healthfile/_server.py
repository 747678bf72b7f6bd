"""The built-in HTTP/1.1 server: :func:`healthfile.asgi_app` on the service's own event loop.

For applications with no web server of their own (workers, consumers, the sidecar). h11 (the
extra ``healthfile[http]``) parses requests and frames responses; this module owns the
sockets, the limits and shutdown, as uvicorn's h11 protocol does. Bounded against slow and
greedy clients: a request head of at most 16 KiB, a whole request within 5 s of the
connection (or of the previous answer: keep-alive idles at most that long), at most 100
open connections (the next ones are closed at once, never queued), one request at a time
per connection (pipelined ones wait their turn, unread), and a client that does not read
its answers is cut after 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import os
import socket
from collections.abc import Callable
from email.utils import formatdate
from typing import Any, cast
from urllib.parse import unquote

from ._asgi import HealthApp, Message

try:
    import h11
except ImportError:  # pragma: no cover - the extra is installed where the tests run
    h11 = None  # type: ignore[assignment]

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_CONNECTIONS",
    "MAX_HEAD_BYTES",
    "REQUEST_SECONDS",
    "HTTPServer",
    "format_address",
    "parse_address",
    "require_h11",
]

logger = logging.getLogger("healthfile")

MAX_HEAD_BYTES = 16 * 1024
MAX_BODY_BYTES = 16 * 1024  # GET and HEAD need none; a small one is read and dropped
REQUEST_SECONDS = 5.0
MAX_CONNECTIONS = 100
# Past this much unsent answer, the next pipelined request waits until the client reads.
_WRITE_HIGH_WATER = 64 * 1024
# Past this much received while an answer is being made, reading pauses until it is sent.
_READ_HIGH_WATER = 64 * 1024
# How long stop() waits for the closed connections to be gone (they go at the next turn of
# the loop: every one is closed or aborted, none is waited for).
_CLOSE_WAIT_SECONDS = 1.0


def require_h11() -> None:
    """Raise a clear ImportError when the ``http`` extra is not installed."""
    if h11 is None:
        raise ImportError("the HTTP server needs h11 (the extra healthfile[http]): pip install h11")


def parse_address(text: object, what: str = "http") -> tuple[str, int]:
    """The host and port of ``"HOST:PORT"`` (IPv6 as ``"[::1]:8081"``; port 0: any free one).

    :raises TypeError: for a value that is not a string.
    :raises ValueError: naming ``what`` and the value.
    """
    example = f"{what} must be HOST:PORT (e.g. 127.0.0.1:8081 or [::1]:8081)"
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a string HOST:PORT, not {text!r}")
    host, colon, port_text = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ":" not in host:
            raise ValueError(f"{example}: brackets are for IPv6 addresses, not {text!r}")
    elif ":" in host:
        raise ValueError(f"{example}: put an IPv6 address in brackets, not {text!r}")
    if not colon or not host or any(ch.isspace() for ch in host):
        raise ValueError(f"{example}, not {text!r}")
    if not (port_text.isascii() and port_text.isdigit() and int(port_text) <= 65535):
        raise ValueError(f"{example}: the port is a number from 0 to 65535, not {text!r}")
    return host, int(port_text)


def format_address(host: str, port: int) -> str:
    """``HOST:PORT``, an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class HTTPServer:
    """Serve ``app`` over HTTP/1.1 on ``host:port`` until :meth:`close`."""

    def __init__(
        self,
        app: HealthApp,
        host: str,
        port: int,
        *,
        max_connections: int = MAX_CONNECTIONS,
        request_seconds: float = REQUEST_SECONDS,
    ) -> None:
        require_h11()
        self.app = app
        self._host = host
        self._port = port
        self.max_connections = max_connections
        self.request_seconds = request_seconds
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._refusing = False
        self._closing = False
        self._date = (0, b"")
        # One timer for every connection's deadline, not one per connection: it runs while
        # any is open, a twentieth of the bound apart (5 s is enforced within 5.25 s).
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweep_every = request_seconds / 20

    def __repr__(self) -> str:
        state = "serving" if self._server is not None and not self._closing else "closed"
        return f"<HTTPServer {state} {format_address(*self.address)}>"

    @property
    def address(self) -> tuple[str, int]:
        """The host and port served (the port bound when port 0 was asked for)."""
        if self._server is not None and self._server.sockets:
            port = self._server.sockets[0].getsockname()[1]
            return self._host, int(port)
        return self._host, self._port

    async def start(self) -> None:
        """Bind and listen.

        :raises OSError: naming the address, when it cannot be bound (in use, not local).
        """
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: _Connection(self),
                self._host,
                self._port,
                family=socket.AF_UNSPEC,
                backlog=self.max_connections,
            )
        except OSError as exc:
            where = format_address(self._host, self._port)
            raise OSError(exc.errno, f"cannot serve HTTP on {where}: {_reason(exc)}") from None
        logger.info("serving HTTP on http://%s/", format_address(*self.address))

    def close(self) -> None:
        """Stop listening and close every connection now (an answer in flight is cut)."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.shut()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def shut_down(self) -> None:
        """Close the server and every connection now, and the app's file reader."""
        self.close()
        self.app.close()

    async def wait_closed(self) -> None:
        """Wait (a moment at most) until the port and every connection are released."""
        server = self._server
        if server is None:
            return
        waiter = asyncio.ensure_future(server.wait_closed())
        # asyncio.wait, not wait_for: a cancellation of our caller propagates (gh-86296).
        done, _ = await asyncio.wait({waiter}, timeout=_CLOSE_WAIT_SECONDS)
        if not done:
            waiter.cancel()

    def admit(self, connection: _Connection) -> bool:
        """Count a new connection in, unless the server is closing or full."""
        if self._closing:
            return False
        if len(self._connections) >= self.max_connections:
            if not self._refusing:
                logger.warning(
                    "HTTP: %d connections open, closing new ones until some end",
                    self.max_connections,
                )
                self._refusing = True
            return False
        if self._refusing:
            logger.info("HTTP: accepting connections again")
            self._refusing = False
        self._connections.add(connection)
        if self._sweeper is None:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(self._sweep_every, self._sweep)
        return True

    def forget(self, connection: _Connection) -> None:
        """Count a closed connection out."""
        self._connections.discard(connection)

    def _sweep(self) -> None:
        """Act on every connection whose deadline has passed; come back while any is open."""
        self._sweeper = None
        now = asyncio.get_running_loop().time()
        for connection in list(self._connections):
            connection.expire(now)
        if self._connections and not self._closing:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(self._sweep_every, self._sweep)

    def date_header(self) -> bytes:
        """The ``Date`` value, formatted once a second."""
        now = int(asyncio.get_running_loop().time())
        if self._date[0] != now:
            self._date = (now, formatdate(usegmt=True).encode("ascii"))
        return self._date[1]


class _Connection(asyncio.Protocol):
    """One client connection: h11 reads its requests, the application answers them in turn."""

    def __init__(self, server: HTTPServer) -> None:
        self._server = server
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        # A wait (for a request, or for the client to read) sets a deadline; the server's
        # sweep acts on it.
        self._deadline: float | None = None
        self._on_deadline: Callable[[], None] = self._request_timeout
        self._request: h11.Request | None = None
        self._body_bytes = 0
        self._task: asyncio.Task[None] | None = None
        self._writing_paused = False
        self._reading_paused = False
        self._received_while_busy = 0
        self._admitted = False
        self._client: tuple[str, int] | None = None
        self._address: tuple[str, int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, whatever its class: uvloop's is no asyncio.Transport subclass.
        self._transport = cast(asyncio.Transport, transport)
        transport = self._transport
        if not self._server.admit(self):
            transport.abort()  # refused, not queued: the client learns at once
            return
        self._admitted = True
        self._client = _peer(transport, "peername")
        self._address = _peer(transport, "sockname")
        transport.set_write_buffer_limits(high=_WRITE_HIGH_WATER)
        self._arm(self._server.request_seconds, self._request_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._admitted:
            self._server.forget(self)
        if self._task is not None:
            self._task.cancel()  # the answer has nobody to go to

    def data_received(self, data: bytes) -> None:
        self._h11.receive_data(data)
        if self._task is not None or self._writing_paused:
            # Pipelined requests wait in h11's buffer until this answer is sent (or read by
            # the client): as much as one more read past the bound.
            self._received_while_busy += len(data)
            if self._received_while_busy > _READ_HIGH_WATER and not self._reading_paused:
                assert self._transport is not None
                self._transport.pause_reading()
                self._reading_paused = True
            return
        self._next()

    def eof_received(self) -> bool:
        self._h11.receive_data(b"")
        self._next()
        return True  # a half-closed client still gets the answer in flight: we close then

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        transport = self._transport
        if self._task is None and transport is not None and not transport.is_closing():
            self._received_while_busy = 0
            if self._reading_paused:
                transport.resume_reading()
                self._reading_paused = False
            self._arm(self._server.request_seconds, self._request_timeout)
            self._next()

    def shut(self) -> None:
        """Close at once: gracefully when idle, else cut the answer in flight."""
        if self._transport is None or self._transport.is_closing():
            return
        idle = self._task is None and self._transport.get_write_buffer_size() == 0
        if idle:
            self._transport.close()
        else:
            self._transport.abort()

    def _next(self) -> None:
        """Handle the events h11 has ready, up to the next complete request."""
        transport = self._transport
        while self._task is None and transport is not None and not transport.is_closing():
            if self._writing_paused:
                return  # the client reads slowly: its next request waits (resume_writing)
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                self._refuse(exc.error_status_hint, str(exc))
                return
            if event is h11.NEED_DATA:
                return
            if event is h11.PAUSED:
                return  # a pipelined request: the answer to this one comes first
            if isinstance(event, h11.Request):
                # h11 bounds a head still arriving; one that came whole in a read is measured.
                if _head_bytes(event) > MAX_HEAD_BYTES:
                    self._refuse(431, f"request head over {MAX_HEAD_BYTES} bytes")
                    return
                self._request, self._body_bytes = event, 0
            elif isinstance(event, h11.Data):
                self._body_bytes += len(event.data)
                if self._body_bytes > MAX_BODY_BYTES:
                    self._refuse(413, f"request body over {MAX_BODY_BYTES} bytes")
                    return
            elif isinstance(event, h11.EndOfMessage):
                self._disarm()
                self._received_while_busy = 0
                request, self._request = self._request, None
                assert request is not None
                self._task = self._loop.create_task(self._answer(request))
            elif isinstance(event, h11.ConnectionClosed):
                transport.close()
                return

    async def _answer(self, request: h11.Request) -> None:
        """Run the application for ``request``, write its answer, then go on or close."""
        transport = self._transport
        assert transport is not None
        target = request.target
        raw_path, _, query = target.partition(b"?")
        head = request.method == b"HEAD"
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.http_version.decode("ascii"),
            "method": request.method.decode("ascii"),
            "scheme": "http",
            "path": unquote(raw_path.decode("ascii", "replace")),
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": list(request.headers),  # h11 gives the names lowercased
            "client": self._client,
            "server": self._address,
        }
        writer = _Writer(self._h11, transport, head, self._server.date_header())
        try:
            await self._server.app(scope, writer.receive, writer.send)
            if not writer.done:
                raise RuntimeError("the application returned without a whole answer")
        except Exception:
            logger.exception(
                "HTTP: the application failed on %s", target.decode("ascii", "replace")
            )
            if writer.started:
                transport.abort()
                return
            writer.fail()
        finally:
            self._task = None
        if self._h11.our_state is not h11.DONE or self._h11.their_state is not h11.DONE:
            transport.close()  # Connection: close, HTTP/1.0, or a body left unread
            return
        self._h11.start_next_cycle()
        if self._writing_paused:
            # The client has not read its answers: it has request_seconds to start.
            self._arm(self._server.request_seconds, transport.abort)
            return
        if self._reading_paused:
            transport.resume_reading()
            self._reading_paused = False
        self._arm(self._server.request_seconds, self._request_timeout)
        self._next()

    def _refuse(self, status: int, why: str) -> None:
        """Answer a request that cannot be served (400, 408, 413, 431) and close."""
        transport = self._transport
        assert transport is not None
        self._disarm()
        logger.debug("HTTP: %d to %s: %s", status, self._client, why)
        if self._h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            with contextlib.suppress(h11.LocalProtocolError):
                writer = _Writer(self._h11, transport, False, self._server.date_header())
                writer.simple(status, why)
        transport.close()

    def _request_timeout(self) -> None:
        """No whole request in time: a 408 for a request begun, else just close."""
        if self._transport is None or self._task is not None:
            return
        begun = self._h11.their_state is not h11.IDLE or bool(self._h11.trailing_data[0])
        if begun:
            self._refuse(408, f"no whole request within {self._server.request_seconds:g} s")
        else:
            self._transport.close()

    def expire(self, now: float) -> None:
        """Act on the deadline if it has passed by ``now`` (the server's sweep calls this)."""
        if self._deadline is not None and now >= self._deadline:
            self._deadline = None
            self._on_deadline()

    def _arm(self, seconds: float, action: Callable[[], None]) -> None:
        """Call ``action`` once ``seconds`` have passed, unless :meth:`_disarm` comes first."""
        self._deadline = self._loop.time() + seconds
        self._on_deadline = action

    def _disarm(self) -> None:
        self._deadline = None


class _Writer:
    """The ASGI ``send`` of one request: h11 frames the answer onto the transport."""

    def __init__(
        self, connection: h11.Connection, transport: asyncio.Transport, head: bool, date: bytes
    ) -> None:
        self._h11 = connection
        self._transport = transport
        self._head = head
        self._date = date
        self.started = False
        self.done = False
        self._received = False
        self._pending: list[bytes] = []  # an answer goes out in one write, not three

    async def receive(self) -> Message:
        """The request (its body dropped: GET and HEAD need none), then the disconnect."""
        if self._received:
            return {"type": "http.disconnect"}
        self._received = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(self, message: Message) -> None:
        """Write one ASGI message: the response start, then the body."""
        if message["type"] == "http.response.start" and not self.started:
            headers = [(b"date", self._date), (b"server", b"healthfile"), *message["headers"]]
            status = message["status"]
            self._write(h11.Response(status_code=status, headers=headers, reason=_phrase(status)))
            self.started = True
        elif message["type"] == "http.response.body" and self.started and not self.done:
            body = message.get("body", b"")
            if body and not self._head:
                self._write(h11.Data(data=body))
            if not message.get("more_body", False):
                self._write(h11.EndOfMessage())
                self.done = True
            self._flush()
        else:
            raise RuntimeError(f"unexpected ASGI message {message['type']!r}")

    def simple(self, status: int, text: str) -> None:
        """Write a whole plain-text answer that closes the connection."""
        body = (text + "\n").encode("utf-8", "replace")
        headers = [
            (b"date", self._date),
            (b"server", b"healthfile"),
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode("ascii")),
            (b"connection", b"close"),
        ]
        self._write(h11.Response(status_code=status, headers=headers, reason=_phrase(status)))
        self._write(h11.Data(data=body))
        self._write(h11.EndOfMessage())
        self._flush()

    def fail(self) -> None:
        """Answer 500 for an application that failed before it started its answer."""
        self.simple(500, "internal error")
        self.done = True

    def _write(self, event: Any) -> None:
        data = self._h11.send(event)
        if data:
            self._pending.append(data)

    def _flush(self) -> None:
        if self._pending:
            self._transport.write(b"".join(self._pending))
            self._pending.clear()


def _head_bytes(request: h11.Request) -> int:
    """The size of a request's head as sent: request line, header lines, blank line."""
    line = len(request.method) + len(request.target) + len(request.http_version) + 9
    return line + sum(len(name) + len(value) + 4 for name, value in request.headers) + 2


def _phrase(status: int) -> bytes:
    """The reason phrase of ``status`` ("Service Unavailable"), or none for an unknown one."""
    try:
        return http.HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


def _peer(transport: asyncio.BaseTransport, which: str) -> tuple[str, int] | None:
    """``(host, port)`` of one end of ``transport``, or None (it is not a TCP socket)."""
    address = transport.get_extra_info(which)
    if isinstance(address, tuple) and len(address) >= 2:
        return str(address[0]), int(address[1])
    return None


def _reason(exc: OSError) -> str:
    """What an OSError says, without its errno prefix or asyncio's own wording."""
    if exc.errno is not None:  # the OS's own words (asyncio's wording differs by version)
        return os.strerror(exc.errno)
    text = exc.strerror or str(exc)
    if text.startswith("error while attempting to bind"):  # asyncio's words around the OS's
        text = text.rsplit(": ", 1)[-1]
    return text
