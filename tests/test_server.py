"""The built-in HTTP server over real sockets: what it answers, keep-alive and pipelining,
its bounds against slow and greedy clients, binding, stop, and a standby serving the file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import h11
import pytest
import pytest_asyncio

from healthfile import _server
from healthfile._asgi import asgi_app
from healthfile._judge import judge
from healthfile._page import render_page
from healthfile._server import HTTPServer, parse_address
from helpers import ServiceFactory, generous, not_before, read_report, wait_until_async
from httphelpers import Client, as_probe_says, entry, request_bytes, write_kind
from test_judge import report

pytestmark = pytest.mark.usefixtures("clean_environment")

ServerFactory = Any


@pytest_asyncio.fixture
async def make_server(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """Start HTTP servers on 127.0.0.1 (any free port) for a file of a kind; close them all."""
    made: list[HTTPServer] = []

    async def factory(kind: str = "online", app: Any = None, **options: Any) -> HTTPServer:
        if app is None:
            app = asgi_app(write_kind(tmp_path, kind))
        server = HTTPServer(app, "127.0.0.1", 0, **options)
        await server.start()
        made.append(server)
        return server

    yield factory
    for server in made:
        server.close()
        server.app.close()
        await server.wait_closed()


Connect = Any


@pytest_asyncio.fixture
async def connect() -> AsyncIterator[Connect]:
    """Open client connections to an address; every one is closed when the test ends."""
    made: list[Client] = []

    async def factory(address: tuple[str, int]) -> Client:
        client = await Client.connect(*address)
        made.append(client)
        return client

    yield factory
    for client in made:
        await client.close()


async def open_count(server: HTTPServer) -> int:
    """The connections the server holds open, once the loop has run their callbacks."""
    await asyncio.sleep(0.05)
    return len(server._connections)


@pytest.mark.asyncio
async def test_the_service_serves_the_probe_verdict_on_its_own_loop(
    make_service: ServiceFactory, connect: Connect
) -> None:
    """AsyncHealthService(http=...) answers /readyz, /livez and / from its file, as the
    probe judges it, with Date and Server headers."""
    service = make_service(http="127.0.0.1:0")
    await service.start()
    address = service.http_address
    assert address is not None
    assert address[0] == "127.0.0.1"
    assert address[1] > 0
    client = await connect(address)

    readyz = await as_probe_says(service.health_file, lambda: client.request("/readyz"))
    livez = await as_probe_says(
        service.health_file, lambda: client.request("/livez"), groups=("live",)
    )
    page = await client.request("/")
    await client.close()

    assert (readyz.status, livez.status, page.status) == (200, 200, 200)
    assert readyz.json()["verdict"] == "online"
    assert "<h1>Healthy</h1>" in page.text
    assert readyz.headers["server"] == "healthfile"
    assert readyz.headers["date"].endswith(" GMT")


@pytest.mark.asyncio
async def test_http_address_is_none_unless_serving(make_service: ServiceFactory) -> None:
    """http_address is None before start and after stop, and without http."""
    plain = make_service()
    served = make_service(http="127.0.0.1:0", health_file=plain.health_file.with_name("b.json"))
    assert served.http_address is None
    await plain.start()
    await served.start()
    assert plain.http_address is None
    assert served.http_address is not None
    await served.stop()
    assert served.http_address is None


@pytest.mark.asyncio
async def test_the_answer_follows_the_file(
    make_service: ServiceFactory, database: Path, connect: Connect
) -> None:
    """When the database goes, the next cycle's file makes /readyz 503 while /livez stays 200."""
    service = make_service(http="127.0.0.1:0")
    await service.start()
    assert service.http_address is not None
    client = await connect(service.http_address)
    assert (await client.request("/readyz")).status == 200

    os.replace(database, database.with_name("gone.db"))
    await service.check_now()
    readyz = await client.request("/readyz")
    livez = await client.request("/livez")
    await client.close()

    assert readyz.status == 503
    assert readyz.json()["verdict"] == "degraded"
    assert livez.status == 200


