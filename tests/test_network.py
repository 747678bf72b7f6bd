"""TCPCheck and HTTPCheck against real sockets and a real local HTTP(S) server."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

import healthfile
from healthfile import CheckResult, HTTPCheck, TCPCheck
from healthfile._redact import hide_values
from helpers import ServiceFactory, generous, require_program, run_once

pytestmark = pytest.mark.usefixtures("clean_environment")


async def run(check: healthfile.Check) -> CheckResult:
    """One run of ``check``, bounded."""
    result: CheckResult = await run_once(check)
    return result


async def first_report(service: healthfile.AsyncHealthService) -> healthfile.HealthReport:
    """Start ``service``; return the report of its first cycle."""
    await service.start()
    report = service.last_report
    assert report is not None
    return report


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose listener never accepts and whose backlog is full: a connect hangs there."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    queued = []
    try:
        for _ in range(8):  # Linux queues one connection for listen(0); others differ
            client = socket.socket()
            client.settimeout(0.2)
            try:
                client.connect(("127.0.0.1", port))
            except OSError:
                client.close()
                break
            queued.append(client)
        else:
            pytest.skip("this system never fills a listen backlog")
        yield port
    finally:
        for client in queued:
            client.close()
        listener.close()


# --- TCPCheck --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_tcp_check_passes_on_a_listening_port_and_closes_at_once() -> None:
    """A real listener passes with the time taken, and sees the connection closed at once."""
    closed = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await reader.read() == b""  # the check sends nothing and closes
        closed.set()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await run(TCPCheck("127.0.0.1", port))
        await asyncio.wait_for(closed.wait(), generous(5))
    finally:
        server.close()
        await server.wait_closed()

    assert result.status == "pass"
    assert result.output is not None
    assert result.output.startswith(f"connected to 127.0.0.1:{port} in ")
    assert result.output.endswith(" ms")


@pytest.mark.asyncio
async def test_tcp_check_fails_on_a_refused_port() -> None:
    """A port nothing listens on fails with the system's reason."""
    port = free_port()

    result = await run(TCPCheck("127.0.0.1", port))

    assert result == CheckResult("fail", f"cannot connect to 127.0.0.1:{port}: Connection refused")


@pytest.mark.asyncio
async def test_tcp_check_fails_on_an_unknown_host() -> None:
    """A host name that cannot resolve (.invalid never does) fails naming the host."""
    result = await run(TCPCheck("no-such-host.invalid", 80))

    assert result.status == "fail"
    assert result.output is not None
    assert result.output.startswith("cannot connect to no-such-host.invalid:80: ")


@pytest.mark.skipif(not socket.has_ipv6, reason="needs IPv6")
@pytest.mark.asyncio
async def test_tcp_check_shows_an_ipv6_address_in_brackets() -> None:
    """An IPv6 address is shown as [addr]:port."""
    try:
        server = await asyncio.start_server(lambda r, w: w.close(), "::1", 0)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    port = server.sockets[0].getsockname()[1]
    try:
        result = await run(TCPCheck("::1", port))
    finally:
        server.close()
        await server.wait_closed()

    assert result.output is not None
    assert result.output.startswith(f"connected to [::1]:{port} in ")


@pytest.mark.asyncio
async def test_tcp_check_times_out_on_a_listener_that_never_accepts(
    make_service: ServiceFactory, full_backlog: int
) -> None:
    """A connection that cannot open (a full backlog) fails at the check's own timeout."""
    service = make_service(checks=[TCPCheck("127.0.0.1", full_backlog, name="db", timeout=0.2)])

    report = await first_report(service)

    assert report.checks["db"].status == "fail"
    assert report.checks["db"].output == "timed out after 0.2 s"


