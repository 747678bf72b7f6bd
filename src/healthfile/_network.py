"""Network checks: a TCP port that accepts connections, an HTTP endpoint that answers.

``HTTPCheck`` needs aiohttp (the extra ``healthfile[http-check]``): an asyncio-native
client, maintained by aio-libs, that verifies TLS with the default context, bounds
redirects itself and streams a body so that no more than a bound of it is read. It is
imported when an ``HTTPCheck`` is made, never by ``import healthfile``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeGuard
from urllib.parse import urlsplit

from ._options import CheckOptions, CommonOptions, absolute
from ._redact import hide_values
from ._report import CheckResult, describe_exception, first_line, os_reason

if TYPE_CHECKING:
    from ._options import Unpack

__all__ = [
    "HTTP_EXTRA",
    "MAX_BODY_BYTES",
    "MAX_REDIRECTS",
    "HTTPCheck",
    "TCPCheck",
    "display_url",
    "elapsed_text",
    "import_aiohttp",
]

# How much of a response body is read: the first line of it goes into the output of an
# unexpected status (Kubernetes' httpGet probe reads 10 KiB the same way).
MAX_BODY_BYTES = 64 * 1024
# Redirects followed before the check fails: a loop ends here, not at the timeout.
MAX_REDIRECTS = 5
HTTP_EXTRA = "the http check needs aiohttp (the extra healthfile[http-check]): pip install aiohttp"
_METHODS = ("GET", "HEAD")
_HEADER_FORBIDDEN = frozenset("\r\n\0")


def import_aiohttp() -> ModuleType:
    """Import aiohttp, or raise an ImportError naming the extra that installs it."""
    try:
        import aiohttp
    except ImportError as exc:
        raise ImportError(HTTP_EXTRA) from exc
    return aiohttp


def elapsed_text(started: float) -> str:
    """The time since ``started`` (``time.perf_counter()``) as ``12 ms`` or ``0.4 ms``."""
    ms = (time.perf_counter() - started) * 1000
    return f"{ms:.1f} ms" if ms < 10 else f"{ms:.0f} ms"


def _is_int(value: object) -> TypeGuard[int]:
    """Tell an int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _address(host: str, port: int) -> str:
    """``host:port``, an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class TCPCheck(CheckOptions):
    """Pass when a TCP connection to ``host``:``port`` opens; it is closed at once.

    Nothing is sent: the check proves that something accepts connections there (a database,
    a broker, an app's port). A refused connection or an unknown host fails with the
    system's reason; one that does not open within the timeout fails as timed out.

    :param host: a host name or an IP address.
    :param port: the TCP port, 1 to 65535.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        name: str = "tcp",
        **options: Unpack[CommonOptions],
    ) -> None:
        if not isinstance(host, str):
            raise TypeError(f"host must be a string, not {host!r} ({type(host).__name__})")
        if not host.strip() or not host.isprintable():
            raise ValueError(f"host must be a host name or an IP address, not {host!r}")
        if not _is_int(port):
            raise TypeError(f"port must be an int, not {port!r} ({type(port).__name__})")
        if not 1 <= port <= 65535:
            raise ValueError(f"port must be from 1 to 65535, not {port!r}")
        super().__init__(name=name, **options)
        self.host = host.strip()
        self.port = port

    def __repr__(self) -> str:
        return f"<TCPCheck {self.name!r} {_address(self.host, self.port)}>"

    async def run(self) -> CheckResult:
        """Open a connection, then close it (the service bounds the wait)."""
        address = _address(self.host, self.port)
        started = time.perf_counter()
        try:
            _, writer = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            return CheckResult("fail", f"cannot connect to {address}: {os_reason(exc)}")
        took = elapsed_text(started)
        writer.close()
        # The connection opened: a reset while it closes says nothing more about the port.
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return CheckResult("pass", f"connected to {address} in {took}")


def display_url(url: str) -> str:
    """``url`` as outputs show it: no user, password, query values or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    with contextlib.suppress(ValueError):  # a port out of range: shown without it
        if parts.port is not None:
            netloc += f":{parts.port}"
    query = "?***" if parts.query else ""
    return f"{parts.scheme}://{netloc}{parts.path}{query}"


def _statuses(expect_status: object) -> tuple[int, ...]:
    """The accepted statuses, sorted; ``()`` for the default (any status below 400)."""
    if expect_status is None:
        return ()
    if _is_int(expect_status):
        values: list[object] = [expect_status]
    elif isinstance(expect_status, Iterable) and not isinstance(expect_status, (str, bytes)):
        values = list(expect_status)
    else:
        values = [expect_status]
    statuses = [value for value in values if _is_int(value)]
    if len(statuses) != len(values):
        raise TypeError(
            f"expect_status must be an int or a list of ints (HTTP statuses), not {expect_status!r}"
        )
    if not statuses or not all(100 <= status <= 599 for status in statuses):
        raise ValueError(
            f"expect_status must be an HTTP status from 100 to 599 or a non-empty list of "
            f"them, not {expect_status!r}"
        )
    return tuple(sorted(set(statuses)))


def _headers(headers: object) -> dict[str, str]:
    """The request headers, checked: names and values are strings without line breaks."""
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise TypeError(f"headers must be a mapping of names to values, not {headers!r}")
    checked = {}
    for name, value in headers.items():
        # A value is a secret as likely as not: never shown.
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"header {name!r}: the name and the value must be strings")
        if not name or ":" in name or not name.isprintable():
            raise ValueError(f"a header name must be printable, without ':', not {name!r}")
        if _HEADER_FORBIDDEN & set(value):
            raise ValueError(f"header {name!r}: the value must hold no line break")
        checked[name] = value
    return checked


async def _read_body(content: Any) -> bytes:
    """Read the first MAX_BODY_BYTES of a body (an aiohttp StreamReader), the rest unread."""
    body = bytearray()
    while len(body) < MAX_BODY_BYTES:
        chunk = await content.read(MAX_BODY_BYTES - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)


def _check_url(url: object) -> None:
    """Refuse anything but an http:// or https:// URL with a host."""
    if not isinstance(url, str):
        raise TypeError(f"url must be a string, not {url!r} ({type(url).__name__})")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = display_url(url)
        raise ValueError(f"url must be an http:// or https:// URL with a host, not {shown}")


