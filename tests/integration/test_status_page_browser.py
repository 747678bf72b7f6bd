"""The status page in a real browser: Debian's headless Chromium renders it from the built-in
server for online, degraded, stale and stopped files, wide and phone-wide. (The page holds no
script and its Content-Security-Policy forbids any: tests/test_page.py; headless Chromium
itself needs JavaScript on to dump the DOM or take a screenshot.)

With HEALTHFILE_UPDATE_SCREENSHOT=1 the screenshots replace docs/images/status-page*.png.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from healthfile._asgi import asgi_app
from healthfile._server import HTTPServer
from helpers import generous, require_program, stamp
from httphelpers import entry, with_changes
from test_judge import report
from test_page import Document, rows

pytestmark = [pytest.mark.usefixtures("clean_environment"), pytest.mark.slow]

DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
# Read at import: clean_environment hides every HEALTHFILE_* variable while a test runs.
UPDATE_SCREENSHOTS = os.environ.get("HEALTHFILE_UPDATE_SCREENSHOT") == "1"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def example_report(kind: str) -> dict[str, Any]:
    """A report of an orders service with a database, its loop and a disk, of ``kind``."""
    database = entry("pass", None, duration_ms=2.84)
    loop = entry("pass", "lag 0.4 ms", duration_ms=1.02, groups=["live"])
    disk = entry("pass", "41% free on /var/lib/orders", critical=False, groups=["storage"])
    identity: dict[str, Any] = {"app_name": "orders-api", "app_version": "2.4.1"}
    if kind == "online":
        data = report(checks={"database": database, "event_loop": loop, "disk": disk}, **identity)
        with_changes(
            data,
            (538, "online", "starting", "database pass"),
            (540, "starting", None, "first report"),
        )
        return data
    if kind == "degraded":
        failing = entry("fail", "unable to open database file", duration_ms=3.1)
        failing["consecutive_failures"] = 4
        failing["last_success"] = stamp(time.time() - 130)
        low = entry("warn", "9% free on /var/lib/orders", critical=False, groups=["storage"])
        data = report(
            "degraded",
            database="disconnected",
            checks={"database": failing, "event_loop": loop, "disk": low},
            **identity,
        )
        with_changes(
            data,
            (124, "degraded", "online", "database fail: unable to open database file"),
            (538, "online", "starting", "database pass"),
            (540, "starting", None, "first report"),
        )
        return data
    if kind == "stale":
        checks = {"database": database, "event_loop": loop, "disk": disk}
        return report(age=330, expires_in=-290, checks=checks, **identity)
    if kind == "stopped":
        return report(
            "stopped", age=95, checks={"database": database, "event_loop": loop}, **identity
        )
    raise ValueError(kind)


@pytest_asyncio.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Any]:
    """Serve a report of a kind with the built-in server; yield a function giving its URL."""
    servers: list[HTTPServer] = []

    async def factory(kind: str) -> str:
        path = tmp_path / f"{kind}.json"
        path.write_text(json.dumps(example_report(kind), indent=2), encoding="utf-8")
        server = HTTPServer(asgi_app(path), "127.0.0.1", 0)
        await server.start()
        servers.append(server)
        return f"http://127.0.0.1:{server.address[1]}/"

    yield factory
    for server in servers:
        server.close()
        server.app.close()
        await server.wait_closed()


async def chromium(tmp_path: Path, *args: str) -> bytes:
    """Run headless Chromium with a fresh profile; return its stdout."""
    program = require_program("chromium", "chromium-browser", package="chromium")
    profile = tmp_path / f"profile-{time.monotonic_ns()}"
    process = await asyncio.create_subprocess_exec(
        program,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), generous(90))
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode(errors="replace")
    return out


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG file."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("kind", "headline", "words"),
    [
        ("online", "Healthy", ["Every check passes since", "event_loop", "41% free"]),
        (
            "degraded",
            "Degraded: database failing since",
            ["unable to open database file", "4 in a row", "online → degraded"],
        ),
        ("stale", "Stale: no report for 5 min", ["said online and held until"]),
        ("stopped", "Stopped", ["The service wrote its final report at", "(1 min ago)"]),
    ],
)
async def test_chromium_renders_the_status_in_plain_words(
    serve: Any, tmp_path: Path, kind: str, headline: str, words: list[str]
) -> None:
    """Chromium renders the status in plain words, the checks and the changes."""
    url = await serve(kind)

    dom = (await chromium(tmp_path, "--dump-dom", url)).decode("utf-8")
    document = Document(dom)

    assert document.headline().startswith(headline)
    for word in words:
        assert word in document.text
    assert [cells[0] for cells in rows(dom)][:2] == ["database", "event_loop"]
    assert document.meta("http-equiv", "refresh") == "30"


@pytest.mark.asyncio
@pytest.mark.parametrize(("name", "width", "height"), [("", 1000, 820), ("-phone", 390, 1100)])
async def test_screenshots_wide_and_phone_wide(
    serve: Any, tmp_path: Path, name: str, width: int, height: int
) -> None:
    """Chromium takes screenshots of a degraded page at desktop and phone widths (with
    HEALTHFILE_UPDATE_SCREENSHOT=1 they become the documentation's images)."""
    url = await serve("degraded")
    shot = tmp_path / f"status-page{name}.png"

    await chromium(tmp_path, f"--screenshot={shot}", f"--window-size={width},{height}", url)

    assert png_size(shot) == (width, height)
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
    if UPDATE_SCREENSHOTS:
        shutil.copyfile(shot, DOCS_IMAGES / shot.name)


def test_the_docs_show_the_status_page_screenshots() -> None:
    """docs/images/status-page.png and -phone.png exist, and the recipes page shows them."""
    for name in ("status-page.png", "status-page-phone.png"):
        assert (DOCS_IMAGES / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    recipes = (DOCS_IMAGES.parent / "recipes.md").read_text(encoding="utf-8")
    assert "](images/status-page.png)" in recipes
    assert "](images/status-page-phone.png)" in recipes