@pytest.mark.asyncio
async def test_keep_alive_serves_many_requests_on_one_connection(
    make_server: ServerFactory, connect: Connect
) -> None:
    """One connection carries request after request."""
    server = await make_server("degraded")
    client = await connect(server.address)

    answers = [await client.request(path) for path in ("/readyz", "/livez", "/", "/nope") * 5]
    await client.close()

    assert [answer.status for answer in answers[:4]] == [503, 200, 503, 404]
    assert await open_count(server) == 0


@pytest.mark.asyncio
async def test_pipelined_requests_are_answered_in_order(
    make_server: ServerFactory, connect: Connect
) -> None:
    """Requests sent in one write are answered one by one, in order."""
    server = await make_server("degraded")
    client = await connect(server.address)

    answers = await client.pipeline(["/readyz", "/livez", "/readyz?allow_degraded=1", "/x"])
    await client.close()

    assert [answer.status for answer in answers] == [503, 200, 200, 404]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "request_line",
    [
        b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /readyz HTTP/1.0\r\n\r\n",
    ],
)
async def test_connection_close_and_http_1_0_close_after_the_answer(
    make_server: ServerFactory, request_line: bytes, connect: Connect
) -> None:
    """Connection: close, or HTTP/1.0, gets its answer and then the connection closes."""
    server = await make_server("online")
    client = await connect(server.address)

    client.writer.write(request_line)
    rest = await client.rest(generous(5))

    assert rest is not None
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n")
    assert rest.endswith(b"}\n")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", b"400"),
        (b"GET /readyz HTTP/1.1\r\n\r\n", b"400"),  # HTTP/1.1 without Host
        (b"GET /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n", b"400"),
        (b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 17 * 1024 + b"\r\n\r\n", b"431"),
        (b"GET /" + b"a" * 17 * 1024 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"431"),
        (
            b"POST /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n" + b"x" * 20000,
            b"413",
        ),
    ],
)
async def test_a_bad_or_oversized_request_is_refused_and_closed(
    make_server: ServerFactory, data: bytes, status: bytes, connect: Connect
) -> None:
    """A malformed request is 400, a head over 16 KiB 431, a body over 16 KiB 413; each
    answer closes the connection."""
    server = await make_server("online")
    client = await connect(server.address)

    client.writer.write(data)
    rest = await client.rest(generous(5))

    assert rest is not None
    assert rest.startswith(b"HTTP/1.1 " + status + b" ")
    assert b"connection: close\r\n" in rest.lower()
    assert await open_count(server) == 0


@pytest.mark.asyncio
async def test_a_head_just_under_16_kib_is_served(
    make_server: ServerFactory, connect: Connect
) -> None:
    """The bound is on the head's size: a 15 KiB head is a request like any other."""
    server = await make_server("online")
    client = await connect(server.address)

    answer = await client.request("/readyz", headers=[("x-padding", "a" * 15 * 1024)])
    await client.close()

    assert answer.status == 200


@pytest.mark.asyncio
async def test_a_small_body_is_read_and_dropped(
    make_server: ServerFactory, connect: Connect
) -> None:
    """A GET with a small body is answered, and the connection stays usable."""
    server = await make_server("online")
    client = await connect(server.address)

    client.writer.write(
        b"GET /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        + request_bytes("/livez")
    )
    rest = await client.rest(0.5)

    assert rest is None  # still open: keep-alive
    await client.close()


@pytest.mark.asyncio
async def test_a_request_not_whole_in_time_is_408_and_closed(
    make_server: ServerFactory, connect: Connect
) -> None:
    """A request head still incomplete at the bound gets 408 and the connection closes."""
    server = await make_server("online", request_seconds=0.3)
    client = await connect(server.address)

    started = time.monotonic()
    client.writer.write(b"GET /readyz HTTP/1.1\r\nHo")
    rest = await client.rest(generous(5))

    assert rest is not None
    assert rest.startswith(b"HTTP/1.1 408 ")
    assert not_before(0.3) <= time.monotonic() - started < generous(2)


@pytest.mark.asyncio
async def test_an_idle_connection_is_closed_at_the_bound(
    make_server: ServerFactory, connect: Connect
) -> None:
    """A connection that sends nothing, or nothing more after an answer, is closed silently."""
    server = await make_server("online", request_seconds=0.3)
    silent = await connect(server.address)
    kept = await connect(server.address)
    assert (await kept.request("/readyz")).status == 200

    assert await silent.rest(generous(5)) == b""
    assert await kept.rest(generous(5)) == b""