class HTTPCheck(CheckOptions):
    """Pass when ``url`` answers with an expected status; the output gives it and the time.

    Needs aiohttp (the extra ``healthfile[http-check]``: ``pip install aiohttp``). Every run
    opens a fresh connection (none is kept between runs), verifies TLS with the default context (or
    ``ca_file``), follows at most 5 redirects and reads at most 64 KiB of the body: on an
    unexpected status its first line goes into the output. Proxy variables (``HTTP_PROXY``)
    are not used: a probe talks to the service itself. Header values are hidden
    (``***``) wherever they would appear in an output, and so are the URL's user, password
    and query.

    :param url: an ``http://`` or ``https://`` URL.
    :param method: ``"GET"`` or ``"HEAD"``.
    :param expect_status: the status that passes, or a list of them; ``None``: any status
        below 400.
    :param headers: request headers (e.g. ``{"Authorization": "Bearer …"}``).
    :param ca_file: a PEM file of the certificate authorities to trust instead of the
        system's, for a service with a private CA.
    :raises ImportError: when aiohttp is not installed.
    :raises TypeError: for an argument of the wrong type.
    :raises ValueError: for a bad URL, method, status, header or CA file.
    """

    def __init__(
        self,
        url: str,
        *,
        method: str = "GET",
        expect_status: int | Iterable[int] | None = None,
        headers: Mapping[str, str] | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        name: str = "http",
        **options: Unpack[CommonOptions],
    ) -> None:
        _check_url(url)
        if not isinstance(method, str):
            raise TypeError(f"method must be a string, not {method!r} ({type(method).__name__})")
        if method not in _METHODS:
            raise ValueError(f"method must be 'GET' or 'HEAD', not {method!r}")
        self._aiohttp = import_aiohttp()
        super().__init__(name=name, **options)
        self.url = url
        self.method = method
        self.expect_status = _statuses(expect_status)
        self.headers = _headers(headers)
        self.ca_file = None if ca_file is None else absolute(ca_file)
        self._ssl: ssl.SSLContext | bool = True  # aiohttp's own verified default context
        if self.ca_file is not None:
            try:
                self._ssl = ssl.create_default_context(cafile=self.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(
                    f"ca_file {str(self.ca_file)!r}: {describe_exception(exc)}"
                ) from None

    def __repr__(self) -> str:
        return f"<HTTPCheck {self.name!r} {self.method} {display_url(self.url)}>"

    def _expected(self, status: int) -> bool:
        """Tell whether ``status`` passes."""
        return status in self.expect_status if self.expect_status else status < 400

    def _expectation(self) -> str:
        """What passes, as the output says it."""
        if not self.expect_status:
            return "below 400"
        return ", ".join(str(status) for status in self.expect_status)

    async def run(self) -> CheckResult:
        """Send one request and judge the status (the service bounds the wait)."""
        result = await self._request()
        # A header value (a token) echoed in a body or an error never reaches an output.
        output = hide_values(result.output or "", self.headers.values())
        return CheckResult(result.status, output)

    async def _request(self) -> CheckResult:
        """Send the request in a session of its own; judge the status, or say what failed."""
        aiohttp = self._aiohttp
        started = time.perf_counter()
        where = display_url(self.url)
        try:
            connector = aiohttp.TCPConnector(ssl=self._ssl, force_close=True)
            async with (
                aiohttp.ClientSession(
                    connector=connector, timeout=aiohttp.ClientTimeout(total=None)
                ) as session,
                session.request(
                    self.method,
                    self.url,
                    headers=self.headers,
                    allow_redirects=True,
                    # aiohttp counts the redirect responses, the one it refuses too.
                    max_redirects=MAX_REDIRECTS + 1,
                ) as response,
            ):
                body = b"" if self.method == "HEAD" else await _read_body(response.content)
                status = response.status
                redirects = len(response.history)
        except aiohttp.TooManyRedirects:
            return CheckResult("fail", f"more than {MAX_REDIRECTS} redirects from {where}")
        except aiohttp.ClientConnectorCertificateError as exc:
            return CheckResult(
                "fail", f"{where}: TLS certificate not trusted: {exc.certificate_error}"
            )
        except aiohttp.ClientConnectorError as exc:
            return CheckResult("fail", f"cannot connect to {where}: {os_reason(exc.os_error)}")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            # ValueError: what aiohttp refuses to send (a password in the URL and an
            # Authorization header both).
            return CheckResult("fail", f"{where}: {describe_exception(exc)}")
        took = elapsed_text(started)
        after = f" after {redirects} redirect{'s' if redirects > 1 else ''}" if redirects else ""
        text = f"HTTP {status} in {took}{after}"
        if self._expected(status):
            return CheckResult("pass", text)
        line = first_line(body)
        return CheckResult(
            "fail", f"{text}, expected {self._expectation()}" + (f": {line}" if line else "")
        )