@pytest.mark.asyncio
async def test_tcp_check_named_database_feeds_the_database_field(
    make_service: ServiceFactory, full_backlog: int
) -> None:
    """A tcp check as the database reads connected, disconnected, or timeout."""
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        states = []
        for target in (port, free_port(), full_backlog):
            check = TCPCheck("127.0.0.1", target, name="database", timeout=0.2)
            states.append((await first_report(make_service(check))).database)
    finally:
        server.close()
        await server.wait_closed()

    assert states == ["connected", "disconnected", "timeout"]


@pytest.mark.parametrize(
    ("host", "port", "error"),
    [
        ("", 80, ValueError),
        ("  ", 80, ValueError),
        ("a\nb", 80, ValueError),
        (None, 80, TypeError),
        ("localhost", 0, ValueError),
        ("localhost", 65536, ValueError),
        ("localhost", True, TypeError),
        ("localhost", "80", TypeError),
        ("localhost", 80.0, TypeError),
    ],
)
def test_tcp_check_refuses_a_bad_host_or_port(host: Any, port: Any, error: type[Exception]) -> None:
    """A host or port of the wrong type raises TypeError, one out of range ValueError."""
    with pytest.raises(error, match=r"^(host|port) must be"):
        TCPCheck(host, port)


def test_tcp_check_takes_the_common_options() -> None:
    """TCPCheck takes name, timeout, critical, groups and the thresholds like every check."""
    check = TCPCheck(
        "db",
        5432,
        name="postgres",
        timeout=1.5,
        critical=False,
        groups=["ready"],
        failure_threshold=3,
        success_threshold=2,
    )

    assert (check.name, check.timeout, check.critical, check.groups) == (
        "postgres",
        1.5,
        False,
        ("ready",),
    )
    assert (check.failure_threshold, check.success_threshold) == (3, 2)
    assert repr(check) == "<TCPCheck 'postgres' db:5432>"


# --- HTTPCheck: a real local server ----------------------------------------------------------

SECRET = "s3cr3t-t0ken-value"


@dataclass
class Server:
    """A local aiohttp server, what it was asked, and its base URL."""

    url: str
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    peers: list[object] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)


def make_app(server: Server) -> web.Application:
    """The test server's routes: statuses, redirects, an endless body, a hang, an echo."""

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        server.requests.append((request.method, request.path, dict(request.headers)))
        transport = request.transport
        server.peers.append(None if transport is None else transport.get_extra_info("peername"))
        response: web.StreamResponse = await handler(request)
        return response

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="fine\n")

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="database down\nmore\n")

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def hops(request: web.Request) -> web.Response:
        left = int(request.match_info["left"])
        raise web.HTTPFound(f"/hops/{left - 1}" if left > 1 else "/ok")

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=int(request.match_info["code"]))
        await response.prepare(request)
        line = b"first line of an endless body\n" + b"x" * 65536
        while True:  # until the client goes away
            await response.write(line)

    async def blank_lines(request: web.Request) -> web.Response:
        count = int(request.match_info["count"])
        return web.Response(status=500, body=b"\n" * count + b"the line after the blanks\n")

    async def hang(request: web.Request) -> web.Response:
        await server.release.wait()
        return web.Response(text="late")

    async def echo(request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "")
        return web.Response(status=401, text=f"refused: {given} is not a valid token\n")

    app = web.Application(middlewares=[record])
    app.router.add_get("/ok", ok)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/loop", loop)
    app.router.add_get("/hops/{left}", hops)
    app.router.add_get("/endless/{code}", endless)
    app.router.add_get("/blank/{count}", blank_lines)
    app.router.add_get("/hang", hang)
    app.router.add_get("/echo", echo)
    return app