async def trickled(client: Any, *, every: float, wait: float) -> tuple[bytes | None, float]:
    """Send a request head a byte every ``every`` seconds until the server cuts it; return
    what the server sent (within generous(``wait``)) and the seconds it took."""
    data = request_bytes("/readyz") + b"x-slow: " + b"a" * 200
    started = time.monotonic()

    async def trickle() -> None:
        for index in range(len(data)):
            try:
                client.writer.write(data[index : index + 1])
                await client.writer.drain()
            except ConnectionError:
                return
            await asyncio.sleep(every)

    sender = asyncio.ensure_future(trickle())
    rest: bytes | None = await client.rest(generous(wait))
    took = time.monotonic() - started
    sender.cancel()
    return rest, took


@pytest.mark.asyncio
@pytest.mark.slow
async def test_a_slow_client_is_cut_after_5_s(make_server: ServerFactory, connect: Connect) -> None:
    """A client sending its head a byte every 0.2 s is cut 5 s after it connected."""
    server = await make_server("online")
    rest, took = await trickled(await connect(server.address), every=0.2, wait=10)

    assert rest is not None
    assert rest.startswith(b"HTTP/1.1 408 ")
    assert not_before(5.0) <= took < generous(6.5)


@pytest.mark.asyncio
@pytest.mark.slow
async def test_an_idle_keep_alive_connection_is_closed_after_5_s(
    make_server: ServerFactory, connect: Connect
) -> None:
    """Keep-alive idles at most 5 s after an answer."""
    server = await make_server("online")
    client = await connect(server.address)
    assert (await client.request("/readyz")).status == 200
    answered = time.monotonic()

    assert await client.rest(generous(10)) == b""
    assert not_before(5.0) <= time.monotonic() - answered < generous(6.5)


@pytest.mark.asyncio
async def test_connections_over_the_limit_are_refused_not_queued(
    make_server: ServerFactory, healthfile_logs: pytest.LogCaptureFixture, connect: Connect
) -> None:
    """Past max_connections a new connection is closed at once; once one ends, it is
    accepted again; the refusal is logged once."""
    server = await make_server("online", max_connections=3)
    held = [await connect(server.address) for _ in range(3)]
    for client in held:
        assert (await client.request("/readyz")).status == 200

    refused = [await connect(server.address) for _ in range(2)]
    for client in refused:
        assert await client.rest(generous(2)) == b""
    await held[0].close()
    assert await open_count(server) == 2
    again = await connect(server.address)
    answer = await again.request("/readyz")

    assert answer.status == 200
    assert len([r for r in healthfile_logs.records if "closing new ones" in r.getMessage()]) == 1
    for client in (*held[1:], again):
        await client.close()


@pytest.mark.asyncio
@pytest.mark.slow
async def test_a_flood_is_bounded_and_cycles_stay_on_time(
    make_service: ServiceFactory, connect: Connect
) -> None:
    """200 concurrent connections: at most 100 are served, the others closed at once; the
    service's cycles keep their schedule meanwhile."""
    service = make_service(http="127.0.0.1:0", interval=0.5)
    await service.start()
    assert service.http_address is not None
    first = read_report(service.health_file)
    assert first is not None

    started = time.monotonic()
    clients = await asyncio.gather(*(connect(service.http_address) for _ in range(200)))

    async def outcome(client: Client) -> str:
        try:
            answer = await asyncio.wait_for(client.request("/readyz"), generous(10))
        except (ConnectionError, h11.RemoteProtocolError):
            return "refused"
        return str(answer.status)

    outcomes = await asyncio.gather(*(outcome(client) for client in clients))
    served = outcomes.count("200")
    # keep the served ones open and asking while the cycles run
    for _ in range(8):
        await asyncio.gather(
            *(
                client.request("/readyz")
                for client, result in zip(clients, outcomes, strict=True)
                if result == "200"
            )
        )
        await asyncio.sleep(0.1)
    elapsed = time.monotonic() - started
    last = read_report(service.health_file)
    for client in clients:
        await client.close()

    assert 0 < served <= 100
    assert outcomes.count("refused") == 200 - served
    assert last is not None
    cycles = last["sequence"] - first["sequence"]
    expected = elapsed / 0.5
    assert expected - 2 <= cycles <= expected + 1


@pytest.mark.asyncio
async def test_a_client_that_does_not_read_its_answers_is_cut(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    """Pipelined requests whose answers are never read stop being served once the unread
    answers pass the bound, and the connection is cut after request_seconds."""
    checks = {f"check_{index:03}": entry("fail", "x" * 250) for index in range(300)}
    path = tmp_path / "big.json"
    path.write_text(json.dumps(report("degraded", checks=checks)), encoding="utf-8")
    server = await make_server(app=asgi_app(path), request_seconds=0.3)
    page = len(render_page(judge(path), now=time.time()).encode())
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: the window
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_connect(sock, server.address)
        await loop.sock_sendall(sock, request_bytes("/") * 100)
        deadline = time.monotonic() + generous(10)
        while await open_count(server) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert await open_count(server) == 0
        received = 0
        with contextlib.suppress(ConnectionError, TimeoutError, asyncio.TimeoutError):
            while data := await asyncio.wait_for(loop.sock_recv(sock, 65536), generous(2)):
                received += len(data)
    finally:
        sock.close()

    assert page > 100_000
    assert received < 100 * page


class _App:
    """An ASGI application made of ``answer``, closable as the server's apps are."""

    def __init__(self, answer: Any) -> None:
        self._answer = answer

    def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        return self._answer(scope, receive, send)

    def close(self) -> None:
        pass


async def _raises(scope: Any, receive: Any, send: Any) -> None:
    raise RuntimeError("broken")


async def _returns_silently(scope: Any, receive: Any, send: Any) -> None:
    await receive()


async def _sends_nonsense(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.trailers"})


async def _raises_midway(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"half", "more_body": True})
    raise RuntimeError("broken midway")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("answer", "logged"),
    [
        (_raises, "broken"),
        (_returns_silently, "the application returned without a whole answer"),
        (_sends_nonsense, "unexpected ASGI message 'http.response.trailers'"),
    ],
)
async def test_an_application_failure_before_its_answer_is_500_and_closes(
    make_server: ServerFactory,
    connect: Connect,
    caplog: pytest.LogCaptureFixture,
    answer: Any,
    logged: str,
) -> None:
    """An application that raises, returns half an answer or sends what is not an answer
    gets a 500 and a closed connection; the failure is logged with its target."""
    server = await make_server(app=_App(answer))
    client = await connect(server.address)
    client.writer.write(request_bytes("/readyz"))

    rest = await client.rest(generous(5))

    assert rest is not None
    assert rest.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    failures = [r for r in caplog.records if r.getMessage().startswith("HTTP: the application")]
    assert [r.getMessage() for r in failures] == ["HTTP: the application failed on /readyz"]
    assert logged in str(failures[0].exc_info[1] if failures[0].exc_info else None)


@pytest.mark.asyncio
async def test_an_application_failing_mid_answer_cuts_the_connection(
    make_server: ServerFactory, connect: Connect
) -> None:
    """Once its answer has begun, a failing application's connection is cut: a client never
    takes half an answer for a whole one."""
    server = await make_server(app=_App(_raises_midway))
    client = await connect(server.address)
    client.writer.write(request_bytes("/readyz"))

    rest = await client.rest(generous(5))

    assert rest is not None
    head, _, body = rest.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"4\r\nhalf\r\n"  # the body began, and its last chunk never came