async def start_server(ssl_context: ssl.SSLContext | None = None) -> tuple[Server, web.AppRunner]:
    """Serve make_app() on a free port of 127.0.0.1 (HTTPS with ``ssl_context``)."""
    server = Server(url="")
    runner = web.AppRunner(make_app(server), shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    server.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    return server, runner


@pytest_asyncio.fixture
async def http_server() -> AsyncIterator[Server]:
    """A real HTTP server on 127.0.0.1, stopped after the test."""
    server, runner = await start_server()
    yield server
    server.release.set()
    await runner.cleanup()


@pytest.mark.asyncio
async def test_http_check_passes_on_200_with_the_status_and_time(http_server: Server) -> None:
    """A 200 passes; the output is the status and the time."""
    result = await run(HTTPCheck(f"{http_server.url}/ok"))

    assert result.status == "pass"
    assert result.output is not None
    assert result.output.startswith("HTTP 200 in ")
    assert result.output.endswith(" ms")


@pytest.mark.asyncio
async def test_every_run_opens_a_fresh_connection(http_server: Server) -> None:
    """No connection is kept between runs: each run is a new client to the server."""
    check = HTTPCheck(f"{http_server.url}/ok")

    for _ in range(3):
        assert (await run(check)).status == "pass"

    assert len(set(map(str, http_server.peers))) == 3


def test_header_values_are_hidden_whole_and_word_by_word() -> None:
    """A header value is hidden whole, and so is each word of 4 characters or more of it."""
    text = "got Bearer abc123xyz, then abc123xyz alone, then Bearer, and 200 in 3 ms"

    hidden = hide_values(text, ["Bearer abc123xyz", "ok"])

    assert hidden == "got ***, then *** alone, then ***, and 200 in 3 ms"


@pytest.mark.asyncio
async def test_proxy_variables_are_not_used(
    http_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY and HTTPS_PROXY pointing nowhere change nothing: the check goes direct."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, nowhere)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    assert (await run(HTTPCheck(f"{http_server.url}/ok"))).status == "pass"


@pytest.mark.asyncio
async def test_http_check_fails_on_500_with_the_first_line_of_the_body(http_server: Server) -> None:
    """A 500 fails, giving the status, what was expected, and the body's first line."""
    result = await run(HTTPCheck(f"{http_server.url}/status/500"))

    assert result.status == "fail"
    assert result.output is not None
    assert result.output.startswith("HTTP 500 in ")
    assert result.output.endswith(" ms, expected below 400: database down")


@pytest.mark.parametrize(
    ("path", "expect_status", "status"),
    [
        ("/status/204", None, "pass"),
        ("/status/399", None, "pass"),
        ("/status/400", None, "fail"),
        ("/status/503", 503, "pass"),
        ("/ok", [201, 202], "fail"),
        ("/status/202", [201, 202], "pass"),
    ],
)
@pytest.mark.asyncio
async def test_http_check_judges_the_status_by_expect_status(
    http_server: Server, path: str, expect_status: Any, status: str
) -> None:
    """Without expect_status any status below 400 passes; with it, exactly those listed."""
    result = await run(HTTPCheck(f"{http_server.url}{path}", expect_status=expect_status))

    assert result.status == status, result.output


@pytest.mark.asyncio
async def test_http_check_names_the_expected_statuses(http_server: Server) -> None:
    """An unexpected status names the ones that were expected."""
    result = await run(HTTPCheck(f"{http_server.url}/ok", expect_status=[202, 201]))

    assert result.output is not None
    assert result.output.endswith(", expected 201, 202: fine")


@pytest.mark.asyncio
@pytest.mark.parametrize(("hops", "shown"), [(1, "after 1 redirect"), (5, "after 5 redirects")])
async def test_http_check_follows_up_to_five_redirects_and_says_so(
    http_server: Server, hops: int, shown: str
) -> None:
    """Up to 5 redirects are followed; the output counts them."""
    result = await run(HTTPCheck(f"{http_server.url}/hops/{hops}"))

    assert result.status == "pass"
    assert result.output is not None
    assert result.output.endswith(f" ms {shown}")


@pytest.mark.asyncio
async def test_http_check_fails_a_redirect_loop_after_five_redirects(http_server: Server) -> None:
    """A redirect loop fails once 5 redirects are followed, not at the timeout."""
    result = await run(HTTPCheck(f"{http_server.url}/loop"))

    assert result == CheckResult("fail", f"more than 5 redirects from {http_server.url}/loop")
    assert len(http_server.requests) == 6  # the request, then 5 redirects followed


@pytest.mark.asyncio
async def test_http_check_reads_an_endless_body_only_up_to_its_bound(http_server: Server) -> None:
    """An endless body neither hangs the check nor fills memory: it passes, or fails on its
    first line, as soon as 64 KiB have come."""
    passing = await run(HTTPCheck(f"{http_server.url}/endless/200"))
    failing = await run(HTTPCheck(f"{http_server.url}/endless/500"))

    assert passing.status == "pass"
    assert failing.output is not None
    assert failing.output.endswith("expected below 400: first line of an endless body")


@pytest.mark.parametrize(
    ("blanks", "shown"),
    # The line is 25 characters and a newline: whole within the first 64 KiB, or not read.
    [(1000, True), (64 * 1024 - 25, True), (64 * 1024, False)],
)
@pytest.mark.asyncio
async def test_http_check_reads_exactly_64_kib_of_body(
    http_server: Server, blanks: int, shown: bool
) -> None:
    """A line within the first 64 KiB of a body is read; one beyond them is not."""
    result = await run(HTTPCheck(f"{http_server.url}/blank/{blanks}"))

    assert result.output is not None
    assert result.output.endswith(": the line after the blanks") is shown, result.output


@pytest.mark.asyncio
async def test_http_check_head_sends_head_and_reads_no_body(http_server: Server) -> None:
    """method="HEAD" sends a HEAD request."""
    result = await run(HTTPCheck(f"{http_server.url}/ok", method="HEAD"))

    assert result.status == "pass"
    assert [(method, path) for method, path, _ in http_server.requests] == [("HEAD", "/ok")]


@pytest.mark.asyncio
async def test_http_check_times_out_on_a_server_that_hangs(
    make_service: ServiceFactory, http_server: Server
) -> None:
    """A server that never answers fails at the check's timeout."""
    service = make_service(checks=[HTTPCheck(f"{http_server.url}/hang", timeout=0.3)])

    report = await first_report(service)

    assert report.checks["http"].output == "timed out after 0.3 s"


@pytest.mark.asyncio
async def test_http_check_sends_headers_and_hides_their_values(http_server: Server) -> None:
    """Headers are sent; a value echoed back in the body never reaches the output."""
    check = HTTPCheck(f"{http_server.url}/echo", headers={"Authorization": f"Bearer {SECRET}"})

    result = await run(check)

    assert http_server.requests[0][2]["Authorization"] == f"Bearer {SECRET}"
    assert result.output is not None
    assert result.output.endswith("expected below 400: refused: *** is not a valid token")
    assert SECRET not in repr(check)


@pytest.mark.asyncio
async def test_http_check_hides_the_urls_password_and_query() -> None:
    """A failure names the URL without its user, password or query values."""
    port = free_port()
    check = HTTPCheck(f"http://admin:hunter2@127.0.0.1:{port}/health?api_key=abc123&x=1")

    result = await run(check)

    assert result == CheckResult(
        "fail", f"cannot connect to http://127.0.0.1:{port}/health?***: Connection refused"
    )
    assert "hunter2" not in repr(check)
    assert "abc123" not in repr(check)


# --- HTTPCheck: TLS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (openssl)."""
    openssl = require_program("openssl", package="openssl")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest_asyncio.fixture
async def https_server(self_signed: tuple[Path, Path]) -> AsyncIterator[Server]:
    """A real HTTPS server on 127.0.0.1 with the self-signed certificate."""
    cert, key = self_signed
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server, runner = await start_server(context)
    yield server
    await runner.cleanup()


@pytest.mark.asyncio
async def test_http_check_refuses_a_self_signed_certificate(https_server: Server) -> None:
    """TLS is verified: a certificate no trusted authority signed fails, saying so."""
    result = await run(HTTPCheck(f"{https_server.url}/ok"))

    assert result.status == "fail"
    assert result.output is not None
    assert result.output.startswith(f"{https_server.url}/ok: TLS certificate not trusted: ")
    assert "self-signed certificate" in result.output
    assert https_server.requests == []


@pytest.mark.asyncio
async def test_http_check_trusts_the_given_ca_file(
    https_server: Server, self_signed: tuple[Path, Path]
) -> None:
    """With ca_file naming the certificate's authority, the same server passes."""
    result = await run(HTTPCheck(f"{https_server.url}/ok", ca_file=self_signed[0]))

    assert result.status == "pass", result.output


# --- HTTPCheck: construction -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"url": "ftp://example.com/"}, ValueError, "url must be an http:// or https:// URL"),
        ({"url": "http://"}, ValueError, "url must be"),
        ({"url": "example.com/health"}, ValueError, "url must be"),
        ({"url": 42}, TypeError, "url must be a string"),
        ({"method": "POST"}, ValueError, "method must be 'GET' or 'HEAD'"),
        ({"method": "get"}, ValueError, "method must be"),
        ({"method": None}, TypeError, "method must be a string"),
        ({"expect_status": 99}, ValueError, "expect_status"),
        ({"expect_status": 600}, ValueError, "expect_status"),
        ({"expect_status": []}, ValueError, "expect_status"),
        ({"expect_status": True}, TypeError, "expect_status"),
        ({"expect_status": "200"}, TypeError, "expect_status"),
        ({"expect_status": [200, "204"]}, TypeError, "expect_status"),
        ({"headers": ["Authorization"]}, TypeError, "headers must be a mapping"),
        ({"headers": {"Bad Name:": "x"}}, ValueError, "header name"),
        ({"headers": {"X-Token": 5}}, TypeError, "X-Token"),
        ({"ca_file": "/no/such/ca.pem"}, ValueError, "ca_file '/no/such/ca.pem'"),
    ],
)
def test_http_check_refuses_bad_arguments(
    arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    """A bad URL, method, status, header or CA file raises saying which: TypeError for a
    wrong type, ValueError for a bad value."""
    arguments.setdefault("url", "http://127.0.0.1/")
    with pytest.raises(error, match=message):
        HTTPCheck(**arguments)


def test_a_header_value_with_a_line_break_is_refused_without_being_shown() -> None:
    """A header value that could split the request is refused; the value is not quoted."""
    with pytest.raises(ValueError, match="line break") as refused:
        HTTPCheck("http://127.0.0.1/", headers={"Authorization": f"Bearer {SECRET}\r\nX: y"})

    assert SECRET not in str(refused.value)


def test_http_check_without_aiohttp_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without aiohttp, making an HTTPCheck raises an ImportError naming the extra."""
    monkeypatch.setitem(sys.modules, "aiohttp", None)

    with pytest.raises(ImportError, match=r"the extra healthfile\[http-check\]\): pip install"):
        HTTPCheck("http://127.0.0.1/")


def test_http_check_takes_the_common_options() -> None:
    """HTTPCheck takes the common options, and its repr shows the method and safe URL."""
    check = HTTPCheck(
        "https://user:pw@api.example/health?token=x",
        method="HEAD",
        name="api",
        timeout=2,
        critical=False,
        groups=("ready",),
        failure_threshold=2,
        success_threshold=3,
    )

    assert (check.name, check.timeout, check.critical, check.groups) == (
        "api",
        2.0,
        False,
        ("ready",),
    )
    assert repr(check) == "<HTTPCheck 'api' HEAD https://api.example/health?***>"
    assert aiohttp.__name__ == "aiohttp"  # the extra is installed for the tests