@pytest.mark.asyncio
async def test_pipelined_requests_past_64_kib_pause_reading_until_answered(
    make_server: ServerFactory, connect: Connect
) -> None:
    """While an answer is under way, a client's pipelined requests are read up to about
    64 KiB, then the server stops reading; answered, it reads on and answers every one."""
    release = asyncio.Event()
    targets: list[str] = []

    async def answer(scope: Any, receive: Any, send: Any) -> None:
        targets.append(scope["path"] + "?" + scope["query_string"].decode()[:3])
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(targets)).encode()})

    server = await make_server(app=_App(answer))
    client = await connect(server.address)
    paths = [f"/{index}?{'x' * 1000}" for index in range(100)]  # 100 KiB in all
    client.writer.write(request_bytes(paths[0]))
    await wait_until_async(lambda: targets, "the first request")
    client.writer.write(b"".join(request_bytes(path) for path in paths[1:]))
    (connection,) = server._connections
    await wait_until_async(lambda: connection._reading_paused, "the server to stop reading")
    assert targets == ["/0?xxx"]  # the first is answered before the next is read

    release.set()
    answers = []
    for path in paths:
        client.h11.send(h11.Request(method="GET", target=path, headers=[("host", "test")]))
        client.h11.send(h11.EndOfMessage())
        answers.append(await client.answer())

    assert [answer.body for answer in answers] == [str(n).encode() for n in range(1, 101)]
    assert targets == [f"/{index}?xxx" for index in range(100)]
    assert not connection._reading_paused


@pytest.mark.asyncio
async def test_an_unknown_status_has_no_reason_phrase_and_a_second_receive_is_a_disconnect(
    make_server: ServerFactory, connect: Connect
) -> None:
    """A status without a standard phrase goes out with an empty one; the request is read
    once, and reading again says the client is gone (as ASGI servers say)."""
    received: list[str] = []

    async def answer(scope: Any, receive: Any, send: Any) -> None:
        received.append((await receive())["type"])
        received.append((await receive())["type"])
        await send({"type": "http.response.start", "status": 599, "headers": []})
        await send({"type": "http.response.body", "body": b"odd"})

    server = await make_server(app=_App(answer))
    client = await connect(server.address)

    got = await client.request("/readyz")

    assert (got.status, got.body) == (599, b"odd")
    assert received == ["http.request", "http.disconnect"]
    client.writer.write(request_bytes("/readyz"))
    await client.writer.drain()
    raw = await client.reader.readuntil(b"\r\n")
    assert raw == b"HTTP/1.1 599 \r\n"


@pytest.mark.asyncio
async def test_a_port_in_use_makes_start_raise_oserror_naming_it(
    make_service: ServiceFactory, health_file: Path
) -> None:
    """Binding a port in use fails start() with OSError naming the address, before any
    report is written; the service can start once the port is free."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    service = make_service(http=f"127.0.0.1:{port}")

    with pytest.raises(OSError, match=f"cannot serve HTTP on 127.0.0.1:{port}: ") as caught:
        await service.start()

    assert caught.value.errno is not None
    assert not service.running
    assert service.http_address is None
    assert read_report(health_file) is None
    holder.close()
    await service.start()
    assert service.http_address == ("127.0.0.1", port)


@pytest.mark.asyncio
async def test_stop_closes_every_connection_and_frees_the_port(
    make_service: ServiceFactory, connect: Connect
) -> None:
    """stop() closes idle keep-alive connections at once, and the port binds right after."""
    service = make_service(http="127.0.0.1:0")
    await service.start()
    address = service.http_address
    assert address is not None
    clients = [await connect(address) for _ in range(5)]
    for client in clients:
        assert (await client.request("/readyz")).status == 200
    before_stop = await clients[0].request("/readyz")

    started = time.monotonic()
    await service.stop()
    stopped_in = time.monotonic() - started
    rests = [await client.rest(generous(1)) for client in clients]

    assert before_stop.status == 200
    assert rests == [b""] * 5
    assert stopped_in < generous(1)
    again = socket.socket()
    try:
        # What a new server does (asyncio sets SO_REUSEADDR on POSIX): bind and listen.
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(address)
        again.listen()
    finally:
        again.close()
    restarted = make_service(http=f"127.0.0.1:{address[1]}")
    await restarted.start()
    assert restarted.http_address == address


@pytest.mark.asyncio
async def test_stop_cuts_a_request_in_flight(
    make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch, connect: Connect
) -> None:
    """A request whose read hangs does not hold stop(): its connection is cut."""
    service = make_service(http="127.0.0.1:0")
    await service.start()
    assert service.http_address is not None
    release = threading.Event()
    real_open = os.open
    target = str(service.health_file)

    def hanging_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if os.fspath(path) == target and threading.current_thread().name == "healthfile-http":
            release.wait(timeout=generous(30))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", hanging_open)
    client = await connect(service.http_address)
    await client.send("/readyz")
    await asyncio.sleep(0.1)

    started = time.monotonic()
    await service.stop()
    rest = await client.rest(generous(1))
    release.set()

    assert time.monotonic() - started < generous(1)
    assert rest == b""


@pytest.mark.asyncio
async def test_a_standby_serves_the_writers_file(
    make_service: ServiceFactory, health_file: Path, connect: Connect
) -> None:
    """A second service on the file stands by and serves the file the first one writes."""
    writer = make_service(app_name="writer", http="127.0.0.1:0")
    standby = make_service(app_name="standby", http="127.0.0.1:0")
    await writer.start()
    await standby.start()
    assert writer.writing
    assert not standby.writing
    assert standby.http_address is not None
    client = await connect(standby.http_address)

    answer = await as_probe_says(health_file, lambda: client.request("/readyz"))
    page = await client.request("/")
    await client.close()

    assert answer.status == 200
    assert '<p class="app">writer ' in page.text


@pytest.mark.asyncio
async def test_ipv6_loopback_is_served(make_service: ServiceFactory, connect: Connect) -> None:
    """http="[::1]:0" serves on the IPv6 loopback."""
    if not socket.has_ipv6:
        pytest.skip("this Python has no IPv6")
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    service = make_service(http="[::1]:0")
    await service.start()
    assert service.http_address is not None
    host, port = service.http_address

    client = await connect((host, port))
    answer = await client.request("/readyz")
    await client.close()

    assert host == "::1"
    assert answer.status == 200


@pytest.mark.parametrize(
    "address",
    [
        "8081",
        ":8081",
        "127.0.0.1:",
        "127.0.0.1:port",
        "127.0.0.1:65536",
        "::1:8081",
        "[127.0.0.1]:80",
        "host name:80",
        "",
    ],
)
def test_a_bad_address_is_refused_at_construction(
    make_service: ServiceFactory, address: Any
) -> None:
    """http that is not HOST:PORT raises ValueError naming http and the value."""
    with pytest.raises(ValueError, match=r"^http must be HOST:PORT") as caught:
        make_service(http=address)

    assert repr(address) in str(caught.value)


@pytest.mark.parametrize(
    ("address", "parsed"),
    [
        ("127.0.0.1:8081", ("127.0.0.1", 8081)),
        ("[::1]:8081", ("::1", 8081)),
        ("localhost:0", ("localhost", 0)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        (" 10.0.0.1:9 ", ("10.0.0.1", 9)),
    ],
)
def test_addresses_parse_to_host_and_port(address: str, parsed: tuple[str, int]) -> None:
    """HOST:PORT parses; an IPv6 host loses its brackets."""
    assert parse_address(address) == parsed


def test_without_h11_http_raises_importerror_naming_the_extra(
    make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """http without h11 installed raises ImportError naming healthfile[http]."""
    monkeypatch.setattr(_server, "h11", None)

    with pytest.raises(ImportError, match=r"the extra healthfile\[http\]\): pip install h11"):
        make_service(http="127.0.0.1:0")


def test_an_address_that_is_not_a_string_is_a_type_error(make_service: ServiceFactory) -> None:
    """http=8081 (a port without its host, and not a string) raises TypeError naming http."""
    with pytest.raises(TypeError, match=r"^http must be a string HOST:PORT, not 8081$"):
        make_service(http=8081)


def test_the_server_repr_shows_its_state_and_address() -> None:
    """repr(HTTPServer) says whether it serves and where."""
    server = HTTPServer(asgi_app("h.json"), "::1", 8081)

    assert repr(server) == "<HTTPServer closed [::1]:8081>"


@pytest.mark.asyncio
async def test_a_slow_client_is_cut_at_the_request_bound(
    make_server: ServerFactory, connect: Connect
) -> None:
    """The same bound made short: a head trickling in past it gets 408 and the close."""
    server = await make_server("online", request_seconds=0.5)
    rest, took = await trickled(await connect(server.address), every=0.02, wait=5)

    assert rest is not None
    assert rest.startswith(b"HTTP/1.1 408 ")
    assert took >= not_before(0.5)
